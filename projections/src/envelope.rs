//! The event envelope, and the one strict parse of a webhook body that everything else reads.
//!
//! Stripe adds fields to events in every API release and renders `data.object` at the
//! endpoint's version, so the envelope reads a handful of stable fields and ignores the rest.
//! Anything deeper is decoded per object type by the folds, never here.
//!
//! The body is parsed **once**, by [`parse_event`], into a `serde_json::Value`: the envelope is
//! read from that value, the redaction policy rewrites it, and the projection folds it. So
//! there is no second parser that could disagree with the first (ADR 12): a body is either
//! refused here, before anything is appended, or readable by every later step, including a
//! rebuild that re-parses the stored payload with the same parser.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

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
    /// Always present for a parsed event (`data.object` is required); optional in the type
    /// because entries are also built by hand.
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
    /// The body is not a readable JSON object (UTF-8, syntax, depth, numbers, duplicate keys).
    NotJson(String),
    /// A required envelope field is missing.
    MissingField(&'static str),
    /// A field is present but not what Stripe ever sends (wrong type, too long, hostile
    /// characters, a thin v2 event).
    InvalidField(&'static str, String),
    /// A string somewhere in the payload (path given) holds U+0000, which PostgreSQL text
    /// columns cannot store: refused on both backends alike.
    NulInPayload(String),
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvelopeError::NotJson(detail) => {
                write!(f, "body is not a readable JSON object: {detail}")
            }
            EnvelopeError::MissingField(field) => write!(f, "event has no `{field}`"),
            EnvelopeError::InvalidField(field, why) => write!(f, "event field `{field}` {why}"),
            EnvelopeError::NulInPayload(path) => {
                write!(f, "event field `{path}` contains a NUL character (U+0000)")
            }
        }
    }
}

impl std::error::Error for EnvelopeError {}

/// Nesting deeper than this is refused (the top-level object is level 1). It is what serde_json's
/// own recursion limit (128, counted down to zero) allows, which every parse of a stored payload
/// also applies, so the ingest parse and a later re-parse always agree.
pub const MAX_DEPTH: usize = 127;

/// Longest envelope string we accept (id, type, api version, account, object id and type);
/// Stripe's are far shorter, and a bound keeps index rows small (a PostgreSQL btree row must
/// fit in 2704 bytes).
pub const MAX_TOKEN_LEN: usize = 255;

/// Latest `created` we accept: 9999-12-31T23:59:59Z, the end of what timestamps render to.
const MAX_CREATED: i64 = 253_402_300_799;

impl Envelope {
    /// Decodes the envelope of a (v1, snapshot) Stripe event from its raw bytes.
    pub fn parse(body: &[u8]) -> Result<Envelope, EnvelopeError> {
        parse_event(body).map(|(envelope, _)| envelope)
    }

    /// Reads the envelope from an already parsed body.
    pub fn from_value(value: &Value) -> Result<Envelope, EnvelopeError> {
        let map = value
            .as_object()
            .ok_or_else(|| EnvelopeError::NotJson("the top-level value is not an object".into()))?;
        let id = required_token(map, "id")?;
        let event_type = required_token(map, "type")?;
        if let Some(object) = optional_token(map, "object", "object")? {
            if object != "event" {
                // Thin v2 events (`v2.core.event`) are a different format with different
                // guarantees; storing them as if they were snapshots would mislead the folds.
                return Err(EnvelopeError::InvalidField(
                    "object",
                    format!("is `{}`, expected `event`", truncate(&object)),
                ));
            }
        }
        let livemode = match map.get("livemode") {
            None | Some(Value::Null) => return Err(EnvelopeError::MissingField("livemode")),
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(wrong_type("livemode", "a boolean")),
        };
        let created = created(map.get("created"))?;
        let api_version = optional_token(map, "api_version", "api_version")?;
        let account = optional_token(map, "account", "account")?;
        let data = required_object(map, "data", "data")?;
        let object = required_object(data, "object", "data.object")?;
        Ok(Envelope {
            id,
            event_type,
            api_version,
            livemode,
            account,
            created,
            object: Some(ObjectRef {
                id: optional_token(object, "id", "data.object.id")?,
                object_type: optional_token(object, "object", "data.object.object")?,
            }),
        })
    }
}

/// The one parse of a verified body: strict JSON (valid UTF-8, no lone surrogates, numbers
/// that fit an f64, at most [`MAX_DEPTH`] levels, no repeated keys), an object, with a valid
/// envelope and no NUL in any string. Returns the envelope and the parsed value.
pub fn parse_event(body: &[u8]) -> Result<(Envelope, Value), EnvelopeError> {
    parse_event_str(utf8(body)?)
}

/// The body as text, or `NotJson` if it is not valid UTF-8 (the stored payload is the body
/// byte for byte, so it must be text exactly as received: no lossy replacement).
pub fn utf8(body: &[u8]) -> Result<&str, EnvelopeError> {
    std::str::from_utf8(body)
        .map_err(|e| EnvelopeError::NotJson(format!("invalid UTF-8 at byte {}", e.valid_up_to())))
}

/// [`parse_event`] for a body already known to be UTF-8.
pub fn parse_event_str(text: &str) -> Result<(Envelope, Value), EnvelopeError> {
    let (value, has_nul) = parse_strict(text)?;
    let envelope = Envelope::from_value(&value)?;
    if has_nul {
        // Only now, so that a NUL in an envelope field is reported as that field.
        let path = nul_path(&value).unwrap_or_default();
        return Err(EnvelopeError::NulInPayload(path));
    }
    Ok((envelope, value))
}

/// Parses `text` into a value; also tells whether any string or key holds U+0000.
pub fn parse_strict(text: &str) -> Result<(Value, bool), EnvelopeError> {
    let has_nul = Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Strict { has_nul: &has_nul }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    Ok((value, has_nul.get()))
}

/// Builds a `Value` like serde_json's own visitor, but refuses repeated keys (two parsers could
/// pick different ones) and notes NUL characters. Depth is bounded by the deserializer.
#[derive(Clone, Copy)]
struct Strict<'a> {
    has_nul: &'a Cell<bool>,
}

impl Strict<'_> {
    fn string(self, s: String) -> Value {
        if s.contains('\0') {
            self.has_nul.set(true);
        }
        Value::String(s)
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Value, E> {
        // serde_json already refuses numbers beyond f64; this only guards the invariant.
        Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(self.string(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(self.string(s))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if key.contains('\0') {
                self.has_nul.set(true);
            }
            let value = access.next_value_seed(self)?;
            match map.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(slot) => {
                    return Err(A::Error::custom(format_args!(
                        "duplicate key `{}`",
                        truncate(slot.key()).escape_default()
                    )));
                }
            }
        }
        Ok(Value::Object(map))
    }
}

/// The dotted path of the first string or key holding U+0000 (arrays as `[i]`).
fn nul_path(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => s.contains('\0').then(String::new),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_path(item).map(|rest| join_path(&format!("[{i}]"), &rest))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            let key = key.escape_default().to_string();
            if key.contains("\\u{0}") {
                return Some(key);
            }
            nul_path(item).map(|rest| join_path(&key, &rest))
        }),
        _ => None,
    }
}

fn join_path(head: &str, rest: &str) -> String {
    match rest {
        "" => head.to_owned(),
        r if r.starts_with('[') => format!("{head}{r}"),
        r => format!("{head}.{r}"),
    }
}

fn wrong_type(field: &'static str, expected: &str) -> EnvelopeError {
    EnvelopeError::InvalidField(field, format!("must be {expected}"))
}

fn required_token(map: &Map<String, Value>, field: &'static str) -> Result<String, EnvelopeError> {
    optional_token(map, field, field)?.ok_or(EnvelopeError::MissingField(field))
}

/// A string field (absent and null read as `None`) that must be a clean token.
fn optional_token(
    map: &Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<Option<String>, EnvelopeError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => token(field, s).map(Some),
        Some(_) => Err(wrong_type(field, "a string")),
    }
}

fn required_object<'v>(
    map: &'v Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<&'v Map<String, Value>, EnvelopeError> {
    match map.get(key) {
        None | Some(Value::Null) => Err(EnvelopeError::MissingField(field)),
        Some(Value::Object(object)) => Ok(object),
        Some(_) => Err(wrong_type(field, "an object")),
    }
}

fn created(value: Option<&Value>) -> Result<i64, EnvelopeError> {
    let n = match value {
        None | Some(Value::Null) => return Err(EnvelopeError::MissingField("created")),
        Some(Value::Number(n)) => n,
        Some(_) => return Err(wrong_type("created", "a number")),
    };
    let created = n
        .as_i64()
        .ok_or_else(|| wrong_type("created", "a whole number of seconds"))?;
    if created < 0 {
        return Err(EnvelopeError::InvalidField("created", "is negative".into()));
    }
    if created > MAX_CREATED {
        return Err(EnvelopeError::InvalidField(
            "created",
            "is after the year 9999".into(),
        ));
    }
    Ok(created)
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
    if let Some(c) = value.chars().find(|&c| !is_token_char(c)) {
        return Err(EnvelopeError::InvalidField(
            field,
            format!(
                "contains whitespace, a control or an invisible character (U+{:04X})",
                c as u32
            ),
        ));
    }
    Ok(value.to_owned())
}

/// Whether `c` may appear in an envelope token: not whitespace, not a control, and not one of
/// the invisible characters that make two different ids look the same.
pub fn is_token_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_graphic();
    }
    !(c.is_whitespace() || c.is_control() || crate::text::is_invisible(c))
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD: &str = r#"{"id":"evt_1","object":"event","api_version":"2025-03-31.basil",
        "created":1700000000,"livemode":false,"type":"customer.created","pending_webhooks":1,
        "data":{"object":{"id":"cus_1","object":"customer","unknown":{"deep":[1,2]}}},
        "request":{"id":null,"idempotency_key":null},"future_field":true}"#;

    fn field_error(body: &str) -> &'static str {
        match Envelope::parse(body.as_bytes()) {
            Err(EnvelopeError::InvalidField(field, _))
            | Err(EnvelopeError::MissingField(field)) => field,
            other => panic!("{body}: expected a field error, got {other:?}"),
        }
    }

    fn not_json(body: &[u8]) -> String {
        match Envelope::parse(body) {
            Err(EnvelopeError::NotJson(why)) => why,
            other => panic!("expected NotJson, got {other:?}"),
        }
    }

    #[test]
    fn parses_the_fields_the_log_needs_and_ignores_the_rest() {
        let (env, value) = parse_event(GOOD.as_bytes()).unwrap();
        assert_eq!(env.id, "evt_1");
        assert_eq!(env.event_type, "customer.created");
        assert_eq!(env.api_version.as_deref(), Some("2025-03-31.basil"));
        assert!(!env.livemode);
        assert_eq!(env.created, 1_700_000_000);
        let object = env.object.unwrap();
        assert_eq!(object.id.as_deref(), Some("cus_1"));
        assert_eq!(object.object_type.as_deref(), Some("customer"));
        assert_eq!(value, serde_json::from_str::<Value>(GOOD).unwrap());
    }

    #[test]
    fn an_upcoming_invoice_without_an_id_is_accepted_with_no_object_id() {
        let body = br#"{"id":"evt_2","object":"event","created":1,"livemode":true,
            "type":"invoice.upcoming","data":{"object":{"object":"invoice"}}}"#;
        let env = Envelope::parse(body).unwrap();
        assert_eq!(env.object.unwrap().id, None);
    }

    #[test]
    fn missing_or_wrongly_typed_fields_are_named() {
        let cases = [
            (
                r#"{"type":"a","livemode":false,"created":1,"data":{"object":{}}}"#,
                "id",
            ),
            (
                r#"{"id":"evt_1","livemode":false,"created":1,"data":{"object":{}}}"#,
                "type",
            ),
            (
                r#"{"id":"","type":"a","livemode":false,"created":1,"data":{"object":{}}}"#,
                "id",
            ),
            (
                r#"{"id":5,"type":"a","livemode":false,"created":1,"data":{"object":{}}}"#,
                "id",
            ),
            (
                r#"{"id":"e","type":"a","object":"v2.core.event","livemode":false,"created":1,"data":{"object":{}}}"#,
                "object",
            ),
            (
                r#"{"id":"e","type":"a","livemode":"no","created":1,"data":{"object":{}}}"#,
                "livemode",
            ),
            (
                r#"{"id":"e","type":"a","livemode":false,"data":{"object":{}}}"#,
                "created",
            ),
            (
                r#"{"id":"e","type":"a","livemode":false,"created":"1","data":{"object":{}}}"#,
                "created",
            ),
            (
                r#"{"id":"e","type":"a","livemode":false,"created":1.5,"data":{"object":{}}}"#,
                "created",
            ),
            (
                r#"{"id":"e","type":"a","livemode":false,"created":-1,"data":{"object":{}}}"#,
                "created",
            ),
            (
                r#"{"id":"e","type":"a","livemode":false,"created":1e300,"data":{"object":{}}}"#,
                "created",
            ),
            (
                r#"{"id":"e","type":"a","livemode":false,"created":99999999999999,"data":{"object":{}}}"#,
                "created",
            ),
            (
                r#"{"id":"e","type":"a","livemode":false,"created":1}"#,
                "data",
            ),
            (
                r#"{"id":"e","type":"a","livemode":false,"created":1,"data":[]}"#,
                "data",
            ),
            (
                r#"{"id":"e","type":"a","livemode":false,"created":1,"data":{}}"#,
                "data.object",
            ),
            (
                r#"{"id":"e","type":"a","livemode":false,"created":1,"data":{"object":["cus_1"]}}"#,
                "data.object",
            ),
            (
                r#"{"id":"e","type":"a","livemode":false,"created":1,"data":{"object":{"id":7}}}"#,
                "data.object.id",
            ),
            (
                r#"{"id":"e","type":"a","livemode":false,"created":1,"api_version":1,"data":{"object":{}}}"#,
                "api_version",
            ),
            (
                r#"{"id":"e","type":"a","livemode":false,"created":1,"account":"a\u0000","data":{"object":{}}}"#,
                "account",
            ),
        ];
        for (body, field) in cases {
            assert_eq!(field_error(body), field, "{body}");
        }
    }

    #[test]
    fn envelope_strings_must_be_short_visible_tokens() {
        let with_object_id = |id: &str| {
            serde_json::json!({"id": "evt_1", "type": "a", "livemode": false, "created": 1,
                "data": {"object": {"id": id}}})
            .to_string()
        };
        for bad in [
            "cus_\u{0}",
            "cus 1",
            "cus_\u{200B}1",
            "cus_\u{202E}1",
            "\u{FEFF}cus",
            "cus_\u{2066}",
            "cus_\u{E0041}",
            "cus_\u{85}",
            "cus_\u{3000}",
        ] {
            assert_eq!(
                field_error(&with_object_id(bad)),
                "data.object.id",
                "{bad:?}"
            );
        }
        assert_eq!(
            field_error(&with_object_id(&"x".repeat(MAX_TOKEN_LEN + 1))),
            "data.object.id"
        );
        let ok = Envelope::parse(with_object_id(&"x".repeat(MAX_TOKEN_LEN)).as_bytes());
        assert!(ok.is_ok());
        // Visible non-ASCII (a custom product id, say) is not a look-alike trick by itself.
        assert!(Envelope::parse(with_object_id("prod_café").as_bytes()).is_ok());
    }

    #[test]
    fn what_serde_json_cannot_read_is_refused_as_not_json() {
        assert!(not_json(b"[1,2]").contains("not an object"));
        assert!(not_json(b"not json").contains("expected"));
        assert!(not_json(b"{\"id\":\"caf\xff\"}").contains("UTF-8"));
        assert!(not_json(br#"{"a":1e400}"#).contains("number out of range"));
        assert!(
            not_json(format!(r#"{{"a":{}}}"#, "9".repeat(10_000)).as_bytes())
                .contains("number out of range")
        );
        assert!(not_json(br#"{"a":"\ud800"}"#).contains("hex escape"));
        assert!(not_json(br#"{"a":"\ud800\u0041"}"#).contains("surrogate"));
        assert!(not_json(br#"{"a":"\udc00"}"#).contains("surrogate"));
        assert!(not_json(br#"{"a":1,"a":2}"#).contains("duplicate key"));
        assert!(not_json(br#"{"a":1} {}"#).contains("trailing"));
        let deep = format!(r#"{{"a":{}{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
        assert!(not_json(deep.as_bytes()).contains("recursion limit"));
    }

    #[test]
    fn the_depth_limit_is_serde_json_s_own_so_a_stored_payload_always_parses_again() {
        // `{"a":` is one level; MAX_DEPTH - 1 arrays inside it make MAX_DEPTH in all.
        let nested =
            |levels: usize| format!(r#"{{"a":{}{}}}"#, "[".repeat(levels), "]".repeat(levels));
        let at_limit = nested(MAX_DEPTH - 1);
        let (value, _) = parse_strict(&at_limit).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&at_limit).unwrap(), value);
        assert!(serde_json::from_str::<Value>(&value.to_string()).is_ok());
        let over = nested(MAX_DEPTH);
        assert!(parse_strict(&over).is_err());
        assert!(serde_json::from_str::<Value>(&over).is_err());
    }

    #[test]
    fn a_nul_anywhere_in_the_payload_is_refused_naming_its_path() {
        let body = br#"{"id":"e","type":"a","livemode":false,"created":1,
            "data":{"object":{"lines":[{"x":1},{"note":"a\u0000b"}]}}}"#;
        assert_eq!(
            Envelope::parse(body),
            Err(EnvelopeError::NulInPayload(
                "data.object.lines[1].note".into()
            ))
        );
        let key = br#"{"id":"e","type":"a","livemode":false,"created":1,
            "data":{"object":{"k\u0000":1}}}"#;
        assert!(matches!(
            Envelope::parse(key),
            Err(EnvelopeError::NulInPayload(_))
        ));
    }

    /// Hostile fragments, spliced into a valid event by the property tests below.
    const SEEDS: &[&str] = &[
        "\"\\ud800\"",
        "1e400",
        "-1e400",
        "[[[[[[[[",
        "]]]]",
        "\"\\u0000\"",
        "\"\\u200b\"",
        "{\"a\":1,\"a\":2}",
        "[\"evt_x\",\"customer.created\",\"event\",null,false,null,1700000000,null]",
        "\"billing_\\u0064etails\"",
        "\u{FEFF}",
        "\\",
        "\"",
        "99999999999999999999999999",
    ];

    fn classified(result: Result<(Envelope, Value), EnvelopeError>) {
        match result {
            Ok((env, value)) => {
                // Whatever is accepted reads back the same envelope and re-parses.
                assert_eq!(Envelope::from_value(&value).unwrap(), env);
                assert!(serde_json::from_str::<Value>(&value.to_string()).is_ok());
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic_and_get_a_classified_answer(
            body in proptest::collection::vec(any::<u8>(), 0..256)
        ) {
            classified(parse_event(&body));
        }

        #[test]
        fn hostile_fragments_spliced_into_a_valid_event_get_a_classified_answer(
            at in 0usize..GOOD.len(),
            seed in proptest::sample::select(SEEDS),
            repeat in 1usize..4,
        ) {
            let at = (0..=at).rev().find(|i| GOOD.is_char_boundary(*i)).unwrap_or(0);
            let body = format!("{}{}{}", &GOOD[..at], seed.repeat(repeat), &GOOD[at..]);
            classified(parse_event(body.as_bytes()));
        }

        #[test]
        fn any_json_value_in_place_of_an_envelope_field_is_classified(
            field in proptest::sample::select(&["id", "type", "livemode", "created", "api_version",
                "account", "object", "data"][..]),
            replacement in proptest::sample::select(&["null", "1", "-1", "1.5", "true", "\"\"",
                "\"x\"", "[]", "{}", "{\"object\":[]}", "\"a\\u0000\"", "\"\\u202e\""][..]),
        ) {
            let mut value: Value = serde_json::from_str(GOOD).unwrap();
            value[field] = serde_json::from_str(replacement).unwrap();
            classified(parse_event(value.to_string().as_bytes()));
        }
    }
}
