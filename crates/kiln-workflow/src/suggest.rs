//! "Did you mean …?" suggestions for misspelt keys, events and job names.

/// The candidate closest to `name`, if it is close enough to be a likely typo.
///
/// Uses the optimal-string-alignment distance (a transposition costs one, so
/// `biuld` finds `build`), compares case-insensitively and treats `_` and `-`
/// as equal (`runs_on` finds `runs-on`).
pub fn closest<'c, I>(name: &str, candidates: I) -> Option<&'c str>
where
    I: IntoIterator<Item = &'c str>,
{
    let norm = normalize(name);
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let c = normalize(candidate);
        let distance = osa_distance(&norm, &c);
        let limit = (norm.len().max(c.len()) / 3).max(1);
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// `; did you mean "x"?` or nothing, for appending to a message.
pub fn did_you_mean<'c, I>(name: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'c str>,
{
    match closest(name, candidates) {
        Some(c) => format!("; did you mean \"{c}\"?"),
        None => String::new(),
    }
}

fn normalize(s: &str) -> Vec<char> {
    s.chars()
        .map(|c| {
            if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// Edit distance with adjacent transpositions, in O(len(a)·len(b)) time and
/// O(len(b)) memory per row (three rows).
fn osa_distance(a: &[char], b: &[char]) -> usize {
    let mut two_back: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(two_back[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut two_back, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos_transpositions_and_separator_mixups() {
        let keys = ["runs-on", "needs", "steps", "name"];
        assert_eq!(closest("runs_on", keys), Some("runs-on"));
        assert_eq!(closest("Runs-On", keys), Some("runs-on"));
        assert_eq!(closest("nedes", keys), Some("needs"));
        assert_eq!(closest("step", keys), Some("steps"));
        assert_eq!(closest("container", keys), None);
    }

    #[test]
    fn short_names_need_a_close_match() {
        assert_eq!(closest("if", ["id", "env"]), Some("id"));
        assert_eq!(closest("xy", ["id"]), None);
    }

    #[test]
    fn prefers_the_closest_candidate() {
        assert_eq!(closest("pushh", ["pull", "push"]), Some("push"));
        assert_eq!(
            did_you_mean("biuld", ["build", "test"]),
            "; did you mean \"build\"?"
        );
        assert_eq!(did_you_mean("zzz", ["build"]), "");
    }
}
