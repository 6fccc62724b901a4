//! The rendered prompts of a suite's cases, from rendering until their calls are made.
//!
//! Every case is rendered before the first call (a broken template fails the run before
//! anything is paid for), but a run needs a case's prompt again only when its samples are
//! sent or looked up. A rendered prompt carries the case's own data (a whole finding is often
//! several KB), so holding every case's for the whole run made memory grow with the suite:
//! 50,000 triage-sized cases held about 200 MB of prompts. So the stores of a run (one per
//! suite and prompt version, one per robustness family) share one [`HeldBudget`] of
//! [`HELD_BYTES`] of per-case text held in memory, which is every prompt of a usual run, and
//! write the rest to unnamed temporary files (in `TMPDIR`, removed when the run ends),
//! keeping 16 bytes a case. Text every case shares (a constant system prompt, the response
//! schema, the tools) is kept once.
//!
//! A spilled prompt is read back when its samples are asked for. The engine asks for the k
//! samples of a case one after another, so the last prompt read is kept.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::Error;
use crate::fs::FsError;
use crate::prompt::{Message, RenderedPrompt};

/// Per-case text the stores of a run hold in memory, together, before they write prompts to
/// their files.
pub const HELD_BYTES: usize = 16 << 20;

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

    /// Take `bytes`, or all that is left: for text held because it cannot be written out.
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
    entries: Entries,
    spill: Option<Arc<Spill>>,
}

/// Each case's prompt: while nothing is spilled (a usual suite), only pointers, 8 bytes a case.
#[derive(Debug, Clone)]
enum Entries {
    Held(Vec<Arc<RenderedPrompt>>),
    Mixed(Vec<Entry>),
}

impl Default for Entries {
    fn default() -> Entries {
        Entries::Held(Vec::new())
    }
}

impl Entries {
    fn len(&self) -> usize {
        match self {
            Entries::Held(held) => held.len(),
            Entries::Mixed(entries) => entries.len(),
        }
    }

    fn get(&self, index: usize) -> Option<Entry> {
        match self {
            Entries::Held(held) => held.get(index).map(|prompt| Entry::Held(Arc::clone(prompt))),
            Entries::Mixed(entries) => entries.get(index).cloned(),
        }
    }

    fn push(&mut self, entry: Entry) {
        match (&mut *self, entry) {
            (Entries::Held(held), Entry::Held(prompt)) => held.push(prompt),
            (Entries::Mixed(entries), entry) => entries.push(entry),
            (Entries::Held(held), entry) => {
                let mut entries: Vec<Entry> = std::mem::take(held).into_iter().map(Entry::Held).collect();
                entries.push(entry);
                *self = Entries::Mixed(entries);
            }
        }
    }

    fn subset(&self, keep: &[usize]) -> Entries {
        match self {
            Entries::Held(held) => Entries::Held(keep.iter().filter_map(|&i| held.get(i).cloned()).collect()),
            Entries::Mixed(entries) => Entries::Mixed(keep.iter().filter_map(|&i| entries.get(i).cloned()).collect()),
        }
    }
}

#[derive(Debug, Clone)]
enum Entry {
    Held(Arc<RenderedPrompt>),
    /// Where its per-case text is in the spill file.
    Spilled {
        offset: u64,
        len: u32,
    },
}

/// The file of spilled prompts, and what they share.
#[derive(Debug)]
struct Spill {
    file: File,
    /// The prompt the spilled ones were compared with: its response schema, tools and tool
    /// choice, and the text of each message that every case shares.
    template: Arc<RenderedPrompt>,
    /// The last prompt read back, by offset.
    last: Mutex<Option<(u64, Arc<RenderedPrompt>)>>,
}

/// A [`PromptStore`] being filled, case by case.
pub struct PromptStoreBuilder {
    entries: Entries,
    budget: HeldBudget,
    writer: Option<Writer>,
}

/// The spill file while prompts are written to it.
struct Writer {
    file: BufWriter<File>,
    /// The first prompt held, which the spilled ones share all but their own text with.
    template: Arc<RenderedPrompt>,
    /// Where the next record goes.
    offset: u64,
}

fn spill_error(action: &'static str, source: std::io::Error) -> Error {
    FsError::Write {
        action,
        path: std::env::temp_dir(),
        source,
    }
    .into()
}

impl PromptStoreBuilder {
    /// A store that holds per-case text in memory while `budget`, shared with the run's other
    /// stores, lasts.
    pub fn new(budget: &HeldBudget) -> PromptStoreBuilder {
        PromptStoreBuilder {
            entries: Entries::default(),
            budget: budget.clone(),
            writer: None,
        }
    }

    /// Prompts added so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.len() == 0
    }

    /// Add the next case's prompt.
    pub fn push(&mut self, prompt: RenderedPrompt) -> Result<(), Error> {
        let template = match (&self.writer, self.entries.get(0)) {
            (Some(writer), _) => Some(Arc::clone(&writer.template)),
            (None, Some(Entry::Held(first))) => Some(first),
            (None, _) => None,
        };
        let own = own_text(&prompt, template.as_deref());
        let spill_to = match template.filter(|t| spillable(&prompt, t) && u32::try_from(own).is_ok()) {
            Some(template) if !self.budget.take(own) => Some(template),
            Some(_) => None,
            // Held whatever is left: it cannot be written as its text alone.
            None => {
                self.budget.charge(own);
                None
            }
        };
        let Some(template) = spill_to else {
            self.entries.push(Entry::Held(Arc::new(prompt)));
            return Ok(());
        };
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => {
                let file = tempfile::tempfile().map_err(|e| spill_error("create a file for rendered prompts in", e))?;
                self.writer.insert(Writer {
                    file: BufWriter::new(file),
                    template,
                    offset: 0,
                })
            }
        };
        let mut record = Vec::with_capacity(own + 16);
        encode(&prompt, &writer.template, &mut record);
        writer
            .file
            .write_all(&record)
            .map_err(|e| spill_error("write rendered prompts to a file in", e))?;
        let len = u32::try_from(record.len()).map_err(|_| Error::internal("a spilled prompt over 4 GiB"))?;
        self.entries.push(Entry::Spilled {
            offset: writer.offset,
            len,
        });
        writer.offset += u64::from(len);
        Ok(())
    }

    /// The store, ready to be read.
    pub fn finish(self) -> Result<PromptStore, Error> {
        let spill = match self.writer {
            Some(Writer { file, template, .. }) => {
                let file = file
                    .into_inner()
                    .map_err(|e| spill_error("write rendered prompts to a file in", e.into_error()))?;
                Some(Arc::new(Spill {
                    file,
                    template,
                    last: Mutex::new(None),
                }))
            }
            None => None,
        };
        Ok(PromptStore {
            entries: self.entries,
            spill,
        })
    }
}

impl PromptStore {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.len() == 0
    }

    /// The prompt of case `index`.
    pub fn get(&self, index: usize) -> Result<Arc<RenderedPrompt>, Error> {
        let entry = self
            .entries
            .get(index)
            .ok_or_else(|| Error::internal(format!("no rendered prompt for case {index}")))?;
        let (offset, len) = match entry {
            Entry::Held(prompt) => return Ok(prompt),
            Entry::Spilled { offset, len } => (offset, len),
        };
        let spill = self
            .spill
            .as_ref()
            .ok_or_else(|| Error::internal("a spilled prompt without its file"))?;
        let mut last = spill
            .last
            .lock()
            .map_err(|_| Error::internal("the prompt store's lock"))?;
        if let Some((at, prompt)) = last.as_ref() {
            if *at == offset {
                return Ok(Arc::clone(prompt));
            }
        }
        let mut record = vec![0; len as usize];
        // Reads take turns under `last`'s lock, so a seek and a read cannot interleave.
        read_at(&spill.file, &mut record, offset)
            .map_err(|e| spill_error("read rendered prompts back from a file in", e))?;
        let prompt = Arc::new(decode(&record, &spill.template).ok_or_else(|| {
            spill_error(
                "read rendered prompts back from a file in",
                std::io::Error::new(std::io::ErrorKind::InvalidData, "a record is damaged"),
            )
        })?);
        *last = Some((offset, Arc::clone(&prompt)));
        Ok(prompt)
    }

    /// The prompts of the cases at `keep`, in that order (a shard's), sharing this store's file.
    pub fn subset(&self, keep: &[usize]) -> PromptStore {
        PromptStore {
            entries: self.entries.subset(keep),
            spill: self.spill.clone(),
        }
    }
}

#[cfg(unix)]
fn read_at(file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buffer, offset)
}

#[cfg(not(unix))]
fn read_at(mut file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buffer)
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

/// A spilled prompt: per message, 0 (the template's text) or 1 and the text's length (u32 LE)
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
        let users: Vec<String> = (0..50).map(|i| format!("case {i}: {}", "é".repeat(i * 7))).collect();
        let mut builder = PromptStoreBuilder::new(&HeldBudget::new(100));
        for user in &users {
            builder.push(prompt(&system, user)).unwrap();
        }
        let store = builder.finish().unwrap();
        assert!(store.spill.is_some(), "some prompts are in the file");
        assert_eq!(store.len(), 50);
        // Read out of order, twice each: the last-read prompt is reused, others read again.
        for index in [49, 0, 7, 7, 30, 2, 49, 1] {
            let got = store.get(index).unwrap();
            assert_eq!(*got, prompt(&system, &users[index]), "case {index}");
            // The constant system prompt is the template's text, not a copy.
            assert!(Arc::ptr_eq(&got.messages[0].content, &system));
        }
        assert!(matches!(store.entries.get(0), Some(Entry::Held(_))));
        assert!(matches!(store.entries.get(49), Some(Entry::Spilled { .. })));
        // A shard's subset shares the file.
        let subset = store.subset(&[48, 3]);
        assert_eq!(*subset.get(0).unwrap(), prompt(&system, &users[48]));
        assert_eq!(*subset.get(1).unwrap(), prompt(&system, &users[3]));
        assert!(store.get(50).is_err());
    }

    #[test]
    fn within_the_budget_or_unlike_the_template_a_prompt_is_held() {
        let system = Arc::new("s".to_string());
        let mut builder = PromptStoreBuilder::new(&HeldBudget::new(1 << 20));
        for i in 0..10 {
            builder.push(prompt(&system, &format!("u{i}"))).unwrap();
        }
        let store = builder.finish().unwrap();
        assert!(store.spill.is_none(), "nothing is in a file");
        assert!(
            matches!(store.entries, Entries::Held(_)),
            "8 bytes a case while nothing spills"
        );
        assert_eq!(store.get(9).unwrap().messages[1].content.as_str(), "u9");

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
        assert!(matches!(store.entries.get(1), Some(Entry::Held(_))));
        assert!(matches!(store.entries.get(2), Some(Entry::Spilled { .. })));
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
        // 10 bytes for the first prompt (both messages), 9 for each after it (its own text).
        let budget = HeldBudget::new(40);
        let first = fill(&budget, "first");
        assert!(first.spill.is_none(), "37 bytes fit in 40");
        let second = fill(&budget, "other");
        assert!(
            matches!(second.entries.get(0), Some(Entry::Held(_))),
            "a first prompt is held"
        );
        for index in 1..4 {
            assert!(
                matches!(second.entries.get(index), Some(Entry::Spilled { .. })),
                "{index}"
            );
            assert_eq!(
                *second.get(index).unwrap(),
                prompt(&system, &format!("other {index:03}"))
            );
        }
        // Alone, the second store's prompts would all have been held.
        assert!(fill(&HeldBudget::new(40), "other").spill.is_none());
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
