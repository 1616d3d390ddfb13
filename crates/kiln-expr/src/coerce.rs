//! Scalar coercions shared by the lexer, the evaluator and [`Value`](crate::Value):
//! number ↔ string and GitHub's case-insensitive string comparison.

use std::cmp::Ordering;

/// Formats a number the way GitHub coerces it to a string (.NET's `G15`):
/// at most 15 significant digits, trailing zeros dropped, exponent notation
/// (`1E+15`, `1E-05`) outside `1e-5 ..< 1e15`. Zero (including `-0`) is `0`.
pub(crate) fn number_to_string(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    if x == 0.0 {
        return "0".to_owned();
    }
    // `{:.14e}` rounds the exact binary value half-to-even to 15 significant
    // digits, which is what .NET Core's `G15` does.
    let (mut digits, exp) = scientific_digits(&format!("{:.14e}", x.abs()));
    let significant = digits.trim_end_matches('0').len().max(1);
    digits.truncate(significant);
    let mut out = String::with_capacity(24);
    if x < 0.0 {
        out.push('-');
    }
    if exp > -5 && exp < 15 {
        push_fixed(&mut out, &digits, exp);
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('E');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.unsigned_abs()));
    }
    out
}

/// Formats a number like JavaScript's `Number.prototype.toString` (shortest
/// round-trip digits), used for numbers inside `toJSON` output. Non-finite
/// numbers have no JSON form and are written as `null`, as `JSON.stringify` does.
pub(crate) fn number_to_json(x: f64) -> String {
    if !x.is_finite() {
        return "null".to_owned();
    }
    if x == 0.0 {
        return "0".to_owned();
    }
    let (digits, exp) = scientific_digits(&format!("{:e}", x.abs()));
    let k = digits.len() as i64;
    let n = i64::from(exp) + 1;
    let mut out = String::with_capacity(24);
    if x < 0.0 {
        out.push('-');
    }
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if n - 1 < 0 { '-' } else { '+' });
        out.push_str(&(n - 1).unsigned_abs().to_string());
    }
    out
}

/// Splits Rust's `{:e}` output of a positive finite number (`d.ddde-7`) into
/// its significant digits (ASCII, no point) and its decimal exponent.
fn scientific_digits(s: &str) -> (String, i32) {
    let (mantissa, exp) = s.split_once('e').unwrap_or((s, "0"));
    let digits = mantissa.chars().filter(char::is_ascii_digit).collect();
    (digits, exp.parse().unwrap_or(0))
}

fn push_fixed(out: &mut String, digits: &str, exp: i32) {
    if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(digits);
            out.extend(std::iter::repeat_n('0', int_len - digits.len()));
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
        out.push_str(digits);
    }
}

/// Converts a string to a number like JavaScript's `Number(str)`, which GitHub
/// follows for loose comparisons and indexes: surrounding whitespace is ignored,
/// empty is `0`, `0x`/`0o`/`0b` prefixes and `Infinity` are accepted, and
/// anything else that is not a decimal literal is `NaN`.
pub(crate) fn parse_number(s: &str) -> f64 {
    let s = s.trim_matches(is_js_whitespace);
    if s.is_empty() {
        return 0.0;
    }
    match s {
        "Infinity" | "+Infinity" => return f64::INFINITY,
        "-Infinity" => return f64::NEG_INFINITY,
        _ => {}
    }
    let bytes = s.as_bytes();
    if bytes.len() > 2 && bytes[0] == b'0' {
        let radix = match bytes[1] {
            b'x' | b'X' => 16,
            b'o' | b'O' => 8,
            b'b' | b'B' => 2,
            _ => 0,
        };
        if radix != 0 {
            return parse_radix(&s[2..], radix);
        }
    }
    if is_decimal_literal(bytes) {
        s.parse().unwrap_or(f64::NAN)
    } else {
        f64::NAN
    }
}

fn parse_radix(digits: &str, radix: u32) -> f64 {
    let mut value = 0.0_f64;
    for c in digits.chars() {
        match c.to_digit(radix) {
            Some(d) => value = value * f64::from(radix) + f64::from(d),
            None => return f64::NAN,
        }
    }
    value
}

/// `[+-]? (digits [. digits?]? | . digits) ([eE] [+-]? digits)?`
fn is_decimal_literal(b: &[u8]) -> bool {
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut mantissa_digits = i - int_start;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        mantissa_digits += i - frac_start;
    }
    if mantissa_digits == 0 {
        return false;
    }
    if i < b.len() && matches!(b[i], b'e' | b'E') {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return false;
        }
    }
    i == b.len()
}

/// JavaScript's `\s`: Unicode white space plus the BOM, minus U+0085.
pub(crate) fn is_js_whitespace(c: char) -> bool {
    (c.is_whitespace() && c != '\u{85}') || c == '\u{feff}'
}

/// GitHub compares strings with .NET's `OrdinalIgnoreCase`: each character is
/// mapped to its simple uppercase form, except that the dotless `ı` keeps its
/// own identity (so `ı` ≠ `I` and `i` ≠ `İ`).
pub(crate) fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_uppercase();
    }
    if c == 'ı' {
        return c;
    }
    let mut upper = c.to_uppercase();
    match (upper.next(), upper.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

/// The case-folded form used for object keys and context names.
pub(crate) fn fold(s: &str) -> String {
    if s.is_ascii() {
        s.to_ascii_uppercase()
    } else {
        s.chars().map(fold_char).collect()
    }
}

/// Case-insensitive equality (see [`fold_char`]).
pub(crate) fn eq_ignore_case(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars().map(fold_char).eq(b.chars().map(fold_char))
}

/// Case-insensitive ordering over UTF-16 code units, as .NET compares strings.
pub(crate) fn cmp_ignore_case(a: &str, b: &str) -> Ordering {
    let fa = fold(a);
    let fb = fold(b);
    fa.encode_utf16().cmp(fb.encode_utf16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g15_formatting() {
        let cases = [
            (1.0, "1"),
            (-0.0, "0"),
            (0.5, "0.5"),
            (-2.0, "-2"),
            (123456.789, "123456.789"),
            (0.845_512_408_225_57, "0.84551240822557"),
            (1.2e-2, "0.012"),
            (0.0001, "0.0001"),
            (0.00001, "1E-05"),
            (1.5e-7, "1.5E-07"),
            (123_456_789_012_345.0, "123456789012345"),
            (1e15, "1E+15"),
            (9_007_199_254_740_992.0, "9.00719925474099E+15"),
            (1e300, "1E+300"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (x, want) in cases {
            assert_eq!(number_to_string(x), want, "{x:e}");
        }
    }

    #[test]
    fn json_number_formatting() {
        let cases = [
            (1.0, "1"),
            (-0.0, "0"),
            (1234.5, "1234.5"),
            (-123_456_789.0, "-123456789"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (1e-7, "1e-7"),
            (0.000001, "0.000001"),
            (f64::NAN, "null"),
        ];
        for (x, want) in cases {
            assert_eq!(number_to_json(x), want, "{x:e}");
        }
    }

    #[test]
    fn string_to_number() {
        let cases = [
            ("", 0.0),
            ("  ", 0.0),
            (" 123456.789 ", 123_456.789),
            (" +1.2e2 ", 120.0),
            ("-1.2E+2", -120.0),
            ("0xff", 255.0),
            ("0XFF", 255.0),
            ("0o10", 8.0),
            ("0b101", 5.0),
            ("1.", 1.0),
            (".5", 0.5),
            (" -Infinity ", f64::NEG_INFINITY),
        ];
        for (s, want) in cases {
            assert_eq!(parse_number(s), want, "{s:?}");
        }
        for s in [
            "abc", "-0xff", "0x", "1e", ".", "inf", "NaN", "1_000", "0x1g", "1 2", "e5",
        ] {
            assert!(parse_number(s).is_nan(), "{s:?}");
        }
    }

    #[test]
    fn case_folding() {
        assert!(eq_ignore_case("ς", "Σ"));
        assert!(eq_ignore_case("σ", "ς"));
        assert!(eq_ignore_case("АБВ", "абв"));
        assert!(!eq_ignore_case("i", "İ"));
        assert!(!eq_ignore_case("ı", "I"));
        assert_eq!(cmp_ignore_case("a", "["), Ordering::Less);
        assert_eq!(cmp_ignore_case("ı", "I"), Ordering::Greater);
        assert_eq!(cmp_ignore_case("abc", "ABC"), Ordering::Equal);
    }
}
