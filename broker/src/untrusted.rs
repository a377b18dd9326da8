//! Client-supplied strings (client ids, usernames, topics, …) as they may appear in the log.
//!
//! Written raw, a value with a newline forges whole log lines, escape sequences repaint or
//! clear the operator's terminal, bidirectional-override characters make text read differently
//! from what it is, and a 64 KiB topic floods the log. [`Untrusted`] writes the value quoted,
//! with every such character escaped (`\n`, `\u{1b}`, `\u{202e}`; quotes and backslashes too, so
//! the result cannot be confused with what surrounds it) and cut after [`MAX_CHARS`] characters.

use std::fmt;

/// Characters of a value written before it is cut.
pub const MAX_CHARS: usize = 200;

/// A client-supplied string, written escaped and bounded (see the module docs). Use it for
/// every log field or message part a client controls: `info!(client_id = %Untrusted(&id), …)`.
pub struct Untrusted<'a>(pub &'a str);

/// Characters that change how the text around them reads without being visible themselves:
/// zero-width characters, bidirectional embeddings, overrides and isolates, line and paragraph
/// separators, the byte-order mark.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
    )
}

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        let mut chars = self.0.char_indices();
        for (_, c) in chars.by_ref().take(MAX_CHARS) {
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                c if c.is_control() || invisible(c) => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => write!(f, "{c}")?,
            }
        }
        f.write_str("\"")?;
        if let Some((cut, _)) = chars.next() {
            write!(f, "…(+{} bytes)", self.0.len() - cut)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_invisible_characters_are_escaped() {
        let shown = Untrusted("a\nINFO fake\r\u{1b}[2J\"q\\ \u{202e}x\u{7f}é").to_string();
        assert_eq!(
            shown,
            "\"a\\nINFO fake\\r\\u{1b}[2J\\\"q\\\\ \\u{202e}x\\u{7f}é\""
        );
        assert!(!shown.chars().any(|c| c.is_control()));
    }

    #[test]
    fn long_values_are_cut() {
        let long = "é".repeat(MAX_CHARS + 10);
        let shown = Untrusted(&long).to_string();
        assert!(shown.ends_with("\"…(+20 bytes)"), "{shown}");
        assert_eq!(
            Untrusted(&long[..2 * MAX_CHARS]).to_string().len(),
            2 * MAX_CHARS + 2
        );
    }
}
