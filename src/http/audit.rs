use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::Json;

use super::query::{parse_query, path_id};
use super::ApiError;
use crate::app::AppState;
use crate::audit::{EventDetail, EventList, EventSummary, ListQuery};
use crate::auth::Scope;
use crate::event_log;

pub async fn list_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<EventList>, ApiError> {
    state.require(&headers, Scope::Audit)?;
    let q = ListQuery::parse(&parse_query(query.as_deref())?)?;
    let page = event_log::list(&state.db, &q.filter, &q.page).await?;
    Ok(Json(EventList {
        data: page.events.iter().map(EventSummary::from).collect(),
        next_cursor: page.next_position.map(|p| q.next_cursor(p)),
    }))
}

pub async fn show_event(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<EventDetail>, ApiError> {
    state.require(&headers, Scope::Audit)?;
    let event_id = path_id("event_id", path)?;
    let event = event_log::get(&state.db, &event_id).await?.ok_or_else(|| {
        ApiError::not_found("event_not_found", "no event with that id in the log")
    })?;
    Ok(Json(EventDetail::from(&event)))
}
