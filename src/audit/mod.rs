//! The auditor's view of the event log, shared by `GET /api/audit/...` and `stripe-ledger
//! events ...`: query parameters in, stable JSON out.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::event_log::{EventFilter, Order, PageRequest, Source, StoredEvent};
use crate::query::cursor::{Binding, Endpoint};
use crate::query::{self, FilterError, Params};

pub use crate::query::{DEFAULT_LIMIT, MAX_LIMIT};

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
    pub source: Source,
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
            source: e.source,
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

/// The list endpoint's parameters, in the order they are documented.
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

/// The values `source` takes.
const SOURCES: &[(&str, Source)] = &[
    ("webhook", Source::Webhook),
    ("api_backfill", Source::ApiBackfill),
    ("reconcile_repair", Source::ReconcileRepair),
    ("api_response", Source::ApiResponse),
];

const ORDERS: &[(&str, Order)] = &[("desc", Order::Desc), ("asc", Order::Asc)];

/// A validated `GET /api/audit/events` (and `stripe-ledger events list`) query.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub filter: EventFilter,
    pub page: PageRequest,
}

impl ListQuery {
    /// The one validation of the audit list's parameters, for the API and the CLI alike.
    /// Unknown parameters are refused, so a typo such as `?typ=invoice.paid` cannot silently
    /// return the unfiltered log; `type` and `object_id` follow the id rules; a cursor must
    /// come from a query with the same filters and order.
    pub fn parse(params: &Params) -> Result<ListQuery, FilterError> {
        query::refuse_unknown(params, LIST_PARAMS)?;
        let time = |k: &str| params.get(k).map(|v| parse_time(k, v)).transpose();
        let filter = EventFilter {
            event_type: query::id_param(params, "type")?,
            object_id: query::id_param(params, "object_id")?,
            source: query::choice_param(params, "source", SOURCES)?,
            created_gte: time("created_gte")?,
            created_lt: time("created_lt")?,
            ..EventFilter::default()
        };
        let order = query::choice_param(params, "order", ORDERS)?.unwrap_or_default();
        let limit = query::limit_param(params)?;
        let after_position = params
            .get("cursor")
            .map(|c| binding(&filter, order).decode_position(c))
            .transpose()?;
        Ok(ListQuery {
            filter,
            page: PageRequest {
                order,
                after_position,
                limit,
            },
        })
    }

    /// The cursor of the page after the one ending at `position`.
    pub fn next_cursor(&self, position: i64) -> String {
        binding(&self.filter, self.page.order).encode(&position.to_string())
    }
}

fn binding(filter: &EventFilter, order: Order) -> Binding {
    let gte = filter.created_gte.map(|t| t.to_string());
    let lt = filter.created_lt.map(|t| t.to_string());
    let order = match order {
        Order::Desc => "desc",
        Order::Asc => "asc",
    };
    Binding::new(
        Endpoint::AuditEvents,
        &[
            ("type", filter.event_type.as_deref()),
            ("object_id", filter.object_id.as_deref()),
            ("source", filter.source.map(Source::as_str)),
            ("created_gte", gte.as_deref()),
            ("created_lt", lt.as_deref()),
            ("order", Some(order)),
        ],
    )
}

/// Accepts unix seconds or an RFC 3339 timestamp.
pub fn parse_time(param: &str, value: &str) -> Result<i64, FilterError> {
    if value.len() <= 64 {
        if let Ok(secs) = value.parse::<i64>() {
            return Ok(secs);
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(value) {
            return Ok(t.timestamp());
        }
    }
    Err(FilterError::invalid(
        param,
        "must be unix seconds or an RFC 3339 timestamp",
    ))
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
            field(e.source.as_str())
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
    let _ = writeln!(s, "source       {}", field(e.source.as_str()));
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
mod tests;
