//! The JSON run record (see `run_record.rs` for the contract).

use std::io::Write;

use super::Exporter;
use crate::error::Error;
use crate::run_record::RunRecord;

/// Pretty-printed JSON, one trailing newline.
pub struct JsonExporter;

impl Exporter for JsonExporter {
    fn export(&self, record: &RunRecord) -> Result<String, Error> {
        let mut text = Vec::new();
        self.write(record, &mut text)?
            .map_err(|e| Error::internal(format!("failed to write the run record in memory: {e}")))?;
        // serde_json writes UTF-8.
        String::from_utf8(text).map_err(|e| Error::internal(e.to_string()))
    }

    fn write(&self, record: &RunRecord, out: &mut dyn Write) -> Result<std::io::Result<()>, Error> {
        // Buffered: serde_json writes a value in many small pieces.
        let mut buffered = std::io::BufWriter::with_capacity(1 << 16, out);
        match serde_json::to_writer_pretty(&mut buffered, record) {
            Ok(()) => Ok(buffered.write_all(b"\n").and_then(|()| buffered.flush())),
            Err(e) if e.is_io() => Ok(Err(e.into())),
            Err(e) => Err(Error::usage(format!("failed to serialize the run record: {e}"))),
        }
    }
}
