//! Exports of the event list's current filter: `/ui/events/export.jsonl` (every entry in full:
//! metadata, verification record, payload) and `/ui/events/export.csv` (the metadata, one row
//! per entry, for spreadsheets). Both are streamed from the database a page at a time, so an
//! export of the whole log holds one page in memory, never the log. An export covers the log
//! as it was when it started (positions up to the last one then), newest first.
//!
//! CSV cells are quoted when they hold a separator, a quote or a line break, and a cell that a
//! spreadsheet would read as a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage
//! return) is prefixed with `'`: ledger data is hostile, and a payload field must never run
//! as a formula on an auditor's machine.

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::events::ConsoleQuery;
use super::{UiError, UiSession};
use crate::app::AppState;
use crate::audit::{EventDetail, EventSummary};
use crate::auth::Scope;
use crate::event_log::{Order, PageRequest, StoredEvent};
use crate::store::event_log::EventLogStore as _;
use crate::store::ui::{ActionKind, ActionOutcome, UiStore as _};
use crate::store::{Db, StorageError};

/// Entries per database read: JSONL pages carry payloads (a few KiB each), CSV pages do not.
const JSONL_PAGE: u32 = 500;
const CSV_PAGE: u32 = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
}

impl Format {
    fn as_str(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Jsonl => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

pub async fn jsonl(
    state: State<AppState>,
    session: UiSession,
    raw: RawQuery,
) -> Result<Response, UiError> {
    export(state, session, raw, Format::Jsonl).await
}

pub async fn csv(
    state: State<AppState>,
    session: UiSession,
    raw: RawQuery,
) -> Result<Response, UiError> {
    export(state, session, raw, Format::Csv).await
}

async fn export(
    State(state): State<AppState>,
    session: UiSession,
    RawQuery(raw): RawQuery,
    format: Format,
) -> Result<Response, UiError> {
    session.require(Scope::Audit)?;
    let mut q = ConsoleQuery::parse(raw.as_deref(), &[])?;
    q.resolve(&state.db).await?;
    // The log as it is now: entries appended while the export runs are not in it.
    let upto = state.db.last_position().await?;
    let filter_text = q.query_string();
    session
        .record(
            &state,
            ActionKind::EventsExport,
            if filter_text.is_empty() {
                "all events"
            } else {
                &filter_text
            },
            ActionOutcome::Succeeded,
            &format!("{} up to position {upto}", format.as_str()),
        )
        .await?;
    tracing::info!(token = %session.fingerprint(), format = format.as_str(), filter = %filter_text, upto, "console export");
    let stream = pages(state.db.clone(), q, upto, format);
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    let name = format!("events-upto-{upto}.{}", format.as_str());
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// Where a stream of pages is: the next page starts below `before`.
struct Cursor {
    db: Db,
    query: ConsoleQuery,
    before: Option<i64>,
    format: Format,
    header_sent: bool,
}

/// The export body: one chunk per page of entries, until the filter is exhausted.
fn pages(
    db: Db,
    query: ConsoleQuery,
    upto: i64,
    format: Format,
) -> impl futures_util::Stream<Item = Result<Bytes, StorageError>> + Send + 'static {
    let start = Cursor {
        db,
        query,
        before: Some(upto + 1),
        format,
        header_sent: false,
    };
    futures_util::stream::try_unfold(start, |mut cursor| async move {
        let Some(before) = cursor.before else {
            return Ok(None);
        };
        let mut chunk = String::new();
        if cursor.format == Format::Csv && !cursor.header_sent {
            chunk.push_str(CSV_HEADER);
            cursor.header_sent = true;
        }
        let limit = match cursor.format {
            Format::Jsonl => JSONL_PAGE,
            Format::Csv => CSV_PAGE,
        };
        let page = PageRequest {
            order: Order::Desc,
            after_position: Some(before),
            limit,
        };
        let mut events = match cursor.format {
            Format::Jsonl => {
                cursor
                    .db
                    .ui_export_events(&cursor.query.filter, &page)
                    .await?
            }
            Format::Csv => cursor.db.list_events(&cursor.query.filter, &page).await?,
        };
        // One row more than the page was read to learn whether another page follows.
        cursor.before = if events.len() > limit as usize {
            events.truncate(limit as usize);
            events.last().map(|e| e.position)
        } else {
            None
        };
        for event in &events {
            match cursor.format {
                Format::Jsonl => jsonl_line(&mut chunk, event),
                Format::Csv => csv_row(&mut chunk, event),
            }
        }
        if chunk.is_empty() && cursor.before.is_none() {
            return Ok(None);
        }
        Ok(Some((Bytes::from(chunk), cursor)))
    })
}

fn jsonl_line(out: &mut String, event: &StoredEvent) {
    // `EventDetail` is the API's shape of one entry (GET /api/audit/events/{id}).
    if let Ok(line) = serde_json::to_string(&EventDetail::from(event)) {
        out.push_str(&line);
        out.push('\n');
    }
}

const CSV_HEADER: &str = "position,event_id,type,created,received_at,livemode,source,\
     object_id,object_type,api_version,account,payload_redacted,raw_body_sha256\r\n";

fn csv_row(out: &mut String, event: &StoredEvent) {
    let e = EventSummary::from(event);
    let position = e.position.to_string();
    let cells: [&str; 13] = [
        &position,
        &e.event_id,
        &e.event_type,
        &e.created,
        &e.received_at,
        if e.livemode { "true" } else { "false" },
        e.source.as_str(),
        e.object.id.as_deref().unwrap_or(""),
        e.object.object_type.as_deref().unwrap_or(""),
        e.api_version.as_deref().unwrap_or(""),
        e.account.as_deref().unwrap_or(""),
        if e.payload_redacted { "true" } else { "false" },
        &event.raw_body_sha256,
    ];
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_cell(out, cell);
    }
    out.push_str("\r\n");
}

/// One CSV cell (RFC 4180), defused against formula injection.
pub fn csv_cell(out: &mut String, cell: &str) {
    let formula = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = formula || cell.contains([',', '"', '\n', '\r']) || cell != cell.trim();
    if quote {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    for c in cell.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if quote {
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(text: &str) -> String {
        let mut out = String::new();
        csv_cell(&mut out, text);
        out
    }

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(cell("evt_1"), "evt_1");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        for f in ["+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert!(cell(f).starts_with("\"'"), "{f}");
        }
        assert_eq!(cell(" padded"), "\" padded\"");
        assert_eq!(cell(""), "");
    }
}
