//! Summaries of samples: nearest-rank percentiles.
//!
//! The nearest-rank percentile `p` of `n` sorted samples is the sample at
//! rank `ceil(p/100 * n)` (1-based): always one of the samples, never an
//! interpolation. The median is `p = 50`, so with an even `n` it is the
//! lower of the two middle samples.

/// What `kiln bench` reports for one entry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub p90: f64,
    pub max: f64,
    pub n: usize,
}

/// The nearest-rank `percent` percentile of `sorted` (ascending); `None`
/// when there are no samples or `percent` is not in 1..=100.
pub fn nearest_rank(sorted: &[f64], percent: u32) -> Option<f64> {
    if sorted.is_empty() || !(1..=100).contains(&percent) {
        return None;
    }
    let n = sorted.len();
    // ceil(percent * n / 100), in integers: no rounding surprises.
    let rank = (percent as usize * n).div_ceil(100);
    sorted.get(rank.max(1) - 1).copied()
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
    fn nearest_rank_picks_real_samples() {
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(nearest_rank(&ten, 50), Some(5.0));
        assert_eq!(nearest_rank(&ten, 90), Some(9.0));
        assert_eq!(nearest_rank(&ten, 91), Some(10.0));
        assert_eq!(nearest_rank(&ten, 100), Some(10.0));
        assert_eq!(nearest_rank(&ten, 1), Some(1.0));
        let five = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(nearest_rank(&five, 50), Some(3.0));
        // ceil(0.9 * 5) = 5: the p90 of five samples is the largest.
        assert_eq!(nearest_rank(&five, 90), Some(5.0));
        assert_eq!(nearest_rank(&[7.0], 90), Some(7.0));
        assert_eq!(nearest_rank(&[], 50), None);
        assert_eq!(nearest_rank(&five, 0), None);
        assert_eq!(nearest_rank(&five, 101), None);
    }

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
