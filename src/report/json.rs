//! The JSON run record (see `run_record.rs` for the contract).

use super::Exporter;
use crate::error::Error;
use crate::run_record::RunRecord;

/// Pretty-printed JSON, one trailing newline.
pub struct JsonExporter;

impl Exporter for JsonExporter {
    fn export(&self, record: &RunRecord) -> Result<String, Error> {
        let mut text = serde_json::to_string_pretty(record)
            .map_err(|e| Error::usage(format!("failed to serialize the run record: {e}")))?;
        text.push('\n');
        Ok(text)
    }
}
