//! The redaction policy applied to every payload before it is stored.
//!
//! Stripe events never carry full card numbers or CVCs, but charges, payment methods, cards and
//! sources carry the **cardholder's name**. The log keeps no cardholder names:
//!
//! | where                                            | field(s)               |
//! |--------------------------------------------------|------------------------|
//! | any object under a `billing_details` key         | `name`                 |
//! | any object under a `card` key                    | `name`                 |
//! | any object with `"object": "card"`               | `name`                 |
//! | any object under an `owner` key (legacy sources) | `name`, `verified_name`|
//! | anywhere                                         | `cardholder_name`      |
//!
//! A redacted value becomes the string `"[redacted]"` (null stays null, so "there was no name"
//! remains distinguishable). Customer, product and shipping names are not cardholder data and
//! are kept. The SHA-256 of the raw body is stored before redaction, so anyone holding Stripe's
//! copy of the event can still match it to the entry.

//!
//! The policy runs over the **parsed** body only (the one strict parse of
//! `ledger_projections::parse_event`), never over raw bytes: a key written with JSON escapes
//! (`"billing_\u0064etails"`) is the key it decodes to, and a body that cannot be parsed is
//! refused before anything is stored, so there is no way around the policy (ADR 12).

use ledger_projections::{Envelope, EnvelopeError};
use serde_json::Value;

pub const REDACTED: &str = "[redacted]";

/// A parsed event ready to be stored.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub envelope: Envelope,
    /// The parsed body after redaction: what the projection folds.
    pub value: Value,
    /// What is stored: the body's exact text, or the redacted re-serialisation.
    pub payload: String,
    pub payload_redacted: bool,
}

/// Parses a body once and applies the policy: for entries that do not come from a webhook
/// (backfill, snapshots), where nothing happens between the parse and the redaction.
pub fn prepare(body: &[u8]) -> Result<Prepared, EnvelopeError> {
    let text = ledger_projections::envelope::utf8(body)?;
    let (envelope, mut value) = ledger_projections::parse_event_str(text)?;
    let (payload, payload_redacted) = stored_payload(text, &mut value);
    Ok(Prepared {
        envelope,
        value,
        payload,
        payload_redacted,
    })
}

/// Applies the policy to `value`, the parse of `text`, and returns what to store: `text`
/// itself when nothing was redacted (the body byte for byte), else the re-serialised value.
pub fn stored_payload(text: &str, value: &mut Value) -> (String, bool) {
    if redact_value(value, None) {
        (value.to_string(), true)
    } else {
        (text.to_owned(), false)
    }
}

/// Redacts in place; returns whether anything changed.
pub fn redact_value(value: &mut Value, parent_key: Option<&str>) -> bool {
    match value {
        Value::Object(map) => {
            let mut changed = false;
            let is_card_object = map.get("object").and_then(Value::as_str) == Some("card");
            let name_fields: &[&str] = match parent_key {
                Some("billing_details") | Some("card") => &["name"],
                Some("owner") => &["name", "verified_name"],
                _ if is_card_object => &["name"],
                _ => &[],
            };
            for field in name_fields
                .iter()
                .chain(std::iter::once(&"cardholder_name"))
            {
                if let Some(v) = map.get_mut(*field) {
                    changed |= blank(v);
                }
            }
            for (key, child) in map.iter_mut() {
                if matches!(child, Value::Object(_) | Value::Array(_)) {
                    changed |= redact_value(child, Some(key));
                }
            }
            changed
        }
        Value::Array(items) => {
            let mut changed = false;
            for item in items {
                // An array's elements inherit the array's key: `sources.data[].owner` etc.
                changed |= redact_value(item, parent_key);
            }
            changed
        }
        _ => false,
    }
}

fn blank(v: &mut Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) if s == REDACTED => false,
        _ => {
            *v = Value::String(REDACTED.to_owned());
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn apply(v: Value) -> (Value, bool) {
        let mut value = v.clone();
        let (payload, changed) = stored_payload(&v.to_string(), &mut value);
        assert_eq!(serde_json::from_str::<Value>(&payload).unwrap(), value);
        (value, changed)
    }

    fn event_with(object: &str) -> String {
        format!(
            r#"{{"id":"evt_1","type":"charge.succeeded","livemode":false,"created":1,
            "data":{{"object":{object}}}}}"#
        )
    }

    #[test]
    fn cardholder_names_are_redacted_and_other_names_kept() {
        let event = json!({
            "id": "evt_1", "type": "charge.succeeded",
            "data": {"object": {
                "object": "charge",
                "billing_details": {"name": "Jenny Rosen", "email": "j@example.com"},
                "shipping": {"name": "Jenny Rosen", "address": {}},
                "payment_method_details": {
                    "card": {"brand": "visa", "last4": "4242", "name": "J Rosen"},
                    "card_present": {"cardholder_name": "ROSEN/JENNY"}
                },
                "source": {"object": "card", "name": "Jenny R", "last4": "4242"},
                "customer_name": "Jenny Rosen",
                "lines": [{"owner": {"name": "Jenny", "verified_name": "Jenny R", "email": "x"}}]
            }}
        });
        let (out, changed) = apply(event);
        assert!(changed);
        let o = &out["data"]["object"];
        assert_eq!(o["billing_details"]["name"], REDACTED);
        assert_eq!(o["billing_details"]["email"], "j@example.com");
        assert_eq!(o["shipping"]["name"], "Jenny Rosen");
        assert_eq!(o["payment_method_details"]["card"]["name"], REDACTED);
        assert_eq!(o["payment_method_details"]["card"]["last4"], "4242");
        assert_eq!(
            o["payment_method_details"]["card_present"]["cardholder_name"],
            REDACTED
        );
        assert_eq!(o["source"]["name"], REDACTED);
        assert_eq!(o["customer_name"], "Jenny Rosen");
        assert_eq!(o["lines"][0]["owner"]["name"], REDACTED);
        assert_eq!(o["lines"][0]["owner"]["verified_name"], REDACTED);
        assert!(!out.to_string().contains("Jenny R\""));
    }

    #[test]
    fn a_payload_without_cardholder_data_is_stored_byte_for_byte() {
        let body = event_with(r#"{"object":"customer", "name":"Jenny",  "n":1E+2}"#);
        let prepared = prepare(body.as_bytes()).unwrap();
        assert!(!prepared.payload_redacted);
        assert_eq!(prepared.payload, body);
        let null_name = event_with(r#"{"billing_details":{"name":null}}"#);
        let prepared = prepare(null_name.as_bytes()).unwrap();
        assert!(!prepared.payload_redacted);
        assert_eq!(prepared.payload, null_name);
    }

    #[test]
    fn keys_written_with_escapes_are_redacted_like_the_keys_they_decode_to() {
        let body = event_with(
            r#"{"billing_\u0064etails":{"name":"Jenny Rosen"},"\u0063ard":{"n\u0061me":"J R"},
            "x":{"cardholder\u005fname":"ROSEN"}}"#,
        );
        let prepared = prepare(body.as_bytes()).unwrap();
        assert!(prepared.payload_redacted);
        assert!(!prepared.payload.contains("Rosen") && !prepared.payload.contains("ROSEN"));
        assert!(!prepared.payload.contains("J R"));
        assert_eq!(
            prepared.value["data"]["object"]["billing_details"]["name"],
            REDACTED
        );
    }

    #[test]
    fn a_body_that_does_not_parse_is_refused_not_stored_unredacted() {
        let mut body = event_with(r#"{"card":{"name":"Jenny Rosen"},"x":"?"}"#).into_bytes();
        let at = body.iter().position(|&b| b == b'?').unwrap();
        body[at] = 0xFF;
        assert!(matches!(prepare(&body), Err(EnvelopeError::NotJson(_))));
        let truncated = event_with(r#"{"card":{"name":"Jenny Rosen"}"#);
        assert!(matches!(
            prepare(truncated.as_bytes()),
            Err(EnvelopeError::NotJson(_))
        ));
    }

    fn name_holder() -> impl Strategy<Value = Value> {
        let key = proptest::sample::select(
            &[
                "billing_details",
                "card",
                "owner",
                "source",
                "shipping",
                "data",
                "object",
                "x",
            ][..],
        );
        let leaf = prop_oneof![
            Just(Value::Null),
            "[a-zA-Z ]{0,8}".prop_map(Value::String),
            any::<i64>().prop_map(Value::from),
        ];
        leaf.prop_recursive(6, 64, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec(
                    (
                        prop_oneof![
                            key.clone().prop_map(str::to_owned),
                            Just("name".to_owned()),
                            Just("verified_name".to_owned()),
                            Just("cardholder_name".to_owned()),
                        ],
                        inner
                    ),
                    0..5
                )
                .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    /// No cardholder name is left where the policy says there is none.
    fn assert_no_name(value: &Value, parent: Option<&str>) {
        match value {
            Value::Object(map) => {
                let is_card = map.get("object").and_then(Value::as_str) == Some("card");
                let mut fields = vec!["cardholder_name"];
                match parent {
                    Some("billing_details") | Some("card") => fields.push("name"),
                    Some("owner") => fields.extend(["name", "verified_name"]),
                    _ if is_card => fields.push("name"),
                    _ => {}
                }
                for f in fields {
                    if let Some(v) = map.get(f) {
                        assert!(v.is_null() || v == REDACTED, "{f} kept in {value}");
                    }
                }
                for (k, child) in map {
                    assert_no_name(child, Some(k));
                }
            }
            Value::Array(items) => items.iter().for_each(|i| assert_no_name(i, parent)),
            _ => {}
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn redaction_leaves_no_cardholder_name_and_is_idempotent(object in name_holder()) {
            let body = event_with(&json!({"object": "charge", "x": object}).to_string());
            let prepared = prepare(body.as_bytes()).unwrap();
            assert_no_name(&prepared.value, None);
            let again = prepare(prepared.payload.as_bytes()).unwrap();
            prop_assert!(!again.payload_redacted);
            prop_assert_eq!(again.value, prepared.value);
        }

        #[test]
        fn arbitrary_bodies_are_prepared_or_refused_without_panicking(
            prefix in proptest::collection::vec(any::<u8>(), 0..64),
            seed in proptest::sample::select(&[
                "\"card\":{\"name\":\"Jenny Rosen\"}", "\"billing_\\u0064etails\":{\"name\":\"J\"}",
                "\"\\ud800\"", "1e400", "[[[[", "\u{FEFF}", "\"a\":1,\"a\":2",
            ][..]),
        ) {
            let mut body = prefix;
            body.extend_from_slice(event_with(&format!("{{{seed}}}")).as_bytes());
            match prepare(&body) {
                Ok(p) => assert_no_name(&p.value, None),
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }
}
