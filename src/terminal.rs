//! Text meant for a terminal: every `--format text` output goes through here.
//!
//! Values printed by the CLI come from the network (object ids, event types, error messages
//! from SMTP servers, Stripe's objects). Printed raw, `ESC[2J` clears the operator's screen, a
//! newline forges a table row, and a bidi override (U+202E) makes `evt_abc` read as something
//! else. So every character that is not plainly visible text is written as a visible escape,
//! `\u{1b}`, and a backslash as `\\` (so an escape cannot be forged by the input itself).
//! Escaped: C0 and C1 controls and DEL (`Cc`), the format characters (`Cf`, which include the
//! bidi embeddings, overrides and isolates, zero-width characters and the BOM), and the line
//! and paragraph separators U+2028/U+2029.

use std::fmt::Write as _;

/// Table cells and single-line fields are cut to this many characters (after escaping), the
/// last one an ellipsis, so one hostile value cannot push a row across the screen.
pub const MAX_FIELD_CHARS: usize = 64;

/// The ellipsis that ends a truncated field.
pub const ELLIPSIS: char = '…';

/// Whether `c` must not reach a terminal as itself.
pub fn needs_escape(c: char) -> bool {
    // U+2028/U+2029 are separators, not format characters, but terminals may break the line.
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}')
        || ledger_projections::text::is_invisible(c)
}

fn push_escaped(out: &mut String, c: char) {
    if c == '\\' {
        out.push_str("\\\\");
    } else if needs_escape(c) {
        let _ = write!(out, "\\u{{{:x}}}", c as u32);
    } else {
        out.push(c);
    }
}

/// The whole value, every unsafe character escaped, nothing cut. For multi-line blocks use
/// [`block`].
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    out
}

/// A table cell or one-line field: escaped, then cut to [`MAX_FIELD_CHARS`] characters with an
/// ellipsis. An escape sequence is never split.
pub fn field(s: &str) -> String {
    field_width(s, MAX_FIELD_CHARS)
}

/// [`field`] with another width (at least 1).
pub fn field_width(s: &str, width: usize) -> String {
    let width = width.max(1);
    let mut out = String::new();
    let mut shown = 0;
    let mut piece = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        piece.clear();
        push_escaped(&mut piece, c);
        let n = piece.chars().count();
        // Keep one place for the ellipsis unless this is the last piece and it fits exactly.
        let fits = if chars.peek().is_none() {
            shown + n <= width
        } else {
            shown + n < width
        };
        if !fits {
            out.push(ELLIPSIS);
            return out;
        }
        out.push_str(&piece);
        shown += n;
    }
    out
}

/// A block printed as several lines (pretty JSON): newlines stay, everything else is escaped
/// as in [`escape`]; nothing is cut.
pub fn block(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\n' {
            out.push('\n');
        } else {
            push_escaped(&mut out, c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_format_characters_are_shown_as_escapes() {
        assert_eq!(
            escape("sub_\u{1b}[2J\nforged"),
            "sub_\\u{1b}[2J\\u{a}forged"
        );
        assert_eq!(escape("a\u{7f}b\u{9b}c"), "a\\u{7f}b\\u{9b}c");
        assert_eq!(escape("evt_\u{202e}cba"), "evt_\\u{202e}cba");
        assert_eq!(
            escape("x\u{2066}y\u{200b}z\u{feff}"),
            "x\\u{2066}y\\u{200b}z\\u{feff}"
        );
        assert_eq!(escape("\0\r\t"), "\\u{0}\\u{d}\\u{9}");
        assert_eq!(escape("l\u{2028}p\u{2029}"), "l\\u{2028}p\\u{2029}");
        assert_eq!(escape("tag\u{e0041}"), "tag\\u{e0041}");
    }

    #[test]
    fn ordinary_text_is_unchanged_and_a_backslash_cannot_forge_an_escape() {
        assert_eq!(escape("cus_Q1é漢字 ok"), "cus_Q1é漢字 ok");
        assert_eq!(escape("\\u{1b}"), "\\\\u{1b}");
        assert_ne!(escape("\\u{1b}"), escape("\u{1b}"));
    }

    #[test]
    fn fields_are_cut_with_an_ellipsis_at_the_documented_width() {
        let long = "x".repeat(10_000);
        let cut = field(&long);
        assert_eq!(cut.chars().count(), MAX_FIELD_CHARS);
        assert!(cut.ends_with(ELLIPSIS));
        let exact = "y".repeat(MAX_FIELD_CHARS);
        assert_eq!(field(&exact), exact);
        assert_eq!(field_width("abcdef", 4), "abc…");
        // An escape is never split: it is dropped whole for the ellipsis.
        assert_eq!(field_width("ab\u{1b}cd", 5), "ab…");
        assert_eq!(field_width("", 3), "");
    }

    #[test]
    fn blocks_keep_their_lines_and_escape_the_rest() {
        assert_eq!(
            block("{\n  \"a\": \"\u{9b}\u{202e}\"\n}"),
            "{\n  \"a\": \"\\u{9b}\\u{202e}\"\n}"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn no_unsafe_character_survives_and_fields_stay_within_width(s in "\\PC*|[\\x00-\\x1f\\x7f-\\x9f\u{202a}-\u{202e}\u{2066}-\u{2069}a\\\\]*", width in 1usize..80) {
            for out in [escape(&s), field_width(&s, width), block(&s).replace('\n', "")] {
                proptest::prop_assert!(!out.chars().any(needs_escape), "{out:?}");
            }
            proptest::prop_assert!(field_width(&s, width).chars().count() <= width);
            if escape(&s).chars().count() <= width {
                proptest::prop_assert_eq!(field_width(&s, width), escape(&s));
            }
        }
    }
}
