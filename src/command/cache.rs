//! `promptgate cache`: look into, move and trim the response cache. `stats`, `export` and
//! `prune` never create a cache (a mistyped `--cache` is an error, not a new empty file);
//! `import` creates one, since that is how a cache reaches a fresh CI runner.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use super::Console;
use crate::cache::{Cache, CacheError};
use crate::error::Error;
use crate::exit_code;
use crate::fs::FsError;

/// The cache the command works on.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheOptions {
    pub path: PathBuf,
    /// No notes on stderr.
    pub quiet: bool,
}

/// The existing cache of `--cache`; these commands never create one, and only `prune` writes.
fn existing_cache(global: &CacheOptions, write: bool) -> Result<Cache, Error> {
    if !global.path.exists() {
        return Err(CacheError::Missing {
            path: global.path.clone(),
            message: "no such file",
        }
        .into());
    }
    Ok(if write {
        Cache::open(&global.path)?
    } else {
        Cache::open_read_only(&global.path)?
    })
}

/// `promptgate cache export`: every entry (or one model's) as JSON lines, to `out` or the output.
pub fn export(
    global: &CacheOptions,
    out: Option<&Path>,
    model: Option<&str>,
    console: &mut Console,
) -> Result<i32, Error> {
    if let Some(path) = out {
        crate::fs::check_output_path(path)?;
    }
    let cache = existing_cache(global, false)?;
    let count = match out {
        Some(path) => {
            // A failed export fails the write, so the temporary file is dropped, not renamed.
            let (mut count, mut failure) = (0, None);
            let written = crate::fs::write_atomic_with(path, |file| {
                let mut buffered = std::io::BufWriter::new(file);
                match cache.export(&mut buffered, model) {
                    Ok(n) => {
                        count = n;
                        buffered.flush()
                    }
                    Err(error) => {
                        failure = Some(error);
                        Err(std::io::Error::other("the export failed"))
                    }
                }
            });
            match failure {
                Some(CacheError::Export(source)) => return Err(Error::from(FsError::write(path, source))),
                Some(error) => return Err(error.into()),
                None => {}
            }
            written?;
            count
        }
        None => {
            let mut buffered = std::io::BufWriter::new(console.raw_output());
            let count = match cache.export(&mut buffered, model) {
                Err(CacheError::Export(source)) if source.kind() == std::io::ErrorKind::BrokenPipe => 0,
                Err(CacheError::Export(source)) => return Err(Error::from(FsError::write("<stdout>", source))),
                other => other?,
            };
            match buffered.flush() {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(Error::from(FsError::write("<stdout>", e)))
                }
                _ => {}
            }
            count
        }
    };
    if !global.quiet {
        console.note(&format!("exported {count} entries from {}", global.path.display()));
    }
    Ok(exit_code::SUCCESS)
}

/// `promptgate cache import`: entries written by `export`, from `file` or, for `-`, from `stdin`.
pub fn import(
    global: &CacheOptions,
    file: &Path,
    stdin: &mut dyn BufRead,
    console: &mut Console,
) -> Result<i32, Error> {
    let cache = Cache::open(&global.path)?;
    let stats = if file.as_os_str() == "-" {
        cache.import(stdin, Path::new("<stdin>"))?
    } else {
        let opened = std::fs::File::open(file).map_err(|source| {
            Error::from(FsError::read("read", file, source))
                .with_hint("pass a file written by `promptgate cache export`, or `-` for stdin")
        })?;
        cache.import(&mut std::io::BufReader::new(opened), file)?
    };
    console.line(&format!(
        "imported into {}: {} added, {} already present, {} kept with a different local answer",
        global.path.display(),
        stats.added,
        stats.present,
        stats.differing
    ))?;
    Ok(exit_code::SUCCESS)
}

/// `promptgate cache prune`: delete entries older than `older_than` and/or of one model.
pub fn prune(
    global: &CacheOptions,
    older_than: Option<jiff::Span>,
    model: Option<&str>,
    dry_run: bool,
    console: &mut Console,
) -> Result<i32, Error> {
    if older_than.is_none() && model.is_none() {
        return Err(Error::usage("prune needs --older-than AGE and/or --model MODEL_ID")
            .with_hint("to start from an empty cache, delete the file instead"));
    }
    let cache = existing_cache(global, true)?;
    let before = match older_than {
        Some(span) => Some(
            jiff::Zoned::now()
                .checked_sub(span)
                .map_err(|e| Error::usage(format!("--older-than: {e}")))?
                .timestamp(),
        ),
        None => None,
    };
    let count = cache.prune(before, model, dry_run)?;
    if dry_run {
        console.line(&format!("would delete {count} entries from {}", global.path.display()))?;
    } else {
        console.line(&format!("deleted {count} entries from {}", global.path.display()))?;
    }
    Ok(exit_code::SUCCESS)
}

/// `promptgate cache stats`: entries, size and tokens per model, as a table or JSON.
pub fn stats(global: &CacheOptions, json: bool, console: &mut Console) -> Result<i32, Error> {
    let stats = existing_cache(global, false)?.stats()?;
    if json {
        let text = serde_json::to_string_pretty(&stats).map_err(|e| Error::internal(e.to_string()))?;
        console.line(&text)?;
        return Ok(exit_code::SUCCESS);
    }
    console.line(&format!("cache: {} (schema {})", stats.path, stats.schema_version))?;
    console.line(&format!(
        "entries: {}, size: {:.1} MiB",
        stats.entries,
        stats.bytes as f64 / 1_048_576.0
    ))?;
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::UTF8_HORIZONTAL_ONLY)
        .set_header(vec!["provider", "model", "entries", "input tokens", "output tokens"]);
    // Names come from the cache's rows, which an import file wrote: shown, never acted on.
    let shown = |name: &str| crate::excerpt::excerpt(name, 200);
    for model in &stats.models {
        table.add_row(vec![
            shown(&model.provider),
            shown(&model.model),
            model.entries.to_string(),
            model.input_tokens.to_string(),
            model.output_tokens.to_string(),
        ]);
    }
    console.line(&table.to_string())?;
    Ok(exit_code::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Entry;
    use crate::command::tests::printed;
    use crate::provider::Response;

    #[test]
    fn an_export_imports_into_another_cache_and_stats_count_it() {
        let dir = tempfile::tempdir().unwrap();
        let options = |name: &str| CacheOptions {
            path: dir.path().join(name),
            quiet: false,
        };
        let (from, to) = (options("from.sqlite"), options("to.sqlite"));
        let cache = Cache::open(&from.path).unwrap();
        let entries: Vec<Entry> = (0..3)
            .map(|i| Entry::test(&format!("{i:064x}"), Response::from_text("notify")))
            .collect();
        cache.put_many(&entries).unwrap();
        drop(cache);

        let (exported, notes, code) = printed(|console| export(&from, None, None, console));
        assert_eq!(code.unwrap(), exit_code::SUCCESS);
        // A header line, then one line per entry.
        assert_eq!(exported.lines().count(), 4);
        assert!(notes.starts_with("exported 3 entries from "), "{notes}");
        let (out, _, code) = printed(|console| import(&to, Path::new("-"), &mut exported.as_bytes(), console));
        assert_eq!(code.unwrap(), exit_code::SUCCESS);
        assert!(out.contains(": 3 added, 0 already present, 0 kept"), "{out}");
        let (out, _, _) = printed(|console| stats(&to, true, console));
        let counted: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(counted["entries"], 3);
        let (out, _, _) = printed(|console| stats(&to, false, console));
        assert!(out.contains("entries: 3,"), "{out}");
        let (out, _, _) = printed(|console| prune(&to, None, Some("m"), true, console));
        assert!(out.starts_with("would delete 3 entries from "), "{out}");
    }

    #[test]
    fn only_import_creates_a_cache() {
        let dir = tempfile::tempdir().unwrap();
        let missing = CacheOptions {
            path: dir.path().join("typo.sqlite"),
            quiet: true,
        };
        for result in [
            printed(|console| stats(&missing, false, console)).2,
            printed(|console| export(&missing, None, None, console)).2,
            printed(|console| prune(&missing, None, Some("m"), false, console)).2,
        ] {
            let error = result.unwrap_err();
            assert!(error.to_string().ends_with("typo.sqlite`: no such file"), "{error}");
            assert_eq!(error.exit_code(), crate::exit_code::BAD_INPUT);
        }
        assert!(!missing.path.exists());
        let error = printed(|console| prune(&missing, None, None, false, console))
            .2
            .unwrap_err();
        assert!(error.to_string().contains("prune needs --older-than"), "{error}");
    }
}
