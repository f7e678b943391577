use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::Json;

use super::{parse_query, ApiError};
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
