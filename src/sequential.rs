//! The group-sequential gate: looks after 1, 2, 3, 5, … samples per case (with one sample per
//! case: after a third and two thirds of the cases, see [`plan`]), an efficacy boundary from a
//! Lan–DeMets alpha-spending function of O'Brien–Fleming type, and a non-binding futility stop
//! (`reference/statistics.md` §f).
//!
//! At look j the gate's own paired test (§c1) runs on the samples taken so far, its one-sided
//! p-value becomes z_j = Φ⁻¹(1 − p_j), and the gate stops:
//! * for **efficacy** (a regression) when z_j ≥ b_j. The bounds spend, look by look, the
//!   cumulative α(t) = 2 − 2Φ(z_{1−α/2}/√t) of Lan & DeMets (1983) at information fraction t,
//!   computed by the recursive numerical integration of Armitage, McPherson & Rowe (1969) under
//!   the canonical joint distribution (Jennison & Turnbull 2000, ch. 19): the chance of ever
//!   crossing a bound with no true drop is α, whatever the number of looks.
//! * for **futility** (clearly no regression) at an interim look when the (1 − γ) upper
//!   confidence bound of the drop lies below the drop the full run could detect with 80%
//!   power. The bounds ignore this stop (it is non-binding), so taking it only lowers the
//!   false-alarm rate; what it costs is power, at most about γ per look at that drop.
//! * at the **last look** (k samples per case) otherwise, with the remaining α.
//!
//! Information: with between-case variance B and within-case variance w per sample, the
//! variance of a per-case difference after s of k samples is B + w/s (+ the baseline's share),
//! so the true information fraction Var(k)/Var(s) is at least s/k. The bounds spend α at
//! t = s/k, fixed before the first look: the looks are then more correlated than the bounds
//! assume, which can only lower the false-alarm rate. Spending at the estimated fraction
//! instead stops more regressions at the first look, but in simulation it cost up to 17 points
//! of power where the paired test is discrete (20 cases at 97% accuracy), because it spends α
//! early that the last look needs. The futility stop does use the estimated fraction, to
//! predict the full run's standard error; being non-binding, it cannot raise the α. The
//! schedule of looks is fixed in advance and never depends on the candidate's outcomes.
//! A look over m of n cases (one-sample gates) holds m/n of the information: the cases come
//! in an order fixed by their ids' digests, so each batch is like a random draw of the suite,
//! and t = s/k · m/n.
//!
//! The p-value reported after a stop is the stagewise-ordered one (Jennison & Turnbull §8.4):
//! the chance, with no true drop, of crossing an earlier bound or of reaching this look with a
//! z at least as large. It is ≤ α exactly when the run stopped for efficacy, and Holm across
//! suite × model pairs applies to it as to a fixed run's.

use crate::stats::{z_quantile, z_upper_tail as upper_tail};

/// Points of the integration grid per unit of the score scale: bounds are accurate to about
/// 1e-4 in z, far below what a decision can hinge on.
const POINTS_PER_UNIT: f64 = 40.0;
/// The grid's lower end, in standard deviations of the score: below it lies < 1e-15.
const LOWER: f64 = -8.5;

/// The standard normal density, written out: it runs a quarter of a million times per look.
fn density(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Cumulative α spent by information fraction `t` under the O'Brien–Fleming-type spending
/// function of Lan & DeMets (1983), one-sided level `alpha`: 2 − 2Φ(z_{1−α/2}/√t).
pub fn obrien_fleming_spent(alpha: f64, t: f64) -> f64 {
    if t <= 0.0 {
        return 0.0;
    }
    let t = t.min(1.0);
    2.0 * upper_tail(z_quantile(1.0 - alpha / 2.0) / t.sqrt())
}

/// The looks, in samples per case, for at most `k` samples: 1, 2, 3, 5, 8, 13, … below k, then
/// k. Early looks are dense because the first samples of every case carry most of the
/// information (they already show which cases changed); later ones only refine each case.
pub fn schedule(k: u32) -> Vec<u32> {
    let mut looks = Vec::new();
    let (mut a, mut b) = (1u32, 2u32);
    while a < k {
        looks.push(a);
        (a, b) = (b, a.saturating_add(b));
    }
    looks.push(k.max(1));
    looks.dedup();
    looks
}

/// One look of a plan: the first `cases` cases of the run's fixed order, `samples` samples each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub cases: usize,
    pub samples: u32,
}

/// Fewest cases for which a one-sample gate looks at batches of cases: with fewer, a third of
/// the cases is too few for the paired test at an interim look to mean anything.
pub const MIN_CASES_FOR_BATCHES: usize = 12;

/// The looks of a gate over `cases` cases with at most `k` samples each, fixed before the first.
/// With k ≥ 2, every case at each look of `schedule(k)`: the first sample of every case carries
/// most of the information, so looking by samples stops earliest. With k = 1 there is nothing
/// to refine, so the looks take the cases in thirds (1/3, 2/3, all): in simulation, halves
/// saved too little (6–24% of the calls when nothing changed) and quarters cost 3.1 points of
/// power at 20 cases (README, "Stopping early").
pub fn plan(cases: usize, k: u32) -> Vec<Step> {
    if k <= 1 && cases >= MIN_CASES_FOR_BATCHES {
        return (1..=3)
            .map(|third| Step {
                cases: (cases * third).div_ceil(3),
                samples: 1,
            })
            .collect();
    }
    schedule(k).into_iter().map(|samples| Step { cases, samples }).collect()
}

/// The order in which a plan takes cases: by the SHA-256 of the case id. Fixed before the first
/// look, the same on every run of the suite, blind to every outcome, and unrelated to the order
/// of the case files (which often groups cases of one kind together).
pub fn case_order<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<usize> {
    let mut keyed: Vec<(String, usize)> = ids
        .into_iter()
        .enumerate()
        .map(|(index, id)| (crate::digest::sha256_hex(id.as_bytes()), index))
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, index)| index).collect()
}

/// A sub-density of the score S = Z·√t on a grid over the region where no bound was crossed.
#[derive(Debug, Clone)]
struct Density {
    points: Vec<f64>,
    values: Vec<f64>,
    step: f64,
}

impl Density {
    /// Simpson weights of the grid (an odd number of points).
    fn integrate(&self, mut f: impl FnMut(f64) -> f64) -> f64 {
        let last = self.points.len() - 1;
        let sum: f64 = self
            .points
            .iter()
            .zip(&self.values)
            .enumerate()
            .map(|(i, (&x, &v))| {
                let weight = if i == 0 || i == last {
                    1.0
                } else if i % 2 == 1 {
                    4.0
                } else {
                    2.0
                };
                weight * v * f(x)
            })
            .sum();
        sum * self.step / 3.0
    }

    fn grid(low: f64, high: f64) -> (Vec<f64>, f64) {
        let intervals = (((high - low) * POINTS_PER_UNIT).ceil() as usize).max(2);
        let intervals = intervals + intervals % 2;
        let step = (high - low) / intervals as f64;
        ((0..=intervals).map(|i| low + step * i as f64).collect(), step)
    }
}

/// Efficacy bounds computed look by look as the information fractions become known.
#[derive(Debug, Clone)]
pub struct Boundary {
    alpha: f64,
    fractions: Vec<f64>,
    /// z-scale bounds; infinite where a look spent nothing.
    bounds: Vec<f64>,
    /// The sub-density of the score at each look below its bound.
    densities: Vec<Density>,
}

impl Boundary {
    /// No look yet, at one-sided level `alpha`.
    pub fn new(alpha: f64) -> Boundary {
        Boundary {
            alpha,
            fractions: Vec::new(),
            bounds: Vec::new(),
            densities: Vec::new(),
        }
    }

    /// The bounds so far, on the z scale.
    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    /// The information fractions used so far (increasing, the last look's is 1).
    pub fn fractions(&self) -> &[f64] {
        &self.fractions
    }

    /// Add a look at information fraction `fraction` (kept within (previous, 1]) and return its
    /// bound on the z scale.
    pub fn add_look(&mut self, fraction: f64) -> f64 {
        let previous = self.fractions.last().copied().unwrap_or(0.0);
        let t = if fraction.is_finite() {
            fraction.clamp(previous, 1.0)
        } else {
            1.0
        };
        let spend = obrien_fleming_spent(self.alpha, t) - obrien_fleming_spent(self.alpha, previous);
        let bound = match self.densities.last() {
            None => z_quantile(1.0 - spend.max(f64::MIN_POSITIVE)),
            Some(_) if t <= previous || spend <= 0.0 => f64::INFINITY,
            Some(density) => {
                let delta = t - previous;
                let crossing = |z: f64| Self::crossing(density, delta, z * t.sqrt());
                // The bound lies where crossing(z) = spend; crossing falls as z grows.
                let (mut low, mut high) = (-10.0, 40.0);
                for _ in 0..200 {
                    let mid = 0.5 * (low + high);
                    if crossing(mid) > spend {
                        low = mid;
                    } else {
                        high = mid;
                    }
                    if high - low < 1e-10 {
                        break;
                    }
                }
                0.5 * (low + high)
            }
        };
        let density = self.next_density(t, bound);
        self.fractions.push(t);
        self.bounds.push(bound);
        self.densities.push(density);
        bound
    }

    /// P(reach the previous look below its bound, then score ≥ `score` at a look `delta` later).
    fn crossing(density: &Density, delta: f64, score: f64) -> f64 {
        let sd = delta.sqrt();
        density.integrate(|u| upper_tail((score - u) / sd))
    }

    /// The sub-density of the score at a new look at `t` with bound `bound`.
    fn next_density(&self, t: f64, bound: f64) -> Density {
        let high = if bound.is_finite() {
            bound * t.sqrt()
        } else {
            -LOWER * t.sqrt()
        };
        let (points, step) = Density::grid(LOWER * t.sqrt(), high.max(LOWER * t.sqrt() + 0.1));
        let values = match (self.densities.last(), self.fractions.last()) {
            (Some(previous), Some(&before)) if t > before => {
                let sd = (t - before).sqrt();
                points
                    .iter()
                    .map(|&s| previous.integrate(|u| density((s - u) / sd) / sd))
                    .collect()
            }
            // A look that added no information: the score did not move, nor its density.
            (Some(previous), Some(_)) => return previous.clone(),
            _ => points.iter().map(|&s| density(s / t.sqrt()) / t.sqrt()).collect(),
        };
        Density { points, values, step }
    }

    /// The stagewise-ordered p-value of stopping at look `look` (0-based, already added) with
    /// statistic `z`: P(cross an earlier bound) + P(reach this look, Z ≥ z), with no true drop.
    pub fn p_value(&self, look: usize, z: f64) -> f64 {
        let Some(&t) = self.fractions.get(look) else {
            return 1.0;
        };
        let p = if look == 0 {
            upper_tail(z)
        } else {
            let earlier = obrien_fleming_spent(self.alpha, self.fractions[look - 1]);
            let delta = t - self.fractions[look - 1];
            let here = if delta > 0.0 {
                Self::crossing(&self.densities[look - 1], delta, z * t.sqrt())
            } else {
                // No new information: the same score as before, compared with z.
                self.densities[look - 1].integrate(|u| if u >= z * t.sqrt() { 1.0 } else { 0.0 })
            };
            earlier + here
        };
        p.clamp(0.0, 1.0)
    }
}

/// Why a sequential gate stopped sampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// The drop crossed the efficacy bound: a significant regression.
    Efficacy,
    /// The drop is clearly smaller than what the full run could detect: no regression.
    Futility,
    /// The last look (k samples per case) was reached.
    LastLook,
}

/// The rules of a sequential gate, fixed before the first look.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Design {
    /// One-sided level of the whole sequence of looks.
    pub alpha: f64,
    /// Non-inferiority margin of the paired test.
    pub margin: f64,
    /// Futility stops when the (1 − γ) upper bound of the drop is below the detectable drop.
    pub futility_gamma: f64,
    /// The power that defines the detectable drop of the full run.
    pub power: f64,
    /// The exact sign-flip test instead of the paired t-test.
    pub exact: bool,
}

impl Design {
    /// The defaults, chosen by simulation (README, "The sequential gate").
    pub fn new(alpha: f64, margin: f64, exact: bool) -> Design {
        Design {
            alpha,
            margin,
            futility_gamma: DEFAULT_FUTILITY_GAMMA,
            power: 0.8,
            exact,
        }
    }
}

/// γ of the futility stop: at most about this much power is lost per interim look at the drop
/// the full run detects with 80% power. Chosen by simulation (README): 0.01 saved too few
/// calls (55–83% of the fixed design's when nothing changed), 0.05 cost up to 5.6 points of
/// power; 0.03 keeps the loss within about 3 points in all but the most discrete cells.
pub const DEFAULT_FUTILITY_GAMMA: f64 = 0.03;

/// What one look saw and decided.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Look {
    /// Samples per case taken so far.
    pub samples: u32,
    /// Cases sampled so far (all of them, except at the interim looks of a one-sample gate).
    #[serde(default)]
    pub cases: usize,
    /// Information fraction the bound was computed at: the share of calls made, s/k · m/n.
    pub fraction: f64,
    /// Efficacy bound on the z scale (infinite when the look spent no α).
    pub bound: f64,
    /// z of the paired test at this look (large = a drop).
    pub z: f64,
    /// The paired test's own one-sided p-value at this look, not adjusted for the looks.
    pub raw_p_value: f64,
    /// Set when sampling stops here.
    pub stop: Option<Stop>,
}

/// The data of one look: per-case differences (candidate − baseline) of `cases` of
/// `max_cases` cases after `samples` of `max_samples` samples per case.
#[derive(Debug, Clone, Copy)]
pub struct LookData<'a> {
    pub differences: &'a [f64],
    /// An integer L with every L·d_i an integer (for the exact test).
    pub scale: u32,
    pub samples: u32,
    pub max_samples: u32,
    pub cases: usize,
    pub max_cases: usize,
    /// Within-case variance of one candidate sample, averaged over cases; from the candidate's
    /// own samples once there are two per case, from the baseline's before. `None`: unknown,
    /// and the information fraction falls back to its lower bound s/k.
    pub within_variance: Option<f64>,
}

/// Runs the looks of one sequential gate.
#[derive(Debug, Clone)]
pub struct Monitor {
    design: Design,
    boundary: Boundary,
    looks: Vec<Look>,
}

impl Monitor {
    pub fn new(design: Design) -> Monitor {
        Monitor {
            design,
            boundary: Boundary::new(design.alpha),
            looks: Vec::new(),
        }
    }

    /// The looks taken so far.
    pub fn looks(&self) -> &[Look] {
        &self.looks
    }

    /// Why sampling stopped, once it has.
    pub fn stopped(&self) -> Option<Stop> {
        self.looks.last().and_then(|look| look.stop)
    }

    /// Take a look: the paired test on what was sampled, the bound, and whether to stop.
    pub fn look(&mut self, data: LookData<'_>) -> Look {
        let design = self.design;
        let test = crate::paired::compare(
            data.differences,
            data.scale,
            design.margin,
            design.alpha,
            1.0 - 2.0 * design.alpha,
            design.exact,
        );
        let last = data.samples >= data.max_samples && data.cases >= data.max_cases;
        // The bounds spend α by the share of calls made, s/k · m/n, fixed in advance; the
        // futility stop predicts the full run's spread from the estimated information. See the
        // module documentation for why each.
        let planned = if last {
            1.0
        } else {
            f64::from(data.samples) / f64::from(data.max_samples.max(1)) * case_share(data)
        };
        let bound = self.boundary.add_look(planned);
        let z = z_quantile(1.0 - test.p_value.clamp(1e-300, 1.0)).clamp(-40.0, 40.0);
        let stop = if z >= bound && test.p_value < 1.0 {
            Some(Stop::Efficacy)
        } else if last {
            Some(Stop::LastLook)
        } else if futile(&test, information_fraction(&test, data), design) {
            Some(Stop::Futility)
        } else {
            None
        };
        let look = Look {
            samples: data.samples,
            cases: data.cases,
            fraction: self.boundary.fractions()[self.looks.len()],
            bound,
            z,
            raw_p_value: test.p_value,
            stop,
        };
        self.looks.push(look);
        look
    }

    /// The p-value adjusted for the looks (stagewise ordering) of the last look taken.
    pub fn p_value(&self) -> f64 {
        match self.looks.last() {
            None => 1.0,
            Some(look) if look.raw_p_value >= 1.0 => 1.0,
            Some(look) => self.boundary.p_value(self.looks.len() - 1, look.z),
        }
    }
}

/// The share m/n of the cases sampled at a look.
fn case_share(data: LookData<'_>) -> f64 {
    if data.max_cases == 0 {
        1.0
    } else {
        (data.cases as f64 / data.max_cases as f64).min(1.0)
    }
}

/// The information now over that of the full run: m/n times Var(d at k samples) / Var(d at s
/// samples), from the spread of the differences now and the within-case variance: B + w/s + c
/// falls to B + w/k + c. Kept within [s/k · m/n, m/n], its bounds for any B ≥ 0, and rounded
/// down to a hundredth so that the bounds are reproducible and can be reused.
fn information_fraction(test: &crate::paired::PairedTest, data: LookData<'_>) -> f64 {
    let (s, k) = (f64::from(data.samples.max(1)), f64::from(data.max_samples.max(1)));
    let share = case_share(data);
    let lowest = s / k;
    let variance_now = (test.delta.standard_error * test.delta.standard_error) * test.cases as f64;
    let estimate = match data.within_variance {
        Some(within) if variance_now > 0.0 && within.is_finite() && within >= 0.0 => {
            (variance_now - within * (1.0 / s - 1.0 / k)) / variance_now
        }
        _ => lowest,
    };
    (estimate.clamp(lowest, 1.0) * share * 100.0).floor() / 100.0
}

/// The futility rule: the (1 − γ) upper confidence bound of the drop beyond the margin lies
/// below the drop the full run would detect with the design's power.
fn futile(test: &crate::paired::PairedTest, fraction: f64, design: Design) -> bool {
    let se = test.delta.standard_error;
    if test.cases < 2 || se <= 0.0 || !se.is_finite() {
        return false;
    }
    let df = test.cases as f64 - 1.0;
    let drop_upper =
        -(test.delta.point + design.margin) + crate::stats::t_quantile(1.0 - design.futility_gamma, df) * se;
    let detectable = (z_quantile(1.0 - design.alpha) + z_quantile(design.power)) * se * fraction.sqrt();
    drop_upper < detectable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spending_matches_scipy() {
        // scipy: 2 - 2*norm.cdf(norm.ppf(1 - 0.05/2)/sqrt(t)).
        for (t, expected) in [
            (0.2, 1.1726446842441618e-05),
            (0.4, 0.0019419129967408466),
            (0.6, 0.011396418465313252),
            (0.8, 0.0284296307530727),
            (1.0, 0.05),
        ] {
            let spent = obrien_fleming_spent(0.05, t);
            assert!((spent - expected).abs() < 1e-9 * expected, "{t}: {spent}");
        }
        assert_eq!(obrien_fleming_spent(0.05, 0.0), 0.0);
    }

    #[test]
    fn the_schedule_is_fibonacci_then_k() {
        assert_eq!(schedule(1), [1]);
        assert_eq!(schedule(2), [1, 2]);
        assert_eq!(schedule(3), [1, 2, 3]);
        assert_eq!(schedule(5), [1, 2, 3, 5]);
        assert_eq!(schedule(10), [1, 2, 3, 5, 8, 10]);
        assert_eq!(schedule(20), [1, 2, 3, 5, 8, 13, 20]);
    }

    /// Bounds computed independently with scipy 1.17 (multivariate normal probabilities by
    /// Genz's algorithm, tolerance 1e-10, and Brent's root finding, look by look:
    /// `tests/fixtures/sequential_bounds.py`). The first row equals gsDesign's published
    /// `sfLDOF` bounds for one-sided α = 0.025 and five equal looks (4.8769, 3.3569, 2.6803,
    /// 2.2898, 2.0310; Anderson, gsDesign manual).
    const REFERENCE: [(f64, &[f64], &[f64]); 4] = [
        (
            0.025,
            &[0.2, 0.4, 0.6, 0.8, 1.0],
            &[4.8769, 3.3570, 2.6803, 2.2898, 2.0310],
        ),
        (
            0.05,
            &[0.2, 0.4, 0.6, 0.8, 1.0],
            &[4.2292, 2.8881, 2.2981, 1.9618, 1.7397],
        ),
        (0.05, &[0.64, 0.8, 0.9, 1.0], &[2.1893, 1.9725, 1.8842, 1.7893]),
        (0.05, &[0.5, 1.0], &[2.5380, 1.6621]),
    ];

    #[test]
    fn bounds_match_an_independent_computation() {
        for (alpha, fractions, expected) in REFERENCE {
            let mut boundary = Boundary::new(alpha);
            for (t, want) in fractions.iter().zip(expected) {
                let bound = boundary.add_look(*t);
                assert!((bound - want).abs() < 6e-4, "α {alpha}, t {t}: {bound} vs {want}");
            }
        }
    }

    #[test]
    fn stagewise_p_values_match_an_independent_computation() {
        // scipy, same method: P(cross an earlier bound) + P(no earlier crossing, Z_j ≥ z).
        let mut boundary = Boundary::new(0.05);
        for t in [0.64, 0.8, 0.9, 1.0] {
            boundary.add_look(t);
        }
        for (look, z, expected) in [
            (0, 2.5, 0.006210),
            (1, 2.0, 0.027174),
            (2, 1.9, 0.038129),
            (3, 1.7, 0.055241),
            (3, 1.0, 0.159720),
        ] {
            let p = boundary.p_value(look, z);
            assert!((p - expected).abs() < 2e-5, "look {look}, z {z}: {p} vs {expected}");
        }
        // A z on the bound has p = α spent so far: stopping for efficacy ⇔ p ≤ α.
        for look in 0..4 {
            let p = boundary.p_value(look, boundary.bounds()[look]);
            let spent = obrien_fleming_spent(0.05, boundary.fractions()[look]);
            assert!((p - spent).abs() < 1e-6, "look {look}: {p} vs {spent}");
        }
    }

    #[test]
    fn one_sample_plans_take_the_cases_in_thirds() {
        let step = |cases, samples| Step { cases, samples };
        assert_eq!(plan(200, 1), [step(67, 1), step(134, 1), step(200, 1)]);
        assert_eq!(plan(12, 1), [step(4, 1), step(8, 1), step(12, 1)]);
        assert_eq!(plan(11, 1), [step(11, 1)]);
        assert_eq!(plan(0, 1), [step(0, 1)]);
        assert_eq!(plan(40, 3), [step(40, 1), step(40, 2), step(40, 3)]);
    }

    #[test]
    fn cases_are_taken_in_the_order_of_their_ids_digests() {
        // SHA-256: a ca978112…, b 3e23e816…, c 2e7d2c03…, d 18ac3e73….
        assert_eq!(case_order(["a", "b", "c", "d"]), [3, 2, 1, 0]);
        assert_eq!(case_order(["c", "a", "d", "b"]), [2, 0, 3, 1]);
        assert!(case_order([]).is_empty());
    }

    #[test]
    fn an_interim_look_over_a_third_of_the_cases_spends_by_that_share() {
        let mut monitor = Monitor::new(Design::new(0.05, 0.0, false));
        let differences: Vec<f64> = (0..60).map(|i| [-1.0, 0.0, 0.0, 1.0, -1.0][i % 5]).collect();
        let data = |cases: usize| LookData {
            differences: &differences[..cases],
            scale: 1,
            samples: 1,
            max_samples: 1,
            cases,
            max_cases: 60,
            within_variance: None,
        };
        let first = monitor.look(data(20));
        assert_eq!((first.cases, first.stop), (20, None), "{first:?}");
        assert!((first.fraction - 1.0 / 3.0).abs() < 1e-12);
        // The first bound spends α(1/3) = 2 − 2Φ(z_0.975·√3) = 0.00068689 (Python's NormalDist).
        assert!((upper_tail(first.bound) - 0.00068689).abs() < 1e-7, "{}", first.bound);
        // All 60 cases: a 20-point drop with z ≈ 2.1, past the last bound (≈ 1.66).
        let last = monitor.look(data(60));
        assert_eq!(last.fraction, 1.0);
        assert_eq!(last.stop, Some(Stop::Efficacy), "{last:?}");
    }

    #[test]
    fn a_look_without_new_information_spends_nothing() {
        let mut boundary = Boundary::new(0.05);
        boundary.add_look(0.5);
        assert_eq!(boundary.add_look(0.4), f64::INFINITY);
        assert_eq!(boundary.fractions(), [0.5, 0.5]);
        let last = boundary.add_look(1.0);
        assert!((last - 1.6621).abs() < 6e-4, "{last}");
    }

    fn look_at(monitor: &mut Monitor, differences: &[f64], samples: u32, within: Option<f64>) -> Look {
        monitor.look(LookData {
            differences,
            scale: 5,
            samples,
            max_samples: 5,
            cases: differences.len(),
            max_cases: differences.len(),
            within_variance: within,
        })
    }

    #[test]
    fn a_collapse_stops_at_the_first_look_for_efficacy() {
        let mut monitor = Monitor::new(Design::new(0.05, 0.0, false));
        // 40 cases, 30 of which went from right to wrong after one sample.
        let differences: Vec<f64> = (0..40).map(|i| if i < 30 { -1.0 } else { 0.0 }).collect();
        let look = look_at(&mut monitor, &differences, 1, Some(0.05));
        assert_eq!(look.stop, Some(Stop::Efficacy));
        assert!(monitor.p_value() <= 0.05);
        assert!(look.z >= look.bound);
    }

    #[test]
    fn no_change_stops_early_for_futility_and_never_fails() {
        let mut monitor = Monitor::new(Design::new(0.05, 0.0, false));
        // A change that helped a little: 200 cases, the first sample of each against a baseline
        // of 5; variance of d 0.0116, of which the within-case part shrinks from 0.006 to 0.0012.
        let differences: Vec<f64> = (0..200)
            .map(|i| match i % 10 {
                0 | 1 => 0.2,
                2 => -0.2,
                _ => 0.0,
            })
            .collect();
        let look = look_at(&mut monitor, &differences, 1, Some(0.006));
        assert_eq!(look.stop, Some(Stop::Futility), "{look:?}");
        assert_eq!(look.fraction, 0.2);
        assert!(monitor.p_value() > 0.05);
    }

    #[test]
    fn a_single_look_is_the_fixed_gate() {
        // k = 1: one look at t = 1 with the whole α; the adjusted p-value is the raw one.
        let mut monitor = Monitor::new(Design::new(0.05, 0.0, false));
        let differences: Vec<f64> = (0..30).map(|i| [-1.0, 0.0, 0.0, 1.0, -1.0][i % 5]).collect();
        let look = monitor.look(LookData {
            differences: &differences,
            scale: 1,
            samples: 1,
            max_samples: 1,
            cases: 30,
            max_cases: 30,
            within_variance: None,
        });
        assert_eq!(look.stop, Some(Stop::LastLook));
        assert_eq!(look.fraction, 1.0);
        let fixed = crate::paired::compare(&differences, 1, 0.0, 0.05, 0.9, false);
        assert!((monitor.p_value() - fixed.p_value).abs() < 1e-9);
        assert!((look.bound - z_quantile(0.95)).abs() < 1e-9);
    }

    #[test]
    fn information_fractions_stay_between_their_bounds() {
        let differences: Vec<f64> = (0..50).map(|i| [-0.5, 0.0, 0.5, 0.0][i % 4]).collect();
        let test = crate::paired::compare(&differences, 4, 0.0, 0.05, 0.9, false);
        let data = |within| LookData {
            differences: &differences,
            scale: 4,
            samples: 2,
            max_samples: 4,
            cases: 50,
            max_cases: 50,
            within_variance: within,
        };
        let variance = test.delta.standard_error.powi(2) * 50.0;
        // Var(k)/Var(s) = (V − w(1/2 − 1/4)) / V, rounded down to a hundredth.
        let expected = ((variance - 0.2 * 0.25) / variance * 100.0).floor() / 100.0;
        assert_eq!(information_fraction(&test, data(Some(0.2))), expected);
        assert_eq!(information_fraction(&test, data(None)), 0.5);
        assert_eq!(information_fraction(&test, data(Some(100.0))), 0.5);
        assert_eq!(information_fraction(&test, data(Some(0.0))), 1.0);
    }

    #[test]
    fn extreme_levels_and_data_give_decisions_not_panics() {
        let differences: Vec<f64> = (0..30).map(|i| [-1.0, 0.0, 0.5][i % 3]).collect();
        for alpha in [0.0, 1e-12, 0.5, 1.0] {
            let mut monitor = Monitor::new(Design::new(alpha, 0.0, false));
            for samples in [1, 2, 3, 5] {
                let look = look_at(&mut monitor, &differences, samples, Some(0.1));
                assert!(!look.bound.is_nan() && !look.z.is_nan(), "α {alpha}: {look:?}");
                let p = monitor.p_value();
                assert!((0.0..=1.0).contains(&p), "α {alpha}: p {p}");
                if look.stop.is_some() {
                    break;
                }
            }
            assert!(monitor.stopped().is_some(), "α {alpha}");
        }
        // No paired case, one case, or every difference equal: the test cannot run, so only
        // the last look decides.
        for data in [vec![], vec![-1.0], vec![0.0; 10]] {
            let mut monitor = Monitor::new(Design::new(0.05, 0.0, false));
            let first = look_at(&mut monitor, &data, 1, None);
            assert_eq!(first.stop, None, "{data:?}");
            assert_eq!(look_at(&mut monitor, &data, 5, None).stop, Some(Stop::LastLook));
            assert_eq!(monitor.p_value(), 1.0);
        }
    }
}
