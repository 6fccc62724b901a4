//! The gate's proof by simulation: how often it fails an unchanged prompt (false alarms) and
//! how often it catches a real drop (power), beside the naive test that pools the n·k samples
//! as independent and the "fail if more than 2 points below" rule.
//!
//! Model (`reference/statistics.md`): case difficulty θ_i ~ Beta with mean p and intra-case
//! correlation ρ (a + b = 1/ρ − 1); k Bernoulli(θ_i) samples per case and run. The candidate's
//! θ′_i is θ_i with probability 1 − s, a fresh draw with probability s (the change reshuffles
//! which cases are hard), then scaled by (1 − δ/p) so the true drop is exactly δ.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution};

use crate::paired;
use crate::stats::z_quantile;

/// One cell of the table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scenario {
    pub cases: usize,
    pub samples: u32,
    pub accuracy: f64,
    pub intra_case_correlation: f64,
    /// Share of cases whose difficulty is redrawn for the candidate.
    pub reshuffle: f64,
    /// True drop δ (0 = nothing changed).
    pub drop: f64,
}

/// How often each rule failed the candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub repetitions: usize,
    /// The gate: one-sided paired t on per-case means (exact fallback at zero spread).
    pub paired: f64,
    /// One-sided two-proportion z-test on n·k pooled samples per run.
    pub naive_pooled: f64,
    /// "Fail if accuracy is more than 2 points below the baseline's".
    pub threshold: f64,
}

/// Simulate `repetitions` baseline/candidate pairs at one-sided level `alpha`, seeded.
pub fn simulate(scenario: &Scenario, repetitions: usize, alpha: f64, seed: u64) -> Rates {
    let mut rng = StdRng::seed_from_u64(seed);
    let spread = 1.0 / scenario.intra_case_correlation - 1.0;
    let p = scenario.accuracy;
    // Beta parameters are positive for 0 < p < 1 and 0 < ρ < 1; anything else is a caller bug.
    let beta = Beta::new(p * spread, (1.0 - p) * spread).expect("Beta parameters must be positive");
    let scale = 1.0 - scenario.drop / p;
    let k = scenario.samples;
    let z_alpha = z_quantile(1.0 - alpha);
    let (mut paired_fails, mut naive_fails, mut threshold_fails) = (0, 0, 0);
    let mut differences = vec![0.0; scenario.cases];
    for _ in 0..repetitions {
        let (mut base_total, mut cand_total) = (0u64, 0u64);
        for difference in differences.iter_mut() {
            let theta: f64 = beta.sample(&mut rng);
            let fresh = if rng.random::<f64>() < scenario.reshuffle {
                beta.sample(&mut rng)
            } else {
                theta
            };
            let theta_candidate = fresh * scale;
            let base = (0..k).filter(|_| rng.random::<f64>() < theta).count() as u64;
            let cand = (0..k).filter(|_| rng.random::<f64>() < theta_candidate).count() as u64;
            base_total += base;
            cand_total += cand;
            *difference = (cand as f64 - base as f64) / f64::from(k);
        }
        let test = paired::compare(&differences, k, 0.0, alpha, 1.0 - 2.0 * alpha, false);
        if test.p_value <= alpha {
            paired_fails += 1;
        }
        let samples = (scenario.cases as u64 * u64::from(k)) as f64;
        let (p_base, p_cand) = (base_total as f64 / samples, cand_total as f64 / samples);
        let pooled = (base_total + cand_total) as f64 / (2.0 * samples);
        let se = (pooled * (1.0 - pooled) * 2.0 / samples).sqrt();
        if se > 0.0 && (p_cand - p_base) / se < -z_alpha {
            naive_fails += 1;
        }
        if p_cand < p_base - 0.02 {
            threshold_fails += 1;
        }
    }
    let rate = |count: usize| count as f64 / repetitions as f64;
    Rates {
        repetitions,
        paired: rate(paired_fails),
        naive_pooled: rate(naive_fails),
        threshold: rate(threshold_fails),
    }
}

/// Monte Carlo standard error of a rate estimated from `repetitions` draws.
pub fn monte_carlo_se(rate: f64, repetitions: usize) -> f64 {
    (rate * (1.0 - rate) / repetitions as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(reshuffle: f64, drop: f64) -> Scenario {
        Scenario {
            cases: 50,
            samples: 3,
            accuracy: 0.9,
            intra_case_correlation: 0.5,
            reshuffle,
            drop,
        }
    }

    #[test]
    fn the_gate_holds_its_level_where_the_naive_test_does_not() {
        let alpha = 0.05;
        let reps = 600;
        let tolerance = 2.58 * monte_carlo_se(alpha, reps);
        // A prompt change that reshuffles which cases are hard, with no change in accuracy.
        let null = simulate(&scenario(1.0, 0.0), reps, alpha, 11);
        assert!(null.paired <= alpha + tolerance, "gate false alarms {}", null.paired);
        assert!(
            null.naive_pooled > alpha + tolerance,
            "naive test should be anti-conservative: {}",
            null.naive_pooled
        );
        assert!(null.threshold > 0.1, "the 2-point rule is flaky: {}", null.threshold);
        // A pure re-run.
        let rerun = simulate(&scenario(0.0, 0.0), reps, alpha, 12);
        assert!(rerun.paired <= alpha + tolerance, "gate false alarms {}", rerun.paired);
        // A real 10-point drop is caught most of the time.
        let drop = simulate(&scenario(0.0, 0.10), reps, alpha, 13);
        assert!(drop.paired > 0.8, "power {}", drop.paired);
    }

    #[test]
    fn simulations_are_reproducible() {
        assert_eq!(
            simulate(&scenario(0.5, 0.05), 50, 0.05, 3),
            simulate(&scenario(0.5, 0.05), 50, 0.05, 3)
        );
    }
}
