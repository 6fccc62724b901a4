//! The rendered prompts of a suite's cases, from rendering until their calls are made.
//!
//! Every case is rendered before the first call (a broken template fails the run before
//! anything is paid for), but a run needs a case's prompt again only when its samples are
//! sent or looked up. A rendered prompt carries the case's own data (a whole finding is often
//! several KB), so holding every case's for the whole run made memory grow with the suite:
//! 50,000 triage-sized cases held about 200 MB of prompts. So a store keeps of each prompt
//! only the text that is the case's own, packed in one buffer (16 bytes a case besides): the
//! text every case shares (a constant system prompt, the response schema, the tools) is kept
//! once. The stores of a run (one per suite and prompt version, one per robustness family)
//! share one [`HeldBudget`] of [`HELD_BYTES`] packed in memory, and write the rest to unnamed
//! temporary files (in `TMPDIR`, removed when the run ends).
//!
//! A prompt is unpacked when its samples are asked for. The engine asks for the k samples of
//! a case one after another and for the cases in order, so the last prompt unpacked is kept,
//! and a file is read a block at a time.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::Error;
use crate::fs::FsError;
use crate::prompt::{Message, RenderedPrompt};

/// Per-case text the stores of a run keep in memory, together, before they write prompts to
/// their files: about 250 cases that each carry a 4 KB finding, or 7,000 of the scale
/// benchmark's 140-byte records. Past it, memory no longer grows with the suite but by 16 bytes
/// a case. (It was 4 MiB: holding more saved no measurable time, since a spilled prompt is read
/// back a 64 KiB block at a time, but took 3 MiB more of a large run's peak.)
pub const HELD_BYTES: usize = 1 << 20;

/// How much of a file of prompts is read at once: the next cases' prompts come with the one
/// asked for.
const READ_BLOCK: usize = 64 << 10;

/// What is left of the per-case text the stores sharing it may hold: one budget for a run,
/// whatever its suites, prompt versions and families (a budget per store let a run of many
/// suites hold many times [`HELD_BYTES`]).
#[derive(Debug, Clone)]
pub struct HeldBudget(Arc<AtomicUsize>);

impl HeldBudget {
    pub fn new(bytes: usize) -> HeldBudget {
        HeldBudget(Arc::new(AtomicUsize::new(bytes)))
    }

    /// Take `bytes` if that much is left.
    fn take(&self, bytes: usize) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(bytes))
            .is_ok()
    }

    /// What is left.
    fn left(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Take `bytes`, or all that is left: for text held because it cannot be packed.
    fn charge(&self, bytes: usize) {
        // The closure always returns `Some`: the update cannot fail.
        let _ = self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            Some(left.saturating_sub(bytes))
        });
    }
}

/// The rendered prompts of a suite's cases, by case.
#[derive(Debug, Default)]
pub struct PromptStore {
    entries: Vec<Entry>,
    /// Where packed prompts are; `None` while every prompt is whole.
    packed: Option<Arc<Packed>>,
}

/// Where a case's prompt is.
#[derive(Debug, Clone)]
enum Entry {
    /// Whole in memory: the first prompt (the template the others are packed against), and
    /// any whose shape differs from it.
    Whole(Arc<RenderedPrompt>),
    /// Its record, at `offset` in the buffer.
    Held { offset: u32, len: u32 },
    /// Its record, at `offset` in the file.
    Spilled { offset: u64, len: u32 },
}

/// The records of packed prompts, and what they share.
#[derive(Debug)]
struct Packed {
    /// The prompt the packed ones were compared with: its response schema, tools and tool
    /// choice, and the text of each message that every case shares.
    template: Arc<RenderedPrompt>,
    held: Box<[u8]>,
    file: Option<File>,
    /// What was last unpacked, and the block of the file last read.
    recent: Mutex<Recent>,
}

#[derive(Debug, Default)]
struct Recent {
    /// The last prompt unpacked: whether it was spilled, and its offset.
    prompt: Option<((bool, u64), Arc<RenderedPrompt>)>,
    /// Where in the file `block` starts.
    block_at: u64,
    block: Vec<u8>,
}

/// A [`PromptStore`] being filled, case by case.
pub struct PromptStoreBuilder {
    entries: Vec<Entry>,
    budget: HeldBudget,
    template: Option<Arc<RenderedPrompt>>,
    held: Vec<u8>,
    writer: Option<Writer>,
}

/// The spill file while prompts are written to it.
struct Writer {
    file: BufWriter<File>,
    /// Where the next record goes.
    offset: u64,
}

fn spill_error(action: &'static str, source: std::io::Error) -> Error {
    FsError::temporary(action, source).into()
}

fn damaged() -> Error {
    spill_error(
        "read rendered prompts back from a file in",
        std::io::Error::new(std::io::ErrorKind::InvalidData, "a record is damaged"),
    )
}

impl PromptStoreBuilder {
    /// A store that keeps per-case text in memory while `budget`, shared with the run's other
    /// stores, lasts.
    pub fn new(budget: &HeldBudget) -> PromptStoreBuilder {
        PromptStoreBuilder {
            entries: Vec::new(),
            budget: budget.clone(),
            template: None,
            held: Vec::new(),
            writer: None,
        }
    }

    /// Prompts added so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Add the next case's prompt.
    pub fn push(&mut self, prompt: RenderedPrompt) -> Result<(), Error> {
        let template = match &self.template {
            Some(template) if spillable(&prompt, template) => Arc::clone(template),
            template => {
                // Kept whole: the first, or one that cannot be written as its text alone.
                self.budget.charge(own_text(&prompt, template.as_deref()));
                let prompt = Arc::new(prompt);
                self.template.get_or_insert_with(|| Arc::clone(&prompt));
                self.entries.push(Entry::Whole(prompt));
                return Ok(());
            }
        };
        let mut record = Vec::with_capacity(own_text(&prompt, Some(&template)) + 16);
        encode(&prompt, &template, &mut record);
        let len = u32::try_from(record.len()).map_err(|_| Error::internal("a rendered prompt over 4 GiB"))?;
        let held_at = u32::try_from(self.held.len())
            .ok()
            .filter(|at| at.checked_add(len).is_some());
        if let Some(offset) = held_at.filter(|_| self.budget.take(record.len())) {
            if self.held.capacity() - self.held.len() < record.len() {
                // Doubling, but never past what the budget still lets the store hold: left to
                // itself, the buffer of a store that takes the whole budget doubles to twice it.
                let more = self.held.len().min(self.budget.left()).max(record.len());
                self.held.reserve_exact(more);
            }
            self.held.extend_from_slice(&record);
            self.entries.push(Entry::Held { offset, len });
            return Ok(());
        }
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => {
                let file = tempfile::tempfile().map_err(|e| spill_error("create a file for rendered prompts in", e))?;
                self.writer.insert(Writer {
                    file: BufWriter::new(file),
                    offset: 0,
                })
            }
        };
        writer
            .file
            .write_all(&record)
            .map_err(|e| spill_error("write rendered prompts to a file in", e))?;
        self.entries.push(Entry::Spilled {
            offset: writer.offset,
            len,
        });
        writer.offset += u64::from(len);
        Ok(())
    }

    /// The store, ready to be read.
    pub fn finish(self) -> Result<PromptStore, Error> {
        let file = match self.writer {
            Some(Writer { file, .. }) => Some(
                file.into_inner()
                    .map_err(|e| spill_error("write rendered prompts to a file in", e.into_error()))?,
            ),
            None => None,
        };
        let packed = match self.template {
            Some(template) if file.is_some() || !self.held.is_empty() => Some(Arc::new(Packed {
                template,
                held: self.held.into_boxed_slice(),
                file,
                recent: Mutex::default(),
            })),
            _ => None,
        };
        let mut entries = self.entries;
        // Kept for the whole run: no room to grow.
        entries.shrink_to_fit();
        Ok(PromptStore { entries, packed })
    }
}

impl PromptStore {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The prompt of case `index`.
    pub fn get(&self, index: usize) -> Result<Arc<RenderedPrompt>, Error> {
        let entry = self
            .entries
            .get(index)
            .ok_or_else(|| Error::internal(format!("no rendered prompt for case {index}")))?;
        let (spilled, offset, len) = match *entry {
            Entry::Whole(ref prompt) => return Ok(Arc::clone(prompt)),
            Entry::Held { offset, len } => (false, u64::from(offset), len as usize),
            Entry::Spilled { offset, len } => (true, offset, len as usize),
        };
        let packed = self
            .packed
            .as_ref()
            .ok_or_else(|| Error::internal("a packed prompt without its store"))?;
        let mut recent = packed
            .recent
            .lock()
            .map_err(|_| Error::internal("the prompt store's lock"))?;
        if let Some((at, prompt)) = &recent.prompt {
            if *at == (spilled, offset) {
                return Ok(Arc::clone(prompt));
            }
        }
        let record = if spilled {
            let file = packed
                .file
                .as_ref()
                .ok_or_else(|| Error::internal("a spilled prompt without its file"))?;
            recent.read(file, offset, len)?
        } else {
            let start = offset as usize;
            packed.held.get(start..start + len).ok_or_else(damaged)?
        };
        let prompt = Arc::new(decode(record, &packed.template).ok_or_else(damaged)?);
        recent.prompt = Some(((spilled, offset), Arc::clone(&prompt)));
        Ok(prompt)
    }

    /// The prompts of the cases at `keep`, in that order (a shard's), sharing this store's
    /// buffer and file.
    pub fn subset(&self, keep: &[usize]) -> PromptStore {
        PromptStore {
            entries: keep.iter().filter_map(|&i| self.entries.get(i).cloned()).collect(),
            packed: self.packed.clone(),
        }
    }
}

impl Recent {
    /// The `len` bytes at `offset` in `file`, from the block last read or a new one.
    fn read(&mut self, file: &File, offset: u64, len: usize) -> Result<&[u8], Error> {
        let start = offset.checked_sub(self.block_at).map(|start| start as usize);
        if let Some(start) = start.filter(|&start| start.saturating_add(len) <= self.block.len()) {
            return Ok(&self.block[start..start + len]);
        }
        self.block.clear();
        self.block.resize(len.max(READ_BLOCK), 0);
        // Reads take turns under the store's lock, so a seek and a read cannot interleave.
        let read = read_at(file, &mut self.block, offset)
            .map_err(|e| spill_error("read rendered prompts back from a file in", e))?;
        self.block.truncate(read);
        self.block_at = offset;
        self.block.get(..len).ok_or_else(damaged)
    }
}

/// Read into `buffer` from `offset` until it is full or the file ends; how much was read.
#[cfg(unix)]
fn read_at(file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut read = 0;
    while read < buffer.len() {
        match file.read_at(&mut buffer[read..], offset + read as u64) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(read)
}

#[cfg(not(unix))]
fn read_at(mut file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<usize> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    let mut read = 0;
    while read < buffer.len() {
        match file.read(&mut buffer[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(read)
}

/// Whether `prompt` shares with `template` all but its messages' text, so that only the text
/// needs writing.
fn spillable(prompt: &RenderedPrompt, template: &RenderedPrompt) -> bool {
    let schema_same = match (&prompt.response_schema, &template.response_schema) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        (None, None) => true,
        _ => false,
    };
    schema_same
        && prompt.tools == template.tools
        && prompt.tool_choice == template.tool_choice
        && prompt.messages.len() == template.messages.len()
        && prompt.messages.len() <= usize::from(u8::MAX)
        && prompt
            .messages
            .iter()
            .zip(&template.messages)
            .all(|(m, t)| m.role == t.role)
}

/// Whether message `index` of `prompt` is the template's own text (a constant system prompt).
fn shared(prompt: &RenderedPrompt, template: &RenderedPrompt, index: usize) -> bool {
    template
        .messages
        .get(index)
        .is_some_and(|t| Arc::ptr_eq(&t.content, &prompt.messages[index].content))
}

/// The bytes of text `prompt` has of its own, beside `template`'s.
fn own_text(prompt: &RenderedPrompt, template: Option<&RenderedPrompt>) -> usize {
    (0..prompt.messages.len())
        .filter(|&index| !template.is_some_and(|t| shared(prompt, t, index)))
        .map(|index| prompt.messages[index].content.len())
        .sum()
}

/// A packed prompt: per message, 0 (the template's text) or 1 and the text's length (u32 LE)
/// and bytes. Roles and everything else are the template's ([`spillable`]).
fn encode(prompt: &RenderedPrompt, template: &RenderedPrompt, out: &mut Vec<u8>) {
    for (index, message) in prompt.messages.iter().enumerate() {
        if shared(prompt, template, index) {
            out.push(0);
        } else {
            out.push(1);
            // `spillable` bounds the whole record's text by u32.
            out.extend_from_slice(&(message.content.len() as u32).to_le_bytes());
            out.extend_from_slice(message.content.as_bytes());
        }
    }
}

fn decode(mut record: &[u8], template: &RenderedPrompt) -> Option<RenderedPrompt> {
    let mut messages = Vec::with_capacity(template.messages.len());
    for message in &template.messages {
        let (&flag, rest) = record.split_first()?;
        record = rest;
        let content = match flag {
            0 => Arc::clone(&message.content),
            1 => {
                let (len, rest) = record.split_first_chunk::<4>()?;
                let len = u32::from_le_bytes(*len) as usize;
                let text = rest.get(..len)?;
                record = &rest[len..];
                Arc::new(String::from_utf8(text.to_vec()).ok()?)
            }
            _ => return None,
        };
        messages.push(Message {
            role: message.role.clone(),
            content,
        });
    }
    record.is_empty().then(|| RenderedPrompt {
        messages,
        response_schema: template.response_schema.clone(),
        tools: template.tools.clone(),
        tool_choice: template.tool_choice.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(system: &Arc<String>, user: &str) -> RenderedPrompt {
        RenderedPrompt {
            messages: vec![
                Message {
                    role: "system".into(),
                    content: Arc::clone(system),
                },
                Message {
                    role: "user".into(),
                    content: Arc::new(user.to_string()),
                },
            ],
            response_schema: None,
            tools: Vec::new(),
            tool_choice: None,
        }
    }

    #[test]
    fn prompts_past_the_budget_come_back_from_the_file_as_they_went_in() {
        let system = Arc::new("You triage findings.".to_string());
        // Longer than a read block together, and one longer than a block alone.
        let mut users: Vec<String> = (0..50).map(|i| format!("case {i}: {}", "é".repeat(i * 700))).collect();
        users[40] = "x".repeat(READ_BLOCK * 2 + 3);
        let mut builder = PromptStoreBuilder::new(&HeldBudget::new(2000));
        for user in &users {
            builder.push(prompt(&system, user)).unwrap();
        }
        let store = builder.finish().unwrap();
        assert!(
            store.packed.as_ref().unwrap().file.is_some(),
            "some prompts are in the file"
        );
        assert_eq!(store.len(), 50);
        // In order, as a run asks, then out of order and twice each: the last prompt is reused,
        // others come from the block read or a new one.
        let order = (0..50).chain([49, 0, 7, 7, 30, 2, 49, 1, 40, 39, 41, 40]);
        for index in order {
            let got = store.get(index).unwrap();
            assert_eq!(*got, prompt(&system, &users[index]), "case {index}");
            // The constant system prompt is the template's text, not a copy.
            assert!(Arc::ptr_eq(&got.messages[0].content, &system));
        }
        assert!(matches!(store.entries[0], Entry::Whole(_)));
        assert!(matches!(store.entries[1], Entry::Held { .. }), "{:?}", store.entries[1]);
        assert!(matches!(store.entries[49], Entry::Spilled { .. }));
        // A shard's subset shares the file.
        let subset = store.subset(&[48, 3]);
        assert_eq!(*subset.get(0).unwrap(), prompt(&system, &users[48]));
        assert_eq!(*subset.get(1).unwrap(), prompt(&system, &users[3]));
        assert!(store.get(50).is_err());
    }

    #[test]
    fn within_the_budget_a_prompt_is_packed_and_unlike_the_template_it_is_whole() {
        let system = Arc::new("s".to_string());
        let mut builder = PromptStoreBuilder::new(&HeldBudget::new(1 << 20));
        for i in 0..10 {
            builder.push(prompt(&system, &format!("u{i}"))).unwrap();
        }
        let store = builder.finish().unwrap();
        let packed = store.packed.as_ref().unwrap();
        assert!(packed.file.is_none(), "nothing is in a file");
        // Each after the first: a flag for the shared system prompt, then the user text's
        // flag, length and 2 bytes.
        assert_eq!(packed.held.len(), 9 * (1 + 1 + 4 + 2));
        assert!(store.entries[1..].iter().all(|e| matches!(e, Entry::Held { .. })));
        assert_eq!(store.get(9).unwrap().messages[1].content.as_str(), "u9");
        assert_eq!(std::mem::size_of::<Entry>(), 16, "16 bytes a case");

        // The buffer of a store that takes its whole budget grows to the budget, not past it
        // (it would double from 1,024 to 2,048 bytes here).
        let mut builder = PromptStoreBuilder::new(&HeldBudget::new(1100));
        for i in 0..200 {
            builder.push(prompt(&system, &format!("u{i:03}"))).unwrap();
        }
        // All but the template's text (charged to the budget) and the last record's 10 bytes.
        assert!(builder.held.len() > 1070, "{}", builder.held.len());
        assert!(builder.held.capacity() <= 1100, "{}", builder.held.capacity());

        // A store of one prompt has nothing packed.
        let mut builder = PromptStoreBuilder::new(&HeldBudget::new(1 << 20));
        builder.push(prompt(&system, "only")).unwrap();
        let store = builder.finish().unwrap();
        assert!(store.packed.is_none());
        assert_eq!(store.get(0).unwrap().messages[1].content.as_str(), "only");

        // A prompt with a message more than the template's cannot be written as text alone.
        let mut builder = PromptStoreBuilder::new(&HeldBudget::new(0));
        builder.push(prompt(&system, "first")).unwrap();
        let mut longer = prompt(&system, "second");
        longer.messages.push(Message {
            role: "user".into(),
            content: Arc::new("more".into()),
        });
        builder.push(longer.clone()).unwrap();
        builder.push(prompt(&system, "third")).unwrap();
        let store = builder.finish().unwrap();
        assert!(matches!(store.entries[1], Entry::Whole(_)));
        assert!(matches!(store.entries[2], Entry::Spilled { .. }));
        assert_eq!(*store.get(1).unwrap(), longer);
        assert_eq!(*store.get(2).unwrap(), prompt(&system, "third"));
    }

    #[test]
    fn the_stores_of_a_run_share_one_budget() {
        let system = Arc::new("s".to_string());
        let fill = |budget: &HeldBudget, name: &str| {
            let mut builder = PromptStoreBuilder::new(budget);
            for i in 0..4 {
                builder.push(prompt(&system, &format!("{name} {i:03}"))).unwrap();
            }
            builder.finish().unwrap()
        };
        // 10 bytes for the first prompt (both messages), a 15-byte record for each after it
        // (its own 9 bytes of text, 6 of flags and length).
        let budget = HeldBudget::new(60);
        let first = fill(&budget, "first");
        assert!(first.packed.unwrap().file.is_none(), "55 bytes fit in 60");
        let second = fill(&budget, "other");
        assert!(matches!(second.entries[0], Entry::Whole(_)), "a first prompt is whole");
        for index in 1..4 {
            assert!(matches!(second.entries[index], Entry::Spilled { .. }), "{index}");
            assert_eq!(
                *second.get(index).unwrap(),
                prompt(&system, &format!("other {index:03}"))
            );
        }
        // Alone, the second store's prompts would all have been held.
        assert!(fill(&HeldBudget::new(60), "other").packed.unwrap().file.is_none());
    }

    #[test]
    fn a_short_file_is_an_error_not_a_wrong_prompt() {
        let system = Arc::new("s".to_string());
        let mut builder = PromptStoreBuilder::new(&HeldBudget::new(0));
        for i in 0..3 {
            builder.push(prompt(&system, &format!("u{i}"))).unwrap();
        }
        let store = builder.finish().unwrap();
        store
            .packed
            .as_ref()
            .unwrap()
            .file
            .as_ref()
            .unwrap()
            .set_len(3)
            .unwrap();
        assert!(store.get(1).is_err());
        assert!(store.get(2).is_err());
        assert_eq!(store.get(0).unwrap().messages[1].content.as_str(), "u0");
    }

    #[test]
    fn a_damaged_record_is_an_error_not_a_wrong_prompt() {
        let system = Arc::new("s".to_string());
        let template = prompt(&system, "t");
        let mut record = Vec::new();
        encode(&prompt(&Arc::new("other".into()), "user text"), &template, &mut record);
        assert_eq!(
            decode(&record, &template).unwrap().messages[1].content.as_str(),
            "user text"
        );
        for cut in 0..record.len() {
            assert!(decode(&record[..cut], &template).is_none(), "cut at {cut}");
        }
        let mut longer = record.clone();
        longer.push(0);
        assert!(decode(&longer, &template).is_none());
        let mut flag = record;
        flag[0] = 2;
        assert!(decode(&flag, &template).is_none());
    }
}
