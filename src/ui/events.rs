//! The event log views: the list with its filters and count, one event, its stored bytes, the
//! jump box, and exports of the current filter.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

use super::{urlencode, Chrome, UiError, UiSession};
use crate::app::AppState;
use crate::auth::Scope;
use crate::event_log::{self, EventFilter, Order, PageRequest, Source, StoredEvent};
use crate::query::cursor::{Binding, Endpoint};
use crate::query::{self, FilterError, Params};
use crate::store::event_log::EventLogStore as _;
use crate::store::ui::{ActionKind, ActionOutcome, UiStore as _};
use crate::validate::check_id;

/// Matches are counted up to this many; past it the page says "10,000+".
pub const COUNT_CAP: i64 = 10_000;

/// The list's filters, every one a GET parameter (so a view is a shareable URL).
pub const FILTER_PARAMS: &[&str] = &[
    "type",
    "object_id",
    "source",
    "livemode",
    "created_gte",
    "created_lt",
    "received_gte",
    "received_lt",
];

const SOURCES: &[(&str, Source)] = &[
    ("webhook", Source::Webhook),
    ("api_backfill", Source::ApiBackfill),
    ("reconcile_repair", Source::ReconcileRepair),
    ("api_response", Source::ApiResponse),
];

const LIVEMODES: &[(&str, bool)] = &[("true", true), ("false", false)];

/// A validated filter of the console's event list (and its exports).
#[derive(Debug, Clone)]
pub struct ConsoleQuery {
    pub filter: EventFilter,
    /// The filter's parameters as given (empty ones dropped), to rebuild links and the form.
    pub given: Params,
    /// `customer.` for `type=customer.*`: expanded by [`ConsoleQuery::resolve`].
    pub type_prefix: Option<String>,
    pub after_position: Option<i64>,
    pub limit: u32,
    /// `limit` when it was given, so paging links keep the page size.
    pub limit_given: bool,
}

impl ConsoleQuery {
    /// `extra` names the parameters this route takes besides the filters (`cursor`, `limit`).
    pub fn parse(raw: Option<&str>, extra: &[&str]) -> Result<ConsoleQuery, FilterError> {
        let mut params = query::parse_query(raw)?;
        // A GET form sends every field, the empty ones too: empty means "any".
        params.retain(|_, v| !v.trim().is_empty());
        let known: Vec<&str> = FILTER_PARAMS.iter().chain(extra).copied().collect();
        query::refuse_unknown(&params, &known)?;
        let mut filter = EventFilter {
            object_id: query::id_param(&params, "object_id")?,
            source: query::choice_param(&params, "source", SOURCES)?,
            livemode: query::choice_param(&params, "livemode", LIVEMODES)?,
            created_gte: unix_param(&params, "created_gte")?,
            created_lt: unix_param(&params, "created_lt")?,
            received_gte: time_param(&params, "received_gte")?,
            received_lt: time_param(&params, "received_lt")?,
            ..EventFilter::default()
        };
        let mut type_prefix = None;
        if let Some(t) = params.get("type") {
            check_id("type", t)?;
            match t.strip_suffix('*') {
                Some(prefix) if prefix.ends_with('.') && !prefix.contains('*') => {
                    type_prefix = Some(prefix.to_owned());
                }
                Some(_) => {
                    return Err(FilterError::invalid(
                        "type",
                        "takes `*` only at the end, after a dot (`customer.*`)",
                    ))
                }
                None => filter.event_type = Some(t.clone()),
            }
        }
        let limit = if extra.contains(&"limit") {
            query::limit_param(&params)?
        } else {
            query::DEFAULT_LIMIT
        };
        let given: Params = params
            .iter()
            .filter(|(k, _)| FILTER_PARAMS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let after_position = params
            .get("cursor")
            .map(|c| binding(&given).decode_position(c))
            .transpose()?;
        Ok(ConsoleQuery {
            filter,
            given,
            type_prefix,
            after_position,
            limit,
            limit_given: params.contains_key("limit"),
        })
    }

    /// Expands a type prefix into the logged types that have it (exactly, by `starts_with`),
    /// so the query can use the type index instead of testing every row.
    pub async fn resolve(&mut self, db: &crate::store::Db) -> Result<(), UiError> {
        if let Some(prefix) = &self.type_prefix {
            let types = db.ui_event_types().await?;
            self.filter.event_types = Some(
                types
                    .into_iter()
                    .filter(|t| t.starts_with(prefix.as_str()))
                    .collect(),
            );
        }
        Ok(())
    }

    /// The filter as a query string (`type=...&source=...`), without paging.
    pub fn query_string(&self) -> String {
        self.given
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    pub fn next_cursor(&self, position: i64) -> String {
        binding(&self.given).encode(&position.to_string())
    }

    fn page(&self) -> PageRequest {
        PageRequest {
            order: Order::Desc,
            after_position: self.after_position,
            limit: self.limit,
        }
    }
}

/// Cursors are bound to the filters as given: another filter cannot reuse one.
fn binding(given: &Params) -> Binding {
    let mut pairs: Vec<(&str, Option<&str>)> = vec![("console", Some("desc"))];
    for name in FILTER_PARAMS {
        pairs.push((name, given.get(*name).map(String::as_str)));
    }
    Binding::new(Endpoint::AuditEvents, &pairs)
}

/// Unix seconds, RFC 3339, or an HTML `datetime-local` value (`2026-01-31T12:00`, read as UTC).
pub fn parse_when(param: &str, value: &str) -> Result<DateTime<Utc>, FilterError> {
    let bad = || {
        FilterError::invalid(
            param,
            "must be unix seconds, an RFC 3339 timestamp or YYYY-MM-DDTHH:MM (UTC)",
        )
    };
    if value.len() > 64 {
        return Err(bad());
    }
    if let Ok(secs) = value.parse::<i64>() {
        return DateTime::from_timestamp(secs, 0).ok_or_else(bad);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(value, format) {
            return Ok(t.and_utc());
        }
    }
    Err(bad())
}

fn time_param(params: &Params, name: &str) -> Result<Option<DateTime<Utc>>, FilterError> {
    params.get(name).map(|v| parse_when(name, v)).transpose()
}

fn unix_param(params: &Params, name: &str) -> Result<Option<i64>, FilterError> {
    Ok(time_param(params, name)?.map(|t| t.timestamp()))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Unix seconds as the console shows every time (`2026-03-01T10:00:00Z`).
pub(super) fn unix_rfc3339(secs: i64) -> String {
    DateTime::<Utc>::from_timestamp(secs, 0).map_or_else(|| secs.to_string(), rfc3339)
}

/// One row of the list, as the template shows it (askama escapes every field).
pub struct Row {
    pub event_id: String,
    pub href: String,
    pub event_type: String,
    pub object_id: String,
    pub object_href: Option<String>,
    pub created: String,
    pub received: String,
    pub source: &'static str,
    pub livemode: bool,
}

/// The console page of an object id, when it has one (`cus_`, `sub_`, `in_`, `cs_`); any other
/// id lists its events.
pub fn object_href(id: &str) -> String {
    let view = if id.starts_with("cus_") {
        Some("customers")
    } else if id.starts_with("sub_") {
        Some("subscriptions")
    } else if id.starts_with("in_") {
        Some("invoices")
    } else if id.starts_with("cs_") {
        Some("orders")
    } else {
        None
    };
    match view.filter(|v| super::OBJECT_PAGES.contains(v)) {
        Some(view) => format!("/ui/{view}/{}", urlencode(id)),
        None => format!("/ui/events?object_id={}", urlencode(id)),
    }
}

impl From<&StoredEvent> for Row {
    fn from(e: &StoredEvent) -> Self {
        Row {
            href: format!("/ui/events/{}", urlencode(&e.event_id)),
            event_id: e.event_id.clone(),
            event_type: e.event_type.clone(),
            object_href: e.object_id.as_deref().map(object_href),
            object_id: e.object_id.clone().unwrap_or_default(),
            created: unix_rfc3339(e.stripe_created),
            received: rfc3339(e.received_at),
            source: e.source.as_str(),
            livemode: e.livemode,
        }
    }
}

/// The filter form's current values.
pub struct Form {
    pub event_type: String,
    pub object_id: String,
    pub source: String,
    pub livemode: String,
    pub created_gte: String,
    pub created_lt: String,
    pub received_gte: String,
    pub received_lt: String,
}

impl Form {
    fn from(given: &Params) -> Form {
        let get = |k: &str| given.get(k).cloned().unwrap_or_default();
        Form {
            event_type: get("type"),
            object_id: get("object_id"),
            source: get("source"),
            livemode: get("livemode"),
            created_gte: get("created_gte"),
            created_lt: get("created_lt"),
            received_gte: get("received_gte"),
            received_lt: get("received_lt"),
        }
    }
}

#[derive(askama::Template)]
#[template(path = "ui/events.html")]
struct ListPage {
    chrome: Chrome,
    form: Form,
    sources: Vec<&'static str>,
    rows: Vec<Row>,
    count: String,
    filtered: bool,
    next_href: Option<String>,
    first_href: Option<String>,
    export_query: String,
    trigger_hint: &'static str,
}

pub async fn list(
    State(state): State<AppState>,
    session: UiSession,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    session.require(Scope::Audit)?;
    let mut q = ConsoleQuery::parse(raw.as_deref(), &["cursor", "limit"])?;
    q.resolve(&state.db).await?;
    let page_request = q.page();
    let (page, count) = tokio::try_join!(
        event_log::list(&state.db, &q.filter, &page_request),
        state.db.ui_count_events(&q.filter, COUNT_CAP)
    )?;
    let filter_qs = q.query_string();
    let limit = if q.limit_given {
        format!("limit={}", q.limit)
    } else {
        String::new()
    };
    let with = |extra: &str| {
        let joined = [filter_qs.as_str(), limit.as_str(), extra]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("&");
        format!("/ui/events?{joined}")
    };
    let page_view = ListPage {
        chrome: Chrome::new(&state, &session, "/ui/events"),
        form: Form::from(&q.given),
        sources: SOURCES.iter().map(|(s, _)| *s).collect(),
        rows: page.events.iter().map(Row::from).collect(),
        count: if count >= COUNT_CAP {
            format!("{COUNT_CAP}+")
        } else {
            count.to_string()
        },
        filtered: !q.given.is_empty(),
        next_href: page
            .next_position
            .map(|p| with(&format!("cursor={}", urlencode(&q.next_cursor(p))))),
        first_href: q.after_position.map(|_| with("")),
        export_query: filter_qs.clone(),
        trigger_hint: TRIGGER_HINT,
    };
    super::render(StatusCode::OK, &page_view)
}

/// The command that sends a first event to a local service (`serve` listens on port 3000 by
/// default, and `trigger` signs with `STRIPE_WEBHOOK_SECRET`).
const TRIGGER_HINT: &str = "stripe-ledger trigger checkout.session.completed";

pub fn event_path(path: Result<Path<String>, PathRejection>) -> Result<String, UiError> {
    let Path(id) = path.map_err(|_| {
        UiError::bad_request(
            "invalid_path",
            "the path is not valid percent-encoded UTF-8",
        )
    })?;
    check_id("event_id", &id)?;
    Ok(id)
}

async fn load(state: &AppState, id: &str) -> Result<StoredEvent, UiError> {
    state
        .db
        .get_event(id)
        .await?
        .ok_or_else(|| UiError::not_found("event_not_found", "no event with that id in the log"))
}

/// What the store can tell about the projection of one entry.
pub struct Outcome {
    pub label: &'static str,
    pub detail: String,
}

/// One object the entry touched, as the event page lists it.
pub struct Touched {
    /// `customer`, `subscription`, ...
    pub kind: &'static str,
    pub object_id: String,
    /// The object's console page; `None` for a kind without one (a payment).
    pub href: Option<String>,
    /// `applied`, `superseded` or `ignored`.
    pub effect: &'static str,
}

/// The objects the entry touched and what it did to each.
async fn touched(state: &AppState, entry: &StoredEvent) -> Result<Vec<Touched>, UiError> {
    let effects = crate::history::entry_effects(&state.db, entry).await?;
    Ok(effects
        .into_iter()
        .map(|e| {
            let page = crate::history::ObjectKind::ALL
                .into_iter()
                .find(|k| k.kind() == e.kind)
                .map(|k| k.plural())
                .filter(|p| super::OBJECT_PAGES.contains(p));
            Touched {
                kind: e.kind.as_str(),
                href: page.map(|p| format!("/ui/{p}/{}", urlencode(&e.object_id))),
                object_id: e.object_id,
                effect: e.effect.as_str(),
            }
        })
        .collect())
}

#[derive(askama::Template)]
#[template(path = "ui/event.html")]
struct EventPage {
    chrome: Chrome,
    row: Row,
    position: i64,
    api_version: String,
    account: String,
    object_type: String,
    redacted: bool,
    sha256: String,
    signature_header: String,
    signature_time: String,
    verified_by: String,
    payload: String,
    payload_bytes: usize,
    outcome: Outcome,
    /// The objects the entry touched, with its effect on each (empty until it is projected).
    touched: Vec<Touched>,
    raw_href: String,
    /// The inclusion proof against the latest checkpoint, or why there is none.
    seal: SealView,
}

/// What the sealed log says about one entry.
pub enum SealView {
    Included {
        leaf_index: u64,
        tree_size: u64,
        hashes: usize,
        bundle_href: String,
    },
    Pending(String),
}

pub async fn show(
    State(state): State<AppState>,
    session: UiSession,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, UiError> {
    session.require(Scope::Audit)?;
    let id = event_path(path)?;
    let event = load(&state, &id).await?;
    let (record, touched) = tokio::try_join!(
        async { Ok::<_, UiError>(state.db.ui_projection_record(event.position).await?) },
        touched(&state, &event)
    )?;
    let seal = match crate::sealer::proofs::inclusion(&state.db, &event.event_id, None).await {
        Ok(proof) => SealView::Included {
            leaf_index: proof.leaf_index,
            tree_size: proof.tree_size,
            hashes: proof.hashes.len(),
            bundle_href: format!(
                "/ui/integrity/bundle?event_id={}",
                urlencode(&event.event_id)
            ),
        },
        Err(
            e @ (crate::sealer::proofs::ProofError::NoCheckpoint
            | crate::sealer::proofs::ProofError::NotYetSealed(_)),
        ) => SealView::Pending(e.to_string()),
        Err(e) => return Err(e.into()),
    };
    let outcome = match (
        &record.dead_letter,
        record.listed_projected,
        record.catch_up_checkpoint,
    ) {
        (Some(dead), _, _) => Outcome {
            label: "dead-lettered",
            detail: format!("{} (after {} attempts)", dead.error, dead.attempts),
        },
        (None, true, _) => Outcome {
            label: "projected",
            detail: "applied by ingestion when it was received".to_owned(),
        },
        (None, false, Some(cp)) if cp >= event.position => Outcome {
            label: "projected",
            detail: "applied (the catch-up projector has passed this position)".to_owned(),
        },
        _ => Outcome {
            label: "pending",
            detail: "not yet projected: the catch-up projector has not reached it".to_owned(),
        },
    };
    let stored = event.payload.as_deref().unwrap_or("");
    let payload = serde_json::from_str::<serde_json::Value>(stored)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| stored.to_owned());
    let page = EventPage {
        chrome: Chrome::new(&state, &session, "/ui/events"),
        position: event.position,
        api_version: event.api_version.clone().unwrap_or_default(),
        account: event.account.clone().unwrap_or_default(),
        object_type: event.object_type.clone().unwrap_or_default(),
        redacted: event.payload_redacted,
        sha256: event.raw_body_sha256.clone(),
        signature_header: event.signature_header.clone().unwrap_or_default(),
        signature_time: event
            .signature_timestamp
            .map(unix_rfc3339)
            .unwrap_or_default(),
        verified_by: match (&event.verified_by_index, &event.verified_by_fingerprint) {
            (Some(i), Some(fp)) => format!("secret #{i} (fingerprint {fp})"),
            _ => "not a webhook delivery (no signature)".to_owned(),
        },
        payload_bytes: stored.len(),
        payload,
        outcome,
        touched,
        raw_href: format!("/ui/events/{}/raw", urlencode(&event.event_id)),
        seal,
        row: Row::from(&event),
    };
    super::render(StatusCode::OK, &page)
}

/// The exact stored bytes of the payload, as an attachment (never rendered by the browser).
pub async fn raw(
    State(state): State<AppState>,
    session: UiSession,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, UiError> {
    session.require(Scope::Audit)?;
    let id = event_path(path)?;
    let event = load(&state, &id).await?;
    session
        .record(
            &state,
            ActionKind::EventRawDownload,
            &event.event_id,
            ActionOutcome::Succeeded,
            "",
        )
        .await?;
    let bytes = event.payload.unwrap_or_default().into_bytes();
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    // The id passed the id rules, but may hold quotes or non-ASCII: the file name is ours.
    let name = format!("event-{}.json", event.position);
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// `/ui/jump?q=<id>`: to the page of whatever the id names.
pub async fn jump(session: UiSession, RawQuery(raw): RawQuery) -> Result<Response, UiError> {
    session.require(Scope::Audit)?;
    let params = query::parse_query(raw.as_deref())?;
    query::refuse_unknown(&params, &["q"])?;
    let q = params.get("q").map(|q| q.trim()).unwrap_or("");
    if q.is_empty() {
        return Ok(Redirect::to("/ui/events").into_response());
    }
    check_id("q", q)?;
    let to = if q.starts_with("evt_") {
        format!("/ui/events/{}", urlencode(q))
    } else {
        object_href(q)
    };
    Ok(Redirect::to(&to).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_takes_an_exact_name_or_a_dotted_prefix() {
        let q = ConsoleQuery::parse(Some("type=customer.*"), &[]).unwrap();
        assert_eq!(q.type_prefix.as_deref(), Some("customer."));
        assert_eq!(q.filter.event_type, None);
        let q = ConsoleQuery::parse(Some("type=invoice.paid&source=&livemode="), &[]).unwrap();
        assert_eq!(q.filter.event_type.as_deref(), Some("invoice.paid"));
        assert_eq!(q.filter.livemode, None);
        assert_eq!(q.query_string(), "type=invoice.paid");
        for bad in [
            "type=*",
            "type=cus*",
            "type=a.*.*",
            "livemode=yes",
            "nope=1",
        ] {
            assert!(ConsoleQuery::parse(Some(bad), &[]).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_take_unix_rfc3339_and_datetime_local() {
        let t = |v: &str| parse_when("t", v).map(|t| t.timestamp());
        assert_eq!(t("1700000000"), Ok(1_700_000_000));
        assert_eq!(t("2023-11-14T22:13:20Z"), Ok(1_700_000_000));
        assert_eq!(t("2023-11-14T22:13"), Ok(1_699_999_980));
        assert!(t("yesterday").is_err());
    }

    #[test]
    fn cursors_are_bound_to_the_filters() {
        let q = ConsoleQuery::parse(Some("type=invoice.paid"), &["cursor"]).unwrap();
        let cursor = q.next_cursor(42);
        let again = format!("type=invoice.paid&cursor={cursor}");
        assert_eq!(
            ConsoleQuery::parse(Some(&again), &["cursor"])
                .unwrap()
                .after_position,
            Some(42)
        );
        let other = format!("type=invoice.created&cursor={cursor}");
        assert!(ConsoleQuery::parse(Some(&other), &["cursor"]).is_err());
    }
}
