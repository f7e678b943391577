//! The auditor's view of the event log, shared by `GET /api/audit/...` and `stripe-ledger
//! events ...`: query parameters in, stable JSON out.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::event_log::{EventFilter, Order, PageRequest, StoredEvent};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 100;

/// A list entry: everything but the payload.
#[derive(Debug, Serialize)]
pub struct EventSummary {
    pub event_id: String,
    pub position: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub api_version: Option<String>,
    pub livemode: bool,
    pub account: Option<String>,
    pub object: ObjectView,
    /// Stripe's `created`, RFC 3339.
    pub created: String,
    pub received_at: String,
    pub source: String,
    pub payload_redacted: bool,
}

#[derive(Debug, Serialize)]
pub struct ObjectView {
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub object_type: Option<String>,
}

/// One entry with its payload and how it was verified.
#[derive(Debug, Serialize)]
pub struct EventDetail {
    #[serde(flatten)]
    pub summary: EventSummary,
    pub verification: VerificationView,
    /// The stored event JSON (redacted per the policy when `payload_redacted`).
    pub payload: Value,
}

#[derive(Debug, Serialize)]
pub struct VerificationView {
    /// SHA-256 of the body exactly as received, before redaction.
    pub raw_body_sha256: String,
    pub signature_header: Option<String>,
    pub signature_timestamp: Option<String>,
    /// 1-based index into `STRIPE_WEBHOOK_SECRET` of the secret that verified the event.
    pub secret_index: Option<i32>,
    pub secret_fingerprint: Option<String>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn unix_rfc3339(secs: i64) -> String {
    DateTime::<Utc>::from_timestamp(secs, 0).map_or_else(|| secs.to_string(), rfc3339)
}

impl From<&StoredEvent> for EventSummary {
    fn from(e: &StoredEvent) -> Self {
        EventSummary {
            event_id: e.event_id.clone(),
            position: e.position,
            event_type: e.event_type.clone(),
            api_version: e.api_version.clone(),
            livemode: e.livemode,
            account: e.account.clone(),
            object: ObjectView {
                id: e.object_id.clone(),
                object_type: e.object_type.clone(),
            },
            created: unix_rfc3339(e.stripe_created),
            received_at: rfc3339(e.received_at),
            source: e.source.clone(),
            payload_redacted: e.payload_redacted,
        }
    }
}

impl From<&StoredEvent> for EventDetail {
    fn from(e: &StoredEvent) -> Self {
        let payload = e.payload.as_deref().unwrap_or("null");
        EventDetail {
            summary: EventSummary::from(e),
            verification: VerificationView {
                raw_body_sha256: e.raw_body_sha256.clone(),
                signature_header: e.signature_header.clone(),
                signature_timestamp: e.signature_timestamp.map(unix_rfc3339),
                secret_index: e.verified_by_index,
                secret_fingerprint: e.verified_by_fingerprint.clone(),
            },
            payload: serde_json::from_str(payload)
                .unwrap_or_else(|_| Value::String(payload.to_owned())),
        }
    }
}

/// A list response in the Contract's shape.
#[derive(Debug, Serialize)]
pub struct EventList {
    pub data: Vec<EventSummary>,
    pub next_cursor: Option<String>,
}

/// A query parameter that could not be used; becomes a 400 (or a CLI usage error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub code: &'static str,
    pub message: String,
}

impl ParamError {
    fn invalid(param: &str, why: &str) -> Self {
        ParamError {
            code: "invalid_parameter",
            message: format!("`{param}` {why}"),
        }
    }
}

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub const LIST_PARAMS: &[&str] = &[
    "type",
    "object_id",
    "source",
    "created_gte",
    "created_lt",
    "order",
    "limit",
    "cursor",
];

/// Parses the list endpoint's query string. Unknown parameters are refused, so a typo such as
/// `?typ=invoice.paid` cannot silently return the unfiltered log.
pub fn parse_list_params(
    params: &BTreeMap<String, String>,
) -> Result<(EventFilter, PageRequest), ParamError> {
    if let Some(unknown) = params.keys().find(|k| !LIST_PARAMS.contains(&k.as_str())) {
        return Err(ParamError {
            code: "unknown_parameter",
            message: format!(
                "unknown query parameter `{}`; expected one of: {}",
                unknown.chars().take(64).collect::<String>(),
                LIST_PARAMS.join(", ")
            ),
        });
    }
    let text = |k: &str| -> Result<Option<String>, ParamError> {
        match params.get(k) {
            None => Ok(None),
            Some(v) if v.is_empty() => Err(ParamError::invalid(k, "must not be empty")),
            Some(v) if v.len() > 255 => Err(ParamError::invalid(k, "is too long")),
            Some(v) => Ok(Some(v.clone())),
        }
    };
    let filter = EventFilter {
        event_type: text("type")?,
        object_id: text("object_id")?,
        source: text("source")?,
        created_gte: params
            .get("created_gte")
            .map(|v| parse_time("created_gte", v))
            .transpose()?,
        created_lt: params
            .get("created_lt")
            .map(|v| parse_time("created_lt", v))
            .transpose()?,
    };
    let order = match params.get("order").map(String::as_str) {
        None => Order::default(),
        Some("desc") => Order::Desc,
        Some("asc") => Order::Asc,
        Some(_) => return Err(ParamError::invalid("order", "must be `asc` or `desc`")),
    };
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ParamError::invalid(
                    "limit",
                    &format!("must be a whole number from 1 to {MAX_LIMIT}"),
                )
            })?,
    };
    let after_position = params.get("cursor").map(|c| parse_cursor(c)).transpose()?;
    Ok((
        filter,
        PageRequest {
            order,
            after_position,
            limit,
        },
    ))
}

/// Accepts unix seconds or an RFC 3339 timestamp.
pub fn parse_time(param: &str, value: &str) -> Result<i64, ParamError> {
    if let Ok(secs) = value.parse::<i64>() {
        return Ok(secs);
    }
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.timestamp())
        .map_err(|_| ParamError::invalid(param, "must be unix seconds or an RFC 3339 timestamp"))
}

/// Cursors are opaque to clients; today they carry the last position seen.
pub fn encode_cursor(position: i64) -> String {
    format!("pos_{position}")
}

pub fn parse_cursor(cursor: &str) -> Result<i64, ParamError> {
    cursor
        .strip_prefix("pos_")
        .and_then(|p| p.parse::<i64>().ok())
        .filter(|p| *p >= 0)
        .ok_or_else(|| ParamError {
            code: "invalid_cursor",
            message: "`cursor` is not a cursor returned by this API".to_owned(),
        })
}

/// The text table printed by `stripe-ledger events list`.
pub fn render_list_text(list: &EventList) -> String {
    use crate::terminal::field;
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>10}  {:<20}  {:<40}  {:<32}  {:<28}  SOURCE",
        "POSITION", "CREATED", "TYPE", "EVENT", "OBJECT"
    );
    for e in &list.data {
        // Every stored string is hostile here: escaped and cut (crate::terminal).
        let _ = writeln!(
            s,
            "{:>10}  {:<20}  {:<40}  {:<32}  {:<28}  {}",
            e.position,
            field(&e.created),
            field(&e.event_type),
            field(&e.event_id),
            field(e.object.id.as_deref().unwrap_or("-")),
            field(&e.source)
        );
    }
    match &list.next_cursor {
        Some(cursor) => {
            let _ = writeln!(s, "more: --cursor {}", crate::terminal::escape(cursor));
        }
        None => {
            let _ = writeln!(s, "({} entries, end of results)", list.data.len());
        }
    }
    s
}

/// The text form of `stripe-ledger events show --format text`.
pub fn render_detail_text(detail: &EventDetail) -> String {
    use crate::terminal::field;
    use std::fmt::Write as _;
    let e = &detail.summary;
    let v = &detail.verification;
    let or_dash = |o: &Option<String>| field(o.as_deref().unwrap_or("-"));
    let mut s = String::new();
    let _ = writeln!(s, "event        {}", field(&e.event_id));
    let _ = writeln!(s, "position     {}", e.position);
    let _ = writeln!(s, "type         {}", field(&e.event_type));
    let _ = writeln!(s, "api_version  {}", or_dash(&e.api_version));
    let _ = writeln!(s, "livemode     {}", e.livemode);
    let _ = writeln!(s, "account      {}", or_dash(&e.account));
    let _ = writeln!(
        s,
        "object       {} ({})",
        or_dash(&e.object.id),
        or_dash(&e.object.object_type)
    );
    let _ = writeln!(s, "created      {}", field(&e.created));
    let _ = writeln!(s, "received_at  {}", field(&e.received_at));
    let _ = writeln!(s, "source       {}", field(&e.source));
    let _ = writeln!(s, "redacted     {}", e.payload_redacted);
    let _ = writeln!(s, "body sha256  {}", field(&v.raw_body_sha256));
    let _ = writeln!(s, "signature    {}", or_dash(&v.signature_header));
    let _ = writeln!(s, "signed at    {}", or_dash(&v.signature_timestamp));
    let _ = writeln!(
        s,
        "verified by  {}",
        match (&v.secret_index, &v.secret_fingerprint) {
            (Some(i), Some(fp)) => format!("secret #{i} ({})", field(fp)),
            _ => "-".to_owned(),
        }
    );
    let _ = writeln!(
        s,
        "payload\n{}",
        // serde_json escapes C0 controls in strings but not DEL, C1 or bidi characters.
        crate::terminal::block(&serde_json::to_string_pretty(&detail.payload).unwrap_or_default())
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn list_params_are_parsed_and_validated() {
        let (filter, page) = parse_list_params(&params(&[
            ("type", "invoice.paid"),
            ("created_gte", "2023-11-14T22:13:20Z"),
            ("order", "asc"),
            ("limit", "10"),
            ("cursor", "pos_7"),
        ]))
        .unwrap();
        assert_eq!(filter.event_type.as_deref(), Some("invoice.paid"));
        assert_eq!(filter.created_gte, Some(1_700_000_000));
        assert_eq!(page.order, Order::Asc);
        assert_eq!(page.limit, 10);
        assert_eq!(page.after_position, Some(7));

        let bad = |p: &[(&str, &str)]| parse_list_params(&params(p)).unwrap_err().code;
        assert_eq!(bad(&[("typ", "x")]), "unknown_parameter");
        assert_eq!(bad(&[("limit", "0")]), "invalid_parameter");
        assert_eq!(bad(&[("limit", "101")]), "invalid_parameter");
        assert_eq!(bad(&[("order", "up")]), "invalid_parameter");
        assert_eq!(bad(&[("created_lt", "yesterday")]), "invalid_parameter");
        assert_eq!(bad(&[("cursor", "7")]), "invalid_cursor");
        assert_eq!(bad(&[("type", "")]), "invalid_parameter");
    }
}
