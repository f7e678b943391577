//! `/ui/integrity`: what the log can prove about itself today: its size, its position range,
//! and that the database refuses to change it (the immutability triggers of migration 0001).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::{Chrome, UiError, UiSession};
use crate::app::AppState;
use crate::auth::Scope;
use crate::store::event_log::EventLogStore as _;

#[derive(askama::Template)]
#[template(path = "ui/integrity.html")]
struct IntegrityPage {
    chrome: Chrome,
    count: i64,
    last_position: i64,
    backend: String,
}

pub async fn show(State(state): State<AppState>, session: UiSession) -> Result<Response, UiError> {
    session.require(Scope::Audit)?;
    let (count, last_position) =
        tokio::try_join!(state.db.count_events(), state.db.last_position())?;
    let page = IntegrityPage {
        chrome: Chrome::new(&state, &session, "/ui/integrity"),
        count,
        last_position,
        backend: state.db.backend().to_string(),
    };
    super::render(StatusCode::OK, &page)
}
