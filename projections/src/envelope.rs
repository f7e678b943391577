//! The lenient event envelope: only the fields the event log needs, nothing more.
//!
//! Stripe adds fields to events in every API release and renders `data.object` at the
//! endpoint's version, so the envelope reads a handful of stable fields and ignores the rest.
//! Anything deeper is decoded per object type by the folds, never here.

use serde::Deserialize;

/// What the log keeps about an event besides its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub id: String,
    pub event_type: String,
    pub api_version: Option<String>,
    pub livemode: bool,
    /// Connected account the event belongs to (Connect only).
    pub account: Option<String>,
    /// Stripe's `created`: unix seconds, one-second resolution.
    pub created: i64,
    pub object: Option<ObjectRef>,
}

/// The `data.object` the event is about. `invoice.upcoming` carries an invoice with no id, so
/// the id is optional and nothing may key on it alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub id: Option<String>,
    pub object_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    /// The body is not a JSON object.
    NotJson(String),
    /// A required envelope field is missing or has the wrong type.
    MissingField(&'static str),
    /// A field is present but not what Stripe ever sends (for example a non-`evt_` id).
    InvalidField(&'static str, String),
}

impl std::fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvelopeError::NotJson(detail) => write!(f, "body is not a JSON object: {detail}"),
            EnvelopeError::MissingField(field) => write!(f, "event has no `{field}`"),
            EnvelopeError::InvalidField(field, why) => write!(f, "event field `{field}` {why}"),
        }
    }
}

impl std::error::Error for EnvelopeError {}

// Every field is optional at the serde level so that a missing one becomes a precise
// `MissingField` instead of serde's generic message.
#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(borrow, default)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default, rename = "type")]
    event_type: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    object: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    api_version: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    livemode: Option<bool>,
    #[serde(borrow, default)]
    account: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    created: Option<i64>,
    #[serde(borrow, default)]
    data: Option<RawData<'a>>,
}

#[derive(Deserialize)]
struct RawData<'a> {
    #[serde(borrow, default)]
    object: Option<RawObject<'a>>,
}

#[derive(Deserialize)]
struct RawObject<'a> {
    #[serde(borrow, default)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    object: Option<std::borrow::Cow<'a, str>>,
}

/// Longest id or type we accept; Stripe's are far shorter, and a bound keeps index rows small.
const MAX_TOKEN_LEN: usize = 255;

impl Envelope {
    /// Decodes the envelope of a (v1, snapshot) Stripe event from its raw bytes.
    pub fn parse(body: &[u8]) -> Result<Envelope, EnvelopeError> {
        let raw: RawEnvelope<'_> =
            serde_json::from_slice(body).map_err(|e| EnvelopeError::NotJson(classify(&e)))?;

        let id = raw.id.ok_or(EnvelopeError::MissingField("id"))?;
        let id = token("id", &id)?;
        let event_type = raw.event_type.ok_or(EnvelopeError::MissingField("type"))?;
        let event_type = token("type", &event_type)?;
        if let Some(object) = raw.object.as_deref() {
            if object != "event" {
                // Thin v2 events (`v2.core.event`) are a different format with different
                // guarantees; storing them as if they were snapshots would mislead the folds.
                return Err(EnvelopeError::InvalidField(
                    "object",
                    format!("is `{}`, expected `event`", truncate(object)),
                ));
            }
        }
        let livemode = raw
            .livemode
            .ok_or(EnvelopeError::MissingField("livemode"))?;
        let created = raw.created.ok_or(EnvelopeError::MissingField("created"))?;
        if created < 0 {
            return Err(EnvelopeError::InvalidField("created", "is negative".into()));
        }
        let object = raw.data.and_then(|d| d.object).map(|o| ObjectRef {
            id: o.id.map(|s| s.into_owned()),
            object_type: o.object.map(|s| s.into_owned()),
        });
        Ok(Envelope {
            id,
            event_type,
            api_version: raw.api_version.map(|s| s.into_owned()),
            livemode,
            account: raw.account.map(|s| s.into_owned()),
            created,
            object,
        })
    }
}

fn token(field: &'static str, value: &str) -> Result<String, EnvelopeError> {
    if value.is_empty() {
        return Err(EnvelopeError::InvalidField(field, "is empty".into()));
    }
    if value.len() > MAX_TOKEN_LEN {
        return Err(EnvelopeError::InvalidField(
            field,
            format!("is longer than {MAX_TOKEN_LEN} bytes"),
        ));
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(EnvelopeError::InvalidField(
            field,
            "contains whitespace or control characters".into(),
        ));
    }
    Ok(value.to_owned())
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

// serde_json's messages for type errors describe *our* struct ("invalid type: ... expected
// struct RawEnvelope"), which means nothing to a caller; say what is wrong with their body.
fn classify(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => {
            if e.to_string().contains("expected struct") {
                "top-level value is not an object".into()
            } else {
                // A wrongly typed envelope field (e.g. `"livemode": "yes"`).
                format!(
                    "field has the wrong type at line {} column {}",
                    e.line(),
                    e.column()
                )
            }
        }
        Category::Eof => "unexpected end of input".into(),
        Category::Syntax => format!("syntax error at line {} column {}", e.line(), e.column()),
        Category::Io => "unreadable input".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_fields_the_log_needs_and_ignores_the_rest() {
        let body = br#"{"id":"evt_1","object":"event","api_version":"2025-03-31.basil",
            "created":1700000000,"livemode":false,"type":"customer.created","pending_webhooks":1,
            "data":{"object":{"id":"cus_1","object":"customer","unknown":{"deep":[1,2]}}},
            "request":{"id":null,"idempotency_key":null},"future_field":true}"#;
        let env = Envelope::parse(body).unwrap();
        assert_eq!(env.id, "evt_1");
        assert_eq!(env.event_type, "customer.created");
        assert_eq!(env.api_version.as_deref(), Some("2025-03-31.basil"));
        assert!(!env.livemode);
        assert_eq!(env.created, 1_700_000_000);
        let object = env.object.unwrap();
        assert_eq!(object.id.as_deref(), Some("cus_1"));
        assert_eq!(object.object_type.as_deref(), Some("customer"));
    }

    #[test]
    fn an_upcoming_invoice_without_an_id_is_accepted_with_no_object_id() {
        let body = br#"{"id":"evt_2","object":"event","created":1,"livemode":true,
            "type":"invoice.upcoming","data":{"object":{"object":"invoice"}}}"#;
        let env = Envelope::parse(body).unwrap();
        assert_eq!(env.object.unwrap().id, None);
    }

    #[test]
    fn missing_or_malformed_fields_are_named() {
        assert_eq!(
            Envelope::parse(br#"{"type":"a","livemode":false,"created":1}"#),
            Err(EnvelopeError::MissingField("id"))
        );
        assert_eq!(
            Envelope::parse(br#"{"id":"evt_1","livemode":false,"created":1}"#),
            Err(EnvelopeError::MissingField("type"))
        );
        assert!(matches!(
            Envelope::parse(br#"{"id":"","type":"a","livemode":false,"created":1}"#),
            Err(EnvelopeError::InvalidField("id", _))
        ));
        assert!(matches!(
            Envelope::parse(br#"{"id":"evt_1","type":"a","object":"v2.core.event","livemode":false,"created":1}"#),
            Err(EnvelopeError::InvalidField("object", _))
        ));
        assert!(matches!(
            Envelope::parse(b"[1,2]"),
            Err(EnvelopeError::NotJson(_))
        ));
        assert!(matches!(
            Envelope::parse(b"not json"),
            Err(EnvelopeError::NotJson(_))
        ));
        assert!(matches!(
            Envelope::parse(br#"{"id":"evt_1","type":"a","livemode":"no","created":1}"#),
            Err(EnvelopeError::NotJson(_))
        ));
    }
}
