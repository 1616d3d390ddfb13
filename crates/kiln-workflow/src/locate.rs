//! Maps an offset inside a scalar's *value* back to a line and column of the
//! file, so an error inside `${{ }}` points at the expression itself — also
//! inside `run: |` blocks, folded scalars and quoted strings with escapes.
//!
//! The value and its source text are walked side by side: characters that
//! are equal advance both, while indentation, line folding, doubled single
//! quotes and backslash escapes advance only the source. This is linear in
//! the scalar's length and runs only when there is an error to report.

use crate::span::Pos;
use crate::yaml::{Node, NodeKind, Style};

/// Line starts of one source file.
pub struct SourceMap<'a> {
    source: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SourceMap<'a> {
    pub fn new(source: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            source
                .bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        SourceMap {
            source,
            line_starts,
        }
    }

    /// Byte offset of a 1-based line and 1-based (character) column.
    fn byte_of(&self, pos: Pos) -> Option<usize> {
        let start = *self.line_starts.get(pos.line.checked_sub(1)?)?;
        let rest = self.source.get(start..)?;
        let skip = pos.col.checked_sub(1)?;
        match rest.char_indices().nth(skip) {
            Some((i, _)) => Some(start + i),
            None => Some(self.source.len()),
        }
    }

    /// The file position of byte `offset` of `node`'s scalar value. Falls
    /// back to the node's start when the source does not line up (an alias).
    pub fn value_pos(&self, node: &Node, offset: usize) -> Pos {
        let NodeKind::Scalar(value, style) = &node.kind else {
            return node.span.start;
        };
        let start = node.span.start;
        let Some(begin) = self.byte_of(start) else {
            return start;
        };
        let end = self
            .byte_of(node.span.end)
            .unwrap_or(self.source.len())
            .max(begin);
        let mut walker = Walker {
            src: self.source.get(begin..end).unwrap_or_default(),
            at: 0,
            pos: start,
        };
        let quoted = matches!(style, Style::SingleQuoted | Style::DoubleQuoted);
        if quoted && walker.peek().is_some_and(|c| c == '\'' || c == '"') {
            walker.bump();
        }
        for (i, v) in value.char_indices() {
            if i >= offset {
                break;
            }
            if !walker.consume(v, *style) {
                return walker.pos;
            }
        }
        // Spaces of the value may have been matched against indentation:
        // skip to the target character itself.
        if let Some(target) = value.get(offset..).and_then(|v| v.chars().next()) {
            while walker
                .peek()
                .is_some_and(|c| c.is_whitespace() && c != target)
            {
                walker.bump();
            }
        }
        walker.pos
    }
}

/// A cursor over the source text of one scalar.
struct Walker<'s> {
    src: &'s str,
    at: usize,
    pos: Pos,
}

impl Walker<'_> {
    fn peek(&self) -> Option<char> {
        self.src.get(self.at..)?.chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.src.get(self.at..)?.chars().nth(1)
    }

    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.at += c.len_utf8();
            if c == '\n' {
                self.pos.line += 1;
                self.pos.col = 1;
            } else {
                self.pos.col += 1;
            }
        }
    }

    /// Advances past the source of one value character `v`; `false` when
    /// the source ran out.
    fn consume(&mut self, v: char, style: Style) -> bool {
        loop {
            let Some(s) = self.peek() else {
                return false;
            };
            if style == Style::DoubleQuoted && s == '\\' {
                match self.peek_second() {
                    Some('\n' | '\r') => {
                        // An escaped line break: produces nothing.
                        self.bump();
                        while self.peek().is_some_and(|c| c.is_whitespace()) {
                            self.bump();
                        }
                        continue;
                    }
                    Some(kind) => {
                        let len = match kind {
                            'x' => 4,
                            'u' => 6,
                            'U' => 10,
                            _ => 2,
                        };
                        for _ in 0..len {
                            self.bump();
                        }
                        return true;
                    }
                    None => return false,
                }
            }
            if s == v {
                self.bump();
                return true;
            }
            // Indentation, folded line breaks and the second quote of a
            // doubled `''` have no counterpart in the value.
            if s.is_whitespace() || (style == Style::SingleQuoted && s == '\'') {
                self.bump();
                continue;
            }
            self.bump();
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::load;

    /// The position of the first `needle` in the value of key `key`.
    fn locate(source: &str, key: &str, needle: &str) -> Pos {
        let doc = load(source).unwrap();
        let root = doc.root.unwrap();
        let node = root.get(key).unwrap();
        let offset = node.as_scalar().unwrap().find(needle).unwrap();
        SourceMap::new(source).value_pos(node, offset)
    }

    fn at(line: usize, col: usize) -> Pos {
        Pos { line, col }
    }

    #[test]
    fn literal_block_lines_and_indentation() {
        let src = "a: |\n  line1\n    ${{ x }}\n  é ${{ y }}\nb: 1\n";
        assert_eq!(locate(src, "a", "${{ x"), at(3, 5));
        assert_eq!(locate(src, "a", "${{ y"), at(4, 5));
    }

    #[test]
    fn folded_and_multi_line_plain_scalars() {
        let src = "b: >-\n  folded\n  text ${{ z }}\nc: plain\n  more ${{ p }}\n";
        assert_eq!(locate(src, "b", "${{ z"), at(3, 8));
        assert_eq!(locate(src, "c", "${{ p"), at(5, 8));
    }

    #[test]
    fn quoted_scalars_with_escapes() {
        let src = "d: 'it''s ${{ s }}'\ne: \"tab\\t\\u00e9 ${{ d }}\"\n";
        assert_eq!(locate(src, "d", "${{"), at(1, 11));
        assert_eq!(locate(src, "e", "${{"), at(2, 17));
    }

    #[test]
    fn crlf_line_endings() {
        let src = "a: |\r\n  one\r\n  two ${{ x }}\r\n";
        assert_eq!(locate(src, "a", "${{"), at(3, 7));
    }
}
