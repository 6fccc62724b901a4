//! `promptgate plan`: sizing a suite before it is written (see `crate::plan` for the formulas).

use super::Console;
use crate::error::Error;
use crate::exit_code;
use crate::plan::{self, DropShape, PlanInputs};

/// What `plan` is asked.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOptions {
    /// Baseline accuracy.
    pub accuracy: f64,
    /// Samples per case (k) in both runs.
    pub samples: u32,
    /// The drop to detect.
    pub drop: Option<f64>,
    /// Cases in the suite: asks for the smallest detectable drop (and the power for `drop`).
    pub cases: Option<u64>,
    /// One-sided significance level.
    pub alpha: f64,
    pub power: f64,
    /// Intra-case correlation.
    pub icc: f64,
    /// Correlation of case difficulty between baseline and candidate.
    pub difficulty_correlation: f64,
    /// Tolerated drop.
    pub margin: f64,
    /// How the drop falls on the cases.
    pub shape: DropShape,
    /// Solve for the variants per case of a robustness family (`drop` is the flip-rate
    /// increase, `cases` the suite's size) instead of for cases or a drop.
    pub variants: bool,
}

/// The most variants per case `plan` considers (the config's limit).
const MAX_VARIANTS: u32 = crate::limits::VARIANTS.1 as u32;

/// `promptgate plan`: the cases a suite needs to detect a drop, or the smallest drop a suite of
/// a given size detects, under two assumptions about how a change moves case difficulty.
pub fn plan(args: &PlanOptions, console: &mut Console) -> Result<i32, Error> {
    if args.drop.is_none() && args.cases.is_none() {
        return Err(Error::usage(
            "plan needs --drop (to get the number of cases) or --cases (to get the smallest detectable drop)",
        )
        .with_hint("e.g. promptgate plan --accuracy 0.9 --samples 5 --drop 0.05"));
    }
    // α = 0 or power = 1 ask for infinitely many cases; a drop larger than the accuracy cannot
    // happen. Each is a usage error, not a number.
    use crate::limits::{strictly_within, ONE_SIDED_ALPHA, POWER};
    strictly_within(args.alpha, ONE_SIDED_ALPHA)
        .map_err(|m| Error::usage(format!("--alpha {m}")).with_hint("the usual one-sided level is 0.05"))?;
    strictly_within(args.power, POWER)
        .map_err(|m| Error::usage(format!("--power {m}")).with_hint("the usual power is 0.8"))?;
    if let Some(drop) = args.drop {
        if drop > args.accuracy {
            return Err(Error::usage(format!(
                "a drop of {:.1} points from {:.1}% accuracy is impossible",
                drop * 100.0,
                args.accuracy * 100.0
            ))
            .with_hint("--drop is in the same units as --accuracy: 0.05 is 5 points"));
        }
        if drop <= 0.0 {
            return Err(Error::usage("--drop must be above 0").with_hint("e.g. --drop 0.05 for 5 points"));
        }
    }
    let inputs = |difficulty_correlation: f64| PlanInputs {
        shape: args.shape,
        baseline_accuracy: args.accuracy,
        intra_case_correlation: args.icc,
        difficulty_correlation,
        samples_baseline: args.samples,
        samples_candidate: args.samples,
        alpha: args.alpha,
        power: args.power,
        margin: args.margin,
    };
    let setting = if args.variants {
        format!(
            "robustness family: flip rate {:.1}% in the baseline",
            (1.0 - args.accuracy) * 100.0
        )
    } else {
        format!("baseline accuracy {:.1}%, k = {}", args.accuracy * 100.0, args.samples)
    };
    let shape = match args.shape {
        DropShape::Proportional => "every case loses the same share",
        DropShape::Concentrated => "the drop keeps the spread between cases",
    };
    console.line(&format!(
        "{setting}, one-sided α = {}, power {}, ICC {}, margin {}; {shape}",
        args.alpha, args.power, args.icc, args.margin
    ))?;
    let scenarios = [
        (args.difficulty_correlation, "as given"),
        (0.0, "pessimistic: the change reshuffles which cases are hard"),
    ];
    match (args.drop, args.cases) {
        (Some(drop), Some(cases)) if args.variants => {
            for (c, label) in scenarios {
                match plan::variants_needed(&inputs(c), cases, drop, MAX_VARIANTS) {
                    Some(k) => console.line(&format!(
                        "to detect {:.1} more points of flips with {cases} cases: {k} variants per case (difficulty correlation {c}, {label})",
                        drop * 100.0
                    ))?,
                    None => console.line(&format!(
                        "{cases} cases cannot detect {:.1} more points of flips with up to {MAX_VARIANTS} variants each (difficulty correlation {c}, {label}): add cases; `plan --accuracy {:.2} --drop {drop}` says how many",
                        drop * 100.0,
                        args.accuracy
                    ))?,
                }
            }
        }
        (Some(drop), None) => {
            for (c, label) in scenarios {
                match plan::required_cases(&inputs(c), drop) {
                    Some(n) => console.line(&format!(
                        "to detect a {:.1}-point drop: {n} cases (difficulty correlation {c}, {label}; σ_d = {:.4})",
                        drop * 100.0,
                        plan::difference_sd(&inputs(c), drop)
                    ))?,
                    None => {
                        return Err(Error::usage("the drop must be larger than the margin")
                            .with_hint("lower --margin or raise --drop"))
                    }
                }
            }
        }
        (drop, Some(cases)) => {
            for (c, label) in scenarios {
                let mde = plan::minimum_detectable_drop(&inputs(c), cases);
                console.print(&format!(
                    "with {cases} cases: smallest detectable drop {:.1} points (difficulty correlation {c}, {label})",
                    mde * 100.0
                ))?;
                if let Some(drop) = drop {
                    console.print(&format!(
                        "; power for a {:.1}-point drop: {:.2}",
                        drop * 100.0,
                        plan::power(&inputs(c), cases, drop)
                    ))?;
                }
                console.line("")?;
            }
        }
        (None, None) => unreachable!("checked above"),
    }
    let cases = args.cases.or_else(|| {
        args.drop
            .and_then(|drop| plan::required_cases(&inputs(args.difficulty_correlation), drop))
    });
    // A family's plan is about variants, not about stopping early.
    if let Some(cases) = cases.filter(|_| !args.variants) {
        console.line(&sequential_expectation(args, cases))?;
    }
    Ok(exit_code::SUCCESS)
}

/// Repetitions of the simulation behind `plan`'s sequential figures: a few seconds at most,
/// and a Monte Carlo error of about 2 points on a share of calls.
const SEQUENTIAL_REPETITIONS: usize = 400;
/// Above this many cases the simulation would take too long for a planning answer.
const SEQUENTIAL_MAX_CASES: u64 = 5_000;

/// What `gate --sampling sequential` is expected to spend with `cases` cases: the mean share of
/// the fixed design's n·k calls, simulated on the same model as the README's tables (case
/// difficulty Beta-distributed with the given accuracy and ICC, the given share of cases
/// keeping their difficulty), when nothing changed and at `--drop`, seeded.
fn sequential_expectation(args: &PlanOptions, cases: u64) -> String {
    use crate::sequential::Design;
    use crate::simulation::{simulate_sequential, Scenario};
    let prefix = "with `gate --sampling sequential`";
    if args.samples < 2 && cases < crate::sequential::MIN_CASES_FOR_BATCHES as u64 {
        return format!(
            "{prefix}: with k = 1 and fewer than {} cases there is a single look, so it makes the fixed gate's calls",
            crate::sequential::MIN_CASES_FOR_BATCHES
        );
    }
    let simulable = args.accuracy > 0.0
        && args.accuracy < 1.0
        && args.icc > 0.0
        && args.icc < 1.0
        && (0.0..=1.0).contains(&args.difficulty_correlation);
    if !simulable || !(2..=SEQUENTIAL_MAX_CASES).contains(&cases) {
        return format!(
            "{prefix}: not simulated for {cases} cases at accuracy {} and ICC {} (2–{SEQUENTIAL_MAX_CASES} cases, both strictly between 0 and 1)",
            args.accuracy, args.icc
        );
    }
    let design = Design::new(args.alpha, args.margin, false);
    let scenario = |drop: f64| Scenario {
        cases: cases as usize,
        samples: args.samples,
        accuracy: args.accuracy,
        intra_case_correlation: args.icc,
        reshuffle: 1.0 - args.difficulty_correlation,
        drop,
    };
    let fixed_calls = cases * u64::from(args.samples);
    let unchanged = simulate_sequential(&scenario(0.0), SEQUENTIAL_REPETITIONS, design, 1);
    let mut line = format!(
        "{prefix} and {cases} cases: expected calls {:.0}% of the fixed {fixed_calls} when nothing changed",
        unchanged.calls * 100.0
    );
    if let Some(drop) = args.drop {
        let dropped = simulate_sequential(&scenario(drop), SEQUENTIAL_REPETITIONS, design, 2);
        line.push_str(&format!(
            ", {:.0}% at a {:.1}-point drop (power {:.2}, fixed {:.2})",
            dropped.calls * 100.0,
            drop * 100.0,
            dropped.sequential,
            dropped.fixed
        ));
    }
    line.push_str(&format!(
        " (simulated, {SEQUENTIAL_REPETITIONS} repetitions, difficulty correlation {})",
        args.difficulty_correlation
    ));
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::tests::printed;

    fn options() -> PlanOptions {
        PlanOptions {
            accuracy: 0.9,
            samples: 5,
            drop: Some(0.05),
            cases: None,
            alpha: 0.05,
            power: 0.8,
            icc: 0.5,
            difficulty_correlation: 0.5,
            margin: 0.0,
            shape: DropShape::Proportional,
            variants: false,
        }
    }

    /// Independent figures (scipy 1.17.1, the same σ_d model written out in Python): a flip
    /// rate of 5% rising by 10 points, ICC 0.5, difficulty correlation 0.5, one-sided α 0.05,
    /// power 0.8, the concentrated shape: 44 cases need 4 variants (power 0.8035; 1 variant:
    /// 0.5609); 10 cases cannot reach 0.8 with any number up to 100 (0.4118 at 100). The
    /// proportional shape (numpy, `plan::tests`' closed form): 3 variants (power 0.8277; 2:
    /// 0.7244).
    #[test]
    fn a_family_plan_says_how_many_variants_per_case() {
        let family = |cases| PlanOptions {
            accuracy: 0.95,
            drop: Some(0.10),
            cases: Some(cases),
            variants: true,
            shape: DropShape::Concentrated,
            ..options()
        };
        let (out, _, code) = printed(|console| plan(&family(44), console));
        assert_eq!(code.unwrap(), exit_code::SUCCESS);
        assert!(
            out.contains("to detect 10.0 more points of flips with 44 cases: 4 variants per case (difficulty correlation 0.5, as given)"),
            "{out}"
        );
        let inputs = PlanInputs {
            shape: DropShape::Concentrated,
            baseline_accuracy: 0.95,
            intra_case_correlation: 0.5,
            difficulty_correlation: 0.5,
            samples_baseline: 4,
            samples_candidate: 4,
            alpha: 0.05,
            power: 0.8,
            margin: 0.0,
        };
        assert!((plan::power(&inputs, 44, 0.10) - 0.8035).abs() < 5e-4);
        let proportional = PlanOptions {
            shape: DropShape::Proportional,
            ..family(44)
        };
        let (out, _, _) = printed(|console| plan(&proportional, console));
        assert!(
            out.contains("to detect 10.0 more points of flips with 44 cases: 3 variants per case (difficulty correlation 0.5, as given)"),
            "{out}"
        );
        let with_k = |k| PlanInputs {
            shape: DropShape::Proportional,
            samples_baseline: k,
            samples_candidate: k,
            ..inputs
        };
        assert!((plan::power(&with_k(3), 44, 0.10) - 0.827709124309296).abs() < 1e-9);
        assert!((plan::power(&with_k(2), 44, 0.10) - 0.7243822782668629).abs() < 1e-9);
        let (out, _, _) = printed(|console| plan(&family(10), console));
        assert!(
            out.contains("10 cases cannot detect 10.0 more points of flips with up to 100 variants each"),
            "{out}"
        );
    }

    #[test]
    fn a_plan_prints_both_scenarios_with_the_formulas_figures() {
        let (out, _, code) = printed(|console| plan(&options(), console));
        assert_eq!(code.unwrap(), exit_code::SUCCESS);
        let inputs = |difficulty_correlation| PlanInputs {
            shape: DropShape::Proportional,
            baseline_accuracy: 0.9,
            intra_case_correlation: 0.5,
            difficulty_correlation,
            samples_baseline: 5,
            samples_candidate: 5,
            alpha: 0.05,
            power: 0.8,
            margin: 0.0,
        };
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert_eq!(
            lines[0],
            "baseline accuracy 90.0%, k = 5, one-sided α = 0.05, power 0.8, ICC 0.5, margin 0; every case loses the same share"
        );
        let cases = plan::required_cases(&inputs(0.5), 0.05).unwrap();
        assert!(
            lines[3].starts_with(&format!(
                "with `gate --sampling sequential` and {cases} cases: expected calls "
            )) && lines[3].contains(&format!("% of the fixed {} when nothing changed, ", cases * 5))
                && lines[3].contains("% at a 5.0-point drop (power 0."),
            "{}",
            lines[3]
        );
        for (line, c) in lines[1..3].iter().zip([0.5, 0.0]) {
            let cases = plan::required_cases(&inputs(c), 0.05).unwrap();
            assert!(
                line.starts_with(&format!(
                    "to detect a 5.0-point drop: {cases} cases (difficulty correlation {c}"
                )),
                "{line}"
            );
        }
        let (out, _, _) = printed(|console| {
            plan(
                &PlanOptions {
                    cases: Some(200),
                    ..options()
                },
                console,
            )
        });
        assert!(
            out.contains("with 200 cases: smallest detectable drop ") && out.contains("; power for a 5.0-point drop: "),
            "{out}"
        );
    }

    #[test]
    fn impossible_questions_are_usage_errors() {
        for (change, needle) in [
            (
                PlanOptions {
                    drop: None,
                    ..options()
                },
                "needs --drop",
            ),
            (
                PlanOptions {
                    alpha: 0.0,
                    ..options()
                },
                "--alpha 0",
            ),
            (
                PlanOptions {
                    power: 1.0,
                    ..options()
                },
                "--power 1",
            ),
            (
                PlanOptions {
                    drop: Some(0.95),
                    ..options()
                },
                "impossible",
            ),
            (
                PlanOptions {
                    margin: 0.1,
                    ..options()
                },
                "larger than the margin",
            ),
        ] {
            let (_, _, result) = printed(|console| plan(&change, console));
            let error = result.unwrap_err();
            assert!(error.to_string().contains(needle), "{needle}: {error}");
            assert_eq!(error.exit_code(), exit_code::BAD_INPUT);
        }
    }

    #[test]
    fn the_sequential_expectation_is_the_simulation_and_says_when_it_cannot_be() {
        use crate::sequential::Design;
        use crate::simulation::{simulate_sequential, Scenario};
        let args = PlanOptions {
            cases: Some(60),
            ..options()
        };
        let line = sequential_expectation(&args, 60);
        let scenario = Scenario {
            cases: 60,
            samples: 5,
            accuracy: 0.9,
            intra_case_correlation: 0.5,
            reshuffle: 0.5,
            drop: 0.0,
        };
        let unchanged = simulate_sequential(&scenario, SEQUENTIAL_REPETITIONS, Design::new(0.05, 0.0, false), 1);
        assert!(
            line.contains(&format!(
                "expected calls {:.0}% of the fixed 300",
                unchanged.calls * 100.0
            )),
            "{line}"
        );
        assert!(unchanged.calls < 0.9 && unchanged.calls > 0.2, "{unchanged:?}");
        let one_sample = PlanOptions {
            samples: 1,
            ..args.clone()
        };
        let single = sequential_expectation(&one_sample, 11);
        assert!(single.contains("there is a single look"), "{single}");
        // With k = 1 the looks take the cases in thirds, so calls are saved too.
        let thirds = sequential_expectation(&one_sample, 60);
        assert!(
            thirds.contains("expected calls") && thirds.contains("of the fixed 60 "),
            "{thirds}"
        );
        let certain = sequential_expectation(
            &PlanOptions {
                accuracy: 1.0,
                ..args.clone()
            },
            60,
        );
        assert!(certain.contains("not simulated"), "{certain}");
        assert!(sequential_expectation(&args, 1_000_000).contains("not simulated"));
    }
}
