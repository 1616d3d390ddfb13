//! Secret masking for everything a run prints or stores.
//!
//! Like GitHub's runner, every occurrence of every registered value becomes
//! `***`, and a multiline value is also registered line by line, because
//! output is masked a line at a time. Overlapping occurrences (one secret a
//! substring of another, or two secrets sharing characters in the text) are
//! merged into one masked range, so no fragment of either survives; this is
//! stronger than replacing longest-first, which leaves the tail of a partly
//! overlapping second secret visible.
//!
//! Any value with a non-whitespace character is masked, however short (GitHub
//! does the same; a one-character secret masks that character everywhere).
//! Blank values are ignored: masking spaces would erase the log, and GitHub
//! refuses them too. Encoded forms (base64, JSON- or URL-escaped) are not
//! derived yet.
//!
//! Matching uses one Aho-Corasick automaton over all secrets, rebuilt lazily
//! after additions, so masking costs one pass over the text however many
//! secrets there are.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::OnceLock;

use aho_corasick::AhoCorasick;

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// The set of values to hide.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// Distinct values in the order they were added.
    secrets: Vec<String>,
    known: HashSet<String>,
    /// Built on first use after a change. `None` if the automaton could not be
    /// built (pattern set too large), in which case a plain search is used.
    matcher: OnceLock<Option<AhoCorasick>>,
}

impl Masker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a secret value, and each line of it if it spans several
    /// lines. Blank values and lines are ignored.
    pub fn add(&mut self, value: &str) {
        self.insert(value);
        if value.contains('\n') {
            for line in value.split('\n') {
                self.insert(line.strip_suffix('\r').unwrap_or(line));
            }
        }
    }

    fn insert(&mut self, value: &str) {
        if value.trim().is_empty() || self.known.contains(value) {
            return;
        }
        self.known.insert(value.to_owned());
        self.secrets.push(value.to_owned());
        self.matcher = OnceLock::new();
    }

    /// The number of distinct values registered (lines of multiline values
    /// count separately).
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Replaces every occurrence of every secret in `text` with [`MASK`].
    /// Borrows `text` when nothing matches.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.secrets.is_empty() || text.is_empty() {
            return Cow::Borrowed(text);
        }
        let ranges = self.matched_ranges(text);
        if ranges.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for (start, end) in ranges {
            out.push_str(&text[last..start]);
            out.push_str(MASK);
            last = end;
        }
        out.push_str(&text[last..]);
        Cow::Owned(out)
    }

    /// Byte ranges to mask, sorted and with overlapping or touching ranges
    /// merged. Every bound is a char boundary: a match of a valid UTF-8
    /// needle in valid UTF-8 text always starts and ends on one.
    fn matched_ranges(&self, text: &str) -> Vec<(usize, usize)> {
        let matcher = self
            .matcher
            .get_or_init(|| AhoCorasick::new(&self.secrets).ok());
        let ranges = match matcher {
            Some(ac) => ac
                .find_overlapping_iter(text)
                .map(|m| (m.start(), m.end()))
                .collect(),
            None => self.plain_ranges(text),
        };
        merge_ranges(ranges)
    }

    /// The fallback search: every occurrence of every secret, one at a time.
    fn plain_ranges(&self, text: &str) -> Vec<(usize, usize)> {
        self.secrets
            .iter()
            .flat_map(|secret| overlapping_matches(text, secret))
            .collect()
    }
}

fn merge_ranges(mut ranges: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// All (possibly overlapping) occurrences of `needle` in `text`.
fn overlapping_matches<'t>(
    text: &'t str,
    needle: &'t str,
) -> impl Iterator<Item = (usize, usize)> + 't {
    let mut from = 0;
    std::iter::from_fn(move || {
        let pos = from + text.get(from..)?.find(needle)?;
        // Resume one character later so overlapping occurrences are found.
        from = pos + text[pos..].chars().next().map_or(1, char::len_utf8);
        Some((pos, pos + needle.len()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker(secrets: &[&str]) -> Masker {
        let mut m = Masker::new();
        for s in secrets {
            m.add(s);
        }
        m
    }

    #[test]
    fn masks_every_occurrence() {
        let m = masker(&["hunter2"]);
        assert_eq!(
            m.mask("pw=hunter2 again hunter2hunter2"),
            "pw=*** again ***"
        );
    }

    #[test]
    fn borrows_when_nothing_matches() {
        let m = masker(&["secret"]);
        assert!(matches!(m.mask("nothing here"), Cow::Borrowed(_)));
        assert!(matches!(Masker::new().mask("x"), Cow::Borrowed(_)));
        assert!(matches!(m.mask("a secret"), Cow::Owned(_)));
    }

    #[test]
    fn secret_that_is_a_substring_of_another() {
        // Whichever order they are added in, the longer one is fully masked
        // and the shorter one is masked where it stands alone.
        for order in [["abc", "abcdef"], ["abcdef", "abc"]] {
            let m = masker(&order);
            assert_eq!(m.mask("abcdef abc abcd"), "*** *** ***d");
        }
    }

    #[test]
    fn partially_overlapping_secrets_leave_no_fragment() {
        let m = masker(&["abcd", "cdef"]);
        assert_eq!(m.mask("xabcdefx"), "x***x");
    }

    #[test]
    fn repeated_pattern_overlaps_itself() {
        let m = masker(&["aa"]);
        assert_eq!(m.mask("aaa b aa"), "*** b ***");
    }

    #[test]
    fn multiline_secret_is_masked_line_by_line_and_whole() {
        let m = masker(&["line-one\r\nline-two\n"]);
        assert_eq!(m.mask("got line-two here"), "got *** here");
        assert_eq!(m.mask("line-one"), "***");
        assert_eq!(m.mask("[line-one\r\nline-two\n]"), "[***]");
    }

    #[test]
    fn blank_values_are_ignored_short_ones_are_not() {
        let m = masker(&["", "   ", "\n\n"]);
        assert!(m.is_empty());
        assert_eq!(m.mask("a b"), "a b");
        let m = masker(&["x"]);
        assert_eq!(m.mask("axbx"), "a***b***");
    }

    #[test]
    fn duplicates_are_registered_once_and_additions_take_effect() {
        let mut m = masker(&["one", "one"]);
        assert_eq!(m.len(), 1);
        assert_eq!(m.mask("one two"), "*** two");
        // The automaton is rebuilt after an addition.
        m.add("two");
        assert_eq!(m.mask("one two"), "*** ***");
    }

    #[test]
    fn unicode_text_and_secrets() {
        let m = masker(&["pässwörd", "日本"]);
        assert_eq!(m.mask("é pässwörd 日本語"), "é *** ***語");
    }

    #[test]
    fn many_secrets_on_a_long_line() {
        let secrets: Vec<String> = (0..2000).map(|i| format!("tok{i:05}x")).collect();
        let mut m = Masker::new();
        for s in &secrets {
            m.add(s);
        }
        let line = secrets.join(" ");
        let masked = m.mask(&line);
        assert_eq!(masked, vec![MASK; 2000].join(" "));
    }

    #[test]
    fn plain_search_fallback_agrees_with_automaton() {
        let m = masker(&["abcd", "cdef", "aa", "abc", "é"]);
        for text in ["xabcdefx aaa abc", "ééé abcdcdef", "", "none"] {
            assert_eq!(
                merge_ranges(m.plain_ranges(text)),
                m.matched_ranges(text),
                "{text:?}"
            );
        }
        assert_eq!(
            overlapping_matches("ééé", "éé").collect::<Vec<_>>(),
            [(0, 4), (2, 6)]
        );
    }

    #[test]
    fn touching_ranges_merge_into_one_mask() {
        assert_eq!(merge_ranges(vec![(4, 6), (0, 2), (2, 3)]), [(0, 3), (4, 6)]);
        assert_eq!(masker(&["ab", "cd"]).mask("abcd"), "***");
    }
}
