//! Summaries of samples: nearest-rank percentiles
//! ([`kiln_vm::bench::nearest_rank`]).

use kiln_vm::bench::nearest_rank;

/// What `kiln bench` reports for one entry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub p90: f64,
    pub max: f64,
    pub n: usize,
}

/// Median, p90 and max of `samples` (any order); `None` if empty.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(Summary {
        median: nearest_rank(&sorted, 50)?,
        p90: nearest_rank(&sorted, 90)?,
        max: *sorted.last()?,
        n: sorted.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_sort_first() {
        let s = summarize(&[30.0, 10.0, 20.0, 100.0]).expect("samples");
        assert_eq!(
            s,
            Summary {
                median: 20.0,
                p90: 100.0,
                max: 100.0,
                n: 4
            }
        );
        // Twenty samples: p90 is the 18th.
        let twenty: Vec<f64> = (1..=20).rev().map(f64::from).collect();
        let s = summarize(&twenty).expect("samples");
        assert_eq!((s.median, s.p90, s.max, s.n), (10.0, 18.0, 20.0, 20));
        assert_eq!(summarize(&[]), None);
    }
}
