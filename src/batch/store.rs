//! The batch tables of the cache: each job and each of its lines, written before anything is
//! paid and advanced one committed step at a time, so that a run killed at any point resumes
//! from the last step it committed.

use rusqlite::params;

use crate::cache::{Cache, CacheError};

/// How far a job got. Each state is committed before the step that leaves it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Lines recorded; no file uploaded yet (an upload that was not recorded is redone: a file
    /// costs nothing).
    Prepared,
    /// The input file is uploaded.
    Uploaded,
    /// The batch is being created: after a kill here, the server is asked for a batch marked
    /// with the job's token before another is created.
    Creating,
    /// The batch exists and is paid for: it is polled and collected, never created again.
    Submitted,
    /// Its answers are in the cache; its failed lines are for a later round.
    Collected,
    /// Given up before anything was paid (the server has no Batch API): its lines go online.
    Abandoned,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Prepared => "prepared",
            State::Uploaded => "uploaded",
            State::Creating => "creating",
            State::Submitted => "submitted",
            State::Collected => "collected",
            State::Abandoned => "abandoned",
        }
    }

    fn parse(text: &str) -> Option<State> {
        [
            State::Prepared,
            State::Uploaded,
            State::Creating,
            State::Submitted,
            State::Collected,
            State::Abandoned,
        ]
        .into_iter()
        .find(|s| s.name() == text)
    }
}

/// A job: one batch of one provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: i64,
    /// Random, in the batch's metadata: how a batch created by a killed run is found again.
    pub token: String,
    pub provider: String,
    pub round: u32,
    pub state: State,
    pub input_file_id: Option<String>,
    pub batch_id: Option<String>,
    /// How many lines it holds.
    pub lines: u64,
}

/// A line of a job: the call it is, under its cache key (the line's `custom_id`).
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub key: String,
    pub provider_kind: String,
    pub model: String,
    pub sample_index: u32,
    /// The request body (empty once the job is collected).
    pub body: String,
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// Record a new job and its lines, in one transaction.
pub fn create(cache: &Cache, provider: &str, round: u32, lines: &[Line]) -> Result<Job, CacheError> {
    let token = format!("pg-{}", hex::encode(rand::random::<[u8; 12]>()));
    let (id, added) = cache.write("record a batch", |tx| {
        let time = now();
        tx.execute(
            "INSERT INTO batch_jobs (token, provider, round, state, created_at, updated_at)
             VALUES (?1, ?2, ?3, 'prepared', ?4, ?4)",
            params![token, provider, round, time],
        )?;
        let id = tx.last_insert_rowid();
        Ok((id, insert_lines(tx, id, lines)?))
    })?;
    Ok(Job {
        id,
        token,
        provider: provider.to_string(),
        round,
        state: State::Prepared,
        input_file_id: None,
        batch_id: None,
        lines: added,
    })
}

/// Record more lines of a job that is still prepared (nothing of it is sent yet), in one
/// transaction: a large job is written a piece at a time, never held whole.
pub fn add_lines(cache: &Cache, job: &mut Job, lines: &[Line]) -> Result<(), CacheError> {
    let added = cache.write("record a batch", |tx| insert_lines(tx, job.id, lines))?;
    job.lines += added;
    Ok(())
}

/// Insert `lines` into job `id`; how many were new.
fn insert_lines(tx: &rusqlite::Transaction, id: i64, lines: &[Line]) -> rusqlite::Result<u64> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO batch_lines (job, key, provider, model, sample_index, body, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending') ON CONFLICT DO NOTHING",
    )?;
    let mut added = 0;
    for line in lines {
        added += insert.execute(params![
            id,
            line.key,
            line.provider_kind,
            line.model,
            line.sample_index,
            line.body
        ])? as u64;
    }
    Ok(added)
}

/// Move `job` to `state`, with the file or batch id that step learned.
pub fn advance(cache: &Cache, job: &mut Job, state: State, status: Option<&str>) -> Result<(), CacheError> {
    cache.write("record a batch's progress", |tx| {
        tx.execute(
            "UPDATE batch_jobs SET state = ?2, input_file_id = ?3, batch_id = ?4,
                 status = coalesce(?5, status), updated_at = ?6 WHERE id = ?1",
            params![job.id, state.name(), job.input_file_id, job.batch_id, status, now()],
        )?;
        if state == State::Collected || state == State::Abandoned {
            // The bodies were only needed to upload; the cache keeps the answers.
            tx.execute("UPDATE batch_lines SET body = '' WHERE job = ?1", [job.id])?;
        }
        Ok(())
    })?;
    job.state = state;
    Ok(())
}

/// Jobs not yet collected or abandoned, oldest first.
pub fn unfinished(cache: &Cache) -> Result<Vec<Job>, CacheError> {
    cache.read("read the batches", |connection| {
        let mut statement = connection.prepare(
            "SELECT id, token, provider, round, state, input_file_id, batch_id,
                 (SELECT count(*) FROM batch_lines WHERE job = batch_jobs.id) FROM batch_jobs
             WHERE state NOT IN ('collected', 'abandoned') ORDER BY id",
        )?;
        let rows = statement.query_map([], |row| {
            let state: String = row.get(4)?;
            Ok(Job {
                id: row.get(0)?,
                token: row.get(1)?,
                provider: row.get(2)?,
                round: row.get(3)?,
                // An unknown state (a newer promptgate's) is left alone as if collected.
                state: State::parse(&state).unwrap_or(State::Collected),
                input_file_id: row.get(5)?,
                batch_id: row.get(6)?,
                lines: row.get(7)?,
            })
        })?;
        rows.filter(|job| job.as_ref().map_or(true, |j| j.state != State::Collected))
            .collect()
    })
}

/// Each line of a job, in key order, to `each`; with its body only when `bodies` (a collected
/// job needs only what says how to read an answer, and the bodies are as large as the prompts).
pub fn each_line(cache: &Cache, job: &Job, bodies: bool, each: impl FnMut(Line)) -> Result<(), CacheError> {
    let body = if bodies { "body" } else { "''" };
    scan(cache, job, body, "", "", each)
}

/// Each line of a job with no answer in the cache yet, with its body, in key order: what an
/// upload sends (a resumed job's lines answered meanwhile are left out, nothing being paid yet).
pub fn each_unanswered(cache: &Cache, job: &Job, each: impl FnMut(Line)) -> Result<(), CacheError> {
    scan(
        cache,
        job,
        "body",
        " AND NOT EXISTS (SELECT 1 FROM responses WHERE responses.key = batch_lines.key)",
        "",
        each,
    )
}

/// The first line of a job in key order: what a whole job shares is read from one line, not
/// from every line and its body.
pub fn first_line(cache: &Cache, job: &Job) -> Result<Option<Line>, CacheError> {
    let mut first = None;
    scan(cache, job, "body", "", " LIMIT 1", |line| first = Some(line))?;
    Ok(first)
}

/// Rows of `batch_lines` of `job` in key order, one at a time: a job's lines are never all held
/// for this. `body`, `condition` and `limit` are SQL written in this file, never input.
fn scan(
    cache: &Cache,
    job: &Job,
    body: &str,
    condition: &str,
    limit: &str,
    mut each: impl FnMut(Line),
) -> Result<(), CacheError> {
    cache.read("read a batch's lines", |connection| {
        let mut statement = connection.prepare(&format!(
            "SELECT key, provider, model, sample_index, {body} FROM batch_lines WHERE job = ?1{condition} ORDER BY key{limit}"
        ))?;
        let mut rows = statement.query([job.id])?;
        while let Some(row) = rows.next()? {
            each(Line {
                key: row.get(0)?,
                provider_kind: row.get(1)?,
                model: row.get(2)?,
                sample_index: row.get(3)?,
                body: row.get(4)?,
            });
        }
        Ok(())
    })
}

/// Mark a job's lines answered or failed (with why).
pub fn settle(cache: &Cache, job: &Job, answered: &[String], failed: &[(String, String)]) -> Result<(), CacheError> {
    cache.write("record a batch's answers", |tx| {
        let mut answer = tx.prepare_cached("UPDATE batch_lines SET state = 'answered' WHERE job = ?1 AND key = ?2")?;
        for key in answered {
            answer.execute(params![job.id, key])?;
        }
        let mut fail =
            tx.prepare_cached("UPDATE batch_lines SET state = 'failed', error = ?3 WHERE job = ?1 AND key = ?2")?;
        for (key, message) in failed {
            fail.execute(params![job.id, key, message])?;
        }
        Ok(())
    })
}

/// The keys of lines of jobs that are not finished (they must not be sent again), read at once:
/// one query, not one per call. Empty but for jobs a run could not finish.
pub fn in_flight(cache: &Cache) -> Result<std::collections::HashSet<String>, CacheError> {
    cache.read("read the batches", |connection| {
        let mut statement = connection.prepare(
            "SELECT batch_lines.key FROM batch_lines JOIN batch_jobs ON batch_jobs.id = batch_lines.job
             WHERE batch_jobs.state NOT IN ('collected', 'abandoned')",
        )?;
        let keys = statement.query_map([], |row| row.get(0))?;
        keys.collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(key: &str) -> Line {
        Line {
            key: key.into(),
            provider_kind: "openai".into(),
            model: "m".into(),
            sample_index: 0,
            body: format!("{{\"for\":\"{key}\"}}"),
        }
    }

    #[test]
    fn a_job_written_in_pieces_holds_each_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("cache.db")).unwrap();
        let mut job = create(&cache, "p", 1, &[line("a"), line("b")]).unwrap();
        add_lines(&cache, &mut job, &[line("c"), line("b")]).unwrap();
        assert_eq!(job.lines, 3);
        let mut read = Vec::new();
        each_line(&cache, &job, true, |l| read.push((l.key, l.body))).unwrap();
        assert_eq!(
            read,
            [
                ("a", "{\"for\":\"a\"}"),
                ("b", "{\"for\":\"b\"}"),
                ("c", "{\"for\":\"c\"}")
            ]
            .map(|(k, b)| (k.to_string(), b.to_string()))
        );
        // Without bodies, and what a resumed run finds.
        let mut keys = Vec::new();
        each_line(&cache, &job, false, |l| keys.push((l.key, l.body))).unwrap();
        assert!(keys.iter().all(|(_, body)| body.is_empty()));
        assert_eq!(unfinished(&cache).unwrap()[0].lines, 3);
        assert_eq!(in_flight(&cache).unwrap().len(), 3);
        advance(&cache, &mut job, State::Collected, None).unwrap();
        assert!(in_flight(&cache).unwrap().is_empty());
        assert_eq!(first_line(&cache, &job).unwrap().map(|l| l.key).as_deref(), Some("a"));
    }
}
