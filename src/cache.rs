//! The response cache: SQLite, one row per (request, sample index), committed as it arrives.
//!
//! WAL mode and a busy timeout let parallel runs and CI shards share one file. A killed run loses
//! only its in-flight calls. Failures are never stored, so a later run retries them. No secret
//! is stored: the key covers what was sent minus credentials and endpoint.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use std::io::{BufRead, Write};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::digest;
use crate::exit_code;
use crate::model_version::ModelVersion;
use crate::prompt::RenderedPrompt;
use crate::provider::ProviderKind;
use crate::provider::{Request, Response, SamplingParams, ToolCall, Usage};

/// On-disk schema version, kept in SQLite's `user_version`.
///
/// Changelog: 1 — first version (`responses` table). 2 — `leases` table (see `lease`), added
/// in place to a version-1 file when a run opens it for writing. 3 — `resolved_model` and
/// `system_fingerprint` columns (see `model_version`), added in place and filled from each
/// stored raw body. 4 — `batch_jobs` and `batch_lines` tables (see `batch`), added in place.
/// Older versions are still read, and upgraded when opened for writing.
pub const CACHE_SCHEMA_VERSION: i64 = 4;

/// The columns of an answer that version 3 added.
const VERSION_COLUMNS: &str = "ALTER TABLE responses ADD COLUMN resolved_model TEXT;
     ALTER TABLE responses ADD COLUMN system_fingerprint TEXT;";

/// The leases of calls in flight: key, holder, expiry in Unix milliseconds.
const LEASES_TABLE: &str = "CREATE TABLE IF NOT EXISTS leases (
    key TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);";

/// The provider batches of `run --batch` (see `batch`): each job, and each line of it, recorded
/// before anything is paid, so that a killed run resumes without paying twice.
const BATCH_TABLES: &str = "CREATE TABLE IF NOT EXISTS batch_jobs (
    id INTEGER PRIMARY KEY,
    token TEXT NOT NULL UNIQUE,
    provider TEXT NOT NULL,
    round INTEGER NOT NULL,
    state TEXT NOT NULL,
    input_file_id TEXT,
    batch_id TEXT,
    status TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_lines (
    job INTEGER NOT NULL,
    key TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    sample_index INTEGER NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    PRIMARY KEY (job, key)
);
CREATE INDEX IF NOT EXISTS batch_lines_by_key ON batch_lines (key);";

/// The version of `cache export`'s JSON Lines format, in its first line.
///
/// Changelog: 1 — first version (a header line, then one entry per line).
pub const EXPORT_SCHEMA_VERSION: u32 = 1;

/// The `format` of an export's header line.
const EXPORT_FORMAT: &str = "promptgate-cache";

/// How long a writer waits for another process's transaction before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest line `cache import` reads: a cached answer's raw body is at most a provider's
/// `max_response_bytes` (16 MiB by default), escaped.
const MAX_IMPORT_LINE_BYTES: usize = 64 * 1024 * 1024;

/// Lines of a reader, each at most `limit` bytes (an error past that).
struct BoundedLines<'a> {
    input: &'a mut dyn BufRead,
    limit: usize,
}

impl Iterator for BoundedLines<'_> {
    type Item = std::io::Result<String>;

    fn next(&mut self) -> Option<Self::Item> {
        use std::io::Read;
        let mut bytes = Vec::new();
        let limit = self.limit as u64 + 1;
        match (&mut self.input).take(limit).read_until(b'\n', &mut bytes) {
            Ok(0) => None,
            Ok(_) if bytes.len() as u64 >= limit && bytes.last() != Some(&b'\n') => Some(Err(std::io::Error::other(
                format!("a line longer than {} MiB", self.limit >> 20),
            ))),
            Ok(_) => {
                if bytes.last() == Some(&b'\n') {
                    bytes.pop();
                    if bytes.last() == Some(&b'\r') {
                        bytes.pop();
                    }
                }
                Some(String::from_utf8(bytes).map_err(|_| std::io::Error::other("a line that is not UTF-8")))
            }
            Err(e) => Some(Err(e)),
        }
    }
}

/// SQLite's `application_id` of a promptgate cache ("PGAT"), so that `--cache` pointed at
/// another program's database is refused instead of gaining a table.
pub const APPLICATION_ID: i32 = 0x5047_4154;

/// Why the cache could not be used. A file that is not a promptgate cache is the user's to fix
/// (exit 2); a usable cache that fails to read or commit is the machine's (exit 6), and must
/// never cost a finished record.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The file is not (or not yet) a usable promptgate cache.
    #[error("cache `{path}`: {message}")]
    Unusable { path: PathBuf, message: String },
    /// Reading was asked of a cache that has not been made yet.
    #[error("cache `{path}`: {message}")]
    Missing { path: PathBuf, message: &'static str },
    /// The cache's folder could not be created.
    #[error("failed to create the cache folder `{path}`: {source}")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was written by a newer promptgate.
    #[error("cache `{path}`: schema version {found} is not supported (this promptgate reads {supported})")]
    NewerSchema { path: PathBuf, found: i64, supported: i64 },
    /// Reading or writing a usable cache failed: a full disk, a lock held past the busy timeout.
    #[error("cache `{path}`: failed to {action}: {source}")]
    Failed {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// A stored entry could not be read back.
    #[error("cache `{path}`: entry {key} {message}")]
    Entry {
        path: PathBuf,
        key: String,
        message: String,
    },
    /// The thread that commits answers stopped unexpectedly.
    #[error("the cache writer {0}")]
    Writer(&'static str),
    /// A line of a file given to `cache import` is not what `cache export` writes.
    #[error("invalid cache export `{source_path}` at line {line}: {message}")]
    Import {
        source_path: PathBuf,
        line: usize,
        message: String,
        /// The export was written by a newer promptgate.
        newer: bool,
    },
    /// The destination of `cache export` failed (a full disk, a closed pipe): not the cache.
    #[error("failed to write the export: {0}")]
    Export(#[source] std::io::Error),
}

impl crate::error::Failure for CacheError {
    /// What to do about it, when that is known.
    fn hint(&self) -> Option<String> {
        match self {
            CacheError::Unusable { .. } => Some(
                "the cache must be a promptgate SQLite file: move this one aside, or pass --cache PATH (env PROMPTGATE_CACHE)"
                    .into(),
            ),
            CacheError::NewerSchema { .. } => Some("upgrade promptgate, or point --cache at another file".into()),
            CacheError::Missing { .. } => {
                Some("a cache is created by the first `promptgate run`; pass --cache PATH to read another".into())
            }
            CacheError::Folder { .. } => {
                Some("pass --cache PATH (env PROMPTGATE_CACHE) to put the cache elsewhere".into())
            }
            CacheError::Import { newer: true, .. } => Some("upgrade promptgate to read this file".into()),
            CacheError::Import { newer: false, .. } => {
                Some("import reads what `promptgate cache export` writes".into())
            }
            CacheError::Export(source) => crate::fs::write_hint(source),
            CacheError::Failed { source, .. } => match source.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DiskFull) => Some("the disk is full".into()),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => Some(format!(
                    "another process held the cache for more than {} s",
                    BUSY_TIMEOUT.as_secs()
                )),
                Some(rusqlite::ErrorCode::ReadOnly) => {
                    Some("the cache is read-only here; --offline reads it without writing".into())
                }
                _ => None,
            },
            CacheError::Entry { .. } => Some("`promptgate cache prune` can remove the entry".into()),
            CacheError::Writer(_) => Some(exit_code::INTERNAL_HINT.into()),
        }
    }

    /// The exit code: bad input (2) for a file that is not a usable cache, internal (6) else.
    fn exit_code(&self) -> i32 {
        match self {
            CacheError::Unusable { .. }
            | CacheError::NewerSchema { .. }
            | CacheError::Missing { .. }
            | CacheError::Import { .. } => exit_code::BAD_INPUT,
            CacheError::Failed { .. }
            | CacheError::Entry { .. }
            | CacheError::Writer(_)
            | CacheError::Folder { .. }
            | CacheError::Export(_) => exit_code::INTERNAL,
        }
    }
}

/// One line of a cache export. A failure is the destination's (a full disk, a closed pipe), not
/// the cache's; serializing strings, numbers and JSON values cannot fail, and would be told as
/// a failed write were it to.
fn write_line(out: &mut dyn Write, value: &impl Serialize) -> Result<(), CacheError> {
    let line = serde_json::to_string(value).map_err(|e| CacheError::Export(std::io::Error::other(e)))?;
    writeln!(out, "{line}").map_err(CacheError::Export)
}

/// An error opening `path` as a cache: the file is not (or not yet) a usable promptgate cache.
fn open_error(path: &Path, message: String) -> CacheError {
    CacheError::Unusable {
        path: path.to_path_buf(),
        message,
    }
}

/// The schema version of an open file (0: empty, ours to create), after checking that it is a
/// promptgate cache: our application id, or (written before the id existed) our schema, or an
/// empty database.
fn check_identity(connection: &Connection, path: &Path) -> Result<i64, CacheError> {
    let fail = |message: String| open_error(path, message);
    // One read transaction: another process creating the cache at this moment is seen either
    // before or after its creation, never half-way (its tables without its version).
    let snapshot = connection
        .unchecked_transaction()
        .map_err(|e| fail(format!("not a promptgate cache: {e}")))?;
    let read = |pragma: &str| -> Result<i64, CacheError> {
        connection
            .query_row(&format!("PRAGMA {pragma}"), [], |row| row.get(0))
            .map_err(|e| fail(format!("not a promptgate cache: {e}")))
    };
    let version = read("user_version")?;
    let application_id = read("application_id")?;
    let objects: i64 = connection
        .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
        .map_err(|e| fail(format!("not a promptgate cache: {e}")))?;
    let has_responses: bool = connection
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'responses'",
            [],
            |row| row.get::<_, i64>(0),
        )
        .map_err(|e| fail(format!("not a promptgate cache: {e}")))?
        > 0;
    drop(snapshot);
    let ours = application_id == i64::from(APPLICATION_ID);
    if application_id != 0 && !ours {
        return Err(fail(format!(
            "another application's SQLite database (application_id {application_id:#x})"
        )));
    }
    if version == 0 && objects > 0 {
        return Err(fail(format!(
            "a SQLite database with {objects} table(s) or index(es) of another application"
        )));
    }
    if version > CACHE_SCHEMA_VERSION {
        return Err(CacheError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            supported: CACHE_SCHEMA_VERSION,
        });
    }
    if version != 0 && !has_responses {
        return Err(fail(format!(
            "a SQLite database of another application (user_version {version}, no `responses` table)"
        )));
    }
    Ok(version)
}

/// A path for an SQLite `file:` URI: `?` and `#` would end the path part, `%` starts an escape.
fn uri_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    out
}

/// An open cache file.
#[derive(Debug)]
pub struct Cache {
    path: PathBuf,
    connection: Mutex<Connection>,
    /// The file has the version columns (schema 3); an older file opened read-only does not,
    /// and its answers' versions are read from their raw bodies.
    has_version_columns: bool,
}

/// A response to store, with the parts of its request the cache keeps beside it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub provider: ProviderKind,
    pub model: String,
    pub sample_index: u32,
    pub response: Response,
}

impl Entry {
    /// The entry for `response` to `request`, stored under `key`.
    pub fn new(key: String, request: &Request, response: Response) -> Entry {
        Entry {
            key,
            provider: request.provider,
            model: request.model.clone(),
            sample_index: request.sample_index,
            response,
        }
    }

    /// An entry for tests of code that only cares about the key.
    #[cfg(test)]
    pub(crate) fn test(key: &str, response: Response) -> Entry {
        Entry {
            key: key.to_string(),
            provider: ProviderKind::Openai,
            model: "m".into(),
            sample_index: 0,
            response,
        }
    }
}

/// A thread that commits responses as they arrive, off the async workers. Responses that queue
/// up while a commit is running go into the next commit together, so a busy run pays for fewer
/// transactions; none waits for company.
pub struct Writer {
    sender: Option<std::sync::mpsc::Sender<Entry>>,
    thread: Option<std::thread::JoinHandle<Result<(), CacheError>>>,
    failed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    failure: Mutex<Option<CacheError>>,
}

impl Writer {
    /// Start the writer thread for `cache`.
    pub fn start(cache: std::sync::Arc<Cache>) -> Writer {
        let (sender, receiver) = std::sync::mpsc::channel::<Entry>();
        let failed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&failed);
        let thread = std::thread::spawn(move || {
            while let Ok(first) = receiver.recv() {
                let mut batch = vec![first];
                batch.extend(receiver.try_iter().take(255));
                if let Err(error) = cache.put_many(&batch) {
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                    return Err(error);
                }
            }
            Ok(())
        });
        Writer {
            sender: Some(sender),
            thread: Some(thread),
            failed,
            failure: Mutex::new(None),
        }
    }

    /// Whether a commit has failed: no further answer should be paid for, since it could not
    /// be kept.
    pub fn failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Record a failure to write the cache found elsewhere (taking a lease): sampling stops as
    /// after a failed commit, and `finish` reports it unless a commit failed first.
    pub fn fail(&self, error: CacheError) {
        let mut first = self.failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        first.get_or_insert(error);
        self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Queue a response for commit.
    pub fn send(&self, entry: Entry) -> Result<(), CacheError> {
        let sender = self.sender.as_ref().ok_or(CacheError::Writer("is closed"))?;
        // The thread only stops early after a failed commit; `finish` reports that error.
        let _ = sender.send(entry);
        Ok(())
    }

    /// Commit everything queued and stop; reports the first failed commit.
    pub fn finish(mut self) -> Result<(), CacheError> {
        self.sender.take();
        let committed = match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(CacheError::Writer("thread panicked")),
            None => Ok(()),
        };
        let elsewhere = self
            .failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        match (committed, elsewhere) {
            (Err(error), _) | (Ok(()), Some(error)) => Err(error),
            (Ok(()), None) => Ok(()),
        }
    }
}

/// A writer dropped without [`Writer::finish`] (a run that ends in an error) still commits what
/// it was sent: an answer that was paid for is not thrown away.
impl Drop for Writer {
    fn drop(&mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Counts for `promptgate cache stats`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CacheStats {
    pub schema_version: i64,
    pub path: String,
    pub entries: u64,
    pub bytes: u64,
    pub models: Vec<ModelStats>,
}

/// Entries per provider and model id.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelStats {
    pub provider: String,
    pub model: String,
    pub entries: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// The first line of an export.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportHeader {
    format: String,
    schema_version: u32,
}

/// One cached response as a line of an export: every column, the tool calls as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedEntry {
    pub key: String,
    pub provider: String,
    pub model: String,
    pub sample_index: u32,
    pub text: Option<String>,
    pub tool_calls: Value,
    pub raw_body: String,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub latency_ms: u64,
    pub created_at: String,
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportStats {
    /// Entries this cache did not have.
    pub added: u64,
    /// Entries it had, with the same answer.
    pub present: u64,
    /// Entries it had with another answer (the same request sampled elsewhere): the local one is
    /// kept, as for any second writer of a key.
    pub differing: u64,
}

/// Bring an older cache to the current schema in one transaction, adding and never removing:
/// the leases table (version 2), then the version columns, filled from each answer's raw body
/// (version 3). A second process upgrading the same file at once waits for the lock and then
/// finds nothing left to do.
fn upgrade(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if version < 2 {
            connection.execute_batch(LEASES_TABLE)?;
        }
        if version < 3 {
            connection.execute_batch(VERSION_COLUMNS)?;
            // Keys and versions first, then the updates: a raw body is read one at a time.
            let mut found = Vec::new();
            {
                let mut rows = connection.prepare("SELECT key, provider, raw_body FROM responses")?;
                let mut rows = rows.query([])?;
                while let Some(row) = rows.next()? {
                    let provider = ProviderKind::parse(&row.get::<_, String>(1)?);
                    let raw_body: String = row.get(2)?;
                    if let Some(version) = provider.and_then(|p| ModelVersion::from_body(p, &raw_body)) {
                        found.push((row.get::<_, String>(0)?, version));
                    }
                }
            }
            let mut update = connection
                .prepare("UPDATE responses SET resolved_model = ?2, system_fingerprint = ?3 WHERE key = ?1")?;
            for (key, version) in found {
                update.execute(params![key, version.model, version.fingerprint])?;
            }
        }
        if version < 4 {
            connection.execute_batch(BATCH_TABLES)?;
        }
        connection.execute_batch(&format!("PRAGMA user_version = {CACHE_SCHEMA_VERSION}"))
    })();
    match result {
        Ok(()) => connection.execute_batch("COMMIT"),
        Err(e) => {
            let _ = connection.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// The cache key of a request: SHA-256 over the canonical JSON of provider kind, model id,
/// rendered messages, sampling parameters, response schema, tools, sample index and, when
/// there is one, the sampling epoch.
pub fn key(request: &Request) -> String {
    key_with(request, &PromptKey::of(&request.prompt))
}

/// The prompt's share of a cache key, in canonical JSON. A prompt's k samples differ only in
/// their parameters and index, so a run's batch look-ups ([`Keys`]) compute this once per
/// rendered prompt: canonicalizing the messages (whole findings) was most of a warm replay's
/// time.
#[derive(Debug, Clone)]
pub struct PromptKey {
    messages: String,
    response_schema: String,
    /// `tool_choice` and `tools`, present only when the prompt has tools.
    tools: Option<(String, String)>,
}

impl PromptKey {
    pub fn of(prompt: &RenderedPrompt) -> PromptKey {
        PromptKey::with_schema(prompt, schema_key(prompt.response_schema.as_ref()))
    }

    /// [`PromptKey::of`], the canonical JSON of the prompt's schema given.
    fn with_schema(prompt: &RenderedPrompt, response_schema: String) -> PromptKey {
        // A message's canonical form, written without building a JSON value of the messages
        // (a copy of every finding): keys sorted, `content` before `role`.
        let mut messages = Vec::with_capacity(prompt.messages.iter().map(|m| m.content.len() + 32).sum());
        messages.push(b'[');
        for (index, message) in prompt.messages.iter().enumerate() {
            if index > 0 {
                messages.push(b',');
            }
            messages.extend_from_slice(b"{\"content\":");
            digest::write_scalar(&message.content, &mut messages);
            messages.extend_from_slice(b",\"role\":");
            digest::write_scalar(&message.role, &mut messages);
            messages.push(b'}');
        }
        messages.push(b']');
        PromptKey {
            messages: digest::utf8(messages),
            response_schema,
            // Only present when used: keys of prompts without tools are unchanged.
            tools: (!prompt.tools.is_empty()).then(|| {
                (
                    digest::canonical_json(&json!(prompt.tool_choice)),
                    digest::canonical_json(&json!(prompt.tools)),
                )
            }),
        }
    }
}

/// The canonical JSON of a response schema (`null` for none), as a key holds it.
fn schema_key(schema: Option<&std::sync::Arc<crate::prompt::ResponseSchema>>) -> String {
    digest::canonical_json(&json!(schema))
}

/// [`key`] with the prompt's share already computed. The object is written in canonical form
/// (keys sorted, no spaces) by hand: the same bytes `digest::canonical_json` gives for it.
pub fn key_with(request: &Request, prompt: &PromptKey) -> String {
    hex::encode(digest_with(request, prompt).0)
}

/// Prompt keys kept by [`Keys`].
const PROMPT_KEYS: usize = 16;

/// The keys of many requests. The k samples of a case share one rendered prompt, and so its
/// share of the key: the keys of the prompts seen last (a case's samples come together) are
/// kept, each with its prompt so that its address cannot be reused by another prompt. A few,
/// not one per case: a suite's worth would grow with the suite.
#[derive(Default)]
pub struct Keys {
    prompts: std::collections::VecDeque<KnownPrompt>,
    /// The last schema seen and its canonical JSON: the cases of a suite share their prompt's
    /// schema, and canonicalizing it was a third of a prompt key.
    schema: Option<(std::sync::Arc<crate::prompt::ResponseSchema>, String)>,
}

/// A prompt [`Keys`] has seen: its share of a key, and the SHA-256 state after the head of
/// its keys in one epoch (hashing the messages, whole findings, once rather than k times).
struct KnownPrompt {
    prompt: std::sync::Arc<RenderedPrompt>,
    key: PromptKey,
    epoch: Option<std::sync::Arc<str>>,
    head: sha2::Sha256,
}

impl KnownPrompt {
    fn new(prompt: std::sync::Arc<RenderedPrompt>, key: PromptKey, epoch: Option<std::sync::Arc<str>>) -> KnownPrompt {
        use sha2::Digest;
        let mut text = Vec::with_capacity(key.messages.len() + 64);
        write_head(epoch.as_deref(), &key, &mut text);
        KnownPrompt {
            prompt,
            key,
            epoch,
            head: sha2::Sha256::new_with_prefix(&text),
        }
    }
}

impl Keys {
    /// The key of `request`, as a digest.
    pub fn digest(&mut self, request: &Request) -> KeyDigest {
        use sha2::Digest;
        let known = self
            .prompts
            .iter()
            .position(|known| std::sync::Arc::ptr_eq(&known.prompt, &request.prompt));
        let position = match known {
            Some(position) => position,
            None => {
                if self.prompts.len() == PROMPT_KEYS {
                    self.prompts.pop_front();
                }
                let schema = match (&request.prompt.response_schema, &self.schema) {
                    (Some(schema), Some((known, key))) if std::sync::Arc::ptr_eq(schema, known) => key.clone(),
                    (Some(schema), _) => {
                        let key = schema_key(Some(schema));
                        self.schema = Some((std::sync::Arc::clone(schema), key.clone()));
                        key
                    }
                    (None, _) => schema_key(None),
                };
                let key = PromptKey::with_schema(&request.prompt, schema);
                let prompt = std::sync::Arc::clone(&request.prompt);
                self.prompts
                    .push_back(KnownPrompt::new(prompt, key, request.epoch.clone()));
                self.prompts.len() - 1
            }
        };
        let known = &mut self.prompts[position];
        if known.epoch != request.epoch {
            let prompt = std::sync::Arc::clone(&known.prompt);
            let key = known.key.clone();
            *known = KnownPrompt::new(prompt, key, request.epoch.clone());
        }
        let mut tail = Vec::with_capacity(256);
        write_tail(request, &known.key, &mut tail);
        let mut hash = known.head.clone();
        hash.update(&tail);
        KeyDigest(hash.finalize().into())
    }
}

/// The tokens an answer reported, when it reported both.
fn usage(input_tokens: Option<u64>, output_tokens: Option<u64>) -> Option<Usage> {
    Some(Usage {
        input_tokens: input_tokens?,
        output_tokens: output_tokens?,
    })
}

/// The text in `column` of `row`, read in place (`None` for NULL): what an answer's columns
/// are read with where an owned copy would only be parsed or cleaned, since a replay reads
/// every answer of a suite.
fn str_at<'r>(row: &'r rusqlite::Row<'_>, column: usize) -> rusqlite::Result<Option<&'r str>> {
    let value = row.get_ref(column)?;
    value
        .as_str_or_null()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(column, value.data_type(), Box::new(e)))
}

/// What an answer is looked up by (see `Cache::answer_sql`).
#[derive(Clone, Copy)]
enum By {
    Key,
    Rowid,
}

/// A cache key as a digest: what [`key_with`] writes in hex. Lowercase hex keeps the order of
/// the bytes, so sorting digests sorts keys as SQLite's index holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyDigest(pub [u8; 32]);

impl KeyDigest {
    /// The first 8 bytes, in the order of the hex text stored (lowercase hex keeps byte order).
    fn prefix(&self) -> u64 {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(first)
    }

    /// The key as stored: 64 lowercase hex digits, written into `buffer`.
    fn hex<'b>(&self, buffer: &'b mut [u8; 64]) -> &'b str {
        // 32 bytes always fill 64 digits, and hex digits are ASCII.
        let _ = hex::encode_to_slice(self.0, buffer);
        std::str::from_utf8(buffer).unwrap_or_default()
    }
}

/// [`key_with`] as a digest.
fn digest_with(request: &Request, prompt: &PromptKey) -> KeyDigest {
    use sha2::{Digest, Sha256};
    let mut text: Vec<u8> = Vec::with_capacity(prompt.messages.len() + prompt.response_schema.len() + 256);
    write_head(request.epoch.as_deref(), prompt, &mut text);
    write_tail(request, prompt, &mut text);
    KeyDigest(Sha256::digest(&text).into())
}

/// The start of a key's canonical JSON, through the messages: the same for every sample of a
/// prompt in one epoch, so [`Keys`] hashes it once per prompt.
fn write_head(epoch: Option<&str>, prompt: &PromptKey, text: &mut Vec<u8>) {
    // Only present when set: keys without an epoch are unchanged. It sorts first.
    text.push(b'{');
    if let Some(epoch) = epoch {
        text.extend_from_slice(b"\"epoch\":");
        digest::write_scalar(epoch, text);
        text.push(b',');
    }
    text.extend_from_slice(b"\"key_version\":1,\"messages\":");
    text.extend_from_slice(prompt.messages.as_bytes());
}

/// The rest of a key's canonical JSON, after [`write_head`].
fn write_tail(request: &Request, prompt: &PromptKey, text: &mut Vec<u8>) {
    text.extend_from_slice(b",\"model\":");
    digest::write_scalar(&request.model, text);
    text.extend_from_slice(b",\"params\":");
    write_params(&request.params, text);
    text.extend_from_slice(b",\"provider\":");
    digest::write_scalar(request.provider.as_str(), text);
    text.extend_from_slice(b",\"response_schema\":");
    text.extend_from_slice(prompt.response_schema.as_bytes());
    text.extend_from_slice(b",\"sample_index\":");
    digest::write_scalar(&request.sample_index, text);
    if let Some((tool_choice, tools)) = &prompt.tools {
        text.extend_from_slice(b",\"tool_choice\":");
        text.extend_from_slice(tool_choice.as_bytes());
        text.extend_from_slice(b",\"tools\":");
        text.extend_from_slice(tools.as_bytes());
    }
    text.push(b'}');
}

/// The canonical JSON of sampling parameters (keys sorted, absent ones left out), each value
/// written as serde_json writes that field of the struct, so the bytes are those of
/// canonicalizing `json!(params)` without building it for every sample.
fn write_params(params: &SamplingParams, out: &mut Vec<u8>) {
    let mut first = true;
    let mut field = |name: &[u8], write: &dyn Fn(&mut Vec<u8>)| {
        out.push(if first { b'{' } else { b',' });
        first = false;
        out.push(b'"');
        out.extend_from_slice(name);
        out.extend_from_slice(b"\":");
        write(out);
    };
    if let Some(max_tokens) = params.max_tokens {
        field(b"max_tokens", &|out| digest::write_scalar(&max_tokens, out));
    }
    if let Some(seed) = params.seed {
        field(b"seed", &|out| digest::write_scalar(&seed, out));
    }
    // A float goes through a JSON value, as it did in the struct: serde_json widens an f32 to
    // the f64 it stores, and that is what the key has always held.
    if let Some(temperature) = params.temperature {
        field(b"temperature", &|out| digest::write_canonical(&json!(temperature), out));
    }
    if let Some(top_p) = params.top_p {
        field(b"top_p", &|out| digest::write_canonical(&json!(top_p), out));
    }
    if first {
        out.push(b'{');
    }
    out.push(b'}');
}

impl Cache {
    /// Open (creating if needed) the cache at `path`.
    pub fn open(path: &Path) -> Result<Cache, CacheError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| CacheError::Folder {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let connection = Connection::open(path).map_err(|e| open_error(path, e.to_string()))?;
        Cache::prepared(path, connection)
    }

    /// An empty cache in memory, named `path` in messages: what `--offline` reads when there is
    /// no cache file, so that a run that only reads creates nothing (every request a miss).
    pub fn empty(path: &Path) -> Result<Cache, CacheError> {
        let connection = Connection::open_in_memory().map_err(|e| open_error(path, e.to_string()))?;
        Cache::prepared(path, connection)
    }

    /// The cache in `connection`, its tables made or brought up to date (see [`Cache::open`]).
    fn prepared(path: &Path, connection: Connection) -> Result<Cache, CacheError> {
        let fail = |message: String| open_error(path, message);
        connection.busy_timeout(BUSY_TIMEOUT).map_err(|e| fail(e.to_string()))?;
        // Identity first: WAL and tables are only ever added to an empty file or our own.
        let version = check_identity(&connection, path)?;
        // WAL lets readers and one writer work at once; NORMAL sync is durable across process
        // crashes (only an OS crash can lose the last commits), which is what a killed run needs.
        // Switching a new file to WAL needs a lock that SQLite does not wait for with the busy
        // handler, so two runs creating one cache at once retry here, within the same bound.
        let started = std::time::Instant::now();
        loop {
            match connection.pragma_update(None, "journal_mode", "WAL") {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy && started.elapsed() < BUSY_TIMEOUT =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(fail(format!("failed to switch to WAL: {e}"))),
            }
        }
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| fail(e.to_string()))?;
        if version == 0 {
            connection
                .execute_batch(&format!(
                    "BEGIN IMMEDIATE;
                     CREATE TABLE IF NOT EXISTS responses (
                         key TEXT PRIMARY KEY,
                         provider TEXT NOT NULL,
                         model TEXT NOT NULL,
                         sample_index INTEGER NOT NULL,
                         text TEXT,
                         tool_calls TEXT NOT NULL,
                         raw_body TEXT NOT NULL,
                         input_tokens INTEGER,
                         output_tokens INTEGER,
                         latency_ms INTEGER NOT NULL,
                         created_at TEXT NOT NULL,
                         resolved_model TEXT,
                         system_fingerprint TEXT
                     );
                     {LEASES_TABLE}
                     {BATCH_TABLES}
                     PRAGMA user_version = {CACHE_SCHEMA_VERSION};
                     PRAGMA application_id = {APPLICATION_ID};
                     COMMIT;"
                ))
                .map_err(|e| fail(format!("failed to create tables: {e}")))?;
        } else {
            if version < CACHE_SCHEMA_VERSION {
                upgrade(&connection).map_err(|e| {
                    fail(format!(
                        "failed to upgrade the cache from schema version {version}: {e}"
                    ))
                })?;
            }
            // Caches written before the mark existed get it now (a no-op when it is there).
            let _ = connection.pragma_update(None, "application_id", APPLICATION_ID);
        }
        Ok(Cache {
            path: path.to_path_buf(),
            connection: Mutex::new(connection),
            has_version_columns: true,
        })
    }

    /// Open an existing cache for reading only: nothing is created or changed, so a cache in a
    /// read-only folder (a CI artifact, a mounted volume) can still answer `--offline`.
    pub fn open_read_only(path: &Path) -> Result<Cache, CacheError> {
        use rusqlite::OpenFlags;
        let fail = |message: String| open_error(path, message);
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if !path.is_file() {
            return Err(CacheError::Missing {
                path: path.to_path_buf(),
                message: "no such file",
            });
        }
        // Without a `-wal` file no writer is at work and every commit is in the main file: read
        // it as immutable, which creates no `-shm`/`-wal` beside it (a read-only folder cannot
        // hold them). With one, a writer may be active, so read through the shared memory.
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let connection = if std::path::Path::new(&wal).exists() {
            Connection::open_with_flags(path, flags)
        } else {
            let uri = format!("file:{}?immutable=1", uri_path(path));
            Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)
        }
        .map_err(|e| fail(e.to_string()))?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(|e| fail(e.to_string()))?;
        let version = check_identity(&connection, path)?;
        if version == 0 {
            return Err(CacheError::Missing {
                path: path.to_path_buf(),
                message: "the file holds no promptgate cache yet",
            });
        }
        Ok(Cache {
            path: path.to_path_buf(),
            connection: Mutex::new(connection),
            has_version_columns: version >= 3,
        })
    }

    /// The file this cache lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A failure to `action` on this (usable) cache.
    pub(crate) fn failed(&self, action: &'static str) -> impl Fn(rusqlite::Error) -> CacheError + '_ {
        move |source| CacheError::Failed {
            path: self.path.clone(),
            action,
            source,
        }
    }

    pub(crate) fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (every write is one
        // statement), so a poisoned lock is still safe to use.
        self.connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Run `write` in one immediate transaction (see `put_many` for why immediate); a failure
    /// rolls it back and names `action`.
    pub(crate) fn write<T>(
        &self,
        action: &'static str,
        write: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, CacheError> {
        let fail = self.failed(action);
        let mut connection = self.connection();
        let transaction = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&fail)?;
        let value = write(&transaction).map_err(&fail)?;
        transaction.commit().map_err(&fail)?;
        Ok(value)
    }

    /// Run `read` on the connection; a failure names `action`.
    pub(crate) fn read<T>(
        &self,
        action: &'static str,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, CacheError> {
        read(&self.connection()).map_err(self.failed(action))
    }

    /// Whether an answer is stored under `key` (without reading it).
    pub fn has(&self, key: &str) -> Result<bool, CacheError> {
        self.read("look up an answer", |connection| {
            connection
                .prepare_cached("SELECT 1 FROM responses WHERE key = ?1")?
                .exists([key])
        })
    }

    /// The stored response for `key`, if any.
    pub fn get(&self, key: &str) -> Result<Option<Response>, CacheError> {
        self.lookup(&self.connection(), key)
    }

    /// The answers stored under `keys`, in their order, read in one transaction: a replay of
    /// thousands of answers takes SQLite's locks once per batch, not once per answer.
    pub fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Response>>, CacheError> {
        let connection = self.connection();
        let transaction = connection
            .unchecked_transaction()
            .map_err(self.failed("read answers"))?;
        let answers = keys
            .iter()
            .map(|key| self.lookup(&transaction, key))
            .collect::<Result<Vec<_>, _>>()?;
        // Read only: ending it either way releases the read lock.
        transaction.commit().map_err(self.failed("read answers"))?;
        Ok(answers)
    }

    fn lookup(&self, connection: &Connection, key: &str) -> Result<Option<Response>, CacheError> {
        let mut statement = connection
            .prepare_cached(self.answer_sql(By::Key))
            .map_err(self.failed("read an answer"))?;
        self.read_answer(&mut statement, key, || key.to_string(), &mut None)
    }

    /// The answers stored under `keys`, each handed to `found` with its place in `keys`; keys
    /// with no answer are not reported. The keys are looked up in the index in sorted order,
    /// then the rows they name are read in the order they lie in the file, all in one read
    /// transaction. Keys are hashes: looked up in a run's order, each answer read a page of the
    /// index and a page of the table at random (two page reads from the OS an answer, most of
    /// a warm replay's time); in these orders each page is read about once per call.
    pub fn get_ordered<E: From<CacheError>>(
        &self,
        keys: &[KeyDigest],
        mut found: impl FnMut(usize, Response) -> Result<(), E>,
    ) -> Result<(), E> {
        let fail = self.failed("read answers");
        let connection = self.connection();
        let transaction = connection.unchecked_transaction().map_err(&fail)?;
        let rows = self.rows_ordered(&transaction, keys)?;
        let mut statement = transaction.prepare_cached(self.answer_sql(By::Rowid)).map_err(&fail)?;
        let mut version = None;
        for (rowid, place) in rows {
            let key = || hex::encode(keys[place as usize].0);
            if let Some(response) = self.read_answer(&mut statement, rowid, key, &mut version)? {
                found(place as usize, response)?;
            }
        }
        drop(statement);
        // Read only: ending it either way releases the read lock.
        transaction.commit().map_err(&fail)?;
        Ok(())
    }

    /// What [`Cache::get_ordered`] finds for `keys`, but only each answer's token counts:
    /// what counting the calls a run would make needs (`--dry-run`, `--max-calls`), without
    /// reading and parsing every answer. `found` gets the place in `keys` of each key that has
    /// an answer, and its tokens when they were reported.
    pub fn tokens_ordered(
        &self,
        keys: &[KeyDigest],
        mut found: impl FnMut(usize, Option<Usage>),
    ) -> Result<(), CacheError> {
        let fail = self.failed("look up answers");
        let connection = self.connection();
        let transaction = connection.unchecked_transaction().map_err(&fail)?;
        let rows = self.rows_ordered(&transaction, keys)?;
        {
            let mut statement = transaction
                .prepare_cached("SELECT input_tokens, output_tokens FROM responses WHERE rowid = ?1")
                .map_err(&fail)?;
            for (rowid, place) in rows {
                let tokens = statement
                    .query_row([rowid], |row| Ok(usage(row.get(0)?, row.get(1)?)))
                    .map_err(&fail)?;
                found(place as usize, tokens);
            }
        }
        // Read only: ending it either way releases the read lock.
        transaction.commit().map_err(&fail)?;
        Ok(())
    }

    /// The rows holding answers to `keys`, as (rowid, place in `keys`), in the order they lie in
    /// the file; found through the index in key order (see [`Cache::get_ordered`]).
    fn rows_ordered(&self, transaction: &Connection, keys: &[KeyDigest]) -> Result<Vec<(i64, u32)>, CacheError> {
        let fail = self.failed("look up answers");
        // Sorted by each key's first 8 bytes: the index's order (lowercase hex keeps byte order)
        // up to ties between SHA-256 prefixes, which could only cost locality, never a lookup.
        // Comparing u64s rather than 32-byte keys made a 250,000-sample replay 1.3% faster.
        let mut order: Vec<(u64, u32)> = keys
            .iter()
            .zip(0..u32::try_from(keys.len()).unwrap_or(u32::MAX))
            .map(|(key, place)| (key.prefix(), place))
            .collect();
        order.sort_unstable();
        let mut rows: Vec<(i64, u32)> = Vec::with_capacity(keys.len());
        let mut statement = transaction
            .prepare_cached("SELECT rowid FROM responses WHERE key = ?1")
            .map_err(&fail)?;
        let mut buffer = [0u8; 64];
        for (_, place) in order {
            let key = keys[place as usize].hex(&mut buffer);
            if let Some(rowid) = statement.query_row([key], |row| row.get(0)).optional().map_err(&fail)? {
                rows.push((rowid, place));
            }
        }
        rows.sort_unstable();
        Ok(rows)
    }

    /// The query of one answer by key or by row. The raw body is not read: nothing downstream
    /// of the cache needs it, and it is most of a row (a warm replay reads hundreds of
    /// thousands). An older file read as it is has no version columns: the provider's name
    /// stands in, and the version comes from the raw body (see `read_answer`).
    fn answer_sql(&self, by: By) -> &'static str {
        macro_rules! answer {
            ($columns:literal) => {
                match by {
                    By::Key => concat!("SELECT ", $columns, " FROM responses WHERE key = ?1"),
                    By::Rowid => concat!("SELECT ", $columns, " FROM responses WHERE rowid = ?1"),
                }
            };
        }
        if self.has_version_columns {
            answer!(
                "text, tool_calls, NULL, input_tokens, output_tokens, latency_ms, resolved_model, system_fingerprint"
            )
        } else {
            answer!("text, tool_calls, raw_body, input_tokens, output_tokens, latency_ms, provider, NULL")
        }
    }

    /// The answer [`Cache::answer_sql`]'s `statement` finds for `by`, if any; `key` names the
    /// entry in an error. `last` is the version last read, shared by the answers that name it
    /// again (nearly all of a replay's).
    fn read_answer(
        &self,
        statement: &mut rusqlite::CachedStatement<'_>,
        by: impl rusqlite::ToSql,
        key: impl FnOnce() -> String,
        last: &mut Option<ModelVersion>,
    ) -> Result<Option<Response>, CacheError> {
        let row = statement
            .query_row([by], |row| {
                let tool_calls = match str_at(row, 1)? {
                    // Most answers call no tool: no need to parse their empty list.
                    Some("[]") => Ok(Vec::new()),
                    Some(listed) => serde_json::from_str(listed),
                    None => serde_json::from_str("null"),
                };
                let version = if self.has_version_columns {
                    let fingerprint = str_at(row, 7)?;
                    match (str_at(row, 6)?, last.as_ref()) {
                        (Some(model), Some(known)) if known.is(model, fingerprint) => Some(known.clone()),
                        (Some(model), _) => {
                            let version = ModelVersion::new(model, fingerprint);
                            last.clone_from(&version);
                            version
                        }
                        (None, _) => None,
                    }
                } else {
                    let raw_body = str_at(row, 2)?;
                    str_at(row, 6)?
                        .and_then(ProviderKind::parse)
                        .zip(raw_body)
                        .and_then(|(provider, raw_body)| ModelVersion::from_body(provider, raw_body))
                };
                Ok((
                    str_at(row, 0)?.map(str::to_string),
                    tool_calls,
                    row.get::<_, Option<u64>>(3)?,
                    row.get::<_, Option<u64>>(4)?,
                    row.get::<_, u64>(5)?,
                    version,
                ))
            })
            .optional()
            .map_err(self.failed("read an answer"))?;
        let Some((text, tool_calls, input_tokens, output_tokens, latency_ms, version)) = row else {
            return Ok(None);
        };
        let tool_calls = tool_calls.map_err(|e| CacheError::Entry {
            path: self.path.clone(),
            key: key(),
            message: format!("has unreadable tool calls: {e}"),
        })?;
        Ok(Some(Response {
            text,
            tool_calls,
            raw_body: String::new(),
            usage: usage(input_tokens, output_tokens),
            latency_ms,
            version,
        }))
    }

    /// Store a successful response; the first writer of a key wins.
    pub fn put(&self, key: &str, request: &Request, response: &Response) -> Result<(), CacheError> {
        self.put_many(&[Entry::new(key.to_string(), request, response.clone())])
    }

    /// Store several responses in one transaction (a group commit); the first writer of a key wins.
    pub fn put_many(&self, entries: &[Entry]) -> Result<(), CacheError> {
        let fail = self.failed("store a response");
        let created_at = jiff::Timestamp::now().to_string();
        let mut connection = self.connection();
        // IMMEDIATE takes the write lock up front. A deferred transaction would read first and
        // then upgrade, and in WAL mode that upgrade fails at once with SQLITE_BUSY (no busy
        // wait) when another process committed in between — two runs sharing a cache.
        let transaction = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&fail)?;
        {
            let mut statement = transaction
                .prepare_cached(
                    "INSERT INTO responses
                     (key, provider, model, sample_index, text, tool_calls, raw_body,
                      input_tokens, output_tokens, latency_ms, created_at,
                      resolved_model, system_fingerprint)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                     ON CONFLICT(key) DO NOTHING",
                )
                .map_err(&fail)?;
            for entry in entries {
                let response = &entry.response;
                let tool_calls = serde_json::to_string(&response.tool_calls).map_err(|e| CacheError::Entry {
                    path: self.path.clone(),
                    key: entry.key.clone(),
                    message: format!("has tool calls that cannot be stored: {e}"),
                })?;
                statement
                    .execute(params![
                        entry.key,
                        entry.provider.as_str(),
                        entry.model,
                        entry.sample_index,
                        response.text,
                        tool_calls,
                        response.raw_body,
                        response.usage.map(|u| u.input_tokens),
                        response.usage.map(|u| u.output_tokens),
                        response.latency_ms,
                        created_at,
                        response.version.as_ref().map(|v| &v.model),
                        response.version.as_ref().and_then(|v| v.fingerprint.as_ref()),
                    ])
                    .map_err(&fail)?;
            }
            // The answers are here now: whoever held their leases, nobody needs to wait.
            let mut statement = transaction
                .prepare_cached("DELETE FROM leases WHERE key = ?1")
                .map_err(&fail)?;
            for entry in entries {
                statement.execute([&entry.key]).map_err(&fail)?;
            }
        }
        transaction.commit().map_err(&fail)
    }

    /// Write every entry (of `model` ids only, when given) to `out` as JSON Lines, in key order,
    /// after a header line. Returns the number of entries.
    pub fn export(&self, out: &mut dyn Write, model: Option<&str>) -> Result<u64, CacheError> {
        let fail = self.failed("export");
        write_line(
            out,
            &ExportHeader {
                format: EXPORT_FORMAT.into(),
                schema_version: EXPORT_SCHEMA_VERSION,
            },
        )?;
        let connection = self.connection();
        let mut statement = connection
            .prepare(
                "SELECT key, provider, model, sample_index, text, tool_calls, raw_body, input_tokens,
                        output_tokens, latency_ms, created_at
                 FROM responses WHERE ?1 IS NULL OR model = ?1 ORDER BY key",
            )
            .map_err(&fail)?;
        let mut rows = statement.query([model]).map_err(&fail)?;
        let mut count = 0;
        while let Some(row) = rows.next().map_err(&fail)? {
            let tool_calls: String = row.get(5).map_err(&fail)?;
            let entry = (|| -> rusqlite::Result<ExportedEntry> {
                Ok(ExportedEntry {
                    key: row.get(0)?,
                    provider: row.get(1)?,
                    model: row.get(2)?,
                    sample_index: row.get(3)?,
                    text: row.get(4)?,
                    tool_calls: serde_json::from_str(&tool_calls).unwrap_or(Value::String(tool_calls.clone())),
                    raw_body: row.get(6)?,
                    input_tokens: row.get(7)?,
                    output_tokens: row.get(8)?,
                    latency_ms: row.get(9)?,
                    created_at: row.get(10)?,
                })
            })()
            .map_err(&fail)?;
            write_line(out, &entry)?;
            count += 1;
        }
        Ok(count)
    }

    /// Merge an export into this cache, in one transaction: a bad line (named by `source` and
    /// its number) imports nothing. A key the cache has keeps its local answer.
    pub fn import(&self, input: &mut dyn BufRead, source: &Path) -> Result<ImportStats, CacheError> {
        let invalid = |line: usize, message: String| CacheError::Import {
            source_path: source.to_path_buf(),
            line,
            message,
            newer: false,
        };
        // Lines are read bounded: `cache import /dev/zero` is one endless line.
        let mut lines = BoundedLines {
            input,
            limit: MAX_IMPORT_LINE_BYTES,
        }
        .enumerate();
        let header = match lines.next() {
            Some((_, Ok(text))) => serde_json::from_str::<ExportHeader>(&text).ok(),
            Some((_, Err(e))) => return Err(invalid(1, e.to_string())),
            None => return Err(invalid(1, "the file is empty".into())),
        };
        match header {
            Some(h) if h.format == EXPORT_FORMAT && h.schema_version == EXPORT_SCHEMA_VERSION => {}
            Some(h) if h.format == EXPORT_FORMAT => {
                return Err(CacheError::Import {
                    source_path: source.to_path_buf(),
                    line: 1,
                    message: format!(
                        "schema_version {} is not supported (this promptgate reads {EXPORT_SCHEMA_VERSION})",
                        h.schema_version
                    ),
                    newer: h.schema_version > EXPORT_SCHEMA_VERSION,
                })
            }
            _ => {
                return Err(invalid(
                    1,
                    format!(
                    "the first line is not a promptgate cache export header (`{{\"format\":\"{EXPORT_FORMAT}\",…}}`)"
                ),
                ))
            }
        }
        let mut connection = self.connection();
        let fail = self.failed("import");
        let transaction = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&fail)?;
        let mut stats = ImportStats::default();
        {
            let mut existing = transaction
                .prepare("SELECT text, tool_calls FROM responses WHERE key = ?1")
                .map_err(&fail)?;
            let mut insert = transaction
                .prepare(
                    "INSERT INTO responses
                     (key, provider, model, sample_index, text, tool_calls, raw_body,
                      input_tokens, output_tokens, latency_ms, created_at,
                      resolved_model, system_fingerprint)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )
                .map_err(&fail)?;
            for (index, line) in lines {
                let number = index + 1;
                let text = line.map_err(|e| invalid(number, e.to_string()))?;
                if text.trim().is_empty() {
                    continue;
                }
                let entry: ExportedEntry =
                    serde_json::from_str(&text).map_err(|e| invalid(number, crate::location::json_message(&e)))?;
                let key_ok = entry.key.len() == 64 && entry.key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                if !key_ok {
                    return Err(invalid(
                        number,
                        format!("`{}` is not a cache key (64 lowercase hex digits)", entry.key),
                    ));
                }
                let Some(provider) = ProviderKind::parse(&entry.provider) else {
                    return Err(invalid(number, format!("unknown provider `{}`", entry.provider)));
                };
                // An export carries the raw body, which says what answered.
                let version = ModelVersion::from_body(provider, &entry.raw_body);
                let tool_calls: Vec<ToolCall> = serde_json::from_value(entry.tool_calls.clone())
                    .map_err(|e| invalid(number, format!("`tool_calls`: {e}")))?;
                let tool_calls = serde_json::to_string(&tool_calls).map_err(|e| invalid(number, e.to_string()))?;
                let local = existing
                    .query_row([&entry.key], |row| {
                        Ok((row.get::<_, Option<String>>(0)?, row.get::<_, String>(1)?))
                    })
                    .optional()
                    .map_err(&fail)?;
                match local {
                    Some((text, calls)) if text == entry.text && calls == tool_calls => stats.present += 1,
                    Some(_) => stats.differing += 1,
                    None => {
                        insert
                            .execute(params![
                                entry.key,
                                entry.provider,
                                entry.model,
                                entry.sample_index,
                                entry.text,
                                tool_calls,
                                entry.raw_body,
                                entry.input_tokens,
                                entry.output_tokens,
                                entry.latency_ms,
                                entry.created_at,
                                version.as_ref().map(|v| &v.model),
                                version.as_ref().and_then(|v| v.fingerprint.as_ref()),
                            ])
                            .map_err(&fail)?;
                        stats.added += 1;
                    }
                }
            }
        }
        transaction.commit().map_err(&fail)?;
        Ok(stats)
    }

    /// Delete the entries created before `before` and/or of the `model` id (both when both are
    /// given); with `dry_run`, only count them. Returns the count.
    pub fn prune(
        &self,
        before: Option<jiff::Timestamp>,
        model: Option<&str>,
        dry_run: bool,
    ) -> Result<u64, CacheError> {
        let fail = self.failed("prune");
        let mut connection = self.connection();
        let transaction = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&fail)?;
        let mut doomed = Vec::new();
        {
            let mut statement = transaction
                .prepare("SELECT key, created_at FROM responses WHERE ?1 IS NULL OR model = ?1")
                .map_err(&fail)?;
            let mut rows = statement.query([model]).map_err(&fail)?;
            while let Some(row) = rows.next().map_err(&fail)? {
                let key: String = row.get(0).map_err(&fail)?;
                let created_at: String = row.get(1).map_err(&fail)?;
                // Compared as times, not as text: fractional seconds vary in length.
                let old = match (before, created_at.parse::<jiff::Timestamp>()) {
                    (None, _) => true,
                    (Some(before), Ok(created)) => created < before,
                    (Some(_), Err(_)) => false,
                };
                if old {
                    doomed.push(key);
                }
            }
        }
        if !dry_run {
            let mut delete = transaction
                .prepare("DELETE FROM responses WHERE key = ?1")
                .map_err(&fail)?;
            for key in &doomed {
                delete.execute([key]).map_err(&fail)?;
            }
        }
        transaction.commit().map_err(&fail)?;
        Ok(doomed.len() as u64)
    }

    /// Entry counts and token totals per model.
    pub fn stats(&self) -> Result<CacheStats, CacheError> {
        let fail = self.failed("count entries");
        let connection = self.connection();
        let mut statement = connection
            .prepare(
                "SELECT provider, model, COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0)
                 FROM responses GROUP BY provider, model ORDER BY provider, model",
            )
            .map_err(&fail)?;
        let models = statement
            .query_map([], |row| {
                Ok(ModelStats {
                    provider: row.get(0)?,
                    model: row.get(1)?,
                    entries: row.get(2)?,
                    input_tokens: row.get(3)?,
                    output_tokens: row.get(4)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(&fail)?;
        let bytes = ["", "-wal"]
            .iter()
            .filter_map(|suffix| {
                let mut name = self.path.as_os_str().to_owned();
                name.push(suffix);
                std::fs::metadata(PathBuf::from(name)).ok()
            })
            .map(|m| m.len())
            .sum();
        Ok(CacheStats {
            schema_version: CACHE_SCHEMA_VERSION,
            path: self.path.display().to_string(),
            entries: models.iter().map(|m| m.entries).sum(),
            bytes,
            models,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Failure;
    use crate::prompt::Message;
    use crate::provider::ProviderKind;
    use crate::provider::SamplingParams;

    fn request(sample_index: u32) -> Request {
        Request {
            provider: ProviderKind::Openai,
            model: "m".into(),
            prompt: std::sync::Arc::new(RenderedPrompt {
                messages: vec![Message {
                    role: "user".into(),
                    content: std::sync::Arc::new("hi".into()),
                }],
                response_schema: None,
                tools: vec![],
                tool_choice: None,
            }),
            params: SamplingParams {
                temperature: Some(0.5),
                max_tokens: Some(10),
                top_p: None,
                seed: Some(1),
            },
            sample_index,
            epoch: None,
        }
    }

    #[test]
    fn round_trips_and_keys_differ_by_sample() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("sub/cache.sqlite")).unwrap();
        let response = Response {
            text: Some("{\"decision\":\"notify\"}".into()),
            tool_calls: vec![],
            raw_body: "{}".into(),
            usage: Some(Usage {
                input_tokens: 3,
                output_tokens: 4,
            }),
            latency_ms: 12,
            version: ModelVersion::new("gpt-4o-mini-2024-07-18", Some("fp_1")),
        };
        let (a, b) = (key(&request(0)), key(&request(1)));
        assert_ne!(a, b);
        assert_eq!(cache.get(&a).unwrap(), None);
        cache.put(&a, &request(0), &response).unwrap();
        cache.put(&a, &request(0), &response).unwrap();
        // Everything but the raw body, which is kept and not read back.
        let read_back = Response {
            raw_body: String::new(),
            ..response.clone()
        };
        assert_eq!(cache.get(&a).unwrap(), Some(read_back));
        let stats = cache.stats().unwrap();
        assert_eq!(stats.entries, 1);
        assert_eq!(stats.models[0].input_tokens, 3);
        // Reopening sees the same data.
        drop(cache);
        let cache = Cache::open(&dir.path().join("sub/cache.sqlite")).unwrap();
        assert!(cache.get(&a).unwrap().is_some());
    }

    #[test]
    fn the_same_prompt_on_another_provider_is_another_entry() {
        let openai = request(0);
        let bedrock = Request {
            provider: ProviderKind::Bedrock,
            ..request(0)
        };
        assert_ne!(key(&openai), key(&bedrock));
    }

    /// The key as first defined: the whole object built as JSON, then canonicalized.
    fn reference_key(request: &Request) -> String {
        let mut value = json!({
            "key_version": 1,
            "provider": request.provider.as_str(),
            "model": request.model,
            "messages": request.prompt.messages,
            "response_schema": request.prompt.response_schema,
            "params": request.params,
            "sample_index": request.sample_index,
        });
        if !request.prompt.tools.is_empty() {
            value["tools"] = json!(request.prompt.tools);
            value["tool_choice"] = json!(request.prompt.tool_choice);
        }
        if let Some(epoch) = &request.epoch {
            value["epoch"] = json!(epoch);
        }
        digest::sha256_of_json(&value)
    }

    #[test]
    fn the_assembled_key_is_the_canonical_json_key() {
        let mut with_tools = request(3);
        std::sync::Arc::make_mut(&mut with_tools.prompt).tools = vec![crate::prompt::ToolDefinition {
            name: "deleteAutomaticSuppressionRule".into(),
            description: Some("削除する \"quoted\"".into()),
            parameters: json!({"type": "object", "properties": {"controlId": {"type": "string"}}}),
        }];
        std::sync::Arc::make_mut(&mut with_tools.prompt).tool_choice = Some(crate::prompt::ToolChoice::Required);
        std::sync::Arc::make_mut(&mut with_tools.prompt).response_schema =
            Some(std::sync::Arc::new(crate::prompt::ResponseSchema {
                name: "x".into(),
                strict: true,
                schema: json!({"b": [1, 2.5], "a": "é\n"}),
            }));
        let in_epoch = Request {
            epoch: Some("drift-2026-12-04 \"é\"".into()),
            ..with_tools.clone()
        };
        // Floats that f32 cannot hold exactly, no parameters at all, a negative seed, and
        // messages that need escaping: the hand-written parts must give the same bytes.
        let with_params = |temperature, max_tokens, top_p, seed| Request {
            params: SamplingParams {
                temperature,
                max_tokens,
                top_p,
                seed,
            },
            ..request(2)
        };
        let mut escaped = request(1);
        std::sync::Arc::make_mut(&mut escaped.prompt).messages = vec![
            Message {
                role: "system".into(),
                content: std::sync::Arc::new("Answer \"suppress\" or notify.\n\t\u{1}".into()),
            },
            Message {
                role: "user".into(),
                content: std::sync::Arc::new("検出結果: {\"Severity\": {\"Label\": \"HIGH\"}} \\ </script>".into()),
            },
        ];
        // Another prompt with the same schema, then another schema: what `Keys` remembers of a
        // schema must follow the prompt's.
        let mut same_schema = with_tools.clone();
        let first = &mut std::sync::Arc::make_mut(&mut same_schema.prompt).messages[0].content;
        *first = format!("{first} again").into();
        let mut other_schema = same_schema.clone();
        std::sync::Arc::make_mut(&mut other_schema.prompt).response_schema =
            Some(std::sync::Arc::new(crate::prompt::ResponseSchema {
                name: "y".into(),
                strict: false,
                schema: json!({"enum": ["suppress"]}),
            }));
        let cases = [
            request(0),
            request(7),
            with_tools,
            same_schema,
            other_schema,
            in_epoch,
            with_params(Some(0.7), Some(256), Some(0.9), Some(-3)),
            with_params(None, None, None, None),
            with_params(Some(1e-7), None, Some(1.0), None),
            with_params(None, Some(u32::MAX), None, Some(i64::MIN)),
            escaped,
        ];
        let mut keys = Keys::default();
        for request in cases {
            assert_eq!(key(&request), reference_key(&request), "{:?}", request.params);
            assert_eq!(hex::encode(keys.digest(&request).0), reference_key(&request));
        }
    }

    #[test]
    fn answers_looked_up_in_the_caches_order_are_each_given_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("cache.sqlite")).unwrap();
        let requests: Vec<Request> = (0..40).map(request).collect();
        let mut keys = Keys::default();
        let digests: Vec<KeyDigest> = requests.iter().map(|r| keys.digest(r)).collect();
        // Every third request answered, stored in an order unlike both the requests' and the
        // keys', so that the index, the rows and the places all disagree.
        let stored: Vec<usize> = (0..40).rev().filter(|i| i % 3 == 0).collect();
        // The versions as sent, in the order the rows lie: runs of one version, and one that
        // needs cleaning between them.
        let sent = |rank: usize| match rank {
            0..5 => ("m-1", Some("fp_a")),
            5 => (" m-2\u{7} ", None),
            _ => ("m-1", Some("fp_b")),
        };
        let entries: Vec<Entry> = stored
            .iter()
            .enumerate()
            .map(|(rank, &i)| {
                let (model, fingerprint) = sent(rank);
                let response = Response {
                    version: ModelVersion::new(model, fingerprint),
                    ..Response::from_text(&format!("answer {i}"))
                };
                Entry::new(key(&requests[i]), &requests[i], response)
            })
            .collect();
        cache.put_many(&entries).unwrap();
        let mut found = Vec::new();
        let mut versions = Vec::new();
        cache
            .get_ordered(&digests, |place, response| {
                found.push((place, response.text));
                versions.push(response.version.expect("a version"));
                Ok::<(), CacheError>(())
            })
            .unwrap();
        // Read back as cleaned when stored; a run of one version shares it.
        let expected: Vec<ModelVersion> = (0..stored.len())
            .map(|rank| ModelVersion::new(sent(rank).0, sent(rank).1).unwrap())
            .collect();
        assert_eq!(versions, expected);
        assert_eq!(&*versions[5].model, "m-2");
        assert!(versions[1..5]
            .iter()
            .all(|v| std::sync::Arc::ptr_eq(&v.model, &versions[0].model)));
        assert!(versions[7..]
            .iter()
            .all(|v| std::sync::Arc::ptr_eq(&v.model, &versions[6].model)));
        let mut places: Vec<usize> = found.iter().map(|(place, _)| *place).collect();
        places.sort_unstable();
        assert_eq!(places, (0..40).filter(|i| i % 3 == 0).collect::<Vec<_>>());
        for (place, text) in &found {
            assert_eq!(text.as_deref(), Some(format!("answer {place}").as_str()));
        }
        // A failure of the caller's stops the look-up and is returned as it is.
        let mut seen = 0;
        let stopped = cache.get_ordered(&digests, |_, _| {
            seen += 1;
            Err(CacheError::Writer("stopped"))
        });
        assert!(matches!(stopped, Err(CacheError::Writer("stopped"))));
        assert_eq!(seen, 1);
    }

    /// Token counts are found for exactly the keys with answers, at their places, and an
    /// answer that reported no tokens is still an answer.
    #[test]
    fn tokens_are_read_for_the_answered_keys_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("cache.sqlite")).unwrap();
        let requests: Vec<Request> = (0..12).map(request).collect();
        let mut keys = Keys::default();
        let digests: Vec<KeyDigest> = requests.iter().map(|r| keys.digest(r)).collect();
        let entries: Vec<Entry> = [7usize, 2, 9]
            .iter()
            .map(|&i| {
                let usage = (i != 9).then(|| Usage {
                    input_tokens: 100 + i as u64,
                    output_tokens: i as u64,
                });
                let response = Response {
                    usage,
                    ..Response::from_text("notify")
                };
                Entry::new(key(&requests[i]), &requests[i], response)
            })
            .collect();
        cache.put_many(&entries).unwrap();
        let mut found = Vec::new();
        cache
            .tokens_ordered(&digests, |place, tokens| {
                found.push((place, tokens.map(|t| (t.input_tokens, t.output_tokens))))
            })
            .unwrap();
        found.sort_unstable();
        assert_eq!(found, vec![(2, Some((102, 2))), (7, Some((107, 7))), (9, None)]);
    }

    #[test]
    fn an_epoch_is_another_entry_and_no_epoch_changes_nothing() {
        let plain = request(0);
        let in_epoch = |name: &str| Request {
            epoch: Some(name.into()),
            ..request(0)
        };
        assert_ne!(key(&plain), key(&in_epoch("drift-2026-12-04")));
        assert_ne!(key(&in_epoch("drift-2026-12-04")), key(&in_epoch("drift-2026-12-05")));
        assert_eq!(key(&in_epoch("a")), key(&in_epoch("a")));
        // The hand-assembled key puts `epoch` where canonical JSON sorts it: first.
        assert_eq!(
            key(&in_epoch("drift-2026-12-04")),
            reference_key(&in_epoch("drift-2026-12-04"))
        );
    }

    #[test]
    fn tools_are_part_of_the_key_and_absent_tools_change_nothing() {
        // Pinned: a key must not change between releases, or every cache is lost on upgrade.
        // Independently: sha256 of Python's json.dumps(v, sort_keys=True, separators=(",", ":"))
        // of the same object.
        assert_eq!(
            key(&request(0)),
            "36618ea23e06be5afc22b79ce9fcb6f7c181965f1037799a71abadb3262af6a3"
        );
        let mut with_tools = request(0);
        std::sync::Arc::make_mut(&mut with_tools.prompt).tools = vec![crate::prompt::ToolDefinition {
            name: "listAutomaticSuppressionRules".into(),
            description: None,
            parameters: json!({"type": "object", "properties": {}}),
        }];
        std::sync::Arc::make_mut(&mut with_tools.prompt).tool_choice = Some(crate::prompt::ToolChoice::Auto);
        let mut required = with_tools.clone();
        std::sync::Arc::make_mut(&mut required.prompt).tool_choice = Some(crate::prompt::ToolChoice::Required);
        assert_ne!(key(&with_tools), key(&request(0)));
        assert_ne!(key(&with_tools), key(&required));
    }

    #[test]
    fn refuses_a_future_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 9)
            .unwrap();
        let err = Cache::open(&path).unwrap_err();
        assert!(err.to_string().contains("schema version 9"), "{err}");
        assert!(matches!(err, CacheError::NewerSchema { found: 9, .. }), "{err:?}");
        assert_eq!(err.exit_code(), exit_code::BAD_INPUT);
        assert_eq!(
            err.hint().as_deref(),
            Some("upgrade promptgate, or point --cache at another file")
        );
    }

    #[test]
    fn a_failed_commit_is_the_machines_fault_and_says_what_failed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let cache = Cache::open(&path).unwrap();
        // As on a full disk: the insert is refused by SQLite itself.
        cache
            .connection()
            .execute_batch(
                "CREATE TRIGGER full BEFORE INSERT ON responses BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END;",
            )
            .unwrap();
        let response = Response::from_text("notify");
        let err = cache.put("k", &request(0), &response).unwrap_err();
        assert!(
            matches!(
                err,
                CacheError::Failed {
                    action: "store a response",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.exit_code(), exit_code::INTERNAL);
        assert!(err.to_string().contains("failed to store a response"), "{err}");
        // A read-only connection is named as such, with where to go instead.
        cache.connection().execute_batch("PRAGMA query_only = 1").unwrap();
        let err = cache.prune(None, None, false).unwrap_err();
        assert_eq!(
            err.hint().as_deref(),
            Some("the cache is read-only here; --offline reads it without writing")
        );
        // A file that is not a cache is the input's fault.
        std::fs::write(dir.path().join("text.sqlite"), "plain text ".repeat(100)).unwrap();
        let err = Cache::open(&dir.path().join("text.sqlite")).unwrap_err();
        assert_eq!(err.exit_code(), exit_code::BAD_INPUT);
        assert!(err
            .hint()
            .unwrap()
            .starts_with("the cache must be a promptgate SQLite file"));
    }

    #[test]
    fn refuses_a_file_that_is_not_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        std::fs::write(
            &path,
            "this is not a database, just text that is long enough to look like a header",
        )
        .unwrap();
        assert!(Cache::open(&path).is_err());
    }

    #[test]
    fn refuses_another_applications_database_and_leaves_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.sqlite");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE users (id INTEGER); INSERT INTO users VALUES (1);")
            .unwrap();
        let before = std::fs::read(&path).unwrap();
        let err = Cache::open(&path).unwrap_err();
        assert!(err.to_string().contains("another application"), "{err}");
        assert_eq!(err.exit_code(), crate::exit_code::BAD_INPUT);
        assert_eq!(std::fs::read(&path).unwrap(), before, "the file was changed");
        // Marked by another application, even when empty.
        let marked = dir.path().join("marked.sqlite");
        Connection::open(&marked)
            .unwrap()
            .pragma_update(None, "application_id", 0x1234)
            .unwrap();
        assert!(Cache::open(&marked).unwrap_err().to_string().contains("0x1234"));
    }

    #[test]
    fn a_new_cache_is_marked_and_reads_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        {
            let cache = Cache::open(&path).unwrap();
            cache.put("k", &request(0), &Response::from_text("notify")).unwrap();
        }
        let id: i32 = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .unwrap();
        assert_eq!(id, APPLICATION_ID);
        let files = || {
            let mut names: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let before = files();
        assert_eq!(before, ["c.sqlite"], "SQLite removes its WAL files on the last close");
        let cache = Cache::open_read_only(&path).unwrap();
        assert_eq!(cache.get("k").unwrap().unwrap().text.as_deref(), Some("notify"));
        drop(cache);
        assert_eq!(files(), before, "a read-only open created files");
        // Nothing to read is an error, not a new file.
        assert!(Cache::open_read_only(&dir.path().join("none.sqlite")).is_err());
        assert_eq!(files(), before);
    }

    /// `tests/fixtures/cache-v2.sqlite` was written by the previous release (`cache import` of
    /// `cache-v2.jsonl` beside it): five answers, OpenAI ones with and without a fingerprint,
    /// a Bedrock one through a prompt router and a plain one.
    #[test]
    fn a_version_2_cache_is_read_as_it_is_and_upgraded_without_losing_an_answer() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cache-v2.sqlite");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.sqlite");
        std::fs::copy(&fixture, &path).unwrap();
        let export = std::fs::read_to_string(fixture.with_extension("jsonl")).unwrap();
        let entries: Vec<ExportedEntry> = export
            .lines()
            .skip(1)
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(entries.len(), 5);
        let expected = |entry: &ExportedEntry| match (entry.provider.as_str(), entry.model.as_str()) {
            ("openai", "gpt-4o-mini") => ModelVersion::new("gpt-4o-mini-2024-07-18", Some("fp_0aa8d3e20b")),
            ("openai", _) => ModelVersion::new("gemma-3-270m-q4_k_m.gguf", None),
            ("bedrock", model) if model.contains("prompt-router") => ModelVersion::new(
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0",
                None,
            ),
            _ => None,
        };
        let check = |cache: &Cache| {
            for entry in &entries {
                let answer = cache.get(&entry.key).unwrap().expect("every answer is still there");
                assert_eq!(answer.text, entry.text);
                // Not read back (a run never needs it), but kept.
                let stored: String = cache
                    .connection()
                    .query_row("SELECT raw_body FROM responses WHERE key = ?1", [&entry.key], |row| {
                        row.get(0)
                    })
                    .unwrap();
                assert_eq!(stored, entry.raw_body);
                assert_eq!(answer.latency_ms, entry.latency_ms);
                assert_eq!(answer.version, expected(entry), "{}", entry.model);
            }
        };
        let version = |path: &Path| -> i64 {
            Connection::open(path)
                .unwrap()
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap()
        };
        // Read as it is: versions from the raw bodies, and the file untouched.
        check(&Cache::open_read_only(&path).unwrap());
        assert_eq!(version(&path), 2);
        // Opened for writing: upgraded in place, the columns filled, every answer kept.
        check(&Cache::open(&path).unwrap());
        assert_eq!(version(&path), CACHE_SCHEMA_VERSION);
        let filled: i64 = Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT count(*) FROM responses WHERE resolved_model IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(filled, 4, "all but the plain Converse answer name a version");
        // A second open has nothing to do; an export of the upgraded file is the original one.
        let cache = Cache::open(&path).unwrap();
        check(&cache);
        let mut out = Vec::new();
        cache.export(&mut out, None).unwrap();
        let mut exported: Vec<ExportedEntry> = String::from_utf8(out)
            .unwrap()
            .lines()
            .skip(1)
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let mut original = entries.clone();
        original.sort_by(|a, b| a.key.cmp(&b.key));
        exported.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(exported, original);
        // An import into a new cache finds the versions in the raw bodies too.
        let fresh = Cache::open(&dir.path().join("fresh.sqlite")).unwrap();
        fresh.import(&mut export.as_bytes(), &fixture).unwrap();
        check(&fresh);
    }
}
