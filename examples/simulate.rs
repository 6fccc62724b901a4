//! The table of the gate's false alarms and power, ours beside the naive tests.
//!
//!     cargo run --release --example simulate [-- REPETITIONS]
//!
//! Seeded: the same build prints the same table. Printed as Markdown for the README.

use promptgate::simulation::{monte_carlo_se, simulate, Scenario};

fn main() {
    let repetitions: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
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
