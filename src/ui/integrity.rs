//! `/ui/integrity`: what the log can show about itself today: its size and position range,
//! and the database's own guards against changing it (the immutability triggers of migration
//! 0001, read from the catalog, so a dropped trigger shows here as missing).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::{Chrome, UiError, UiSession};
use crate::app::AppState;
use crate::auth::Scope;
use crate::store::ui::{LogRange, UiStore as _};
use crate::store::Backend;

/// The triggers migration 0001 creates on `event_log`, per backend.
fn expected_triggers(backend: Backend) -> &'static [&'static str] {
    match backend {
        Backend::Postgres => &["event_log_no_truncate", "event_log_no_update_or_delete"],
        Backend::Sqlite => &["event_log_no_delete", "event_log_no_update"],
    }
}

pub struct Guard {
    pub name: &'static str,
    pub present: bool,
}

#[derive(askama::Template)]
#[template(path = "ui/integrity.html")]
struct IntegrityPage {
    chrome: Chrome,
    range: LogRange,
    /// Positions in the range that hold no entry (appends rolled back after taking a position).
    gaps: i64,
    backend: String,
    guards: Vec<Guard>,
    all_guards: bool,
}

pub async fn show(State(state): State<AppState>, session: UiSession) -> Result<Response, UiError> {
    session.require(Scope::Audit)?;
    let (range, triggers) = tokio::try_join!(state.db.ui_log_range(), state.db.ui_log_triggers())?;
    let guards: Vec<Guard> = expected_triggers(state.db.backend())
        .iter()
        .map(|name| Guard {
            name,
            present: triggers.iter().any(|t| t == name),
        })
        .collect();
    let gaps = match (range.first, range.last) {
        (Some(first), Some(last)) => last - first + 1 - range.count,
        _ => 0,
    };
    let page = IntegrityPage {
        chrome: Chrome::new(&state, &session, "/ui/integrity"),
        range,
        gaps,
        backend: state.db.backend().to_string(),
        all_guards: guards.iter().all(|g| g.present),
        guards,
    };
    super::render(StatusCode::OK, &page)
}
