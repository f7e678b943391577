//! `/ui/integrity`: what the log can show about itself: its size and position range, the
//! database's own guards against changing it (the immutability triggers, read from the
//! catalog, so a dropped trigger shows here as missing), the sealed tree and its latest signed
//! checkpoints, the sealer's last scheduled verification, and the offline proof bundle of any event (`/ui/integrity/bundle`).

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{Chrome, UiError, UiSession};
use crate::app::AppState;
use crate::auth::Scope;
use crate::query;
use crate::sealer::proofs::{self, ProofError};
use crate::store::seal::{SealStore as _, VerificationFailure, VerificationRecord};
use crate::store::ui::{LogRange, UiStore as _};
use crate::store::Backend;
use crate::validate::check_id;

/// Entries counted exactly up to this many: past it the page gives the positions and says the
/// count is larger (an exact `count(*)` of a million entries costs more than the whole page;
/// `stripe-ledger verify` reports the exact number).
const ENTRIES_COUNTED: i64 = 10_000;

/// Checkpoints listed, newest first.
const CHECKPOINTS_SHOWN: usize = 10;

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

pub struct CheckpointRow {
    pub size: u64,
    pub root: String,
    pub origin: String,
    pub signed_at: String,
    pub note: String,
}

#[derive(askama::Template)]
#[template(path = "ui/integrity.html")]
struct IntegrityPage {
    chrome: Chrome,
    range: LogRange,
    /// Positions in the range that hold no entry (appends rolled back after taking a position),
    /// when the entries were counted exactly.
    gaps: i64,
    /// The count reached [`ENTRIES_COUNTED`]: `range.count` is a lower bound.
    count_capped: bool,
    entries_counted: i64,
    backend: String,
    guards: Vec<Guard>,
    all_guards: bool,
    sealed_size: u64,
    checkpoints: Vec<CheckpointRow>,
    checkpoint_count: usize,
    /// The sealer's latest scheduled re-check; `None` when none has run against this database.
    verification: Option<VerificationView>,
}

/// The last verification as the page shows it.
pub struct VerificationView {
    pub checked_at: String,
    pub from_position: u64,
    pub to_position: u64,
    pub tree_size: u64,
    pub checkpoint_size: Option<u64>,
    pub failure: Option<VerificationFailure>,
}

impl From<VerificationRecord> for VerificationView {
    fn from(r: VerificationRecord) -> Self {
        VerificationView {
            checked_at: super::events::unix_rfc3339(r.checked_at),
            from_position: r.from_position,
            to_position: r.to_position,
            tree_size: r.tree_size,
            checkpoint_size: r.checkpoint_size,
            failure: r.failure,
        }
    }
}

pub async fn show(State(state): State<AppState>, session: UiSession) -> Result<Response, UiError> {
    session.require(Scope::Audit)?;
    let (range, triggers, seal, checkpoints, verification) = tokio::try_join!(
        state.db.ui_log_range(ENTRIES_COUNTED + 1),
        state.db.ui_log_triggers(),
        state.db.seal_state(),
        state.db.checkpoints(),
        state.db.latest_verification()
    )?;
    let guards: Vec<Guard> = expected_triggers(state.db.backend())
        .iter()
        .map(|name| Guard {
            name,
            present: triggers.iter().any(|t| t == name),
        })
        .collect();
    let count_capped = range.count > ENTRIES_COUNTED;
    let gaps = match (range.first, range.last) {
        (Some(first), Some(last)) if !count_capped => last - first + 1 - range.count,
        _ => 0,
    };
    let checkpoint_count = checkpoints.len();
    let mut newest: Vec<_> = checkpoints
        .into_iter()
        .rev()
        .take(CHECKPOINTS_SHOWN)
        .collect();
    newest.sort_by_key(|c| std::cmp::Reverse(c.size));
    let page = IntegrityPage {
        chrome: Chrome::new(&state, &session, "/ui/integrity"),
        range,
        gaps,
        count_capped,
        entries_counted: ENTRIES_COUNTED,
        backend: state.db.backend().to_string(),
        all_guards: guards.iter().all(|g| g.present),
        guards,
        sealed_size: seal.size,
        checkpoints: newest
            .into_iter()
            .map(|c| CheckpointRow {
                size: c.size,
                root: hex::encode(c.root),
                origin: c.origin,
                signed_at: super::events::unix_rfc3339(c.signed_at),
                note: c.note,
            })
            .collect(),
        checkpoint_count,
        verification: verification.map(VerificationView::from),
    };
    super::render(StatusCode::OK, &page)
}

impl From<ProofError> for UiError {
    fn from(e: ProofError) -> Self {
        let message = e.to_string();
        match e {
            ProofError::UnknownEvent => UiError::not_found("event_not_found", message),
            ProofError::NoCheckpoint => UiError::not_found("no_checkpoint", message),
            ProofError::NotYetSealed(_) => {
                UiError::client(StatusCode::CONFLICT, "not_yet_sealed", message)
            }
            ProofError::LeafMismatch => {
                UiError::client(StatusCode::CONFLICT, "sealed_leaf_mismatch", message)
            }
            ProofError::BadSize(_) => UiError::bad_request("invalid_tree_size", message),
            ProofError::Storage(e) => e.into(),
            ProofError::Tree(detail) => UiError::internal(detail),
        }
    }
}

/// `/ui/integrity/bundle?event_id=evt_...`: the event's offline proof bundle under the latest
/// checkpoint, as a file (`stripe-ledger verify-proof` checks it without the service).
pub async fn bundle(
    State(state): State<AppState>,
    session: UiSession,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    session.require(Scope::Audit)?;
    let params = query::parse_query(raw.as_deref())?;
    query::refuse_unknown(&params, &["event_id"])?;
    let id = params.get("event_id").map(|v| v.trim()).unwrap_or("");
    check_id("event_id", id)?;
    let bundle = proofs::bundle(&state.db, id).await?;
    let body = bundle.to_file_text();
    session
        .record(
            &state,
            crate::store::ui::ActionKind::ProofBundleDownload,
            id,
            crate::store::ui::ActionOutcome::Succeeded,
            &format!("tree size {}", bundle.tree_size),
        )
        .await?;
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let name = format!("bundle-{}.json", bundle.leaf_index + 1);
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}
