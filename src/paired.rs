//! Paired comparison of a candidate run with a baseline, case by case (the gate's statistics).
//!
//! Specification: `reference/statistics.md` §c and §d of the design notes. d_i = m_i(candidate) −
//! m_i(baseline) over the cases present in both runs; one-sided H0: Δ ≥ −margin against
//! H1: Δ < −margin.
//!
//! * Default: the paired t-test on d_i (= scipy `ttest_rel(cand + margin, base,
//!   alternative="less")`). It holds its level down to n = 5 in simulation, and pairing removes
//!   the shared difficulty of each case.
//! * Zero spread with a drop (every changed case moved by the same amount) falls back to the
//!   exact sign-flip p-value, which is 2^−n′ rather than 0.
//! * `exact`: the sign-flip randomization test (Fisher 1935; Pitman 1937), computed exactly by
//!   convolution; at k = 1 it equals the one-sided exact McNemar test.
//! * Holm (1979) step-down adjustment across the pairs gated in one run.

use serde::{Deserialize, Serialize};

use crate::stats::{self, t_cdf, t_quantile, Estimate};

/// Which test produced a p-value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestMethod {
    PairedT,
    SignFlipExact,
    /// Fewer than two paired cases: no test, p = 1.
    None,
}

/// The outcome of one paired comparison.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedTest {
    pub method: TestMethod,
    /// Cases compared.
    pub cases: usize,
    /// Mean difference (candidate − baseline) with its two-sided interval.
    pub delta: Estimate,
    /// One-sided upper confidence bound of the difference at level 1 − α.
    pub upper_bound: f64,
    pub p_value: f64,
    /// Cases whose per-case mean changed.
    pub changed_cases: usize,
    pub regressed_cases: usize,
    pub improved_cases: usize,
}

/// Compare per-case means. `differences[i]` = candidate − baseline of case i; `scale` is an
/// integer L such that every L·d_i is an integer (the lcm of the sample counts), used by the
/// exact test.
pub fn compare(
    differences: &[f64],
    scale: u32,
    margin: f64,
    alpha: f64,
    confidence_level: f64,
    exact: bool,
) -> PairedTest {
    let n = differences.len();
    let changed_cases = differences.iter().filter(|d| d.abs() > 1e-12).count();
    let regressed_cases = differences.iter().filter(|d| **d < -1e-12).count();
    let improved_cases = changed_cases - regressed_cases;
    let mean = if n == 0 { 0.0 } else { stats::mean(differences) };
    let sd = stats::sample_sd(differences);
    let se = if n == 0 { 0.0 } else { sd / (n as f64).sqrt() };
    let df = (n as f64 - 1.0).max(1.0);
    let two_sided = t_quantile(1.0 - (1.0 - confidence_level) / 2.0, df);
    let delta = Estimate {
        point: mean,
        lower: (mean - two_sided * se).max(-1.0),
        upper: (mean + two_sided * se).min(1.0),
        confidence_level,
        standard_error: se,
    };
    let upper_bound = (mean + t_quantile(1.0 - alpha, df) * se).min(1.0);
    let base = PairedTest {
        method: TestMethod::PairedT,
        cases: n,
        delta,
        upper_bound,
        p_value: 1.0,
        changed_cases,
        regressed_cases,
        improved_cases,
    };
    if n < 2 {
        return PairedTest {
            method: TestMethod::None,
            ..base
        };
    }
    let shifted: Vec<f64> = differences.iter().map(|d| d + margin).collect();
    if exact && margin == 0.0 {
        return PairedTest {
            method: TestMethod::SignFlipExact,
            p_value: sign_flip_p_value(&shifted, scale),
            ..base
        };
    }
    if sd == 0.0 {
        // Zero spread: no drop beyond the margin means nothing to reject; an identical drop on
        // every case is judged exactly, which gives 2^−n′ rather than a p-value of 0.
        if mean + margin >= 0.0 {
            return base;
        }
        return PairedTest {
            method: TestMethod::SignFlipExact,
            p_value: sign_flip_p_value(&shifted, scale),
            ..base
        };
    }
    let t = (mean + margin) / se;
    PairedTest {
        p_value: t_cdf(t, n as f64 - 1.0),
        ..base
    }
}

/// One-sided exact sign-flip p-value P(Σ ε_i d_i ≤ Σ d_i) over all 2^n sign patterns, computed
/// by convolution on the integers L·d_i. Ties count as extreme.
pub fn sign_flip_p_value(differences: &[f64], scale: u32) -> f64 {
    let scale = f64::from(scale.max(1));
    let integers: Vec<i64> = differences.iter().map(|d| (d * scale).round() as i64).collect();
    let observed: i64 = integers.iter().sum();
    let total: i64 = integers.iter().map(|d| d.abs()).sum();
    if total == 0 {
        return 1.0;
    }
    // probability[v + total] = P(Σ ε_i |D_i| = v) over the cases seen so far.
    let width = (2 * total + 1) as usize;
    let mut probability = vec![0.0f64; width];
    probability[total as usize] = 1.0;
    let mut reach = 0usize;
    for magnitude in integers.iter().map(|d| d.unsigned_abs() as usize).filter(|m| *m > 0) {
        let mut next = vec![0.0f64; width];
        let low = total as usize - reach;
        let high = total as usize + reach;
        for (index, p) in probability.iter().enumerate().take(high + 1).skip(low) {
            if *p == 0.0 {
                continue;
            }
            next[index + magnitude] += 0.5 * p;
            next[index - magnitude] += 0.5 * p;
        }
        reach += magnitude;
        probability = next;
    }
    let limit = (observed + total) as usize;
    probability[..=limit].iter().sum::<f64>().min(1.0)
}

/// Two-sided p-value for H0: Δ = 0 (for side-by-side comparisons, where either model may be
/// the better one): the paired t-test, or the exact sign-flip test when the spread is zero.
pub fn two_sided_p_value(differences: &[f64], scale: u32) -> f64 {
    let n = differences.len();
    if n < 2 {
        return 1.0;
    }
    let mean = stats::mean(differences);
    let sd = stats::sample_sd(differences);
    if sd == 0.0 {
        if mean == 0.0 {
            return 1.0;
        }
        let negated: Vec<f64> = differences.iter().map(|d| -d).collect();
        let tail = sign_flip_p_value(differences, scale).min(sign_flip_p_value(&negated, scale));
        return (2.0 * tail).min(1.0);
    }
    let t = mean / (sd / (n as f64).sqrt());
    (2.0 * t_cdf(-t.abs(), n as f64 - 1.0)).min(1.0)
}

/// Per-case differences d_i = m_i(candidate) − m_i(baseline), gathered case by case with the
/// integer scale the exact test needs. The gate and the sequential gate's looks pair cases the
/// same way through it.
#[derive(Debug, Clone, PartialEq)]
pub struct Differences {
    pub values: Vec<f64>,
    /// The lcm of every sample count seen (see [`extend_scale`]).
    pub scale: u32,
}

impl Default for Differences {
    fn default() -> Self {
        Differences {
            values: Vec::new(),
            scale: 1,
        }
    }
}

impl Differences {
    /// Pair one case, given (correct, samples) of each run; a case with no valid sample on
    /// either side cannot be paired (`None`). Returns the difference it added.
    pub fn pair(&mut self, candidate: (u32, u32), baseline: (u32, u32)) -> Option<f64> {
        let ((correct, samples), (base_correct, base_samples)) = (candidate, baseline);
        if samples == 0 || base_samples == 0 {
            return None;
        }
        let d = f64::from(correct) / f64::from(samples) - f64::from(base_correct) / f64::from(base_samples);
        self.scale = extend_scale(extend_scale(self.scale, samples), base_samples);
        self.values.push(d);
        Some(d)
    }
}

/// The integer scale L for the exact test: the least common multiple of the sample counts seen
/// so far and `samples`, capped (beyond the cap the test's rounding is negligible).
pub fn extend_scale(scale: u32, samples: u32) -> u32 {
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    if samples == 0 {
        return scale;
    }
    (scale / gcd(scale, samples)).saturating_mul(samples).min(10_000)
}

/// Holm–Bonferroni adjusted p-values, returned in input order.
pub fn holm(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|a, b| p_values[*a].total_cmp(&p_values[*b]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &index) in order.iter().enumerate() {
        let value = ((m - rank) as f64 * p_values[index]).min(1.0);
        running = running.max(value);
        adjusted[index] = running;
    }
    adjusted
}

/// Holm across the pairs that were tested (`tested[i]`); an untested pair keeps its own
/// p-value and does not count towards the number of tests.
pub fn holm_among(p_values: &[f64], tested: &[bool]) -> Vec<f64> {
    let index: Vec<usize> = (0..p_values.len()).filter(|i| tested.get(*i) == Some(&true)).collect();
    let mut adjusted = p_values.to_vec();
    for (i, p) in index
        .iter()
        .zip(holm(&index.iter().map(|i| p_values[*i]).collect::<Vec<_>>()))
    {
        adjusted[*i] = p;
    }
    adjusted
}

/// The smallest p-value the exact test could reach with `changed` non-zero differences (2^−n′):
/// with n′ ≤ 4 no drop can be detected at α = 0.05.
pub fn smallest_exact_p_value(changed: usize) -> f64 {
    0.5f64.powi(i32::try_from(changed).unwrap_or(i32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64, tolerance: f64) {
        assert!(
            (actual - expected).abs() <= tolerance,
            "{actual} != {expected} (± {tolerance})"
        );
    }

    fn diffs(candidate: &[f64], baseline: &[f64]) -> Vec<f64> {
        candidate.iter().zip(baseline).map(|(c, b)| c - b).collect()
    }

    // Reference values computed with scipy 1.17.1 / statsmodels 0.15.0.

    #[test]
    fn paired_t_matches_scipy_ttest_rel() {
        // reference/statistics.md worked example n6_k5.
        let d = diffs(&[0.8, 0.8, 0.6, 0.6, 1.0, 0.2], &[1.0, 0.8, 1.0, 0.6, 1.0, 0.4]);
        let test = compare(&d, 5, 0.0, 0.05, 0.95, false);
        assert_eq!(test.method, TestMethod::PairedT);
        // scipy.stats.ttest_rel(cand, base, alternative='less').pvalue
        close(test.p_value, 0.0509697394149292, 1e-9);
        close(test.upper_bound, 0.0010032248888682538, 1e-9);
        close(test.delta.lower, -0.3047054557090877, 1e-9);
        close(test.delta.upper, 0.038038789042421, 1e-9);
        assert_eq!(
            (test.changed_cases, test.regressed_cases, test.improved_cases),
            (3, 3, 0)
        );
        // ttest_rel(cand + 0.02, base, alternative='less').pvalue
        let with_margin = compare(&d, 5, 0.02, 0.05, 0.95, false);
        close(with_margin.p_value, 0.074938393424162, 1e-9);
    }

    #[test]
    fn sign_flip_matches_enumeration() {
        // Full enumeration and scipy.stats.permutation_test(..., n_resamples=np.inf, alternative='less').
        close(sign_flip_p_value(&[-1.0; 5], 1), 0.03125, 1e-12);
        close(sign_flip_p_value(&[-1.0; 4], 1), 0.0625, 1e-12);
        close(
            sign_flip_p_value(&[-1.0, -1.0, -1.0, 1.0, 0.0, 0.0, -1.0, -1.0], 1),
            0.109375,
            1e-12,
        );
        let fifths = [-0.2, 0.0, -0.4, 0.0, 0.0, -0.2, 0.2, -0.6, -0.2, 0.4, -0.2, 0.0];
        close(sign_flip_p_value(&fifths, 5), 0.15234375, 1e-12);
        let thirds = |v: &[i32]| v.iter().map(|x| f64::from(*x) / 3.0).collect::<Vec<_>>();
        let a = thirds(&[1, 0, 0, 0, -1, 0, 1, -2, -1, -2, 0, 3, 0, 0, -2, 1, 0, 3, -1, 1]);
        close(sign_flip_p_value(&a, 3), 0.624267578125, 1e-12);
        let b = thirds(&[-1, -1, 0, -2, -1, 0, 0, -1, 1, -3, -2, 0, -1, 0, -1, -1, 0, 2, -1, 0]);
        close(sign_flip_p_value(&b, 3), 0.0196533203125, 1e-12);
        // Same vector, paired t: scipy ttest_rel(w, zeros, alternative='less').pvalue
        close(
            compare(&b, 3, 0.0, 0.05, 0.95, false).p_value,
            0.01208729851899588,
            1e-9,
        );
    }

    #[test]
    fn exact_at_one_sample_is_mcnemar() {
        // 6 regressions, 2 fixes: scipy.stats.binomtest(6, 8, 0.5, alternative='greater') = 0.14453125
        let mut d = vec![-1.0; 6];
        d.extend([1.0, 1.0]);
        d.extend([0.0; 10]);
        let test = compare(&d, 1, 0.0, 0.05, 0.95, true);
        assert_eq!(test.method, TestMethod::SignFlipExact);
        close(test.p_value, 0.14453125, 1e-12);
    }

    #[test]
    fn zero_spread_falls_back_to_exact() {
        // Five cases each lost one sample in one: t would be −∞ and p = 0; exact gives 2^−5.
        let test = compare(&[-1.0; 5], 1, 0.0, 0.05, 0.95, false);
        assert_eq!(test.method, TestMethod::SignFlipExact);
        close(test.p_value, 0.03125, 1e-12);
        // No change at all: nothing to reject.
        let same = compare(&[0.0; 20], 1, 0.0, 0.05, 0.95, false);
        assert_eq!(same.p_value, 1.0);
        assert_eq!(compare(&[-1.0], 1, 0.0, 0.05, 0.95, false).method, TestMethod::None);
        assert_eq!(smallest_exact_p_value(4), 0.0625);
    }

    #[test]
    fn two_sided_matches_scipy() {
        // scipy.stats.ttest_rel(cand, base).pvalue (two-sided) for the n6_k5 example.
        let d = diffs(&[0.8, 0.8, 0.6, 0.6, 1.0, 0.2], &[1.0, 0.8, 1.0, 0.6, 1.0, 0.4]);
        close(two_sided_p_value(&d, 5), 2.0 * 0.0509697394149292, 1e-9);
        // Zero spread: exact, 2 · 2^−5.
        close(two_sided_p_value(&[1.0; 5], 1), 0.0625, 1e-12);
        assert_eq!(two_sided_p_value(&[0.0; 5], 1), 1.0);
    }

    #[test]
    fn scale_is_the_lcm_of_sample_counts() {
        assert_eq!([3, 5, 3, 1].iter().fold(1, |l, k| extend_scale(l, *k)), 15);
        assert_eq!(extend_scale(4, 0), 4);
    }

    #[test]
    fn holm_matches_statsmodels() {
        // statsmodels multipletests([0.01, 0.04, 0.03, 0.005, 0.5], method='holm')[1]
        let adjusted = holm(&[0.01, 0.04, 0.03, 0.005, 0.5]);
        for (a, e) in adjusted.iter().zip([0.04, 0.09, 0.09, 0.025, 0.5]) {
            close(*a, e, 1e-12);
        }
        // The same five p-values, tested, among two untested pairs that keep their own.
        let among = holm_among(
            &[0.01, 0.7, 0.04, 0.03, 0.005, 0.5, 0.2],
            &[true, false, true, true, true, true, false],
        );
        for (a, e) in among.iter().zip([0.04, 0.7, 0.09, 0.09, 0.025, 0.5, 0.2]) {
            close(*a, e, 1e-12);
        }
        assert!(holm(&[]).is_empty());
    }

    #[test]
    fn cases_pair_only_with_a_valid_sample_on_both_sides() {
        let mut differences = Differences::default();
        assert_eq!(differences.pair((2, 3), (5, 5)), Some(2.0 / 3.0 - 1.0));
        assert_eq!(differences.pair((1, 2), (0, 0)), None);
        assert_eq!(differences.pair((0, 0), (1, 4)), None);
        assert_eq!(differences.pair((1, 4), (1, 2)), Some(-0.25));
        assert_eq!(differences.values.len(), 2);
        // lcm(3, 5, 4, 2): every L·d_i is an integer.
        assert_eq!(differences.scale, 60);
        assert!(differences
            .values
            .iter()
            .all(|d| (d * 60.0 - (d * 60.0).round()).abs() < 1e-9));
    }
}
