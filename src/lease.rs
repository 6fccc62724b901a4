//! Leases on cache keys, so that runs sharing one cache pay for each answer once.
//!
//! Before a run calls a provider for a missing answer it takes the key's lease, a row in the
//! cache's `leases` table. A second run that needs the same answer meanwhile finds the lease
//! held and waits for the answer to appear instead of paying for it too (three runs of one suite
//! started together used to pay three times). A lease ends when its answer is committed (in the
//! same transaction), when its call fails (so another run may try), when it expires, or when
//! its holder is known to be gone: a process of this machine that no longer exists. So a killed
//! run delays the others by at most one lease's time, and on one machine not at all.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, OptionalExtension};

use crate::cache::{Cache, CacheError};

/// Who holds a lease: this machine's name, this process and a per-run number, so that two runs
/// in one process (tests, a library user) are told apart too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    id: String,
}

impl Holder {
    /// A holder for this run.
    pub fn new() -> Holder {
        use std::sync::atomic::{AtomicU64, Ordering};
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        Holder {
            id: format!("{}/{}/{run}", machine(), std::process::id()),
        }
    }

    /// The holder's id as stored.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Default for Holder {
    fn default() -> Holder {
        Holder::new()
    }
}

/// This machine's name, where the system tells it (Linux, with `/proc` to look up processes);
/// empty elsewhere, which turns off the "holder is gone" check and leaves expiry. Read once: it
/// is asked at every look at a held lease.
fn machine() -> &'static str {
    static MACHINE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        if !Path::new("/proc/self").exists() {
            return String::new();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().replace('/', "_"))
            .unwrap_or_default()
    });
    &MACHINE
}

/// Whether the holder `id` is a process of this machine that has ended. Unknown (another
/// machine, a system without `/proc`) is not gone: the lease then ends at its expiry.
fn gone(id: &str) -> bool {
    let mut parts = id.split('/');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    if host.is_empty() || host != machine() {
        return false;
    }
    match pid.parse::<u32>() {
        Ok(pid) => !Path::new(&format!("/proc/{pid}")).exists(),
        Err(_) => false,
    }
}

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The lease is ours: call the provider.
    Taken,
    /// The answer is in the cache already (another run committed it).
    Answered,
    /// Another live run holds the lease: wait and look again.
    Held,
}

/// How long a lease lasts without its holder committing: the longest one call can take with
/// every retry (`attempts` × `timeout` plus the waits between them), and a minute to spare.
pub fn duration(timeout: Duration, attempts: u32, retry_max: Duration) -> Duration {
    let attempts = attempts.max(1);
    timeout
        .saturating_mul(attempts)
        .saturating_add(retry_max.saturating_mul(attempts - 1))
        .saturating_add(Duration::from_secs(60))
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl Cache {
    /// Take the lease on `key` for `holder` for `lasting`, unless the answer is already stored
    /// or another live holder has it.
    pub fn claim(&self, key: &str, holder: &Holder, lasting: Duration) -> Result<Claim, CacheError> {
        let fail = self.failed("take a lease");
        let mut connection = self.connection();
        // IMMEDIATE: the look and the take are one step for every process sharing the file.
        let transaction = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&fail)?;
        let answered = transaction
            .prepare_cached("SELECT 1 FROM responses WHERE key = ?1")
            .and_then(|mut s| s.exists([key]))
            .map_err(&fail)?;
        if answered {
            return Ok(Claim::Answered);
        }
        let now = now_ms();
        let current: Option<(String, i64)> = transaction
            .prepare_cached("SELECT holder, expires_at FROM leases WHERE key = ?1")
            .and_then(|mut s| s.query_row([key], |row| Ok((row.get(0)?, row.get(1)?))).optional())
            .map_err(&fail)?;
        // Held by this run too: two requests of one run can be the same (a judge call for two
        // identical answers), and the second waits for the first's answer like any other run.
        if let Some((other, expires_at)) = &current {
            if *expires_at > now && !gone(other) {
                return Ok(Claim::Held);
            }
        }
        let lasting_ms = i64::try_from(lasting.as_millis()).unwrap_or(i64::MAX);
        transaction
            .prepare_cached(
                "INSERT INTO leases (key, holder, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(key) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at",
            )
            .and_then(|mut s| s.execute(params![key, holder.id(), now.saturating_add(lasting_ms)]))
            .map_err(&fail)?;
        transaction.commit().map_err(&fail)?;
        Ok(Claim::Taken)
    }

    /// End `holder`'s lease on `key` (its call failed: another run may try).
    pub fn release(&self, key: &str, holder: &Holder) -> Result<(), CacheError> {
        self.connection()
            .prepare_cached("DELETE FROM leases WHERE key = ?1 AND holder = ?2")
            .and_then(|mut s| s.execute(params![key, holder.id()]))
            .map(drop)
            .map_err(self.failed("end a lease"))
    }

    /// End every lease `holder` still has (a run that is done, or stopped early).
    pub fn release_all(&self, holder: &Holder) -> Result<(), CacheError> {
        self.connection()
            .prepare_cached("DELETE FROM leases WHERE holder = ?1")
            .and_then(|mut s| s.execute([holder.id()]))
            .map(drop)
            .map_err(self.failed("end leases"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> (tempfile::TempDir, Cache) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("cache.sqlite")).unwrap();
        (dir, cache)
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn one_holder_at_a_time_until_released() {
        let (_dir, cache) = cache();
        let (a, b) = (Holder::new(), Holder::new());
        assert_ne!(a, b);
        assert_eq!(cache.claim("k", &a, MINUTE).unwrap(), Claim::Taken);
        // Held for everyone else, and for a second request of the same run.
        assert_eq!(cache.claim("k", &a, MINUTE).unwrap(), Claim::Held);
        assert_eq!(cache.claim("k", &b, MINUTE).unwrap(), Claim::Held);
        assert_eq!(cache.claim("other", &b, MINUTE).unwrap(), Claim::Taken);
        cache.release("k", &a).unwrap();
        assert_eq!(cache.claim("k", &b, MINUTE).unwrap(), Claim::Taken);
        cache.release_all(&b).unwrap();
        assert_eq!(cache.claim("other", &a, MINUTE).unwrap(), Claim::Taken);
    }

    #[test]
    fn an_expired_lease_or_a_gone_holder_is_taken_over() {
        let (_dir, cache) = cache();
        let (a, b) = (Holder::new(), Holder::new());
        assert_eq!(cache.claim("k", &a, Duration::ZERO).unwrap(), Claim::Taken);
        assert_eq!(cache.claim("k", &b, MINUTE).unwrap(), Claim::Taken);
        // A process of this machine that has ended: its pid is past the kernel's largest.
        let dead = Holder {
            id: format!("{}/4194305/0", machine()),
        };
        assert!(gone(dead.id()) || machine().is_empty());
        assert_eq!(cache.claim("j", &dead, MINUTE).unwrap(), Claim::Taken);
        let expected = if machine().is_empty() {
            Claim::Held
        } else {
            Claim::Taken
        };
        assert_eq!(cache.claim("j", &a, MINUTE).unwrap(), expected);
        // A holder on another machine is trusted until its lease expires.
        let elsewhere = Holder {
            id: "another-machine/1/0".into(),
        };
        assert!(!gone(elsewhere.id()));
        assert_eq!(cache.claim("i", &elsewhere, MINUTE).unwrap(), Claim::Taken);
        assert_eq!(cache.claim("i", &a, MINUTE).unwrap(), Claim::Held);
    }

    #[test]
    fn a_committed_answer_ends_the_lease_and_answers_the_claim() {
        use crate::provider::Response;
        let (_dir, cache) = cache();
        let (a, b) = (Holder::new(), Holder::new());
        assert_eq!(cache.claim("k", &a, MINUTE).unwrap(), Claim::Taken);
        let response = Response::from_text("notify");
        cache.put_many(&[crate::cache::Entry::test("k", response)]).unwrap();
        assert_eq!(cache.claim("k", &b, MINUTE).unwrap(), Claim::Answered);
        let leases: i64 = cache
            .connection()
            .query_row("SELECT count(*) FROM leases", [], |row| row.get(0))
            .unwrap();
        assert_eq!(leases, 0, "the commit ended the lease");
    }

    #[test]
    fn a_lease_lasts_as_long_as_a_call_with_every_retry() {
        let lasting = duration(Duration::from_secs(60), 4, Duration::from_secs(20));
        assert_eq!(lasting, Duration::from_secs(60 * 4 + 20 * 3 + 60));
        assert_eq!(
            duration(Duration::MAX, u32::MAX, Duration::MAX),
            Duration::MAX,
            "saturates"
        );
    }
}
