//! GitHub's filter patterns: the globs of `branches`, `tags`, `paths` and
//! their `-ignore` variants (*Workflow syntax for GitHub Actions*, "Filter
//! pattern cheat sheet").
//!
//! | syntax  | meaning                                                       |
//! |---------|---------------------------------------------------------------|
//! | `*`     | any run of characters except `/`                              |
//! | `**`    | any run of characters, `/` included                           |
//! | `**/`   | nothing, or any leading directories (`**/a` matches `a`)      |
//! | `?`     | zero or one of the **preceding** character or class           |
//! | `+`     | one or more of the **preceding** character or class           |
//! | `[…]`   | one listed character; ranges only within `a-z`, `A-Z`, `0-9`  |
//! | `\c`    | the character `c` literally                                   |
//! | `!…`    | (first character only) a negative pattern, see [`PatternList`] |
//!
//! The matcher is hand-written rather than taken from a glob crate because
//! the syntax differs from shell globs where it matters: `?` and `+` are
//! regex-style quantifiers of the preceding character (`*.jsx?` matches
//! `page.js`), not "any one character"; there are no `{a,b}` alternatives;
//! `**` needs not be a whole path segment (`**.js`, `releases/**-alpha`);
//! and lists are evaluated in order with negation. Mapping that onto
//! `glob`/`globset` would need a translation layer as large as this file.
//!
//! Matching is a dynamic program over (pattern element, text position), so
//! it runs in `O(elements × length)` with no backtracking, whatever the
//! pattern. Matching is case-sensitive and whole-string: a pattern must
//! match the entire branch name, tag name or path.

use std::fmt;

/// A compiled filter pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    negated: bool,
    elems: Vec<Elem>,
}

/// A problem in a filter pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter pattern {pattern:?}: {kind} (at character {column})")]
pub struct PatternError {
    /// The pattern as written, `!` included.
    pub pattern: String,
    /// 1-based position of the offending character within `pattern`.
    pub column: usize,
    pub kind: PatternErrorKind,
}

/// What is wrong with a pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternErrorKind {
    #[error("empty pattern")]
    Empty,
    #[error("unclosed '[' (close it with ']' or escape it as '\\[')")]
    UnclosedClass,
    #[error("empty character class '[]'")]
    EmptyClass,
    #[error("invalid range '{0}-{1}': ranges can only span a-z, A-Z or 0-9, in order")]
    InvalidRange(char, char),
    #[error("negated character classes ('[{0}…]') are not supported")]
    NegatedClass(char),
    #[error("'{0}' has no preceding character or class to repeat (escape it as '\\{0}')")]
    NothingToRepeat(char),
    #[error("'\\' at the end escapes nothing")]
    TrailingEscape,
}

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Elem {
    /// An atom repeated as `rep` says.
    Repeat(Atom, Rep),
    /// `**/`: the empty string, or any string that ends with `/`.
    AnyDirs,
}

/// A set of single characters.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    Char(char),
    /// Inclusive ranges; a single character `c` is `(c, c)`.
    Class(Vec<(char, char)>),
    /// What `*` repeats.
    NotSlash,
    /// What `**` repeats.
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rep {
    Once,
    /// `?`
    Optional,
    /// `+`
    OneOrMore,
    /// `*` and `**`
    ZeroOrMore,
}

impl Atom {
    fn matches(&self, c: char) -> bool {
        match self {
            Atom::Char(x) => *x == c,
            Atom::Class(ranges) => ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi),
            Atom::NotSlash => c != '/',
            Atom::Any => true,
        }
    }
}

impl Pattern {
    /// Compiles one pattern. A leading `!` makes it negative; it is only
    /// meaningful inside a [`PatternList`] and is ignored by [`Pattern::is_match`].
    pub fn new(pattern: &str) -> Result<Pattern, PatternError> {
        let chars: Vec<char> = pattern.chars().collect();
        let err = |index: usize, kind| PatternError {
            pattern: pattern.to_owned(),
            column: index + 1,
            kind,
        };
        let negated = chars.first() == Some(&'!');
        let mut i = usize::from(negated);
        if i == chars.len() {
            return Err(err(i.saturating_sub(1), PatternErrorKind::Empty));
        }
        let mut elems: Vec<Elem> = Vec::new();
        while let Some(&c) = chars.get(i) {
            match c {
                '*' if chars.get(i + 1) == Some(&'*') => {
                    if chars.get(i + 2) == Some(&'/') {
                        elems.push(Elem::AnyDirs);
                        i += 3;
                    } else {
                        elems.push(Elem::Repeat(Atom::Any, Rep::ZeroOrMore));
                        i += 2;
                    }
                }
                '*' => {
                    elems.push(Elem::Repeat(Atom::NotSlash, Rep::ZeroOrMore));
                    i += 1;
                }
                '?' | '+' => {
                    match elems.last_mut() {
                        Some(Elem::Repeat(Atom::Char(_) | Atom::Class(_), rep @ Rep::Once)) => {
                            *rep = if c == '?' {
                                Rep::Optional
                            } else {
                                Rep::OneOrMore
                            };
                        }
                        _ => return Err(err(i, PatternErrorKind::NothingToRepeat(c))),
                    }
                    i += 1;
                }
                '[' => {
                    let (class, end) =
                        parse_class(&chars, i).map_err(|(at, kind)| err(at, kind))?;
                    elems.push(Elem::Repeat(class, Rep::Once));
                    i = end;
                }
                '\\' => {
                    let Some(&escaped) = chars.get(i + 1) else {
                        return Err(err(i, PatternErrorKind::TrailingEscape));
                    };
                    elems.push(Elem::Repeat(Atom::Char(escaped), Rep::Once));
                    i += 2;
                }
                _ => {
                    elems.push(Elem::Repeat(Atom::Char(c), Rep::Once));
                    i += 1;
                }
            }
        }
        Ok(Pattern {
            source: pattern.to_owned(),
            negated,
            elems,
        })
    }

    /// The pattern as written, `!` included.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern starts with `!`.
    pub fn is_negated(&self) -> bool {
        self.negated
    }

    /// Whether the whole of `text` matches the pattern (without its `!`).
    pub fn is_match(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        let n = chars.len();
        // cur[j]: the elements so far can match exactly chars[..j].
        let mut cur = vec![false; n + 1];
        let mut next = vec![false; n + 1];
        cur[0] = true;
        for elem in &self.elems {
            next.fill(false);
            match elem {
                Elem::Repeat(atom, rep) => {
                    let zero = matches!(rep, Rep::Optional | Rep::ZeroOrMore);
                    let many = matches!(rep, Rep::OneOrMore | Rep::ZeroOrMore);
                    for j in 0..=n {
                        let mut reach = zero && cur[j];
                        if j > 0 && atom.matches(chars[j - 1]) {
                            // One more occurrence ending at j: the first one,
                            // or (for `+`/`*`) a repeat of a run ending at j-1.
                            reach |= cur[j - 1] || (many && next[j - 1]);
                        }
                        next[j] = reach;
                    }
                }
                Elem::AnyDirs => {
                    let mut started = false;
                    for j in 0..=n {
                        next[j] = cur[j] || (started && chars[j - 1] == '/');
                        started |= cur[j];
                    }
                }
            }
            std::mem::swap(&mut cur, &mut next);
            if !cur.contains(&true) {
                return false;
            }
        }
        cur[n]
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Parses the class starting at `chars[start] == '['`. Returns the atom and
/// the index just past the closing `]`.
fn parse_class(chars: &[char], start: usize) -> Result<(Atom, usize), (usize, PatternErrorKind)> {
    let mut i = start + 1;
    match chars.get(i) {
        Some(']') => return Err((start, PatternErrorKind::EmptyClass)),
        Some(&c @ ('!' | '^')) => return Err((i, PatternErrorKind::NegatedClass(c))),
        _ => {}
    }
    let mut ranges = Vec::new();
    loop {
        let Some(&c) = chars.get(i) else {
            return Err((start, PatternErrorKind::UnclosedClass));
        };
        let lo = match c {
            ']' => return Ok((Atom::Class(ranges), i + 1)),
            '\\' => {
                i += 1;
                *chars
                    .get(i)
                    .ok_or((start, PatternErrorKind::UnclosedClass))?
            }
            _ => c,
        };
        // `a-z`; a `-` first or right before `]` is literal.
        match (chars.get(i + 1), chars.get(i + 2)) {
            (Some('-'), Some(&hi)) if hi != ']' => {
                if !valid_range(lo, hi) {
                    return Err((i, PatternErrorKind::InvalidRange(lo, hi)));
                }
                ranges.push((lo, hi));
                i += 3;
            }
            _ => {
                ranges.push((lo, lo));
                i += 1;
            }
        }
    }
}

fn valid_range(lo: char, hi: char) -> bool {
    lo <= hi
        && [('a', 'z'), ('A', 'Z'), ('0', '9')]
            .iter()
            .any(|&(a, b)| (a..=b).contains(&lo) && (a..=b).contains(&hi))
}

/// An ordered list of patterns such as `on.push.branches`.
///
/// GitHub evaluates the list in order and the **last** pattern that matches
/// decides: a positive one includes the name, a negative (`!`) one excludes
/// it, and a later positive pattern includes it again. A name no pattern
/// matches is not included.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PatternList {
    patterns: Vec<Pattern>,
}

impl PatternList {
    /// Compiles every pattern, failing on the first invalid one.
    pub fn new<I, S>(patterns: I) -> Result<PatternList, PatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let patterns = patterns
            .into_iter()
            .map(|p| Pattern::new(p.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(PatternList { patterns })
    }

    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// The pattern that decides for `text`: the last one matching it.
    pub fn deciding_pattern(&self, text: &str) -> Option<&Pattern> {
        self.patterns.iter().rev().find(|p| p.is_match(text))
    }

    /// Whether `text` is included by the list.
    pub fn is_match(&self, text: &str) -> bool {
        self.deciding_pattern(text).is_some_and(|p| !p.is_negated())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        Pattern::new(pattern)
            .unwrap_or_else(|e| panic!("{e}"))
            .is_match(text)
    }

    fn error(pattern: &str) -> PatternError {
        Pattern::new(pattern).expect_err("pattern should be invalid")
    }

    #[test]
    fn literal_matches_whole_string_only() {
        assert!(m("main", "main"));
        assert!(!m("main", "main2"));
        assert!(!m("main", "xmain"));
        assert!(!m("main", "Main"));
        assert!(m("releases/mona-the-octocat", "releases/mona-the-octocat"));
    }

    #[test]
    fn star_stops_at_slash() {
        assert!(m("feature/*", "feature/my-branch"));
        assert!(m("feature/*", "feature/"));
        assert!(!m("feature/*", "feature/a/b"));
        assert!(m("*", "README.md"));
        assert!(!m("*", "docs/README.md"));
        assert!(m("*feature", "feature"));
        assert!(m("Octo*", "Octocat"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
    }

    #[test]
    fn double_star_crosses_slashes() {
        assert!(m("feature/**", "feature/mona/the/octocat"));
        assert!(!m("feature/**", "feature"));
        assert!(m("**", "all/the/files.md"));
        assert!(m("**", ""));
        assert!(m("**.js", "src/js/app.js"));
        assert!(m("releases/**-alpha", "releases/beta/3-alpha"));
        assert!(!m("releases/**-alpha", "releases/beta/3-beta"));
    }

    #[test]
    fn double_star_slash_matches_zero_or_more_directories() {
        assert!(m("**/README.md", "README.md"));
        assert!(m("**/README.md", "js/README.md"));
        assert!(m("**/README.md", "a/b/README.md"));
        assert!(!m("**/README.md", "xREADME.md"));
        assert!(m("docs/**/*.md", "docs/README.md"));
        assert!(m("docs/**/*.md", "docs/a/markdown/file.md"));
        assert!(m("**/docs/**", "docs/hello.md"));
        assert!(m("**/*src/**", "my-src/code/js/app.js"));
        assert!(!m("**/*src/**", "src-x/app.js"));
    }

    #[test]
    fn question_mark_makes_preceding_optional() {
        assert!(m("*.jsx?", "page.js"));
        assert!(m("*.jsx?", "page.jsx"));
        assert!(!m("*.jsx?", "page.jsxx"));
        assert!(m("colou?r", "color"));
        assert!(m("colou?r", "colour"));
        assert!(!m("colou?r", "colouur"));
        // `?` is not "any one character" as in shell globs.
        assert!(!m("v?", "v1"));
        assert!(m("v[0-9]?", "v"));
    }

    #[test]
    fn plus_repeats_preceding() {
        assert!(m("v[12].[0-9]+.[0-9]+", "v1.10.1"));
        assert!(m("v[12].[0-9]+.[0-9]+", "v2.0.0"));
        assert!(!m("v[12].[0-9]+.[0-9]+", "v2..0"));
        assert!(!m("v[12].[0-9]+.[0-9]+", "v3.0.0"));
        assert!(m("ab+c", "abbbc"));
        assert!(!m("ab+c", "ac"));
    }

    #[test]
    fn classes_and_ranges() {
        assert!(m("[CB]at", "Cat"));
        assert!(m("[CB]at", "Bat"));
        assert!(!m("[CB]at", "Hat"));
        assert!(m("[1-2]00", "100"));
        assert!(m("[1-2]00", "200"));
        assert!(!m("[1-2]00", "300"));
        assert!(m("[0-9a-z]", "q"));
        assert!(m("[0-9a-z]", "7"));
        assert!(!m("[0-9a-z]", "Q"));
        assert!(m("[a-]", "-"), "trailing '-' is literal");
        assert!(m("[-a]", "-"), "leading '-' is literal");
        assert!(m("x[\\]]", "x]"), "escaped ']' inside a class");
    }

    #[test]
    fn escapes_make_specials_literal() {
        assert!(m("\\!file", "!file"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("c\\+\\+", "c++"));
        assert!(m("what\\?", "what?"));
        assert!(m("\\[x]", "[x]"));
        assert!(m("back\\\\slash", "back\\slash"));
        assert!(m("a]b", "a]b"), "a lone ']' is literal");
    }

    #[test]
    fn bang_only_negates_at_the_start() {
        let p = Pattern::new("!docs/**").expect("valid");
        assert!(p.is_negated());
        assert!(p.is_match("docs/a.md"), "is_match ignores the '!'");
        let p = Pattern::new("a!b").expect("valid");
        assert!(!p.is_negated());
        assert!(p.is_match("a!b"));
    }

    #[test]
    fn list_last_match_decides() {
        let list = PatternList::new(["*.md", "!README.md", "README*"]).expect("valid");
        assert!(list.is_match("hello.md"));
        assert!(list.is_match("README.md"));
        assert!(list.is_match("README.doc"));
        assert!(!list.is_match("docs/hello.md"));
        let list = PatternList::new(["*.md", "!README.md"]).expect("valid");
        assert!(!list.is_match("README.md"));
        assert_eq!(
            list.deciding_pattern("README.md").map(Pattern::as_str),
            Some("!README.md")
        );
        assert!(!PatternList::new(["!a"]).expect("valid").is_match("a"));
        assert!(!PatternList::default().is_match("a"));
    }

    #[test]
    fn unicode_text_and_patterns() {
        assert!(m("fé*", "féature"));
        assert!(m("*/ü?", "a/"));
        assert!(!m("*", "ü/x"));
    }

    #[test]
    fn many_stars_do_not_blow_up() {
        let pattern = "**a**a**a**a**a**a**a**a**a**a**a**b";
        let text = "a".repeat(5_000);
        assert!(!m(pattern, &text));
    }

    #[test]
    fn errors_carry_position_and_message() {
        let e = error("release/v[0-9");
        assert_eq!(e.kind, PatternErrorKind::UnclosedClass);
        assert_eq!(e.column, 10);
        assert_eq!(
            e.to_string(),
            "invalid filter pattern \"release/v[0-9\": unclosed '[' (close it with ']' or \
             escape it as '\\[') (at character 10)"
        );
        assert_eq!(error("a[]").kind, PatternErrorKind::EmptyClass);
        assert_eq!(error("[a\\").kind, PatternErrorKind::UnclosedClass);
        assert_eq!(
            error("[z-a]").kind,
            PatternErrorKind::InvalidRange('z', 'a')
        );
        assert_eq!(
            error("[a-Z]").kind,
            PatternErrorKind::InvalidRange('a', 'Z')
        );
        assert_eq!(error("[!a]").kind, PatternErrorKind::NegatedClass('!'));
        assert_eq!(error("[^a]").kind, PatternErrorKind::NegatedClass('^'));
        assert_eq!(error("+a").kind, PatternErrorKind::NothingToRepeat('+'));
        assert_eq!(error("!?a").kind, PatternErrorKind::NothingToRepeat('?'));
        assert_eq!(error("a*?").kind, PatternErrorKind::NothingToRepeat('?'));
        assert_eq!(error("a++").kind, PatternErrorKind::NothingToRepeat('+'));
        assert_eq!(error("a\\").kind, PatternErrorKind::TrailingEscape);
        assert_eq!(error("").kind, PatternErrorKind::Empty);
        assert_eq!(error("!").kind, PatternErrorKind::Empty);
        let e = PatternList::new(["main", "bad["]).expect_err("second is invalid");
        assert_eq!(e.pattern, "bad[");
    }
}
