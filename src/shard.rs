//! Shards: a stable partition of a suite's cases across CI runners, and what a shard's run
//! record carries so that `promptgate merge` can finish the command as one unsharded run would.
//!
//! A case's shard depends on its id alone (SHA-256 of the id, modulo the shard count): the
//! same case is always in the same shard whatever else the suite holds, shards are disjoint,
//! and together they are the suite. A robustness family's variants of a case share its id, so
//! they travel with it, next to the answers they are compared with.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Prices;
use crate::stats::IntervalMethod;

/// The most shards a run can be split into (CI matrices stop far below).
pub const MAX_SHARDS: u32 = 1000;

/// Shard `index` of `count`, counted from 1 as CI matrices and humans count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    /// Shard `index` of `count`: `1 ≤ index ≤ count ≤` [`MAX_SHARDS`].
    pub fn new(index: u32, count: u32) -> Result<Shard, String> {
        if count == 0 || count > MAX_SHARDS {
            return Err(format!("{count} shards: the count must be between 1 and {MAX_SHARDS}"));
        }
        if index == 0 || index > count {
            return Err(format!(
                "shard {index} of {count}: the index must be between 1 and {count}"
            ));
        }
        Ok(Shard { index, count })
    }

    /// `2/3` is shard 2 of 3.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let (index, count) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not a shard such as 2/3 (index/count)"))?;
        let number = |part: &str| {
            part.trim()
                .parse::<u32>()
                .map_err(|_| format!("`{text}` is not a shard such as 2/3 (index/count)"))
        };
        Shard::new(number(index)?, number(count)?)
    }

    pub fn index(self) -> u32 {
        self.index
    }

    pub fn count(self) -> u32 {
        self.count
    }

    /// Whether the case with this id is in this shard.
    pub fn contains(self, case_id: &str) -> bool {
        of(case_id, self.count) == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard (from 1) of the case with this id among `count`.
pub fn of(case_id: &str, count: u32) -> u32 {
    let digest = Sha256::digest(case_id.as_bytes());
    let number = u64::from_le_bytes(digest[..8].try_into().expect("a SHA-256 digest has 8 bytes"));
    (number % u64::from(count.max(1))) as u32 + 1
}

/// What a shard's run record carries beyond its results: which shard it is, what every shard
/// of the run must agree on, and how the unsharded command would have finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardRecord {
    pub index: u32,
    pub count: u32,
    /// The command the shard is part of: `run`, `gate`, `compare` or `baseline update`.
    pub command: String,
    /// SHA-256 over every selected suite × model × prompt, its samples per case, and each
    /// case's id and rendered request: shards of one run agree on it, so a shard run from
    /// another commit or with other flags is refused by `merge`.
    pub selection_sha256: String,
    /// How figures become a verdict (see `aggregate::Settings`).
    pub confidence_level: f64,
    pub interval: IntervalMethod,
    pub max_error_rate: f64,
    /// Configured prices per model name, so that the merged cost is computed once from the
    /// merged tokens, as an unsharded run computes it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prices: BTreeMap<String, Prices>,
    /// `gate`: how to judge the merged run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateSettings>,
    /// `compare`: the rows asked for, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<CompareSettings>,
    /// `baseline update`: where the merged baselines go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_dir: Option<PathBuf>,
}

/// The gate's flags, as the shards were given them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateSettings {
    pub baseline_dir: PathBuf,
    pub alpha: f64,
    pub margin: f64,
    pub exact: bool,
    pub fail_on_broken: bool,
}

/// `compare`'s `--model` and `--prompt` lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareSettings {
    pub models: Vec<String>,
    pub prompts: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_refuse_what_is_not_one() {
        assert_eq!(Shard::parse("2/3"), Ok(Shard { index: 2, count: 3 }));
        assert_eq!(Shard::parse(" 1 / 1 ").map(|s| s.to_string()), Ok("1/1".to_string()));
        for bad in ["0/3", "4/3", "1/0", "3", "a/b", "1/1001", "-1/3", "1/3/5", ""] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        assert!(Shard::parse("1000/1000").is_ok());
    }

    #[test]
    fn every_case_is_in_exactly_one_shard_and_stays_there() {
        let ids: Vec<String> = (0..500).map(|i| format!("case-{i:03}")).collect();
        for count in [1, 2, 3, 7, 64] {
            let shards: Vec<Shard> = (1..=count).map(|i| Shard::new(i, count).unwrap()).collect();
            for id in &ids {
                let holders = shards.iter().filter(|s| s.contains(id)).count();
                assert_eq!(holders, 1, "{id} in {count} shards");
            }
            // 500 cases over few shards: none is empty and none holds more than twice its share.
            if count <= 7 {
                for shard in &shards {
                    let size = ids.iter().filter(|id| shard.contains(id)).count();
                    assert!(size > 0 && size < 2 * 500 / count as usize + 1, "{shard}: {size}");
                }
            }
        }
        // Stable across versions and machines; computed independently with Python:
        // int.from_bytes(hashlib.sha256(id.encode()).digest()[:8], "little") % n + 1.
        assert_eq!(of("case-000", 7), 3);
        assert_eq!(of("case-001", 3), 3);
        assert_eq!(of("c01", 2), 1);
    }
}
