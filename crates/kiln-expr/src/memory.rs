//! GitHub's memory budget for one evaluation (1 MiB). It stops expressions
//! such as nested `format('{0}{0}…', …)` from growing without bound.
//!
//! Accounting follows GitHub's model: every node's result is charged at its
//! nesting level; when a node finishes with a scalar result, what its
//! sub-expressions held is released. Strings cost like .NET strings (26 bytes
//! plus 2 per UTF-16 unit), anything else 24 bytes. Functions that build
//! strings also check their output as it grows, so no single allocation
//! exceeds the budget.

use crate::MAX_MEMORY;
use crate::error::EvalError;

const STRING_OVERHEAD: usize = 26;
const OBJECT_SIZE: usize = 24;

/// The cost of holding a string of this content.
pub(crate) fn string_cost(s: &str) -> usize {
    STRING_OVERHEAD + 2 * utf16_len(s)
}

/// The cost of holding a non-string value.
pub(crate) const fn object_cost() -> usize {
    OBJECT_SIZE
}

fn utf16_len(s: &str) -> usize {
    // Every char is one unit, except those needing four UTF-8 bytes (two units).
    s.bytes()
        .map(|b| usize::from(b & 0xC0 != 0x80) + usize::from(b >= 0xF0))
        .sum()
}

/// Bytes held per nesting level during one evaluation.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    levels: Vec<usize>,
    total: usize,
}

impl Memory {
    /// Frees what levels deeper than `level` hold, once their results are consumed.
    pub(crate) fn release_deeper(&mut self, level: usize) {
        if self.levels.len() > level + 1 {
            let freed: usize = self.levels.drain(level + 1..).sum();
            self.total -= freed;
        }
    }

    /// Charges `bytes` at `level`. With `release_deeper`, first frees what
    /// deeper levels hold (their results were consumed by this one).
    pub(crate) fn charge(
        &mut self,
        level: usize,
        bytes: usize,
        release_deeper: bool,
    ) -> Result<(), EvalError> {
        if release_deeper {
            self.release_deeper(level);
        }
        if self.levels.len() <= level {
            self.levels.resize(level + 1, 0);
        }
        self.levels[level] += bytes;
        self.total += bytes;
        if self.total > MAX_MEMORY {
            return Err(EvalError::MemoryExceeded);
        }
        Ok(())
    }
}

/// A string under construction that fails once it would exceed the budget.
#[derive(Debug)]
pub(crate) struct StrBuilder {
    buf: String,
    cost: usize,
}

impl StrBuilder {
    pub(crate) fn new() -> Self {
        Self {
            buf: String::new(),
            cost: STRING_OVERHEAD,
        }
    }

    pub(crate) fn push_str(&mut self, s: &str) -> Result<(), EvalError> {
        self.cost += 2 * utf16_len(s);
        if self.cost > MAX_MEMORY {
            return Err(EvalError::MemoryExceeded);
        }
        self.buf.push_str(s);
        Ok(())
    }

    pub(crate) fn push(&mut self, c: char) -> Result<(), EvalError> {
        self.push_str(c.encode_utf8(&mut [0; 4]))
    }

    pub(crate) fn finish(self) -> String {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_lengths() {
        assert_eq!(utf16_len("abc"), 3);
        assert_eq!(utf16_len("é"), 1);
        assert_eq!(utf16_len("€"), 1);
        assert_eq!(utf16_len("😊"), 2);
    }

    #[test]
    fn deeper_levels_are_released() {
        let mut m = Memory::default();
        m.charge(2, 600_000, false).expect("fits");
        m.charge(1, 100, true).expect("child released");
        assert_eq!(m.total, 100);
        m.charge(1, 600_000, false).expect("fits");
        assert!(m.charge(1, 600_000, false).is_err());
    }

    #[test]
    fn builder_stops_at_the_budget() {
        let mut b = StrBuilder::new();
        let chunk = "x".repeat(1024);
        let mut pushed = 0;
        while b.push_str(&chunk).is_ok() {
            pushed += 1;
        }
        assert_eq!(pushed, 511);
    }
}
