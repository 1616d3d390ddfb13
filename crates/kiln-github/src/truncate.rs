//! GitHub's length limits. It rejects an over-long field with a 422, which
//! would lose the whole report; a cut report with a visible marker is better.

use std::borrow::Cow;

/// Check run `output.summary` and `output.text`: GitHub documents 65535
/// characters. We count bytes, which is never fewer than characters, so the
/// result fits whichever GitHub means.
pub const MAX_OUTPUT_LEN: usize = 65535;

/// Commit status `description`, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 140;

/// Keeps the start of `text` and ends it with a marker saying how much was
/// cut, all within `max_len` bytes.
pub fn truncate_output(text: &str, max_len: usize) -> Cow<'_, str> {
    if text.len() <= max_len {
        return Cow::Borrowed(text);
    }
    // The marker's own length depends on the number in it; size it for the
    // worst case (every byte omitted) so the result always fits.
    let marker_len = marker(text.len()).len();
    let keep = floor_char_boundary(text, max_len.saturating_sub(marker_len));
    let mut out = String::with_capacity(max_len);
    out.push_str(&text[..keep]);
    out.push_str(&marker(text.len() - keep));
    Cow::Owned(out)
}

/// Keeps the end of `text` (for logs, where the last lines explain a
/// failure), prefixed with a marker, all within `max_len` bytes.
pub fn truncate_output_start(text: &str, max_len: usize) -> Cow<'_, str> {
    if text.len() <= max_len {
        return Cow::Borrowed(text);
    }
    let marker_len = marker(text.len()).len();
    let want = max_len.saturating_sub(marker_len);
    let start = ceil_char_boundary(text, text.len() - want);
    let mut out = String::with_capacity(max_len);
    out.push_str(marker(start).trim_start());
    out.push_str("\n\n");
    out.push_str(&text[start..]);
    Cow::Owned(out)
}

/// At most [`MAX_DESCRIPTION_CHARS`] characters, ending in `…` when cut.
pub fn truncate_description(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(MAX_DESCRIPTION_CHARS) {
        None => Cow::Borrowed(text),
        Some(_) => {
            let mut out: String = text.chars().take(MAX_DESCRIPTION_CHARS - 1).collect();
            out.push('…');
            Cow::Owned(out)
        }
    }
}

fn marker(omitted: usize) -> String {
    format!("\n\n… (truncated by Kiln: {omitted} bytes omitted)")
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_untouched() {
        assert!(matches!(truncate_output("abc", 10), Cow::Borrowed("abc")));
        assert!(matches!(truncate_description("ok"), Cow::Borrowed("ok")));
    }

    #[test]
    fn long_output_is_cut_with_marker_within_limit() {
        let text = "é".repeat(40_000); // 80_000 bytes, 2 per char
        let out = truncate_output(&text, MAX_OUTPUT_LEN);
        assert!(out.len() <= MAX_OUTPUT_LEN, "{}", out.len());
        assert!(out.len() > MAX_OUTPUT_LEN - 100, "{}", out.len());
        let kept = out.find('\n').expect("marker");
        assert_eq!(
            &out[kept..],
            format!("\n\n… (truncated by Kiln: {} bytes omitted)", 80_000 - kept)
        );
        assert!(text.starts_with(&out[..kept]));
    }

    #[test]
    fn long_log_keeps_the_end() {
        let text: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
        let out = truncate_output_start(&text, 1000);
        assert!(out.len() <= 1000, "{}", out.len());
        assert!(out.starts_with("… (truncated by Kiln: "), "{out}");
        assert!(out.ends_with("line 9999\n"), "{out}");
    }

    #[test]
    fn description_is_cut_to_140_chars() {
        let text = "ü".repeat(200);
        let out = truncate_description(&text);
        assert_eq!(out.chars().count(), 140);
        assert!(out.ends_with("ü…"));
        let exact = "x".repeat(140);
        assert_eq!(truncate_description(&exact), exact);
    }
}
