//! Accuracy with an honest confidence interval.
//!
//! The k samples of one case are correlated (an easy case is easy every time), so the unit of
//! evidence is the case, not the sample. Specification and sources: `reference/statistics.md`
//! (§a, §b) of the design notes; in short:
//!
//! * accuracy p̂ = mean over cases of the per-case mean m_i = c_i / k_i (every case weighs 1);
//! * clustered SE = sd(m_i) / √n with n − 1 in the sd (= statsmodels' CR1 cluster-robust SE of
//!   an intercept-only OLS with cluster = case; Miller 2024, arXiv:2411.00640);
//! * interval = Wilson (1927) score interval at the effective size n_eff = p̂(1−p̂)/SE², clamped
//!   to [n, Σk_i], with a Student-t quantile on n − 1 degrees of freedom (Korn & Graubard 1998).
//!   It stays inside [0, 1] and keeps coverage near 0 and 1, where p̂ ± t·SE collapses to a point.
//! * the SE behind n_eff is moderated: the sum of squares gains w·(b − p̂)², as if one more case
//!   of weight w = 1/20 lay at the far bound b (0 when p̂ ≥ ½, else 1). A few cases often hold
//!   none of the rare ones that fail every time; their plain spread then looks binomial and
//!   n_eff runs up to Σk_i exactly when p̂ is too high (`reference/statistics.md` §b2 names
//!   the cells). The term is a variance moderated towards a prior guess (Smyth 2004) with a
//!   twentieth of a case of weight, a pseudo-observation in the spirit of Agresti & Coull
//!   (1998); w was chosen by simulation (`examples/simulate.rs coverage`, README table).
//!
//! Smyth, G. K. (2004), Linear models and empirical Bayes methods for assessing differential
//! expression in microarray experiments, Stat. Appl. Genet. Mol. Biol. 3(1), art. 3. Agresti, A.
//! & Coull, B. A. (1998), Approximate is better than "exact" for interval estimation of binomial
//! proportions, Am. Stat. 52(2), 119–126.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// A point estimate with its interval, in criterion's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub point: f64,
    pub lower: f64,
    pub upper: f64,
    pub confidence_level: f64,
    pub standard_error: f64,
}

/// The graded outcome of one case: correct answers among its valid samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaseOutcome {
    pub correct: u32,
    /// Valid samples (provider failures excluded; invalid output counts as a wrong sample).
    pub samples: u32,
}

impl CaseOutcome {
    /// m_i = c_i / k_i.
    pub fn mean(self) -> f64 {
        f64::from(self.correct) / f64::from(self.samples)
    }
}

/// Accuracy over the cases of one run, with the quantities behind its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub estimate: Estimate,
    /// Cases with at least one valid sample (n).
    pub cases: usize,
    /// Valid samples over all cases (N = Σ k_i).
    pub samples: u64,
    /// n_eff after clamping: how many independent Bernoulli trials the run is worth.
    pub effective_sample_size: f64,
    /// Kish design effect N / n_eff.
    pub design_effect: f64,
}

/// Which interval to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntervalMethod {
    /// Wilson at the effective size from the moderated spread, with a t quantile (the default).
    #[default]
    WilsonModeratedT,
    /// Wilson at the effective size from the plain spread, with a t quantile: the default of
    /// earlier versions, kept to read their records and to compare against.
    WilsonEffectiveT,
    /// Plain Wilson on the n cases with a z quantile (`--conservative-ci`).
    WilsonCasesZ,
}

impl IntervalMethod {
    /// Every method, in the order the simulations report them: the default, the previous
    /// default, `--conservative-ci`.
    pub const ALL: [IntervalMethod; 3] = [
        IntervalMethod::WilsonModeratedT,
        IntervalMethod::WilsonEffectiveT,
        IntervalMethod::WilsonCasesZ,
    ];
}

/// The warning of `reference/statistics.md` §b2: with many samples of few cases (k ≥ 10 and
/// n_eff > 3n) the design effect comes from little between-case information, is too often
/// estimated small, and the default interval is then too narrow. `None` when the interval does
/// not rest on it (`--conservative-ci` counts each case once).
pub fn few_cases_warning(accuracy: &Accuracy, samples_per_case: u32, method: IntervalMethod) -> Option<String> {
    let n = accuracy.cases as f64;
    let warn =
        method != IntervalMethod::WilsonCasesZ && samples_per_case >= 10 && accuracy.effective_sample_size > 3.0 * n;
    warn.then(|| {
        format!(
            "the interval counts {} cases × {samples_per_case} samples as {:.0} independent answers: with many samples of few cases it is often too narrow; add cases rather than samples, or use --conservative-ci",
            accuracy.cases, accuracy.effective_sample_size
        )
    })
}

/// Arithmetic mean; NaN for an empty slice.
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Sample standard deviation with n − 1 in the denominator; 0 for fewer than two values.
pub fn sample_sd(values: &[f64]) -> f64 {
    // Equal values have no spread; the two-pass formula would leave rounding noise (~1e-17)
    // that reads as "almost certain" downstream (n_eff = p(1−p)/SE² explodes).
    if values.len() < 2 || values.iter().all(|v| *v == values[0]) {
        return 0.0;
    }
    let m = mean(values);
    let sum_sq: f64 = values.iter().map(|v| (v - m).powi(2)).sum();
    (sum_sq / (values.len() - 1) as f64).sqrt()
}

/// Clustered standard error of the mean of per-case means: sd(m_i) / √n.
pub fn clustered_standard_error(case_means: &[f64]) -> f64 {
    sample_sd(case_means) / (case_means.len() as f64).sqrt()
}

/// Weight of the pseudo-case at the far bound in the moderated spread (module docs).
pub const MODERATION_WEIGHT: f64 = 0.05;

/// The moderated standard error: √((s² + w·(b − p̂)²/(n − 1)) / n), with b the bound farther
/// from p̂. Equal to the clustered SE as w → 0; `se` and `p` are the plain ones of `n` cases.
pub fn moderated_standard_error(se: f64, p: f64, n: f64) -> f64 {
    let far = p.max(1.0 - p);
    (se * se + MODERATION_WEIGHT * far * far / ((n - 1.0) * n)).sqrt()
}

/// Standard normal quantile Φ⁻¹(p).
pub fn z_quantile(p: f64) -> f64 {
    // Normal::new(0, 1) cannot fail.
    Normal::new(0.0, 1.0).map_or(f64::NAN, |d| d.inverse_cdf(p))
}

/// Standard normal upper tail 1 − Φ(z), accurate far into the tail (not 1 − cdf).
pub fn z_upper_tail(z: f64) -> f64 {
    // Normal::new(0, 1) cannot fail.
    Normal::new(0.0, 1.0).map_or(f64::NAN, |d| d.sf(z))
}

/// Student-t quantile with `df` degrees of freedom.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df).map_or(f64::NAN, |d| d.inverse_cdf(p))
}

/// Student-t CDF with `df` degrees of freedom.
pub fn t_cdf(x: f64, df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df).map_or(f64::NAN, |d| d.cdf(x))
}

/// Wilson score interval for proportion `p` over `n` trials with quantile `q`.
pub fn wilson(p: f64, n: f64, q: f64) -> (f64, f64) {
    let q2 = q * q;
    let denominator = 1.0 + q2 / n;
    let center = (p + q2 / (2.0 * n)) / denominator;
    let half = q / denominator * (p * (1.0 - p) / n + q2 / (4.0 * n * n)).sqrt();
    // At p = 0 or 1 the bound is exactly 0 or 1; floating point would leave it a hair inside.
    let lower = if p <= 0.0 { 0.0 } else { (center - half).max(0.0) };
    let upper = if p >= 1.0 { 1.0 } else { (center + half).min(1.0) };
    (lower, upper)
}

/// Accuracy and its interval for the given cases; `None` when no case has a valid sample.
pub fn accuracy(outcomes: &[CaseOutcome], confidence_level: f64, method: IntervalMethod) -> Option<Accuracy> {
    let means: Vec<f64> = outcomes.iter().filter(|o| o.samples > 0).map(|o| o.mean()).collect();
    if means.is_empty() {
        return None;
    }
    let n = means.len() as f64;
    let total_samples: u64 = outcomes.iter().map(|o| u64::from(o.samples)).sum();
    let p = mean(&means);
    let se = clustered_standard_error(&means);
    let upper_tail = 1.0 - (1.0 - confidence_level) / 2.0;
    let (n_eff, q) = match method {
        IntervalMethod::WilsonCasesZ => (n, z_quantile(upper_tail)),
        IntervalMethod::WilsonEffectiveT | IntervalMethod::WilsonModeratedT => {
            let n_eff = if p > 0.0 && p < 1.0 && se > 0.0 {
                let se = match method {
                    IntervalMethod::WilsonModeratedT => moderated_standard_error(se, p, n),
                    _ => se,
                };
                (p * (1.0 - p) / (se * se)).clamp(n, total_samples as f64)
            } else {
                // All correct, all wrong, or every case alike: assume the worst (ρ = 1).
                n
            };
            let q = if means.len() > 1 {
                t_quantile(upper_tail, n - 1.0)
            } else {
                z_quantile(upper_tail)
            };
            (n_eff, q)
        }
    };
    let (lower, upper) = wilson(p, n_eff, q);
    Some(Accuracy {
        estimate: Estimate {
            point: p,
            lower,
            upper,
            confidence_level,
            standard_error: se,
        },
        cases: means.len(),
        samples: total_samples,
        effective_sample_size: n_eff,
        design_effect: total_samples as f64 / n_eff,
    })
}

/// Estimated intra-case correlation ρ̂: the share of per-sample variance that lies between
/// cases (`reference/statistics.md` §b1). `None` when it cannot be estimated: a case with fewer
/// than two samples, or accuracy 0 or 1.
///
/// within_i = k_i m_i(1−m_i)/(k_i−1); σ̂²_between = s² − mean(within)/k̄ (k̄ harmonic, clamped at
/// 0); ρ̂ = clamp(σ̂²_between / (p̂(1−p̂)), 0, 1).
pub fn intra_case_correlation(outcomes: &[CaseOutcome]) -> Option<f64> {
    let graded: Vec<CaseOutcome> = outcomes.iter().copied().filter(|o| o.samples > 0).collect();
    if graded.len() < 2 || graded.iter().any(|o| o.samples < 2) {
        return None;
    }
    let means: Vec<f64> = graded.iter().map(|o| o.mean()).collect();
    let p = mean(&means);
    if p <= 0.0 || p >= 1.0 {
        return None;
    }
    let within: Vec<f64> = graded
        .iter()
        .map(|o| {
            let (k, m) = (f64::from(o.samples), o.mean());
            k * m * (1.0 - m) / (k - 1.0)
        })
        .collect();
    let harmonic_k = graded.len() as f64 / graded.iter().map(|o| 1.0 / f64::from(o.samples)).sum::<f64>();
    let between = (sample_sd(&means).powi(2) - mean(&within) / harmonic_k).max(0.0);
    Some((between / (p * (1.0 - p))).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cases(correct: &[u32], k: u32) -> Vec<CaseOutcome> {
        correct
            .iter()
            .map(|&c| CaseOutcome { correct: c, samples: k })
            .collect()
    }

    fn close(actual: f64, expected: f64, tolerance: f64) {
        assert!(
            (actual - expected).abs() <= tolerance,
            "{actual} != {expected} (± {tolerance})"
        );
    }

    // Reference values below were computed independently with scipy 1.17.1 and statsmodels 0.15.0:
    //   se  = sm.OLS(y, ones).fit(cov_type='cluster', cov_kwds={'groups': case}).bse[0]   (CR1)
    //   int = proportion_confint(p*n*, n*, method='wilson') with n* = n_eff·(z/q)², q = t.ppf(0.975, n−1)
    // (the equivalence given in reference/statistics.md §b2).

    #[test]
    fn quantiles_match_scipy() {
        close(t_quantile(0.975, 9.0), 2.262157162798205, 1e-9); // scipy.stats.t.ppf(0.975, 9)
        close(t_quantile(0.975, 7.0), 2.364624251592784, 1e-9); // scipy.stats.t.ppf(0.975, 7)
        close(t_quantile(0.95, 29.0), 1.6991270265334972, 1e-9); // scipy.stats.t.ppf(0.95, 29)
        close(z_quantile(0.975), 1.959963984540054, 1e-9); // scipy.stats.norm.ppf(0.975)
        close(t_cdf(-2.0, 5.0), 0.050969739414929174, 1e-9); // scipy.stats.t.cdf(-2, 5)
    }

    #[test]
    fn plain_wilson_matches_statsmodels() {
        let z = z_quantile(0.975);
        // statsmodels proportion_confint(x, n, alpha=0.05, method='wilson')
        let (lo, hi) = wilson(0.7, 10.0, z);
        close(lo, 0.39677814746114537, 1e-9);
        close(hi, 0.8922087325936989, 1e-9);
        let (lo, hi) = wilson(0.0, 10.0, z);
        close(lo, 0.0, 1e-12);
        close(hi, 0.27753279986288926, 1e-9);
        let (lo, hi) = wilson(0.9, 50.0, z);
        close(lo, 0.7863976856252034, 1e-9);
        close(hi, 0.9565242350681095, 1e-9);
    }

    #[test]
    fn eight_cases_four_samples() {
        let acc = accuracy(
            &cases(&[4, 3, 0, 2, 4, 1, 4, 2], 4),
            0.95,
            IntervalMethod::WilsonEffectiveT,
        )
        .unwrap();
        close(acc.estimate.point, 0.625, 1e-12);
        close(acc.estimate.standard_error, 0.13363062095621223, 1e-12); // statsmodels CR1
        close(acc.effective_sample_size, 13.12499999999999, 1e-9);
        close(acc.estimate.lower, 0.3204249305688117, 1e-9);
        close(acc.estimate.upper, 0.8548887841960332, 1e-9);
        close(acc.design_effect, 32.0 / 13.125, 1e-9);
    }

    #[test]
    fn twelve_cases_three_samples() {
        let acc = accuracy(
            &cases(&[3, 3, 3, 2, 3, 0, 3, 1, 3, 3, 2, 3], 3),
            0.95,
            IntervalMethod::WilsonEffectiveT,
        )
        .unwrap();
        close(acc.estimate.point, 0.8055555555555556, 1e-12);
        close(acc.estimate.standard_error, 0.09585986311162784, 1e-12);
        close(acc.effective_sample_size, 17.045801526717547, 1e-9);
        close(acc.estimate.lower, 0.5398538140313095, 1e-9);
        close(acc.estimate.upper, 0.9360170594496174, 1e-9);
    }

    #[test]
    fn one_sample_per_case_clamps_to_n() {
        let mut correct = vec![1; 14];
        correct.extend([0; 6]);
        let acc = accuracy(&cases(&correct, 1), 0.95, IntervalMethod::WilsonEffectiveT).unwrap();
        close(acc.estimate.standard_error, 0.10513149660756933, 1e-12);
        assert_eq!(acc.effective_sample_size, 20.0);
        close(acc.estimate.lower, 0.4665180496203465, 1e-9);
        close(acc.estimate.upper, 0.861609678236855, 1e-9);
    }

    #[test]
    fn all_correct_stays_honest() {
        // reference/statistics.md worked example: 10 × 5 all correct → [0.661491, 1].
        let acc = accuracy(&cases(&[5; 10], 5), 0.95, IntervalMethod::WilsonEffectiveT).unwrap();
        assert_eq!(acc.estimate.point, 1.0);
        assert_eq!(acc.estimate.standard_error, 0.0);
        close(acc.estimate.lower, 0.6614913773398166, 1e-9);
        assert_eq!(acc.estimate.upper, 1.0);
        // --conservative-ci: plain Wilson(10, 10) = [0.7224672001371106, 1].
        let plain = accuracy(&cases(&[5; 10], 5), 0.95, IntervalMethod::WilsonCasesZ).unwrap();
        close(plain.estimate.lower, 0.7224672001371106, 1e-9);
    }

    #[test]
    fn near_one_clamps_to_total_samples() {
        let acc = accuracy(&cases(&[5, 5, 5, 5, 4, 5], 5), 0.95, IntervalMethod::WilsonEffectiveT).unwrap();
        close(acc.effective_sample_size, 29.0, 1e-9);
        close(acc.estimate.lower, 0.7639649666868911, 1e-9);
        close(acc.estimate.upper, 0.996166170724633, 1e-9);
    }

    #[test]
    fn the_moderated_interval_matches_numpy_and_statsmodels() {
        // Independent: numpy 2.4.6, scipy 1.17.1, statsmodels 0.15.0, w = 0.05:
        //   m = c/k; p = m.mean(); b = 0 if p >= 0.5 else 1
        //   se = sqrt((((m − p)**2).sum() + w·(b − p)**2) / (n − 1) / n)
        //   n_eff = clip(p(1−p)/se², n, n·k); q = t.ppf(0.975, n−1)
        //   proportion_confint(p·n*, n*, method='wilson') with n* = n_eff·(norm.ppf(0.975)/q)²
        let mut nineteen = vec![20; 17];
        nineteen.extend([19; 3]);
        // (correct per case, k, moderated SE, n_eff, lower, upper)
        type Vector<'a> = (&'a [u32], u32, f64, f64, f64, f64);
        let vectors: [Vector; 6] = [
            (
                &[4, 3, 0, 2, 4, 1, 4, 2],
                4,
                0.13492929696167333,
                12.873563218390805,
                0.31806737652601125,
                0.8562293402463014,
            ),
            (
                &[3, 3, 3, 2, 3, 0, 3, 1, 3, 3, 2, 3],
                3,
                0.09713349727336695,
                16.601716179796167,
                0.5361719435427488,
                0.936898498033391,
            ),
            (
                &[5, 5, 5, 5, 4, 5],
                5,
                0.05165770531603701,
                12.074947952810549,
                0.6050430164708923,
                0.9981817646746179,
            ),
            (
                &[19, 18, 20, 19, 18, 19, 20, 17, 19, 18],
                20,
                0.026658592527655234,
                85.51662139185844,
                0.8469198348970458,
                0.9739584223392884,
            ),
            // 20 cases, 17 always right and 3 wrong once: the plain spread counts them as all
            // 400 samples (n_eff = N) and the interval would stop near 0.98.
            (
                &nineteen,
                20,
                0.012099131384655591,
                50.84911437062212,
                0.9074307374771076,
                0.9994405450227313,
            ),
            // Near 0 the far bound is 1.
            (
                &[0, 1, 0, 0, 2, 0, 1, 0, 0, 0],
                5,
                0.049252185512703675,
                30.340784170025653,
                0.02104817486153472,
                0.2601814869764818,
            ),
        ];
        for (correct, k, se, n_eff, lower, upper) in vectors {
            let outcomes = cases(correct, k);
            let acc = accuracy(&outcomes, 0.95, IntervalMethod::default()).unwrap();
            let plain = accuracy(&outcomes, 0.95, IntervalMethod::WilsonEffectiveT).unwrap();
            // The reported SE stays the clustered (CR1) one; only n_eff is moderated.
            assert_eq!(acc.estimate.standard_error, plain.estimate.standard_error);
            let n = outcomes.len() as f64;
            close(
                moderated_standard_error(acc.estimate.standard_error, acc.estimate.point, n),
                se,
                1e-12,
            );
            close(acc.effective_sample_size, n_eff, 1e-9);
            close(acc.estimate.lower, lower, 1e-9);
            close(acc.estimate.upper, upper, 1e-9);
            assert!(acc.effective_sample_size <= plain.effective_sample_size, "{correct:?}");
        }
    }

    #[test]
    fn moderation_leaves_one_sample_per_case_and_the_worst_cases_alone() {
        // k = 1 clamps to n either way; all correct and equal means take n_eff = n either way.
        let mut correct = vec![1; 14];
        correct.extend([0; 6]);
        for (outcomes, n) in [
            (cases(&correct, 1), 20.0),
            (cases(&[5; 10], 5), 10.0),
            (cases(&[2; 10], 3), 10.0),
        ] {
            let moderated = accuracy(&outcomes, 0.95, IntervalMethod::default()).unwrap();
            let plain = accuracy(&outcomes, 0.95, IntervalMethod::WilsonEffectiveT).unwrap();
            assert_eq!(moderated, plain);
            assert_eq!(moderated.effective_sample_size, n);
        }
    }

    #[test]
    fn intra_case_correlation_matches_the_formula() {
        // numpy, from reference/statistics.md §b1: m = c/k; s2 = m.var(ddof=1);
        // within = k·m(1−m)/(k−1); between = max(s2 − within.mean()/k, 0); ρ = between/(p(1−p)).
        let rho = intra_case_correlation(&cases(&[4, 3, 0, 2, 4, 1, 4, 2], 4)).unwrap();
        close(rho, 0.45396825396825397, 1e-12);
        let rho = intra_case_correlation(&cases(&[3, 3, 3, 2, 3, 0, 3, 1, 3, 3, 2, 3], 3)).unwrap();
        close(rho, 0.5266457680250783, 1e-12);
        assert_eq!(
            intra_case_correlation(&cases(&[1, 0, 1], 1)),
            None,
            "k = 1 cannot separate the parts"
        );
        assert_eq!(intra_case_correlation(&cases(&[3, 3], 3)), None, "all correct");
    }

    #[test]
    fn equal_case_means_have_zero_spread() {
        // Every case 2/3: no spread, so the interval takes the worst case n_eff = n.
        let acc = accuracy(&cases(&[2; 10], 3), 0.95, IntervalMethod::WilsonEffectiveT).unwrap();
        assert_eq!(acc.estimate.standard_error, 0.0);
        assert_eq!(acc.effective_sample_size, 10.0);
    }

    #[test]
    fn cases_without_valid_samples_are_left_out() {
        let mut outcomes = cases(&[1, 0], 1);
        outcomes.push(CaseOutcome { correct: 0, samples: 0 });
        let acc = accuracy(&outcomes, 0.95, IntervalMethod::default()).unwrap();
        assert_eq!(acc.cases, 2);
        assert_eq!(acc.estimate.point, 0.5);
        assert!(accuracy(
            &[CaseOutcome { correct: 0, samples: 0 }],
            0.95,
            IntervalMethod::default()
        )
        .is_none());
    }

    #[test]
    fn unequal_samples_use_mean_of_case_means() {
        // 2/2 and 0/4: pooled would be 1/3, the case mean is 1/2.
        let outcomes = [
            CaseOutcome { correct: 2, samples: 2 },
            CaseOutcome { correct: 0, samples: 4 },
        ];
        let acc = accuracy(&outcomes, 0.95, IntervalMethod::default()).unwrap();
        close(acc.estimate.point, 0.5, 1e-12);
        assert!(acc.estimate.lower >= 0.0 && acc.estimate.upper <= 1.0);
    }

    #[test]
    fn many_samples_of_few_cases_get_the_warning_of_b2() {
        // 10 cases × 20 samples, all between 17 and 20 right: the per-case means vary little,
        // so n_eff = p̂(1−p̂)/SE² = 0.060775/0.000225 = 270, clamped to N = 200 > 3n = 30.
        let correct = [19, 18, 20, 19, 18, 19, 20, 17, 19, 18];
        let outcomes = |k: u32| -> Vec<CaseOutcome> {
            correct
                .iter()
                .map(|&c| CaseOutcome {
                    correct: c * k / 20,
                    samples: k,
                })
                .collect()
        };
        let many = accuracy(&outcomes(20), 0.95, IntervalMethod::WilsonEffectiveT).unwrap();
        assert_eq!(many.effective_sample_size, 200.0);
        let warning = few_cases_warning(&many, 20, IntervalMethod::WilsonEffectiveT).expect("a warning");
        assert!(
            warning.starts_with("the interval counts 10 cases × 20 samples as 200 independent answers"),
            "{warning}"
        );
        assert!(warning.contains("add cases rather than samples"));
        // The default interval moderates n_eff to 85.5 (vectors above): still more than 3n.
        let moderated = accuracy(&outcomes(20), 0.95, IntervalMethod::default()).unwrap();
        assert!(few_cases_warning(&moderated, 20, IntervalMethod::default()).is_some());
        // Not under --conservative-ci, which counts each case once, nor at k < 10.
        assert_eq!(few_cases_warning(&many, 20, IntervalMethod::WilsonCasesZ), None);
        assert_eq!(few_cases_warning(&many, 5, IntervalMethod::WilsonEffectiveT), None);
        // Nor when n_eff ≤ 3n: cases that disagree a lot are worth about one answer each.
        let spread: Vec<CaseOutcome> = (0..10)
            .map(|i| CaseOutcome {
                correct: if i % 2 == 0 { 20 } else { 0 },
                samples: 20,
            })
            .collect();
        let split = accuracy(&spread, 0.95, IntervalMethod::WilsonEffectiveT).unwrap();
        assert!(split.effective_sample_size <= 30.0, "{split:?}");
        assert_eq!(few_cases_warning(&split, 20, IntervalMethod::WilsonEffectiveT), None);
    }
}
