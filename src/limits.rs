//! The ranges the numbers of a config must lie in, and the checks that say so.
//!
//! The same ranges as the command line's flags, so that a value which would panic, hang or
//! exhaust memory (`samples = 4294967295`, `timeout_secs = 1e300`) is an error naming its key.

pub const CONCURRENCY: (u64, u64) = (1, 4096);
pub const SAMPLES: (u64, u64) = (1, 1000);
/// Variants per case and robustness family.
pub const VARIANTS: (u64, u64) = (1, 100);
pub const MAX_ATTEMPTS: (u64, u64) = (1, 100);
pub const MAX_TOKENS: (u64, u64) = (1, 1_000_000);
/// A day: no call or wait of a test run takes longer.
pub const TIMEOUT_SECS: (f64, f64) = (0.001, 86_400.0);
pub const RETRY_MS: (u64, u64) = (0, 86_400_000);
/// Waits between looks at a batch: never a busy loop, at most an hour.
pub const BATCH_POLL_MS: (u64, u64) = (1, 3_600_000);
/// Lines of one batch: the OpenAI Batch API takes at most 50,000, as Bedrock's usual quota.
pub const BATCH_LINES: (u64, u64) = (1, 50_000);
pub const RESPONSE_BYTES: (u64, u64) = (1024, 1 << 30);
pub const TEMPERATURE: (f64, f64) = (0.0, 2.0);
pub const PRICE: (f64, f64) = (0.0, 1_000_000.0);
pub const URL_BYTES: usize = 2048;
/// A one-sided significance level, both bounds excluded: at 0 a gate could never fail (and
/// `plan` would need infinitely many cases), from 0.5 on it would fail on any drop at all.
pub const ONE_SIDED_ALPHA: (f64, f64) = (0.0, 0.5);
/// A two-sided level, both bounds excluded: at 0 a test finds nothing, at 1 everything.
pub const TWO_SIDED_ALPHA: (f64, f64) = (0.0, 1.0);
/// The power `plan` sizes for, both bounds excluded: at 1 it needs infinitely many cases.
pub const POWER: (f64, f64) = (0.5, 1.0);

/// `value` within `[low, high]`, or the message saying so.
pub fn in_range<T: PartialOrd + std::fmt::Display + Copy>(value: T, (low, high): (T, T)) -> Result<(), String> {
    // `!(a <= b)` and not `a > b`: NaN fails every comparison and must be refused too.
    if !(value >= low && value <= high) {
        return Err(format!("{value} is out of range: it must be between {low} and {high}"));
    }
    Ok(())
}

/// `value` strictly between `low` and `high`, or the message saying so.
pub fn strictly_within(value: f64, (low, high): (f64, f64)) -> Result<(), String> {
    // Written so that NaN fails too.
    if !(value > low && value < high) {
        return Err(format!("{value} must be above {low} and below {high}"));
    }
    Ok(())
}

/// A base or endpoint URL: http(s), with a host, of sane length.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.len() > URL_BYTES {
        return Err(format!("the URL is {} bytes long (at most {})", url.len(), URL_BYTES));
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("`{url}` is not an http:// or https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{url}` has no valid host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_within_excludes_both_bounds_and_nan() {
        assert_eq!(strictly_within(0.05, ONE_SIDED_ALPHA), Ok(()));
        for value in [0.0, 0.5, -1.0, f64::NAN] {
            assert!(strictly_within(value, ONE_SIDED_ALPHA).is_err(), "{value}");
        }
        assert_eq!(
            strictly_within(1.0, TWO_SIDED_ALPHA),
            Err("1 must be above 0 and below 1".to_string())
        );
        assert_eq!(
            strictly_within(0.5, POWER),
            Err("0.5 must be above 0.5 and below 1".to_string())
        );
    }
}
