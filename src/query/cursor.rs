//! Pagination cursors, bound to the list, filters and order they were issued for.
//!
//! A cursor is base64url (no padding) of `v1|<endpoint>|<filter digest>|<check>|<position>`:
//! - `endpoint` names the list, so a customers cursor cannot page subscriptions;
//! - `filter digest` is a truncated SHA-256 of the normalised filters and order, so a cursor
//!   cannot be replayed with other filters (the position would mean nothing there, and paging
//!   would silently skip or repeat rows);
//! - `check` is a truncated SHA-256 over all of it, so a corrupted or hand-edited cursor is
//!   refused rather than misread. It is an integrity check, not a secret: a client that forges
//!   one only gets a page it could have asked for anyway.
//!
//! Every mismatch is `invalid_cursor`. `limit` is not bound: a client may change page size.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::FilterError;
use crate::validate::check_id;

/// Longest cursor accepted, before decoding; ours are well under 512 bytes.
pub const MAX_CURSOR_BYTES: usize = 1024;

const VERSION: &str = "v1";

/// Every paginated list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    AuditEvents,
    Customers,
    Subscriptions,
    Invoices,
    Orders,
    DeadLetters,
    Reconciliations,
    Outbox,
    History,
}

impl Endpoint {
    pub const ALL: [Endpoint; 9] = [
        Endpoint::AuditEvents,
        Endpoint::Customers,
        Endpoint::Subscriptions,
        Endpoint::Invoices,
        Endpoint::Orders,
        Endpoint::DeadLetters,
        Endpoint::Reconciliations,
        Endpoint::Outbox,
        Endpoint::History,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::AuditEvents => "audit_events",
            Endpoint::Customers => "customers",
            Endpoint::Subscriptions => "subscriptions",
            Endpoint::Invoices => "invoices",
            Endpoint::Orders => "orders",
            Endpoint::DeadLetters => "dead_letters",
            Endpoint::Reconciliations => "reconciliations",
            Endpoint::Outbox => "outbox",
            Endpoint::History => "history",
        }
    }
}

/// One list with its filters and order: what a cursor is valid for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    endpoint: Endpoint,
    digest: String,
}

fn sha256_hex16(data: &str) -> String {
    hex::encode(&Sha256::digest(data.as_bytes())[..8])
}

fn not_ours() -> FilterError {
    FilterError::cursor("is not a cursor returned by this API")
}

impl Binding {
    /// `parts` are the normalised filters and the order, as (name, value) pairs in a fixed
    /// order per endpoint; absent filters are `None`.
    pub fn new(endpoint: Endpoint, parts: &[(&str, Option<&str>)]) -> Binding {
        // JSON keeps the encoding unambiguous whatever the values contain.
        let canonical = serde_json::to_string(parts).unwrap_or_default();
        Binding {
            endpoint,
            digest: sha256_hex16(&format!("{}\n{canonical}", endpoint.as_str())),
        }
    }

    pub fn encode(&self, position: &str) -> String {
        let check = self.check(position);
        let raw = format!(
            "{VERSION}|{}|{}|{check}|{position}",
            self.endpoint.as_str(),
            self.digest
        );
        URL_SAFE_NO_PAD.encode(raw)
    }

    fn check(&self, position: &str) -> String {
        sha256_hex16(&format!(
            "{VERSION}|{}|{}|{position}",
            self.endpoint.as_str(),
            self.digest
        ))
    }

    /// The position a cursor carries, if it was issued for this binding.
    pub fn decode(&self, cursor: &str) -> Result<String, FilterError> {
        if cursor.is_empty() || cursor.len() > MAX_CURSOR_BYTES {
            return Err(not_ours());
        }
        let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| not_ours())?;
        let raw = String::from_utf8(raw).map_err(|_| not_ours())?;
        let mut fields = raw.splitn(5, '|');
        let (Some(VERSION), Some(endpoint), Some(digest), Some(check), Some(position)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(not_ours());
        };
        let Some(endpoint) = Endpoint::ALL.into_iter().find(|e| e.as_str() == endpoint) else {
            return Err(not_ours());
        };
        let issued = Binding {
            endpoint,
            digest: digest.to_owned(),
        };
        if issued.check(position) != check {
            return Err(not_ours());
        }
        if endpoint != self.endpoint {
            return Err(FilterError::cursor("belongs to another list"));
        }
        if issued.digest != self.digest {
            return Err(FilterError::cursor(
                "was issued for other filters or another order; repeat the query it came \
                 from, or start again without `cursor`",
            ));
        }
        Ok(position.to_owned())
    }

    /// A cursor whose position is a non-negative integer key (log position, row id).
    pub fn decode_position(&self, cursor: &str) -> Result<i64, FilterError> {
        let position = self.decode(cursor)?;
        position
            .parse::<i64>()
            .ok()
            .filter(|p| *p >= 0 && !position.starts_with('+'))
            .ok_or_else(not_ours)
    }

    /// A cursor whose position is an object id; checked like any id, since a forged cursor
    /// reaches the database as one.
    pub fn decode_id(&self, cursor: &str) -> Result<String, FilterError> {
        let position = self.decode(cursor)?;
        check_id("cursor", &position).map_err(|_| not_ours())?;
        Ok(position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::FilterCode;

    fn customers(user: Option<&str>) -> Binding {
        Binding::new(Endpoint::Customers, &[("user_id", user)])
    }

    #[test]
    fn a_cursor_round_trips_for_its_own_binding() {
        let b = customers(Some("user_42"));
        let cursor = b.encode("cus_9|with|pipes");
        assert_eq!(b.decode(&cursor).unwrap(), "cus_9|with|pipes");
        assert_eq!(b.decode_id(&cursor).unwrap(), "cus_9|with|pipes");
        let p = Binding::new(Endpoint::Outbox, &[]);
        assert_eq!(p.decode_position(&p.encode("17")).unwrap(), 17);
    }

    #[test]
    fn a_cursor_for_other_filters_or_another_list_is_refused() {
        let cursor = customers(Some("user_42")).encode("cus_9");
        for other in [
            customers(Some("user_43")),
            customers(None),
            Binding::new(Endpoint::Subscriptions, &[("user_id", Some("user_42"))]),
        ] {
            let e = other.decode(&cursor).unwrap_err();
            assert_eq!(e.code, FilterCode::InvalidCursor, "{e}");
        }
        // `None` and an empty string are different filters.
        let none = customers(None).encode("cus_1");
        assert!(customers(Some("")).decode(&none).is_err());
    }

    #[test]
    fn a_tampered_cursor_is_refused() {
        let b = customers(None);
        let cursor = b.encode("cus_9");
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(&cursor).unwrap()).unwrap();
        let edited = URL_SAFE_NO_PAD.encode(raw.replace("cus_9", "cus_1"));
        assert_eq!(
            b.decode(&edited).unwrap_err().code,
            FilterCode::InvalidCursor
        );
        let mut flipped = cursor.clone().into_bytes();
        flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert!(b.decode(&flipped).is_err());
        for junk in ["", "pos_7", "after_cus_1", "%%%", &"A".repeat(2000)] {
            assert_eq!(b.decode(junk).unwrap_err().code, FilterCode::InvalidCursor);
        }
    }

    #[test]
    fn a_well_formed_cursor_with_a_hostile_position_is_refused() {
        let b = customers(None);
        for position in ["", "cus_\0", "cus_\u{200B}", &"x".repeat(300)] {
            assert!(b.decode_id(&b.encode(position)).is_err(), "{position:?}");
        }
        for position in ["-1", "+1", "1.0", "x", "99999999999999999999"] {
            assert!(
                b.decode_position(&b.encode(position)).is_err(),
                "{position}"
            );
        }
    }
}
