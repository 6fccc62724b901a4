//! The commands behind the command line. Each takes plain options (no clap: `cli.rs` turns
//! arguments into them), checks what it can before any work is paid for, and writes what it
//! prints through a [`Console`], so that it runs the same in a test as in a terminal. Each
//! returns the process exit code.

pub mod cache;
pub mod compare;
pub mod init;
pub mod merge;
pub mod plan;
pub mod record;
pub mod run;

use std::io::Write;
use std::path::Path;

use crate::error::Error;
use crate::exit_code;
use crate::fs::FsError;
use crate::report::Exporter;
use crate::run_record::{RunRecord, Verdict};
use crate::secrets::{MaskingWriter, Secrets};

/// Where a command prints: its output, and notes for the person at the terminal. Everything
/// printed has the process's secrets masked.
pub struct Console<'a> {
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    secrets: &'a Secrets,
}

impl<'a> Console<'a> {
    pub fn new(out: &'a mut dyn Write, err: &'a mut dyn Write, secrets: &'a Secrets) -> Console<'a> {
        Console { out, err, secrets }
    }

    /// Print `text` on the output. A closed pipe (`promptgate … | head -1`) ends output quietly,
    /// as in `cat` or `git`: the reader has what it wanted, and the exit code still tells the
    /// verdict. Any other failure (a full disk) is an output error with its own exit code.
    pub fn print(&mut self, text: &str) -> Result<(), Error> {
        let text = self.secrets.mask(text);
        let written = self.out.write_all(text.as_bytes()).and_then(|()| self.out.flush());
        Self::printed(written)
    }

    /// [`Console::print`] a report as `exporter` writes it (JSON as it is made, not held whole).
    pub fn print_report<R>(&mut self, exporter: &dyn Exporter<R>, record: &R) -> Result<(), Error> {
        let mut masked = MaskingWriter::new(self.secrets, &mut *self.out);
        let written = exporter.write(record, &mut masked)?;
        Self::printed(written.and_then(|()| masked.finish().map(drop)))
    }

    /// What printing came to: a closed pipe is no error.
    fn printed(written: std::io::Result<()>) -> Result<(), Error> {
        match written {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(Error::from(FsError::write("<stdout>", e))),
        }
    }

    /// [`Console::print`] a line.
    pub fn line(&mut self, text: &str) -> Result<(), Error> {
        self.print(&format!("{text}\n"))
    }

    /// A line for the person at the terminal (stderr), shown, never acted on (a note may quote
    /// a case id or a file's text). A closed stderr is no reason to fail.
    pub fn note(&mut self, text: &str) {
        let masked = self.secrets.mask(text);
        let _ = writeln!(self.err, "{}", crate::excerpt::printable_lines(&masked));
    }

    /// Write a report file atomically, with the secrets masked as in what is printed.
    pub fn write_file(&self, path: &Path, text: &str) -> Result<(), Error> {
        Ok(crate::fs::write_atomic(path, &self.secrets.mask(text))?)
    }

    /// [`Console::write_file`] a report as `exporter` writes it. A report that fails half-way
    /// leaves no file.
    pub fn write_report<R>(&self, path: &Path, exporter: &dyn Exporter<R>, record: &R) -> Result<(), Error> {
        let mut failure = None;
        let written = crate::fs::write_atomic_with(path, |file| {
            let mut masked = MaskingWriter::new(self.secrets, std::io::BufWriter::new(file));
            match exporter.write(record, &mut masked) {
                Ok(written) => written.and_then(|()| masked.finish()?.flush()),
                Err(error) => {
                    failure = Some(error);
                    Err(std::io::Error::other("the report failed"))
                }
            }
        });
        match failure {
            Some(error) => Err(error),
            None => Ok(written?),
        }
    }

    /// Where notes go, for a dialogue with the person at the terminal (`record` asking labels).
    pub fn notes(&mut self) -> &mut dyn Write {
        self.err
    }

    /// The output itself, unmasked, for bulk data that is not a message (a cache export).
    pub fn raw_output(&mut self) -> &mut dyn Write {
        self.out
    }
}

/// The one place a run's verdict becomes an exit code. A cache that failed to commit wins: the
/// report was printed, but what the run paid for may be lost.
pub fn exit_code_for(record: &RunRecord, console: &mut Console) -> i32 {
    if let Some(failure) = &record.cache_failure {
        console.note(&format!("error: {failure}"));
        console.note("hint: free disk space or check the cache file's permissions (--cache PATH), then run again");
        return exit_code::INTERNAL;
    }
    if let Some(shard) = &record.shard {
        console.note(&format!(
            "shard {}/{} of `{}`: its verdict covers this shard alone; `promptgate merge` of every shard's record judges the run",
            shard.index, shard.count, shard.command
        ));
        return exit_code::SUCCESS;
    }
    match record.verdict {
        Verdict::Pass => exit_code::SUCCESS,
        Verdict::Regressed => exit_code::REGRESSION,
        Verdict::Drifted => exit_code::DRIFTED,
        Verdict::Inconclusive => exit_code::INCONCLUSIVE,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// What a command printed: (output, notes, exit code or error).
    pub(crate) fn printed(
        command: impl FnOnce(&mut Console) -> Result<i32, Error>,
    ) -> (String, String, Result<i32, Error>) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let secrets = Secrets::from_values(["sk-test-0123456789abcdef".to_string()]);
        let result = command(&mut Console::new(&mut out, &mut err, &secrets));
        (String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap(), result)
    }

    /// A writer whose reader has gone away.
    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A report written as it is made (JSON) is the exported text, masked alike on the output
    /// and in a file; a closed pipe is no error for it either.
    #[test]
    fn a_report_is_written_as_exported_and_masked_wherever_it_goes() {
        use crate::report::{exporter, Format, Style};
        let suite = "suite sk-test-0123456789abcdef";
        let record = RunRecord::of_results(
            vec![crate::testing::result(suite, &[5; 3000])],
            "2026-12-05T00:00:00Z".into(),
            1,
        );
        let json = exporter(Format::Json, &Style::default());
        let whole = json.export(&record).unwrap();
        assert!(whole.len() > 1 << 17, "longer than a masked run: {}", whole.len());
        let masked = whole.replace("sk-test-0123456789abcdef", "***");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.json");
        let (out, _, result) = printed(|console| {
            console.print_report(&*json, &record)?;
            console.write_report(&path, &*json, &record)?;
            Ok(0)
        });
        result.unwrap();
        assert!(out == masked && !out.contains("sk-test"));
        assert!(std::fs::read_to_string(&path).unwrap() == masked);
        let secrets = Secrets::default();
        let mut err = Vec::new();
        let mut closed = ClosedPipe;
        let mut console = Console::new(&mut closed, &mut err, &secrets);
        assert!(console.print_report(&*json, &record).is_ok());
    }

    #[test]
    fn output_is_masked_and_a_closed_pipe_is_no_error() {
        let (out, err, _) = printed(|console| {
            console.line("key sk-test-0123456789abcdef")?;
            console.note("also sk-test-0123456789abcdef");
            Ok(0)
        });
        assert_eq!((out.as_str(), err.as_str()), ("key ***\n", "also ***\n"));
        let secrets = Secrets::default();
        let mut err = Vec::new();
        let mut closed = ClosedPipe;
        let mut console = Console::new(&mut closed, &mut err, &secrets);
        assert!(console.line("nobody reads this").is_ok());
        let mut full = std::io::Cursor::new([0u8; 4]);
        let mut console = Console::new(&mut full, &mut err, &secrets);
        let error = console.line("more than four bytes").unwrap_err();
        assert_eq!(error.exit_code(), crate::exit_code::INTERNAL);
    }
}
