//! The table of the gate's false alarms and power, ours beside the naive tests; with
//! `coverage`, how often each accuracy interval holds the true accuracy; with `plan`, the power
//! `plan` promises beside the power the gate has at the cases it asks for.
//!
//!     cargo run --release --example simulate [-- REPETITIONS]
//!     cargo run --release --example simulate -- coverage [REPETITIONS]
//!     cargo run --release --example simulate -- plan [REPETITIONS]
//!
//! Seeded: the same build prints the same table. Printed as Markdown for the README.

use promptgate::plan::{power, required_cases, DropShape, PlanInputs};
use promptgate::simulation::{coverage, monte_carlo_se, simulate, Scenario};
use promptgate::stats::IntervalMethod;

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let table: Option<fn(usize)> = match args.peek().map(String::as_str) {
        Some("coverage") => Some(coverage_table),
        Some("plan") => Some(plan_table),
        _ => None,
    };
    if let Some(table) = table {
        args.next();
        return table(args.next().and_then(|a| a.parse().ok()).unwrap_or(4000));
    }
    let repetitions: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let alpha = 0.05;
    let rho = 0.5;
    println!("One-sided α = {alpha}, intra-case correlation ρ = {rho}, {repetitions} repetitions per cell");
    println!(
        "(Monte Carlo SE of a 5% rate: {:.4}).",
        monte_carlo_se(alpha, repetitions)
    );
    println!("False alarms: no true change, either a pure re-run (s = 0) or a change that reshuffles which");
    println!("cases are hard (s = 1). Power: true drops of 5 and 10 points (s = 0.5).");
    println!();
    println!("| n | k | p | ours s=0 | ours s=1 | naive s=0 | naive s=1 | 2-pt rule s=1 | ours −5 | ours −10 | naive −5 | naive −10 |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut worst: f64 = 0.0;
    let mut seed = 1u64;
    for cases in [20, 50, 200] {
        for samples in [1, 3, 5] {
            for accuracy in [0.7, 0.9, 0.97] {
                let mut run = |reshuffle: f64, drop: f64| {
                    seed += 1;
                    let scenario = Scenario {
                        cases,
                        samples,
                        accuracy,
                        intra_case_correlation: rho,
                        reshuffle,
                        drop,
                    };
                    simulate(&scenario, repetitions, alpha, seed)
                };
                let (rerun, reshuffled) = (run(0.0, 0.0), run(1.0, 0.0));
                let (five, ten) = (run(0.5, 0.05), run(0.5, 0.10));
                worst = worst.max(rerun.paired).max(reshuffled.paired);
                println!(
                    "| {cases} | {samples} | {accuracy} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                    rerun.paired,
                    reshuffled.paired,
                    rerun.naive_pooled,
                    reshuffled.naive_pooled,
                    reshuffled.threshold,
                    five.paired,
                    ten.paired,
                    five.naive_pooled,
                    ten.naive_pooled
                );
            }
        }
    }
    let bound = alpha + 2.58 * monte_carlo_se(alpha, repetitions);
    println!();
    println!("Largest false-alarm rate of the gate over all cells: {worst:.3} (α + 2.58 MC SE = {bound:.3}).");
}

/// Coverage of the nominal 95% accuracy intervals over n × k × p × ρ, each cell seeded: the
/// default, the previous default (plain spread) and `--conservative-ci`, on the same draws.
fn coverage_table(repetitions: usize) {
    let level = 0.95;
    println!(
        "Nominal {level} intervals, {repetitions} repetitions per cell (Monte Carlo SE of a 95% rate: {:.4}).",
        monte_carlo_se(level, repetitions)
    );
    println!(
        "Default: Wilson at the design-effect size from the moderated spread, t quantile. Previous: the same from the"
    );
    println!("plain spread (the default before). Conservative: Wilson on the n cases (`--conservative-ci`).");
    println!("\"above\": share of the default's intervals lying wholly above the true accuracy. Widths are means.");
    println!();
    println!("| n | k | p | ρ | default | above | width | previous | width | conservative | width |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut seed = 1u64;
    let mut cells = Vec::new();
    for cases in [10, 20, 50, 200] {
        for samples in [1, 3, 5, 20] {
            for accuracy in [0.5, 0.7, 0.9, 0.97] {
                for rho in [0.1, 0.5, 0.9] {
                    let cell = Scenario {
                        cases,
                        samples,
                        accuracy,
                        intra_case_correlation: rho,
                        reshuffle: 0.0,
                        drop: 0.0,
                    };
                    seed += 1;
                    let [default, previous, conservative] =
                        IntervalMethod::ALL.map(|method| coverage(&cell, repetitions, level, method, seed));
                    println!(
                        "| {cases} | {samples} | {accuracy} | {rho} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                        default.covered,
                        default.above,
                        default.mean_width,
                        previous.covered,
                        previous.mean_width,
                        conservative.covered,
                        conservative.mean_width
                    );
                    let name = format!("n = {cases}, k = {samples}, p = {accuracy}, ρ = {rho}");
                    cells.push((name, [default, previous, conservative]));
                }
            }
        }
    }
    println!();
    for (index, label) in ["Default", "Previous", "Conservative"].iter().enumerate() {
        let short = cells.iter().filter(|(_, c)| c[index].covered < 0.93).count();
        let Some((name, lowest)) = cells
            .iter()
            .map(|(name, c)| (name, c[index].covered))
            .min_by(|a, b| a.1.total_cmp(&b.1))
        else {
            return;
        };
        println!(
            "{label}: {short} of {} cells below 0.93; lowest {lowest:.3} at {name}.",
            cells.len()
        );
    }
    // The width the default gives up where the previous interval already covered.
    let ratios: Vec<(&String, f64)> = cells
        .iter()
        .filter(|(_, c)| c[1].covered >= 0.94)
        .map(|(name, c)| (name, c[0].mean_width / c[1].mean_width))
        .collect();
    let wider = ratios.iter().filter(|(_, r)| *r > 1.10).count();
    if let Some((name, widest)) = ratios.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
        println!(
            "Where the previous interval covered ≥ 0.94 ({} cells): the default is more than 10% wider in {wider}, at most {widest:.2}× (at {name}).",
            ratios.len()
        );
    }
}

/// `plan`'s promised power against the gate's simulated power at the cases it asks for (80%
/// power, α = 0.05, ICC 0.5, difficulty correlation 0.5 = half the cases reshuffled), for each
/// drop shape; the simulation draws proportional drops.
fn plan_table(repetitions: usize) {
    let (alpha, rho, c) = (0.05, 0.5, 0.5);
    println!(
        "Plans for 80% power at one-sided α = {alpha}, ICC {rho}, difficulty correlation {c}; the gate simulated at the planned n,"
    );
    println!(
        "{repetitions} repetitions per cell (Monte Carlo SE at 0.8: {:.4}). Simulated drops are proportional (every case loses",
        monte_carlo_se(0.8, repetitions)
    );
    println!("the same share), half the cases reshuffled: the model of the tables above.");
    println!();
    println!("| p | k | drop | n | promised | simulated | n (concentrated) | promised | simulated |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut seed = 1000u64;
    let mut worst = (0.0f64, String::new());
    for accuracy in [0.7, 0.9, 0.97] {
        for samples in [1, 3, 5] {
            for drop in [0.05, 0.10] {
                let mut row = format!("| {accuracy} | {samples} | {drop} |");
                for shape in [DropShape::Proportional, DropShape::Concentrated] {
                    let inputs = PlanInputs {
                        shape,
                        baseline_accuracy: accuracy,
                        intra_case_correlation: rho,
                        difficulty_correlation: c,
                        samples_baseline: samples,
                        samples_candidate: samples,
                        alpha,
                        power: 0.8,
                        margin: 0.0,
                    };
                    let Some(cases) = required_cases(&inputs, drop) else {
                        continue;
                    };
                    let promised = power(&inputs, cases, drop);
                    seed += 1;
                    let scenario = Scenario {
                        cases: cases as usize,
                        samples,
                        accuracy,
                        intra_case_correlation: rho,
                        reshuffle: 1.0 - c,
                        drop,
                    };
                    let simulated = simulate(&scenario, repetitions, alpha, seed).paired;
                    row.push_str(&format!(" {cases} | {promised:.3} | {simulated:.3} |"));
                    let off = (promised - simulated).abs();
                    if shape == DropShape::Proportional && off > worst.0 {
                        worst = (off, format!("p = {accuracy}, k = {samples}, drop {drop}"));
                    }
                }
                println!("{row}");
            }
        }
    }
    println!();
    println!(
        "Proportional (the default): promised and simulated power differ by at most {:.3} (at {}).",
        worst.0, worst.1
    );
}
