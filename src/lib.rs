//! promptgate: regression tests for LLM prompts.
//!
//! Data flows one way: load (config, cases, prompts) → render → sample (cache or provider) →
//! grade → count (tally) → aggregate (stats) → compare (gate) → report → exit code. Each module
//! holds one of those concepts, and none imports one that comes after it (the README's
//! Architecture section draws the map).
//!
//! The library's API, for tools built on promptgate:
//! - [`run()`] samples a selection into a [`RunRecord`]; [`gate::judge`] compares one with its
//!   baselines, [`compare::compare`] sets models side by side, [`aggregate::merge`] rebuilds a
//!   result from the results of disjoint cases and [`merge::merge`] a whole run from the records
//!   of its shards ([`shard`]).
//! - [`command`] runs each command as the binary does, printing through a
//!   [`command::Console`]; [`cli::main`] is the binary.
//! - Extension points: [`provider::Api`] (a provider), [`grader`] (a grader),
//!   [`report::Exporter`] (a report format), [`sampling::SamplingPolicy`] (when to stop
//!   sampling).
//! - [`stats`], [`paired`], [`plan`] and [`simulation`] are the statistics, usable alone.
//! - A binary that renders templates from untrusted input should install
//!   [`memory::Counting`] as its global allocator, as promptgate's does.

pub mod aggregate;
pub mod answers;
pub mod baseline;
pub mod batch;
pub mod cache;
pub mod case;
pub mod case_filter;
pub mod case_list;
pub mod cli;
pub mod command;
pub mod compare;
pub mod config;
pub mod digest;
pub mod drift;
pub mod dry_run;
pub mod env;
pub mod error;
pub(crate) mod excerpt;
pub mod exit_code;
pub mod flakiness;
pub(crate) mod fs;
pub mod gate;
pub mod grader;
pub(crate) mod lease;
pub mod limits;
pub(crate) mod location;
pub mod memory;
pub mod merge;
pub mod model_version;
pub mod paired;
pub mod plan;
pub mod prompt;
pub mod prompt_store;
pub mod provider;
pub mod record;
pub mod rendered;
pub mod report;
pub mod robustness;
pub mod run;
pub mod run_record;
pub(crate) mod sampler;
pub mod sampling;
pub mod secrets;
pub mod sequential;
pub mod shard;
pub mod simulation;
pub mod stats;
pub(crate) mod suite;
pub mod tally;
#[cfg(test)]
mod testing;

pub use config::Config;
pub use error::Error;
pub use run::{run, RunOptions};
pub use run_record::{RunRecord, SuiteResult, Verdict};
pub use stats::{Accuracy, Estimate};
