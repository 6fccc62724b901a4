//! The sequential gate beside the fixed design: false alarms, power and calls, on the grid of
//! the README's table.
//!
//!     cargo run --release --example sequential [-- REPETITIONS [CASES]]
//!
//! Seeded: the same build prints the same table. Printed as Markdown for the README.

use promptgate::plan::{minimum_detectable_drop, DropShape, PlanInputs};
use promptgate::sequential::Design;
use promptgate::simulation::{monte_carlo_se, simulate_sequential, Scenario};

fn main() {
    let repetitions: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    // A second argument runs only the cells with that many cases.
    let only: Option<usize> = std::env::args().nth(2).and_then(|a| a.parse().ok());
    let alpha = 0.05;
    let rho = 0.5;
    let design = Design::new(alpha, 0.0, false);
    println!(
        "One-sided α = {alpha}, ρ = {rho}, {repetitions} repetitions per cell (MC SE of 5%: {:.4}).",
        monte_carlo_se(alpha, repetitions)
    );
    println!();
    println!("| n | k | p | false alarms s=0 | s=1 | calls s=0 | s=1 | power −5 fixed | seq | calls | power −10 fixed | seq | calls | δ₈₀ | power fixed | seq | calls |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for cases in [20, 50, 200] {
        if only.is_some_and(|n| n != cases) {
            continue;
        }
        for samples in [1, 3, 5] {
            for (level, accuracy) in [0.7, 0.9, 0.97].into_iter().enumerate() {
                // Each cell has its own seeds, so a cell prints the same alone or in the table.
                let cell = cases as u64 * 1000 + u64::from(samples) * 100 + level as u64 * 10;
                let seeded = |reshuffle: f64, drop: f64, seed: u64| {
                    let scenario = Scenario {
                        cases,
                        samples,
                        accuracy,
                        intra_case_correlation: rho,
                        reshuffle,
                        drop,
                    };
                    simulate_sequential(&scenario, repetitions, design, seed)
                };
                let run = |reshuffle: f64, drop: f64| {
                    seeded(
                        reshuffle,
                        drop,
                        cell + (reshuffle * 2.0) as u64 + (drop * 40.0) as u64 * 3,
                    )
                };
                let (rerun, reshuffled) = (run(0.0, 0.0), run(1.0, 0.0));
                let (five, ten) = (run(0.5, 0.05), run(0.5, 0.10));
                // The drop the fixed design detects with 80% power (`plan`'s formula, difficulty
                // correlation 0.5 as in the power columns); not simulated past 25 points.
                let detectable = minimum_detectable_drop(
                    &PlanInputs {
                        shape: DropShape::default(),
                        baseline_accuracy: accuracy,
                        intra_case_correlation: rho,
                        difficulty_correlation: 0.5,
                        samples_baseline: samples,
                        samples_candidate: samples,
                        alpha,
                        power: 0.8,
                        margin: 0.0,
                    },
                    cases as u64,
                );
                let at_detectable = if detectable <= 0.25 {
                    // Offset 5 is no other column's seed, in this cell or the next.
                    let rates = seeded(0.5, detectable, cell + 5);
                    format!(
                        "{:.1} | {:.3} | {:.3} | {:.2}",
                        detectable * 100.0,
                        rates.fixed,
                        rates.sequential,
                        rates.calls
                    )
                } else {
                    format!("{:.1} | — | — | —", detectable * 100.0)
                };
                println!(
                    "| {cases} | {samples} | {accuracy} | {:.3} | {:.3} | {:.2} | {:.2} | {:.3} | {:.3} | {:.2} | {:.3} | {:.3} | {:.2} | {at_detectable} |",
                    rerun.sequential,
                    reshuffled.sequential,
                    rerun.calls,
                    reshuffled.calls,
                    five.fixed,
                    five.sequential,
                    five.calls,
                    ten.fixed,
                    ten.sequential,
                    ten.calls
                );
            }
        }
    }
}
