//! Process exit codes, in one place so that scripts and CI can rely on them.
//!
//! A significant regression (1) must never be confused with bad input (2) or with "the provider
//! failed too often to judge" (3): a CI job treats each differently.

/// Everything ran and no significant regression was found.
pub const SUCCESS: i32 = 0;
/// A significant regression against the baseline (the gate).
pub const REGRESSION: i32 = 1;
/// Bad usage, configuration, case or prompt: fix the input and run again.
pub const BAD_INPUT: i32 = 2;
/// Inconclusive: provider failures above `--max-error-rate`, an unreachable provider, a cache
/// miss under `--offline`, or more calls to make than `--max-calls` allows (nothing tested).
pub const INCONCLUSIVE: i32 = 3;
/// The selection (suites × models × cases) was empty: nothing was run.
pub const NOTHING_SELECTED: i32 = 4;
/// `record` wrote nothing for a finding because an equal case exists (use `--force`).
pub const DUPLICATE: i32 = 5;
/// promptgate could not finish for a reason that is not the input's: a report or stdout could
/// not be written (disk full), the cache failed to commit, or an internal failure.
pub const INTERNAL: i32 = 6;
/// `drift`: accuracy moved significantly, either way, since the baseline, with the prompt
/// unchanged: the model moved. Not 1, so that a scheduled canary is never read as a regression.
pub const DRIFTED: i32 = 7;

/// The hint of every failure that ends with [`INTERNAL`] for no known outside reason.
pub const INTERNAL_HINT: &str = "this is a promptgate bug or a failing machine, not your input; please report it";

/// The table printed by `--help`, kept next to the constants it describes.
pub const HELP_TABLE: &str = "\
Exit codes:
  0  success: ran, and no significant regression
  1  significant regression against the baseline
  2  bad usage, configuration, case or prompt
  3  inconclusive: too many provider failures, an unreachable provider, a cache miss under
     --offline, or more calls to make than --max-calls allows
  4  nothing selected to run
  5  record: an equal case exists, so that finding was not recorded again
  6  I/O or internal failure: a write, the cache or promptgate itself failed (not your input)
  7  drift: accuracy moved significantly since the baseline with the prompt unchanged";
