//! `/ui/operations`: what needs an operator, and the actions that fix it.
//!
//! - **Dead letters**: logged events whose projection failed. Retry one, or all of them after a
//!   dry run that shows how many there are (`GET .../retry-all`), with a confirming POST.
//! - **Outbox**: failed and pending emails; a failed (or skipped) one can be re-queued.
//! - **Reconciliation**: the recorded runs (scheduled, or started here) and the drift of one
//!   run, each drifting object linked to its page; a button runs a report now (never a repair:
//!   repairs append to the log and stay a deliberate `reconcile --repair`).
//!
//! The page needs `audit`; every action needs `operate` (the buttons are hidden without it, and
//! the server refuses it all the same), is a CSRF-checked POST (`UiForm`), and is recorded in
//! `operator_actions` with the token's fingerprint, refusals included. Each action answers 303
//! to `/ui/operations?action=<id>`, whose flash message is read back from that record, so a
//! crafted link can only show an action that really happened, as it happened.
//!
//! The work itself is the library the CLI uses: `projector::retry_dead_letter(s)`,
//! `outbox::retry`, `reconcile::reconcile`.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::Value;

use super::csrf::UiForm;
use super::events::object_href;
use super::{urlencode, Chrome, UiError, UiSession};
use crate::app::AppState;
use crate::auth::Scope;
use crate::outbox::{self, OutboxStatus, RetryTarget};
use crate::projector;
use crate::query::{self, Params};
use crate::store::ui::{ActionKind, ActionOutcome, ActionRow, UiStore as _};
use crate::validate::check_id;

/// Rows per section: the page is a triage view, the API and CLI page through the rest.
const SECTION_LIMIT: u32 = 50;
const RUNS_LIMIT: u32 = 20;
const ACTIONS_LIMIT: i64 = 20;

pub struct DeadLetterRow {
    pub event_id: String,
    pub event_href: String,
    pub position: i64,
    pub error: String,
    pub attempts: i32,
    pub first_seen: String,
    pub last_seen: String,
}

pub struct OutboxRow {
    pub id: i64,
    pub kind: String,
    pub customer_id: String,
    pub customer_href: String,
    pub event_id: String,
    pub event_href: String,
    pub status: &'static str,
    pub attempts: i32,
    pub next_attempt: String,
    pub last_error: String,
    /// Failed and skipped rows can be put back in the queue; pending ones are already there.
    pub requeueable: bool,
}

pub struct RunRow {
    pub id: i64,
    pub href: String,
    pub started: String,
    pub status: String,
    pub repair: bool,
    pub drift_count: String,
    pub selected: bool,
}

pub struct DriftRow {
    pub kind: String,
    pub id: String,
    pub href: String,
    pub problem: String,
    pub field: String,
    pub local: String,
    pub stripe: String,
}

pub struct SelectedRun {
    pub id: i64,
    pub status: String,
    pub error: String,
    pub drift: Vec<DriftRow>,
    pub checked: String,
}

pub struct ActionView {
    pub at: String,
    pub who: String,
    pub action: &'static str,
    pub target: String,
    pub outcome: &'static str,
    pub detail: String,
}

/// The message shown after an action: the recorded row, never text from the URL.
pub struct Flash {
    pub problem: bool,
    pub text: String,
}

#[derive(askama::Template)]
#[template(path = "ui/operations.html")]
struct OperationsPage {
    chrome: Chrome,
    operate: bool,
    flash: Option<Flash>,
    dead_letters: Vec<DeadLetterRow>,
    more_dead_letters: bool,
    /// Failed rows first, then pending ones.
    outbox: Vec<OutboxRow>,
    failed_count: usize,
    pending_count: usize,
    runs: Vec<RunRow>,
    run: Option<SelectedRun>,
    reconcile_available: bool,
    actions: Vec<ActionView>,
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn unix_time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0).map_or_else(|| secs.to_string(), time)
}

fn event_href(id: &str) -> String {
    format!("/ui/events/{}", urlencode(id))
}

/// `?run=<id>` and `?action=<id>`: positive integers (row ids).
fn id_query(params: &Params, name: &str) -> Result<Option<i64>, UiError> {
    match params.get(name) {
        None => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n > 0 && !v.starts_with('+') => Ok(Some(n)),
            _ => Err(UiError::bad_request(
                "invalid_parameter",
                format!("`{name}` must be a positive whole number"),
            )),
        },
    }
}

/// `GET /ui/operations`.
pub async fn show(
    State(state): State<AppState>,
    session: UiSession,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    session.require(Scope::Audit)?;
    let params = query::parse_query(raw.as_deref())?;
    query::refuse_unknown(&params, &["run", "action"])?;
    let run_id = id_query(&params, "run")?;
    let flash = match id_query(&params, "action")? {
        Some(id) => recorded_action(&state, id).await?.map(|a| flash_of(&a)),
        None => None,
    };
    let (letters, more) =
        projector::store::dead_letters_page(&state.db, None, SECTION_LIMIT).await?;
    let (failed, _) =
        outbox::list(&state.db, Some(OutboxStatus::Failed), None, SECTION_LIMIT).await?;
    let (pending, _) =
        outbox::list(&state.db, Some(OutboxStatus::Pending), None, SECTION_LIMIT).await?;
    let (runs, _) = crate::reconcile::schedule::runs_page(&state.db, None, RUNS_LIMIT).await?;
    // The run asked for, or the newest one.
    let selected = match run_id.or_else(|| runs.first().map(|r| r.id)) {
        Some(id) => crate::reconcile::schedule::run(&state.db, id).await?,
        None => None,
    };
    if run_id.is_some() && selected.is_none() {
        return Err(UiError::not_found(
            "run_not_found",
            "no reconciliation run with that id",
        ));
    }
    let actions = state.db.operator_actions_list(None, ACTIONS_LIMIT).await?;
    let page = OperationsPage {
        chrome: Chrome::new(&state, &session, "/ui/operations"),
        operate: session.has(Scope::Operate),
        flash,
        dead_letters: letters.iter().map(dead_letter_row).collect(),
        more_dead_letters: more.is_some(),
        failed_count: failed.len(),
        pending_count: pending.len(),
        outbox: failed.iter().chain(&pending).map(outbox_row).collect(),
        runs: runs
            .iter()
            .map(|r| run_row(r, selected.as_ref().map(|s| s.id)))
            .collect(),
        run: selected.as_ref().map(selected_run),
        reconcile_available: state.stripe_api.is_some(),
        actions: actions.iter().map(action_view).collect(),
    };
    super::render(StatusCode::OK, &page)
}

fn dead_letter_row(d: &projector::store::DeadLetter) -> DeadLetterRow {
    DeadLetterRow {
        event_href: event_href(&d.event_id),
        event_id: d.event_id.clone(),
        position: d.position,
        error: d.error.clone(),
        attempts: d.attempts,
        first_seen: time(d.first_seen_at),
        last_seen: time(d.last_seen_at),
    }
}

fn outbox_row(i: &outbox::Item) -> OutboxRow {
    OutboxRow {
        id: i.id,
        kind: i.kind.clone(),
        customer_href: object_href(&i.customer_id),
        customer_id: i.customer_id.clone(),
        event_href: event_href(&i.event_id),
        event_id: i.event_id.clone(),
        status: i.status.as_str(),
        attempts: i.attempts,
        next_attempt: i.next_attempt_at.map(time).unwrap_or_default(),
        last_error: i.last_error.clone().unwrap_or_default(),
        requeueable: matches!(i.status, OutboxStatus::Failed | OutboxStatus::Skipped),
    }
}

fn run_row(r: &crate::reconcile::schedule::Run, selected: Option<i64>) -> RunRow {
    RunRow {
        id: r.id,
        href: format!("/ui/operations?run={}#run", r.id),
        started: time(r.started_at),
        status: r.status.as_str().to_owned(),
        repair: r.repair,
        drift_count: r.drift_count.map(|n| n.to_string()).unwrap_or_default(),
        selected: selected == Some(r.id),
    }
}

/// A value from Stripe or the read models, as compact JSON text (escaped by the template).
fn shown_value(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The drift list of a run's stored report (`{"reconcile": {"drift": [...]}, ...}`). The report
/// is our own JSON, but read defensively: a field missing in an older report shows as blank.
fn selected_run(r: &crate::reconcile::schedule::Run) -> SelectedRun {
    let reconcile = r.report.as_ref().map(|v| &v["reconcile"]);
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let drift = reconcile
        .and_then(|v| v["drift"].as_array())
        .map(|list| {
            list.iter()
                .map(|d| {
                    let id = text(&d["id"]);
                    DriftRow {
                        kind: text(&d["kind"]),
                        href: object_href(&id),
                        id,
                        problem: text(&d["problem"]),
                        field: text(&d["field"]),
                        local: shown_value(&d["local"]),
                        stripe: shown_value(&d["stripe"]),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let checked = reconcile
        .map(|v| {
            format!(
                "{} subscriptions and {} customers checked",
                v["subscriptions_checked"].as_u64().unwrap_or(0),
                v["customers_checked"].as_u64().unwrap_or(0)
            )
        })
        .unwrap_or_default();
    SelectedRun {
        id: r.id,
        status: r.status.as_str().to_owned(),
        error: r.error.clone().unwrap_or_default(),
        drift,
        checked,
    }
}

fn action_view(a: &ActionRow) -> ActionView {
    ActionView {
        at: unix_time(a.at),
        who: a.token_fingerprint.clone(),
        action: a.action.as_str(),
        target: a.target.clone(),
        outcome: a.outcome.as_str(),
        detail: a.detail.clone(),
    }
}

/// The recorded action `id`, if there is one.
async fn recorded_action(state: &AppState, id: i64) -> Result<Option<ActionRow>, UiError> {
    let rows = state
        .db
        .operator_actions_list(Some(id.saturating_add(1)), 1)
        .await?;
    Ok(rows.into_iter().find(|a| a.id == id))
}

fn flash_of(a: &ActionRow) -> Flash {
    let what = match a.action {
        ActionKind::DeadLetterRetry => "Dead-letter retry",
        ActionKind::DeadLettersRetryAll => "Retry of every dead letter",
        ActionKind::OutboxRequeue => "Outbox re-queue",
        ActionKind::ReconcileRun => "Reconcile report",
        ActionKind::SignIn => "Sign-in",
        ActionKind::SignOut => "Sign-out",
        ActionKind::EventsExport => "Export",
        ActionKind::EventRawDownload => "Raw download",
        ActionKind::ProofBundleDownload => "Proof bundle download",
    };
    let target = if a.target.is_empty() {
        String::new()
    } else {
        format!(" ({})", a.target)
    };
    Flash {
        problem: a.outcome != ActionOutcome::Succeeded,
        text: format!("{what}{target} {}: {}.", a.outcome.as_str(), a.detail),
    }
}

/// Records the action and answers 303 to the page showing it.
async fn done(
    state: &AppState,
    session: &UiSession,
    action: ActionKind,
    target: &str,
    outcome: ActionOutcome,
    detail: &str,
) -> Result<Response, UiError> {
    let id = session
        .record(state, action, target, outcome, detail)
        .await?;
    Ok(Redirect::to(&format!("/ui/operations?action={id}#flash")).into_response())
}

/// Every action needs `operate`: without it the attempt is recorded as refused, and answered
/// 403.
async fn require_operate(
    state: &AppState,
    session: &UiSession,
    action: ActionKind,
    target: &str,
) -> Result<(), UiError> {
    if session.has(Scope::Operate) {
        return Ok(());
    }
    session
        .record(
            state,
            action,
            target,
            ActionOutcome::Refused,
            "the token lacks the operate scope",
        )
        .await?;
    Err(UiError::forbidden(Scope::Operate.as_str()))
}

/// A required form field that follows the id rules.
fn id_field(form: &Params, name: &str) -> Result<String, UiError> {
    let value = form.get(name).map(String::as_str).unwrap_or("");
    check_id(name, value)?;
    Ok(value.to_owned())
}

/// `POST /ui/operations/dead-letters/retry` (`event_id`): re-projects one dead letter.
pub async fn retry_dead_letter(
    State(state): State<AppState>,
    UiForm { session, form }: UiForm<Params>,
) -> Result<Response, UiError> {
    let event_id = id_field(&form, "event_id")?;
    let action = ActionKind::DeadLetterRetry;
    require_operate(&state, &session, action, &event_id).await?;
    // Only a listed dead letter: the button must not become "re-project any event".
    let Some(stored) = crate::event_log::get(&state.db, &event_id).await? else {
        return Err(UiError::not_found(
            "dead_letter_not_found",
            "no dead letter for that event",
        ));
    };
    let (listed, _) =
        projector::store::dead_letters_page(&state.db, Some(stored.position - 1), 1).await?;
    if listed.first().map(|d| d.event_id.as_str()) != Some(event_id.as_str()) {
        return Err(UiError::not_found(
            "dead_letter_not_found",
            "no dead letter for that event",
        ));
    }
    let (outcome, detail) = match projector::retry_dead_letter(&state.db, &event_id).await? {
        (1, 0) => (
            ActionOutcome::Succeeded,
            "projected; the dead letter is cleared",
        ),
        _ => (
            ActionOutcome::Failed,
            "the projection failed again; see the error",
        ),
    };
    done(&state, &session, action, &event_id, outcome, detail).await
}

#[derive(askama::Template)]
#[template(path = "ui/operations_retry_all.html")]
struct RetryAllPage {
    chrome: Chrome,
    count: usize,
}

/// `GET /ui/operations/dead-letters/retry-all`: the dry run. Counts what a retry of every dead
/// letter would re-project, changes nothing, and offers the confirming POST.
pub async fn retry_all_plan(
    State(state): State<AppState>,
    session: UiSession,
) -> Result<Response, UiError> {
    session.require(Scope::Operate)?;
    let count = projector::store::dead_letters(&state.db).await?.len();
    let page = RetryAllPage {
        chrome: Chrome::new(&state, &session, "/ui/operations"),
        count,
    };
    super::render(StatusCode::OK, &page)
}

/// `POST /ui/operations/dead-letters/retry-all` (`expected`: the dry run's count): re-projects
/// every dead letter. The count seen is recorded beside what was done, since letters may come
/// and go between the two.
pub async fn retry_all(
    State(state): State<AppState>,
    UiForm { session, form }: UiForm<Params>,
) -> Result<Response, UiError> {
    let expected = form
        .get("expected")
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| {
            UiError::bad_request(
                "invalid_parameter",
                "`expected` (the dry run's count) is missing: start from the dry run",
            )
        })?;
    let action = ActionKind::DeadLettersRetryAll;
    require_operate(&state, &session, action, "").await?;
    let (retried, failing) = projector::retry_dead_letters(&state.db).await?;
    let detail = format!(
        "dry run counted {expected}; retried {retried}, projected {}, still failing {failing}",
        retried - failing
    );
    let outcome = if failing == 0 {
        ActionOutcome::Succeeded
    } else {
        ActionOutcome::Failed
    };
    done(&state, &session, action, "", outcome, &detail).await
}

/// `POST /ui/operations/outbox/requeue` (`id`): puts one failed or skipped email back in the
/// queue, due now, with a fresh attempt budget (never a sent one).
pub async fn requeue(
    State(state): State<AppState>,
    UiForm { session, form }: UiForm<Params>,
) -> Result<Response, UiError> {
    let id = form
        .get("id")
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            UiError::bad_request("invalid_parameter", "`id` must be an outbox row id")
        })?;
    let target = id.to_string();
    let action = ActionKind::OutboxRequeue;
    require_operate(&state, &session, action, &target).await?;
    let n = outbox::retry(&state.db, RetryTarget::One(id), state.now()).await?;
    let (outcome, detail) = if n == 1 {
        (ActionOutcome::Succeeded, "re-queued, due now")
    } else {
        (
            ActionOutcome::Failed,
            "no failed or skipped row with that id",
        )
    };
    done(&state, &session, action, &target, outcome, detail).await
}

/// `POST /ui/operations/reconcile`: runs a reconcile report against the Stripe API now (no
/// repair), recorded as a run like the scheduled ones.
pub async fn run_reconcile(
    State(state): State<AppState>,
    UiForm { session, form: _ }: UiForm<Params>,
) -> Result<Response, UiError> {
    let action = ActionKind::ReconcileRun;
    require_operate(&state, &session, action, "").await?;
    let Some(client) = state.stripe_api.clone() else {
        return Err(UiError::client(
            StatusCode::CONFLICT,
            "stripe_not_configured",
            "STRIPE_SECRET_KEY is not set, so there is no Stripe API to reconcile against",
        ));
    };
    let (run, report) = crate::reconcile::schedule::report_now(&state.db, &client).await?;
    let target = format!("run {run}");
    match report {
        Ok(drift) => {
            let detail = format!("report only; {drift} drifting field(s) or object(s)");
            done(
                &state,
                &session,
                action,
                &target,
                ActionOutcome::Succeeded,
                &detail,
            )
            .await
        }
        Err(error) => {
            let detail = format!("the run failed: {error}");
            done(
                &state,
                &session,
                action,
                &target,
                ActionOutcome::Failed,
                &detail,
            )
            .await
        }
    }
}
