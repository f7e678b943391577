//! What the console shows of an object's history and a user's explanation once the log can
//! fold them (`crate::history`): each entry's effect and field-level diff, the state as of a
//! chosen point, and the reasons behind an entitlement.

use axum::http::StatusCode;
use serde_json::Value;

use super::{urlencode, UiError};
use crate::history::{self, HistoryError, HistoryItem, HistoryQuery, ObjectKind};
use crate::query::Params;
use crate::store::Db;

/// Entries folded per history page read; the page loops until the history ends.
const HISTORY_PAGE: &str = "100";

impl From<HistoryError> for UiError {
    fn from(e: HistoryError) -> Self {
        match e {
            HistoryError::Storage(s) => UiError::from(s),
            HistoryError::Query(q) => UiError::from(q),
            e => {
                let status = match e {
                    HistoryError::NotFound(_) | HistoryError::NotYetExisting(_) => {
                        StatusCode::NOT_FOUND
                    }
                    _ => StatusCode::BAD_REQUEST,
                };
                UiError::client(status, e.code(), e.to_string())
            }
        }
    }
}

/// The as-of fields of a form, without the empty ones an unfilled form sends.
pub fn as_of_fields(params: &Params) -> Params {
    params
        .iter()
        .filter(|(k, v)| history::AS_OF_PARAMS.contains(&k.as_str()) && !v.is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// One field an applied entry changed, as text (compact JSON, escaped by the template).
pub struct FieldChange {
    pub field: String,
    pub from: String,
    pub to: String,
}

/// One entry of the timeline.
pub struct Step {
    pub position: i64,
    pub event_id: String,
    pub href: String,
    pub event_type: String,
    pub source: &'static str,
    pub created: String,
    pub received: String,
    pub effect: String,
    pub changes: Vec<FieldChange>,
}

fn json_text(v: &Value) -> String {
    match v {
        Value::Null => "(absent)".to_owned(),
        other => other.to_string(),
    }
}

fn step(i: &HistoryItem) -> Step {
    let effect = i.effect.as_str().to_owned();
    Step {
        position: i.position,
        href: format!("/ui/events/{}", urlencode(&i.event_id)),
        event_id: i.event_id.clone(),
        event_type: i.event_type.clone(),
        source: i.source.as_str(),
        created: i.created.as_str().unwrap_or("").to_owned(),
        // Seconds are enough on a page; the API keeps microseconds.
        received: i
            .received_at
            .get(..19)
            .map(|s| format!("{s}Z"))
            .unwrap_or_default(),
        effect,
        changes: i
            .changes
            .iter()
            .map(|c| FieldChange {
                field: c.field.clone(),
                from: json_text(&c.from),
                to: json_text(&c.to),
            })
            .collect(),
    }
}

/// The whole history of an object up to the cut in `as_of` (log order), read page by page.
pub async fn whole_history(
    db: &Db,
    kind: ObjectKind,
    id: &str,
    as_of: &Params,
    now: i64,
) -> Result<Vec<Step>, UiError> {
    let mut params = as_of.clone();
    params.insert("limit".to_owned(), HISTORY_PAGE.to_owned());
    let mut steps = Vec::new();
    loop {
        let q = HistoryQuery::parse(kind, id, &params)?;
        let page = history::history_page(db, kind, id, &q, now).await?;
        steps.extend(page.data.iter().map(step));
        match page.next_cursor {
            Some(cursor) => {
                params.insert("cursor".to_owned(), cursor);
            }
            None => return Ok(steps),
        }
    }
}
