//! promptgate: regression tests for LLM prompts.
//!
//! Data flows one way: load (config, cases, prompts) → render → sample (cache or provider) →
//! grade → aggregate (stats) → report → exit code. Each module holds one of those concepts.

pub mod aggregate;
pub mod baseline;
pub mod cache;
pub mod case;
pub mod cli;
pub mod command;
pub mod compare;
pub mod config;
pub mod digest;
pub mod env;
pub mod error;
pub mod excerpt;
pub mod exit_code;
pub mod fs;
pub mod gate;
pub mod grader;
pub mod lease;
pub mod memory;
pub mod paired;
pub mod plan;
pub mod prompt;
pub mod provider;
pub mod record;
pub mod report;
pub mod run;
pub mod run_record;
pub mod sampler;
pub mod sampling;
pub mod secrets;
pub mod simulation;
pub mod stats;
pub mod suite;
pub mod tally;
#[cfg(test)]
mod testing;

pub use config::Config;
pub use error::Error;
pub use run::{run, RunOptions};
pub use run_record::{RunRecord, SuiteResult, Verdict};
pub use stats::{Accuracy, Estimate};
