//! Which samples to take next: the seam between the engine and the rule that says when a
//! result has enough evidence.
//!
//! The engine asks every policy for a look, takes and grades those samples, and asks again
//! with the updated tallies, until no policy wants more. A policy decides on whole looks, never
//! on a case's own answers alone: stopping a case because its samples agree biases its mean and
//! costs the gate its power (`reference/statistics.md` §f).

use std::collections::HashMap;

use crate::run_record::SequentialSummary;
use crate::sequential::{case_order, plan, Design, LookData, Monitor, Step};
use crate::tally::CaseTally;

/// The samples of a look, as (case index, sample index). A fixed run's one look names every
/// sample of the suite: it is described, not listed, so that its jobs are made as they are
/// taken (250,000 samples would otherwise be megabytes held for the whole run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Look {
    /// Samples `0..samples` of cases `0..cases`, case by case.
    Every {
        cases: usize,
        samples: u32,
    },
    Listed(Vec<(usize, u32)>),
}

impl Look {
    pub fn len(&self) -> usize {
        match self {
            Look::Every { cases, samples } => cases.saturating_mul(*samples as usize),
            Look::Listed(samples) => samples.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl IntoIterator for Look {
    type Item = (usize, u32);
    type IntoIter = LookSamples;

    fn into_iter(self) -> LookSamples {
        match self {
            Look::Every { cases, samples } => LookSamples::Every {
                cases,
                samples,
                next: (0, 0),
            },
            Look::Listed(listed) => LookSamples::Listed(listed.into_iter()),
        }
    }
}

/// The samples of a [`Look`], in order.
pub enum LookSamples {
    Every {
        cases: usize,
        samples: u32,
        next: (usize, u32),
    },
    Listed(std::vec::IntoIter<(usize, u32)>),
}

impl Iterator for LookSamples {
    type Item = (usize, u32);

    fn next(&mut self) -> Option<(usize, u32)> {
        match self {
            LookSamples::Every { cases, samples, next } => {
                if next.0 >= *cases || *samples == 0 {
                    return None;
                }
                let current = *next;
                *next = if current.1 + 1 < *samples {
                    (current.0, current.1 + 1)
                } else {
                    (current.0 + 1, 0)
                };
                Some(current)
            }
            LookSamples::Listed(listed) => listed.next(),
        }
    }
}

/// Decides, look by look, which samples to take.
pub trait SamplingPolicy: Send {
    /// The samples of the next look, as (case index, sample index), given the tallies so far
    /// (one per case, in case order); empty when sampling is done.
    fn next_look(&mut self, tallies: &[CaseTally]) -> Look;

    /// What a sequential policy saw and decided, for the run record.
    fn summary(&self) -> Option<SequentialSummary> {
        None
    }
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
    fn next_look(&mut self, tallies: &[CaseTally]) -> Look {
        if std::mem::replace(&mut self.looked, true) {
            return Look::Listed(Vec::new());
        }
        // Case by case, so that the k samples of a case reach the server back to back.
        Look::Every {
            cases: tallies.len(),
            samples: self.samples,
        }
    }
}

/// The group-sequential gate (`sequential.rs`): looks after 1, 2, 3, 5, … samples per case
/// and at k (with k = 1: after a third, two thirds and all of the cases, in the fixed order of
/// `case_order`), each judged against the baseline's per-case results, stopping as soon as the
/// verdict is clear. Sample j of a case is the same request, and so the same cache entry, as in
/// a fixed run: a later fixed run or `baseline update` reuses every answer.
#[derive(Debug, Clone)]
pub struct Sequential {
    /// The baseline's (correct, samples) of each case, in case order; `None` for a case the
    /// baseline does not have.
    baseline: Vec<Option<(u32, u32)>>,
    /// Within-case variance of one baseline sample, averaged over cases (k ≥ 2 only).
    baseline_within: Option<f64>,
    max_samples: u32,
    /// The looks.
    plan: Vec<Step>,
    /// Case indices in the order the plan takes them.
    order: Vec<usize>,
    /// Looks asked for so far.
    asked: usize,
    cases: usize,
    monitor: Monitor,
}

impl Sequential {
    /// A gate on the cases `ids` (in case order) against `baseline` (case id, correct,
    /// samples) with at most `max_samples` per case.
    pub fn new<'a>(
        design: Design,
        max_samples: u32,
        ids: impl IntoIterator<Item = &'a str>,
        baseline: impl IntoIterator<Item = (String, u32, u32)>,
    ) -> Sequential {
        let cases: Vec<(String, u32, u32)> = baseline.into_iter().collect();
        // In the baseline's own order: a float sum must not depend on a hash map's.
        let baseline_within = within_variance(cases.iter().map(|(_, correct, samples)| (*correct, *samples)));
        let by_id: HashMap<String, (u32, u32)> = cases
            .into_iter()
            .map(|(id, correct, samples)| (id, (correct, samples)))
            .collect();
        let ids: Vec<&str> = ids.into_iter().collect();
        let baseline: Vec<Option<(u32, u32)>> = ids.iter().map(|&id| by_id.get(id).copied()).collect();
        let max_samples = max_samples.max(1);
        Sequential {
            plan: plan(baseline.len(), max_samples),
            order: case_order(ids),
            cases: baseline.len(),
            baseline,
            baseline_within,
            max_samples,
            asked: 0,
            monitor: Monitor::new(design),
        }
    }

    /// The cases a step of the plan samples, in plan order.
    fn taken(&self, step: Step) -> &[usize] {
        &self.order[..step.cases.min(self.order.len())]
    }

    /// Judge the look whose samples are in; true when sampling should stop.
    fn judge(&mut self, tallies: &[CaseTally], step: Step) -> bool {
        let mut differences = crate::paired::Differences::default();
        let mut candidate = Vec::new();
        // In plan order, so that an interim look's float sums are those of the simulation.
        for &case in self.taken(step) {
            let (Some(tally), Some(&Some(baseline))) = (tallies.get(case), self.baseline.get(case)) else {
                continue;
            };
            let counts = (tally.correct(), tally.samples());
            if differences.pair(counts, baseline).is_some() {
                candidate.push(counts);
            }
        }
        let look = self.monitor.look(LookData {
            differences: &differences.values,
            scale: differences.scale,
            samples: step.samples,
            max_samples: self.max_samples,
            cases: step.cases,
            max_cases: self.cases,
            within_variance: within_variance(candidate.into_iter()).or(self.baseline_within),
        });
        look.stop.is_some()
    }
}

/// Mean over cases of the unbiased within-case variance of one sample, m(1 − m)·s/(s − 1), over
/// the cases with at least two samples; `None` when no case has two.
pub(crate) fn within_variance(cases: impl Iterator<Item = (u32, u32)>) -> Option<f64> {
    let (mut total, mut count) = (0.0, 0usize);
    for (correct, samples) in cases.filter(|(_, samples)| *samples >= 2) {
        let (s, m) = (f64::from(samples), f64::from(correct) / f64::from(samples));
        total += m * (1.0 - m) * s / (s - 1.0);
        count += 1;
    }
    (count > 0).then(|| total / count as f64)
}

impl SamplingPolicy for Sequential {
    fn next_look(&mut self, tallies: &[CaseTally]) -> Look {
        if self.asked > 0 && (self.monitor.stopped().is_some() || self.judge(tallies, self.plan[self.asked - 1])) {
            return Look::Listed(Vec::new());
        }
        let Some(&to) = self.plan.get(self.asked) else {
            return Look::Listed(Vec::new());
        };
        let from = match self.asked {
            0 => Step { cases: 0, samples: 0 },
            asked => self.plan[asked - 1],
        };
        self.asked += 1;
        // Cases sampled at the previous look get their next samples; new ones all of theirs.
        let samples = self
            .taken(to)
            .iter()
            .enumerate()
            .flat_map(|(rank, &case)| {
                let first = if rank < from.cases { from.samples } else { 0 };
                (first..to.samples).map(move |sample| (case, sample))
            })
            .collect();
        Look::Listed(samples)
    }

    fn summary(&self) -> Option<SequentialSummary> {
        let stop = self.monitor.stopped()?;
        let (samples, cases) = self
            .monitor
            .looks()
            .last()
            .map_or((0, 0), |look| (look.samples, look.cases));
        Some(SequentialSummary {
            looks: self.monitor.looks().to_vec(),
            stop,
            looks_planned: self.plan.len(),
            samples_per_case_max: self.max_samples,
            samples_taken_per_case: samples,
            cases_taken: cases,
            cases_planned: self.cases,
            samples_taken: u64::from(samples) * cases as u64,
            samples_fixed: u64::from(self.max_samples) * self.cases as u64,
            p_value: self.monitor.p_value(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_policy_takes_k_samples_of_every_case_in_one_look() {
        let tallies = vec![CaseTally::new(), CaseTally::new()];
        let mut policy = Fixed::new(3);
        let look = policy.next_look(&tallies);
        assert_eq!(look.len(), 6);
        assert_eq!(
            look.into_iter().collect::<Vec<_>>(),
            [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
        );
        assert!(policy.next_look(&tallies).is_empty());
    }

    /// The ids of `cases` cases, those [`graded`]'s tallies are of.
    fn ids(cases: usize) -> Vec<String> {
        (0..cases).map(|case| format!("c{case}")).collect()
    }

    /// Tallies of `cases` cases whose first `samples` samples are graded right or wrong.
    fn graded(cases: usize, samples: u32, right: impl Fn(usize, u32) -> bool) -> Vec<CaseTally> {
        use crate::grader::Grade;
        use crate::provider::Response;
        use crate::tally::{Answer, Purpose, SharedTexts, Totals};
        (0..cases)
            .map(|case| {
                let mut tally = CaseTally::new();
                for sample in 0..samples {
                    let answer = Answer::Cached(Response::from_text("x"));
                    let response = tally
                        .call(sample, Purpose::Sample, answer, &mut Totals::default())
                        .unwrap();
                    let grade = if right(case, sample) {
                        Grade::correct("ok")
                    } else {
                        Grade::wrong("no")
                    };
                    tally.grade(sample, grade, &response, &mut SharedTexts::default());
                }
                tally
            })
            .collect()
    }

    #[test]
    fn a_sequential_policy_asks_look_by_look_and_stops_on_a_collapse() {
        // Baseline: 60 cases, all right in 5 of 5.
        let baseline = (0..60).map(|case| (format!("c{case}"), 5, 5));
        let ids = ids(60);
        let mut policy = Sequential::new(
            Design::new(0.05, 0.0, false),
            5,
            ids.iter().map(String::as_str),
            baseline,
        );
        assert!(policy.summary().is_none());
        let first = policy.next_look(&graded(60, 0, |_, _| true));
        assert_eq!(first.len(), 60);
        assert!(first.into_iter().all(|(_, sample)| sample == 0));
        // After one sample, 30 cases went wrong: a regression at the first look.
        let collapsed = graded(60, 1, |case, _| case % 2 == 0);
        assert!(policy.next_look(&collapsed).is_empty());
        let summary = policy.summary().unwrap();
        assert_eq!(summary.stop, crate::sequential::Stop::Efficacy);
        assert_eq!((summary.samples_taken, summary.samples_fixed), (60, 300));
        assert_eq!((summary.looks_planned, summary.samples_per_case_max), (4, 5));
        assert!(summary.p_value < 0.05);
        // Once stopped, it stays stopped.
        assert!(policy.next_look(&collapsed).is_empty());
        assert_eq!(policy.summary().unwrap().looks.len(), 1);
    }

    #[test]
    fn a_sequential_policy_takes_the_next_samples_of_every_case_until_the_last_look() {
        // Too few cases to decide early: every look is taken, each asking for the next samples.
        let baseline = (0..3).map(|case| (format!("c{case}"), 2, 3));
        let ids = ids(3);
        let mut policy = Sequential::new(
            Design::new(0.05, 0.0, false),
            3,
            ids.iter().map(String::as_str),
            baseline,
        );
        let mut asked = Vec::new();
        for taken in 0..=3 {
            let look = policy.next_look(&graded(3, taken, |case, sample| (case + sample as usize) % 3 != 0));
            let mut look: Vec<_> = look.into_iter().collect();
            // The policy asks in the plan's case order (`case_order`); which samples is what counts.
            look.sort();
            asked.push(look);
        }
        assert_eq!(asked[0], [(0, 0), (1, 0), (2, 0)]);
        assert_eq!(asked[1], [(0, 1), (1, 1), (2, 1)]);
        assert_eq!(asked[2], [(0, 2), (1, 2), (2, 2)]);
        assert!(asked[3].is_empty());
        let summary = policy.summary().unwrap();
        assert_eq!(summary.stop, crate::sequential::Stop::LastLook);
        assert_eq!(summary.samples_taken, 9);
    }

    #[test]
    fn a_one_sample_policy_asks_for_the_cases_a_third_at_a_time() {
        let ids = ids(30);
        let order = case_order(ids.iter().map(String::as_str));
        let baseline = ids
            .iter()
            .enumerate()
            .map(|(case, id)| (id.clone(), u32::from(case % 2 == 0), 1));
        let mut policy = Sequential::new(
            Design::new(0.05, 0.0, false),
            1,
            ids.iter().map(String::as_str),
            baseline,
        );
        // The candidate answers every case as the baseline did: the test cannot run until the
        // last look, so all three looks are taken.
        let (all, mut asked) = (graded(30, 1, |case, _| case % 2 == 0), Vec::new());
        loop {
            // Tallies with the answers asked for so far, and none for the others.
            let tallies: Vec<CaseTally> = all
                .iter()
                .enumerate()
                .map(|(case, tally)| match asked.iter().any(|&(asked, _)| asked == case) {
                    true => tally.clone(),
                    false => CaseTally::new(),
                })
                .collect();
            let look = policy.next_look(&tallies);
            if look.is_empty() {
                break;
            }
            asked.extend(look);
        }
        let cases: Vec<usize> = asked.iter().map(|&(case, _)| case).collect();
        assert_eq!(cases, order, "every case once, in the plan's order");
        assert!(asked.iter().all(|&(_, sample)| sample == 0));
        let summary = policy.summary().unwrap();
        assert_eq!((summary.looks.len(), summary.looks_planned), (3, 3));
        assert_eq!(
            summary.looks.iter().map(|look| look.cases).collect::<Vec<_>>(),
            [10, 20, 30]
        );
        assert_eq!(
            (summary.cases_taken, summary.cases_planned, summary.samples_taken),
            (30, 30, 30)
        );
    }
}
