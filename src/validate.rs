//! The one rule for ids taken from the network (path segments and id-like query parameters:
//! `customer`, `user_id`, `object_id`, `type`, event ids, ...).
//!
//! An id is 1 to [`MAX_ID_BYTES`] bytes of UTF-8 with no control character (C0 including NUL,
//! DEL, C1) and no Unicode format character (general category Cf: zero-width spaces and joiners,
//! bidirectional overrides, the BOM, tags, ...). The database never sees anything else: PostgreSQL
//! refuses NUL in text (a 500 where SQLite would answer), and invisible or reordering characters
//! make two different ids look the same to a person reading a log or a report.
//!
//! The webhook envelope follows the same rules (README, "Ids"), checked in the projections crate.

use std::fmt;

/// The longest id accepted, in bytes. Stripe's ids are far shorter; the cap keeps hostile
/// megabyte "ids" out of queries, logs and error messages.
pub const MAX_ID_BYTES: usize = 255;

/// Why a value is not an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdProblem {
    Empty,
    TooLong,
    /// A C0 or C1 control character or DEL, by code point.
    Control(u32),
    /// A Unicode format character (category Cf), by code point.
    Format(u32),
}

/// A value refused by [`check_id`], naming the field it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidId {
    pub field: String,
    pub problem: IdProblem,
}

impl fmt::Display for InvalidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = &self.field;
        match self.problem {
            IdProblem::Empty => write!(f, "`{field}` must not be empty"),
            IdProblem::TooLong => write!(f, "`{field}` must be at most {MAX_ID_BYTES} bytes"),
            IdProblem::Control(c) => {
                write!(
                    f,
                    "`{field}` must not contain control characters (U+{c:04X})"
                )
            }
            IdProblem::Format(c) => write!(
                f,
                "`{field}` must not contain invisible format characters (U+{c:04X})"
            ),
        }
    }
}

impl std::error::Error for InvalidId {}

/// Checks `value` against the id rules; `field` names it in the error.
pub fn check_id(field: &str, value: &str) -> Result<(), InvalidId> {
    let problem = if value.is_empty() {
        Some(IdProblem::Empty)
    } else if value.len() > MAX_ID_BYTES {
        Some(IdProblem::TooLong)
    } else {
        value.chars().find_map(char_problem)
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(InvalidId {
            field: field.to_owned(),
            problem,
        }),
    }
}

fn char_problem(c: char) -> Option<IdProblem> {
    if c.is_control() {
        Some(IdProblem::Control(c as u32))
    } else if ledger_projections::text::is_invisible(c) {
        Some(IdProblem::Format(c as u32))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(value: &str) -> Option<IdProblem> {
        check_id("id", value).err().map(|e| e.problem)
    }

    #[test]
    fn ordinary_ids_pass() {
        for id in [
            "cus_1",
            "sub_1QexampleA",
            "invoice.paid",
            "user 42",
            "ünïcødé_ok",
            "a|b",
        ] {
            assert_eq!(problem(id), None, "{id}");
        }
        assert_eq!(problem(&"x".repeat(MAX_ID_BYTES)), None);
    }

    #[test]
    fn empty_long_control_and_format_characters_are_refused() {
        assert_eq!(problem(""), Some(IdProblem::Empty));
        assert_eq!(
            problem(&"x".repeat(MAX_ID_BYTES + 1)),
            Some(IdProblem::TooLong)
        );
        // 128 two-byte characters are 256 bytes: the cap is in bytes, as the database sees it.
        assert_eq!(problem(&"é".repeat(128)), Some(IdProblem::TooLong));
        assert_eq!(problem("cus\0"), Some(IdProblem::Control(0)));
        assert_eq!(problem("cus\u{7f}"), Some(IdProblem::Control(0x7f)));
        assert_eq!(problem("cus\u{85}"), Some(IdProblem::Control(0x85)));
        assert_eq!(problem("cus\n1"), Some(IdProblem::Control(0x0a)));
        for c in [
            '\u{200B}',
            '\u{202E}',
            '\u{2066}',
            '\u{FEFF}',
            '\u{AD}',
            '\u{E0041}',
        ] {
            assert_eq!(
                problem(&format!("cus_{c}1")),
                Some(IdProblem::Format(c as u32))
            );
        }
    }

    #[test]
    fn the_message_names_the_field_and_the_code_point() {
        let e = check_id("customer", "cus_\u{202E}1").unwrap_err();
        assert_eq!(
            e.to_string(),
            "`customer` must not contain invisible format characters (U+202E)"
        );
        let e = check_id("user_id", "a\0").unwrap_err();
        assert_eq!(
            e.to_string(),
            "`user_id` must not contain control characters (U+0000)"
        );
    }
}
