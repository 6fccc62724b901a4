//! Which samples to take next: the seam between the engine and the rule that says when a
//! result has enough evidence.
//!
//! The engine asks every policy for a look, takes and grades those samples, and asks again
//! with the updated tallies, until no policy wants more. A policy decides on whole looks, never
//! on a case's own answers alone: stopping a case because its samples agree biases its mean and
//! costs the gate its power (`reference/statistics.md` §f).

use crate::tally::CaseTally;

/// Decides, look by look, which samples to take.
pub trait SamplingPolicy: Send {
    /// The samples of the next look, as (case index, sample index), given the tallies so far
    /// (one per case, in case order); empty when sampling is done.
    fn next_look(&mut self, tallies: &[CaseTally]) -> Vec<(usize, u32)>;
}

/// Every case gets the same k samples, in one look.
#[derive(Debug, Clone)]
pub struct Fixed {
    samples: u32,
    looked: bool,
}

impl Fixed {
    pub fn new(samples: u32) -> Fixed {
        Fixed { samples, looked: false }
    }
}

impl SamplingPolicy for Fixed {
    fn next_look(&mut self, tallies: &[CaseTally]) -> Vec<(usize, u32)> {
        if std::mem::replace(&mut self.looked, true) {
            return Vec::new();
        }
        // Case by case, so that the k samples of a case reach the server back to back.
        (0..tallies.len())
            .flat_map(|case| (0..self.samples).map(move |sample| (case, sample)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_policy_takes_k_samples_of_every_case_in_one_look() {
        let tallies = vec![CaseTally::new("a"), CaseTally::new("b")];
        let mut policy = Fixed::new(3);
        assert_eq!(
            policy.next_look(&tallies),
            [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
        );
        assert!(policy.next_look(&tallies).is_empty());
    }
}
