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

use serde_json::Value;

pub const REDACTED: &str = "[redacted]";

/// Outcome of applying the policy to a raw body.
pub enum Redacted {
    /// Nothing to redact: store the raw bytes unchanged.
    Unchanged,
    /// Store this re-serialised JSON instead.
    Changed(String),
}

// Keys whose presence means the body may hold a cardholder name. Checked on the raw bytes so
// the common event (a subscription, an invoice) is stored without a second parse.
const TRIGGERS: [&[u8]; 4] = [
    b"\"billing_details\"",
    b"\"card\"",
    b"\"owner\"",
    b"\"cardholder_name\"",
];

/// Applies the policy to a verified, JSON-parsable body.
pub fn redact(body: &[u8]) -> Redacted {
    if !TRIGGERS.iter().any(|t| contains(body, t)) {
        return Redacted::Unchanged;
    }
    let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
        return Redacted::Unchanged;
    };
    if redact_value(&mut value, None) {
        Redacted::Changed(value.to_string())
    } else {
        Redacted::Unchanged
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
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
    use serde_json::json;

    fn apply(v: Value) -> (Value, bool) {
        let bytes = serde_json::to_vec(&v).unwrap();
        match redact(&bytes) {
            Redacted::Unchanged => (v, false),
            Redacted::Changed(s) => (serde_json::from_str(&s).unwrap(), true),
        }
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
    fn a_payload_without_cardholder_data_is_left_byte_for_byte() {
        let body = br#"{"id":"evt_1", "data":{"object":{"object":"customer","name":"Jenny"}}}"#;
        assert!(matches!(redact(body), Redacted::Unchanged));
        let null_name = br#"{"billing_details":{"name":null}}"#;
        assert!(matches!(redact(null_name), Redacted::Unchanged));
    }
}
