use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::Json;

use super::ApiError;
use crate::app::AppState;
use crate::audit::{self, EventDetail, EventList, EventSummary};
use crate::auth::Scope;
use crate::event_log;

pub async fn list_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<EventList>, ApiError> {
    state.require(&headers, Scope::Audit)?;
    let params = parse_query(query.as_deref())?;
    let (filter, page) =
        audit::parse_list_params(&params).map_err(|e| ApiError::bad_request(e.code, e.message))?;
    let page = event_log::list(&state.db, &filter, &page).await?;
    Ok(Json(EventList {
        data: page.events.iter().map(EventSummary::from).collect(),
        next_cursor: page.next_position.map(audit::encode_cursor),
    }))
}

pub async fn show_event(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(event_id): Path<String>,
) -> Result<Json<EventDetail>, ApiError> {
    state.require(&headers, Scope::Audit)?;
    let event = event_log::get(&state.db, &event_id).await?.ok_or_else(|| {
        ApiError::not_found("event_not_found", "no event with that id in the log")
    })?;
    Ok(Json(EventDetail::from(&event)))
}

// Parsed by hand rather than with axum's `Query`, whose rejections are plain text: every error
// here must be JSON with a stable code. Repeated parameters are refused as ambiguous.
fn parse_query(query: Option<&str>) -> Result<BTreeMap<String, String>, ApiError> {
    let mut params = BTreeMap::new();
    let Some(query) = query else {
        return Ok(params);
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = decode_component(k)?;
        let v = decode_component(v)?;
        if params.insert(k.clone(), v).is_some() {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!(
                    "`{}` is given more than once",
                    k.chars().take(64).collect::<String>()
                ),
            ));
        }
    }
    Ok(params)
}

fn decode_component(s: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_query",
            "the query string is not valid percent-encoded UTF-8",
        )
    };
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| bad())
}
