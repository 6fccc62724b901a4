//! Sizing a suite: required cases, minimum detectable drop and power of the paired gate.
//!
//! Specification: `reference/statistics.md` §e. With baseline accuracy p_b, a drop δ, the share
//! of per-sample variance that lies between cases ρ (the intra-case correlation), the
//! correlation c of case difficulty between the two runs and k samples per case, v = p(1−p),
//! p_c = p_b − δ, the variance of one per-case difference depends on how the drop falls on the
//! cases ([`DropShape`]):
//!
//! * proportional (the default): every case keeps its difficulty scaled by s = p_c/p_b, as in
//!   the simulation of the gate (`simulation.rs`: θ ~ Beta with mean p_b and correlation ρ, a
//!   share 1 − c of cases drawn afresh, θ' = s·θ). From its moments, with V = ρ v_b:
//!   σ_d² = V(1 + s² − 2sc) + (v_b − V)/k_b + (v_c − s²V)/k_c
//! * concentrated (§e as written): the candidate keeps the spread between cases, ρ v_c, so the
//!   drop lands on some cases more than on others:
//!   σ_d² = ρ(v_b + v_c) − 2cρ√(v_b v_c) + (1−ρ)(v_b/k_b + v_c/k_c)
//!
//! At high accuracy the two differ most (the concentrated form asks for 16–57% more cases at
//! p_b = 0.97, k ≥ 3); the proportional one is what keeps `plan`'s promised power within a few
//! points of the gate's simulated power (`examples/simulate.rs plan`, README table). Then:
//!
//! n    = ⌈(z_{1−α} + z_{1−β})² σ_d² / (δ − M)²⌉
//! MDE  = M + (z_{1−α} + z_{1−β}) σ_d / √n
//! power = Φ((δ − M)√n / σ_d − z_{1−α})

use statrs::distribution::{ContinuousCDF, Normal};

use crate::stats::z_quantile;

/// How a drop falls on the cases (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DropShape {
    /// Every case loses the same share of its accuracy.
    #[default]
    Proportional,
    /// The candidate keeps the baseline's spread between cases: some cases lose much more.
    Concentrated,
}

/// The assumptions of a plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanInputs {
    pub shape: DropShape,
    pub baseline_accuracy: f64,
    pub intra_case_correlation: f64,
    pub difficulty_correlation: f64,
    pub samples_baseline: u32,
    pub samples_candidate: u32,
    pub alpha: f64,
    pub power: f64,
    pub margin: f64,
}

/// Standard deviation of one per-case difference when accuracy drops by `drop`.
pub fn difference_sd(inputs: &PlanInputs, drop: f64) -> f64 {
    let p_b = inputs.baseline_accuracy;
    let p_c = (p_b - drop).clamp(0.0, 1.0);
    let (v_b, v_c) = (p_b * (1.0 - p_b), p_c * (1.0 - p_c));
    let rho = inputs.intra_case_correlation;
    let c = inputs.difficulty_correlation;
    let (k_b, k_c) = (f64::from(inputs.samples_baseline), f64::from(inputs.samples_candidate));
    let variance = match inputs.shape {
        DropShape::Concentrated => {
            rho * (v_b + v_c) - 2.0 * c * rho * (v_b * v_c).sqrt() + (1.0 - rho) * (v_b / k_b + v_c / k_c)
        }
        DropShape::Proportional => {
            // p_b > 0 whenever a drop is possible; at p_b = 0 nothing can drop.
            let scale = if p_b > 0.0 { p_c / p_b } else { 1.0 };
            let between = rho * v_b;
            between * (1.0 + scale * scale - 2.0 * scale * c)
                + (v_b - between) / k_b
                + (v_c - scale * scale * between) / k_c
        }
    };
    variance.max(0.0).sqrt()
}

/// Cases needed to detect `drop` (normal approximation).
pub fn required_cases(inputs: &PlanInputs, drop: f64) -> Option<u64> {
    let effect = drop - inputs.margin;
    if effect <= 0.0 {
        return None;
    }
    let z = z_quantile(1.0 - inputs.alpha) + z_quantile(inputs.power);
    let sd = difference_sd(inputs, drop);
    Some(((z * sd / effect).powi(2)).ceil().max(2.0) as u64)
}

/// The smallest drop `cases` cases detect with the planned power (solved by bisection, since
/// σ_d depends on the drop).
pub fn minimum_detectable_drop(inputs: &PlanInputs, cases: u64) -> f64 {
    let z = z_quantile(1.0 - inputs.alpha) + z_quantile(inputs.power);
    let n = (cases as f64).sqrt();
    let (mut low, mut high) = (0.0f64, inputs.baseline_accuracy);
    for _ in 0..100 {
        let mid = (low + high) / 2.0;
        let needed = inputs.margin + z * difference_sd(inputs, mid) / n;
        if mid >= needed {
            high = mid;
        } else {
            low = mid;
        }
    }
    high
}

/// Power to detect `drop` with `cases` cases.
pub fn power(inputs: &PlanInputs, cases: u64, drop: f64) -> f64 {
    let sd = difference_sd(inputs, drop);
    let z = (drop - inputs.margin) * (cases as f64).sqrt() / sd - z_quantile(1.0 - inputs.alpha);
    Normal::new(0.0, 1.0).map_or(f64::NAN, |d| d.cdf(z))
}

/// The fewest variants per case (k, in both runs) for `cases` cases to detect an accuracy drop
/// of `drop` — a flip-rate increase of a robustness family — with the planned power; `None` when
/// even `max` variants do not (the variance between cases remains however many variants each
/// case gets: more cases are needed, not more variants).
pub fn variants_needed(inputs: &PlanInputs, cases: u64, drop: f64, max: u32) -> Option<u32> {
    (1..=max).find(|&k| {
        let with_k = PlanInputs {
            samples_baseline: k,
            samples_candidate: k,
            ..*inputs
        };
        power(&with_k, cases, drop) >= inputs.power
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(k: u32) -> PlanInputs {
        PlanInputs {
            shape: DropShape::Concentrated,
            baseline_accuracy: 0.9,
            intra_case_correlation: 0.5,
            difficulty_correlation: 0.5,
            samples_baseline: k,
            samples_candidate: k,
            alpha: 0.05,
            power: 0.8,
            margin: 0.0,
        }
    }

    fn close(actual: f64, expected: f64, tolerance: f64) {
        assert!(
            (actual - expected).abs() <= tolerance,
            "{actual} != {expected} (± {tolerance})"
        );
    }

    // Reference values: reference/statistics.md (kind `power_paired`), recomputed with scipy
    // 1.17.1 (norm.ppf, norm.cdf) from the same formula.

    #[test]
    fn required_cases_match_reference() {
        close(difference_sd(&inputs(5), 0.05), 0.2773793193191025, 1e-12);
        assert_eq!(required_cases(&inputs(5), 0.05), Some(191));
        close(difference_sd(&inputs(1), 0.05), 0.40489416738936684, 1e-12);
        assert_eq!(required_cases(&inputs(1), 0.05), Some(406));
        assert_eq!(required_cases(&inputs(5), 0.10), Some(56));
        assert_eq!(required_cases(&inputs(5), 0.0), None);
    }

    #[test]
    fn power_matches_reference() {
        close(power(&inputs(5), 100, 0.05), 0.5626660447370563, 1e-9);
        close(power(&inputs(1), 100, 0.05), 0.34091653373007713, 1e-9);
        close(power(&inputs(5), 100, 0.10), 0.9543404093359658, 1e-9);
    }

    fn proportional(k: u32) -> PlanInputs {
        PlanInputs {
            shape: DropShape::Proportional,
            ..inputs(k)
        }
    }

    // The proportional shape, independently: numpy 2.4.6 and scipy 1.17.1 from the closed form
    //   s = p_c/p_b; V = ρ v_b; σ_d² = V(1 + s² − 2sc) + (v_b − V)/k + (v_c − s²V)/k
    // checked against the variance of d_i over 2,000,000 draws of the simulation's model
    // (θ ~ Beta(p_b φ, (1 − p_b) φ), φ = 1/ρ − 1; a share 1 − c drawn afresh; θ' = s·θ;
    // d = Bin(k, θ')/k − Bin(k, θ)/k): 0.26331, 0.41820, 0.27242 and 0.16945 against the
    // values below. n = ceil(((norm.ppf(0.95) + norm.ppf(0.8))·σ_d/δ)²).
    #[test]
    fn the_proportional_shape_matches_the_simulated_model() {
        close(difference_sd(&proportional(5), 0.05), 0.262889922041738, 1e-12);
        close(difference_sd(&proportional(1), 0.05), 0.4183300132670378, 1e-12);
        close(difference_sd(&proportional(5), 0.10), 0.2728450923957483, 1e-12);
        let high = PlanInputs {
            baseline_accuracy: 0.97,
            ..proportional(5)
        };
        close(difference_sd(&high, 0.05), 0.1698556087830236, 1e-12);
        assert_eq!(required_cases(&proportional(5), 0.05), Some(171));
        assert_eq!(required_cases(&proportional(1), 0.05), Some(433));
        assert_eq!(required_cases(&proportional(5), 0.10), Some(47));
        assert_eq!(required_cases(&high, 0.05), Some(72));
        close(power(&proportional(5), 100, 0.05), 0.6014426913915418, 1e-9);
        close(power(&proportional(1), 100, 0.05), 0.32649042295111086, 1e-9);
        close(power(&high, 100, 0.05), 0.9029976748582397, 1e-9);
        // Nothing dropped, nothing reshuffled, one sample: only the coin flips differ.
        let same = PlanInputs {
            difficulty_correlation: 1.0,
            ..proportional(1)
        };
        close(difference_sd(&same, 0.0), (2.0 * 0.9 * 0.1 * 0.5f64).sqrt(), 1e-12);
    }

    #[test]
    fn minimum_detectable_drop_solves_the_power_equation() {
        // The spec's MDE(100) = 0.069 holds σ_d at its δ = 0.05 value; solving with σ_d(δ)
        // gives the drop at which power is exactly 0.8.
        let mde = minimum_detectable_drop(&inputs(5), 100);
        close(power(&inputs(5), 100, mde), 0.8, 1e-6);
        assert!(mde > 0.06 && mde < 0.075, "{mde}");
        assert!(
            minimum_detectable_drop(&inputs(5), 400) < mde,
            "more cases detect smaller drops"
        );
    }
}
