//! Reading input and writing output: every file promptgate reads goes through
//! [`read_to_string`] (bounded, UTF-8 checked, the path in every error), every report and
//! baseline through [`write_atomic`] (never half a file, never over a symlink or a device), and
//! every recorded case through [`write_new`] (never over an existing case).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::exit_code;
use crate::location::line_column;

/// The largest input file read (config, prompt, case, baseline, run record, schema): far
/// above any real one, far below memory. Reads stop there, so `/dev/zero` is no hang.
pub const MAX_INPUT_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Why reading an input or writing an output failed. Each variant knows its hint and its exit
/// code: an input that cannot be read is the user's to fix (2), an output that cannot be
/// written is the machine's (6).
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// An input file or folder could not be opened, listed or read.
    #[error("failed to {action} `{path}`: {source}")]
    Read {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
        /// Where to look, when the caller knows (e.g. "relative to the config file's folder").
        hint: Option<String>,
    },
    /// An input file larger than [`MAX_INPUT_FILE_BYTES`].
    #[error("invalid {what} `{path}`: the file is larger than {} MiB", MAX_INPUT_FILE_BYTES / (1024 * 1024))]
    TooLarge { what: &'static str, path: PathBuf },
    /// An input file that is not UTF-8, at the first bad byte.
    #[error("invalid {what} `{path}` at line {line}, column {column}: the file is not valid UTF-8")]
    NotUtf8 {
        what: &'static str,
        path: PathBuf,
        line: usize,
        column: usize,
    },
    /// An output (report, baseline, recorded case, stdout) could not be written.
    #[error("failed to {action} `{path}`: {source}")]
    Write {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An output path that is not replaced, found before any work is done.
    #[error("{}", refused_message(path, reason))]
    Refused { path: PathBuf, reason: Refusal },
}

/// Why an output path is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Symlink,
    Folder,
    /// A device, FIFO or socket.
    Special,
    ReadOnlyFolder,
    /// This ancestor of the path exists and is not a folder.
    NotAFolder(PathBuf),
}

fn refused_message(path: &Path, reason: &Refusal) -> String {
    let path = path.display();
    match reason {
        Refusal::Symlink => format!("refusing to write a report over `{path}`: it is a symbolic link"),
        Refusal::Folder => format!("refusing to write a report over `{path}`: it is a folder"),
        Refusal::Special => {
            format!("refusing to write a report over `{path}`: it is a device, FIFO or socket, not a regular file")
        }
        Refusal::ReadOnlyFolder => format!("cannot write `{path}`: its folder is read-only"),
        Refusal::NotAFolder(folder) => format!("cannot write `{path}`: `{}` is not a folder", folder.display()),
    }
}

impl FsError {
    /// A failed read of `path`.
    pub fn read(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FsError::Read {
            action,
            path: path.into(),
            source,
            hint: None,
        }
    }

    /// A failed step with a temporary file (rendered prompts, a batch's input): named by the
    /// folder such files go in, the one place a user can free or change (`TMPDIR`).
    pub fn temporary(action: &'static str, source: std::io::Error) -> Self {
        FsError::Write {
            action,
            path: std::env::temp_dir(),
            source,
        }
    }

    /// A failed write to `path` (stdout is `<stdout>`).
    pub fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FsError::Write {
            action: "write",
            path: path.into(),
            source,
        }
    }
}

/// What to do about a failed write: a full disk or a permission, when the error says so.
pub(crate) fn write_hint(source: &std::io::Error) -> Option<String> {
    match source.raw_os_error() {
        Some(28) => Some("the disk is full".into()),
        _ if source.kind() == std::io::ErrorKind::PermissionDenied => {
            Some("check the permissions of the file and its folder".into())
        }
        _ => None,
    }
}

impl crate::error::Failure for FsError {
    /// What to do about it, when that is known.
    fn hint(&self) -> Option<String> {
        match self {
            FsError::Read { hint, .. } => hint.clone(),
            FsError::TooLarge { what, .. } => Some(format!("is this really a {what}?")),
            FsError::NotUtf8 { .. } => Some("save the file as UTF-8".into()),
            FsError::Write { source, .. } => write_hint(source),
            FsError::Refused { reason, .. } => match reason {
                Refusal::Symlink | Refusal::Folder | Refusal::Special => {
                    Some("name a new file or an existing regular file".into())
                }
                Refusal::ReadOnlyFolder | Refusal::NotAFolder(_) => None,
            },
        }
    }

    /// The exit code: bad input (2) for what the user passed, internal (6) for a failed write.
    fn exit_code(&self) -> i32 {
        match self {
            FsError::Read { .. } | FsError::TooLarge { .. } | FsError::NotUtf8 { .. } | FsError::Refused { .. } => {
                exit_code::BAD_INPUT
            }
            FsError::Write { .. } => exit_code::INTERNAL,
        }
    }
}

/// A failed read of the input file `path`, with a hint when it is missing.
fn input_error(path: &std::path::Path, what: &'static str, source: std::io::Error) -> FsError {
    let hint = (source.kind() == std::io::ErrorKind::NotFound)
        .then(|| format!("check the {what} path; it is resolved relative to the config file's folder"));
    FsError::Read {
        action: "read",
        path: path.to_path_buf(),
        source,
        hint,
    }
}

/// Read a file to a string, naming the path on failure; at most [`MAX_INPUT_FILE_BYTES`], and
/// invalid UTF-8 named by line and column.
pub fn read_to_string(path: &std::path::Path, what: &'static str) -> Result<String, FsError> {
    use std::io::Read;
    let io_error = |source| input_error(path, what, source);
    let file = std::fs::File::open(path).map_err(io_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_INPUT_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > MAX_INPUT_FILE_BYTES {
        return Err(FsError::TooLarge {
            what,
            path: path.to_path_buf(),
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(&e.as_bytes()[..valid]);
        let (line, column) = line_column(&text, valid);
        FsError::NotUtf8 {
            what,
            path: path.to_path_buf(),
            line,
            column,
        }
    })
}

/// Each line of a file with its 1-based number, without its line ending (`\n` or `\r\n`),
/// read one at a time, so that a file of many lines is never held whole: the same bound
/// ([`MAX_INPUT_FILE_BYTES`], checked before the first line of a regular file) and the same
/// errors as [`read_to_string`]. `visit`'s error ends the reading and is returned.
pub fn for_each_line<E: From<FsError>>(
    path: &std::path::Path,
    what: &'static str,
    mut visit: impl FnMut(usize, &str) -> Result<(), E>,
) -> Result<(), E> {
    use std::io::{BufRead, Read};
    let io_error = |source| input_error(path, what, source);
    let too_large = || FsError::TooLarge {
        what,
        path: path.to_path_buf(),
    };
    let file = std::fs::File::open(path).map_err(io_error)?;
    if file
        .metadata()
        .is_ok_and(|m| m.is_file() && m.len() > MAX_INPUT_FILE_BYTES)
    {
        return Err(too_large().into());
    }
    let mut reader = std::io::BufReader::new(file.take(MAX_INPUT_FILE_BYTES + 1));
    let (mut line, mut number, mut read) = (Vec::new(), 0, 0u64);
    loop {
        line.clear();
        let length = reader.read_until(b'\n', &mut line).map_err(io_error)?;
        if length == 0 {
            return Ok(());
        }
        read += length as u64;
        if read > MAX_INPUT_FILE_BYTES {
            return Err(too_large().into());
        }
        number += 1;
        let text = std::str::from_utf8(&line).map_err(|e| {
            let valid = String::from_utf8_lossy(&line[..e.valid_up_to()]);
            FsError::NotUtf8 {
                what,
                path: path.to_path_buf(),
                line: number,
                column: valid.chars().count() + 1,
            }
        })?;
        let text = text.strip_suffix('\n').unwrap_or(text);
        visit(number, text.strip_suffix('\r').unwrap_or(text))?;
    }
}

/// Write `text` to `path` atomically: a temporary file in the same folder, then a rename, so a
/// reader never sees half a report.
pub fn write_atomic(path: &std::path::Path, text: &str) -> Result<(), FsError> {
    write_atomic_with(path, |file| file.write_all(text.as_bytes()))
}

/// [`write_atomic`] for content that `write` streams into the file.
///
/// Only a new path or an existing regular file is written: a rename over a symlink, a FIFO or a
/// device node (`--out /dev/full` as root) would replace it, so those are refused.
pub fn write_atomic_with(
    path: &std::path::Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), FsError> {
    check_output_path(path)?;
    let folder = output_folder(path);
    std::fs::create_dir_all(folder).map_err(|source| FsError::Write {
        action: "create the folder",
        path: folder.to_path_buf(),
        source,
    })?;
    let mut file = tempfile::NamedTempFile::new_in(folder).map_err(|e| FsError::write(path, e))?;
    write(file.as_file_mut())
        .and_then(|_| file.as_file().sync_all())
        .map_err(|e| FsError::write(path, e))?;
    file.persist(path).map_err(|e| FsError::write(path, e.error))?;
    Ok(())
}

fn output_folder(path: &std::path::Path) -> &std::path::Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
}

/// Check, before any work, that `path` can take a report: a new path in a folder that exists
/// or can be made, or an existing regular file; never a symlink, FIFO, device or folder.
pub fn check_output_path(path: &std::path::Path) -> Result<(), FsError> {
    let refuse = |reason: Refusal| FsError::Refused {
        path: path.to_path_buf(),
        reason,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => return Err(refuse(Refusal::Symlink)),
        Ok(meta) if meta.is_dir() => return Err(refuse(Refusal::Folder)),
        Ok(meta) if !meta.is_file() => return Err(refuse(Refusal::Special)),
        Ok(_) => {}
        // A missing file, or a parent that is a file: the ancestors below say which.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) => {}
        Err(e) => return Err(FsError::write(path, e)),
    }
    // The nearest existing ancestor must be a folder we can write into.
    let mut folder = output_folder(path);
    loop {
        match std::fs::metadata(folder) {
            Ok(meta) if meta.is_dir() => {
                if meta.permissions().readonly() {
                    return Err(refuse(Refusal::ReadOnlyFolder));
                }
                return Ok(());
            }
            Ok(_) => return Err(refuse(Refusal::NotAFolder(folder.to_path_buf()))),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                match folder.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => folder = parent,
                    _ => return Ok(()),
                }
            }
            Err(e) => return Err(FsError::write(folder, e)),
        }
    }
}

/// A temporary file this old belongs to a `record` that was killed: no live one writes for
/// that long (a 32 MiB finding is written in well under a second).
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Delete `.promptgate-record-*.tmp` files older than `age` from `folder`; best effort.
fn remove_stale_temporaries(folder: &Path, age: std::time::Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(".promptgate-record-") && name.ends_with(".tmp")) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|elapsed| elapsed >= age);
        if old && entry.file_type().is_ok_and(|t| t.is_file()) && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Write `text` to `path` unless a file is there: `Ok(false)` when one is. The bytes go to a
/// temporary file in the same folder first, are synced, and are then linked into place.
pub fn write_new(path: &Path, text: &str) -> Result<bool, FsError> {
    let folder = path.parent().unwrap_or(Path::new("."));
    let io_error = |action: &'static str, source: std::io::Error| FsError::Write {
        action,
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(folder).map_err(|e| io_error("create the folder of", e))?;
    remove_stale_temporaries(folder, STALE_AFTER);
    // Not `.json`: a temporary file left by a killed process is never read as a case.
    let mut file = tempfile::Builder::new()
        .prefix(".promptgate-record-")
        .suffix(".tmp")
        .tempfile_in(folder)
        .map_err(|e| io_error("write", e))?;
    file.write_all(text.as_bytes())
        .and_then(|_| file.as_file().sync_all())
        .map_err(|e| io_error("write", e))?;
    match file.persist_noclobber(path) {
        Ok(_) => {}
        Err(err) if err.error.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(err) => return Err(io_error("write", err.error)),
    }
    // The new directory entry survives a crash only once the directory itself is synced.
    #[cfg(unix)]
    if let Ok(dir) = std::fs::File::open(folder) {
        let _ = dir.sync_all();
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Failure;

    #[test]
    fn lines_are_read_one_at_a_time_with_the_errors_of_a_whole_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cases.jsonl");
        let lines_of = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            let mut lines = Vec::new();
            for_each_line(&path, "case file", |number, line| {
                lines.push((number, line.to_string()));
                Ok::<(), FsError>(())
            })
            .map(|()| lines)
        };
        // As `str::lines` splits a whole read: `\n` or `\r\n`, empty lines counted, no last
        // empty line.
        let read = lines_of(b"a\r\n\nb\r\nc").unwrap();
        let expected = [(1, "a"), (2, ""), (3, "b"), (4, "c")].map(|(n, l)| (n, l.to_string()));
        assert_eq!(read, expected);
        assert_eq!(lines_of(b"").unwrap(), []);
        // Bad UTF-8 is named by line and column, as a whole read names it.
        let bad = b"{}\n{\"id\": \"caf\xe9\"}\n";
        let Err(FsError::NotUtf8 { line, column, .. }) = lines_of(bad) else {
            panic!("not UTF-8 must be an error");
        };
        std::fs::write(&path, bad).unwrap();
        let Err(FsError::NotUtf8 {
            line: whole_line,
            column: whole_column,
            ..
        }) = read_to_string(&path, "case file")
        else {
            panic!("not UTF-8 must be an error");
        };
        assert_eq!((line, column), (2, 12));
        assert_eq!((line, column), (whole_line, whole_column));
        // The visitor's error ends the reading.
        std::fs::write(&path, "a\nb\n").unwrap();
        let mut seen = 0;
        let stopped = for_each_line(&path, "case file", |_, _| {
            seen += 1;
            Err(FsError::TooLarge {
                what: "case file",
                path: path.clone(),
            })
        });
        assert!(stopped.is_err());
        assert_eq!(seen, 1);
        // Past the bound, before the first line is read.
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(MAX_INPUT_FILE_BYTES + 1).unwrap();
        let mut visited = false;
        let large = for_each_line(&path, "case file", |_, _| {
            visited = true;
            Ok::<(), FsError>(())
        });
        assert!(matches!(large, Err(FsError::TooLarge { .. })));
        assert!(!visited);
    }

    #[test]
    fn refuses_to_replace_anything_but_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.txt");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = write_atomic(&link, "x").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        let err = write_atomic(std::path::Path::new("/dev/null"), "x").unwrap_err();
        assert!(err.to_string().contains("device"), "{err}");
        assert!(write_atomic(dir.path(), "x").is_err());
        // A new file under new folders and an existing regular file are fine.
        write_atomic(&dir.path().join("a/b/new.json"), "new").unwrap();
        write_atomic(&target, "replaced").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "replaced");
    }

    #[test]
    fn unreadable_inputs_are_bad_input_and_unwritable_outputs_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let missing = read_to_string(&dir.path().join("none.toml"), "config").unwrap_err();
        assert_eq!(missing.exit_code(), exit_code::BAD_INPUT);
        assert!(missing.hint().unwrap().contains("relative to the config file's folder"));
        let latin1 = dir.path().join("latin1.txt");
        std::fs::write(&latin1, b"ok\nna\xefve").unwrap();
        let err = read_to_string(&latin1, "prompt").unwrap_err();
        assert!(matches!(err, FsError::NotUtf8 { line: 2, column: 3, .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "invalid prompt `{}` at line 2, column 3: the file is not valid UTF-8",
                latin1.display()
            )
        );
        let refused = write_atomic(dir.path(), "x").unwrap_err();
        assert_eq!(refused.exit_code(), exit_code::BAD_INPUT);
        assert!(matches!(
            refused,
            FsError::Refused {
                reason: Refusal::Folder,
                ..
            }
        ));
        let full = FsError::write("report.md", std::io::Error::from_raw_os_error(28));
        assert_eq!(full.exit_code(), exit_code::INTERNAL);
        assert_eq!(full.hint().as_deref(), Some("the disk is full"));
    }

    #[test]
    fn stale_temporaries_of_killed_records_are_removed_and_fresh_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".promptgate-record-abc.tmp");
        std::fs::write(&stale, "half a case").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let fresh = dir.path().join(".promptgate-record-def.tmp");
        std::fs::write(&fresh, "being written").unwrap();
        let case = dir.path().join("case.json");
        std::fs::write(&case, "{}").unwrap();
        assert_eq!(remove_stale_temporaries(dir.path(), STALE_AFTER), 1);
        assert!(!stale.exists() && fresh.exists() && case.exists());
    }
}
