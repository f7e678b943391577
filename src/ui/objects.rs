//! `/ui/customers/{id}`, `/ui/subscriptions/{id}`, `/ui/invoices/{id}`, `/ui/orders/{id}`: an
//! object's timeline and its state.
//!
//! - The timeline: every log entry that touched the object (`crate::history`), newest first,
//!   each linked to its event page, with what it did (applied, superseded, ignored) and, for an
//!   applied one, the fields it changed, before and after. `?before=<position>` pages on.
//! - The state: the current read model (the JSON the read API answers, escaped), or, with one
//!   of `as_of_position`, `as_of` (received time) or `as_of_created` (Stripe's time), the
//!   state folded from the log up to that point, as `GET /api/...?as_of...` answers it. The
//!   timeline then ends at the same point.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use ledger_projections::Fact;
use serde_json::Value;

use super::history_view::{as_of_fields, whole_history, Step};
use super::{urlencode, Chrome, UiError, UiSession};
use crate::app::AppState;
use crate::auth::Scope;
use crate::history::{self, ObjectKind};
use crate::projector::state_from_json;
use crate::query::{self, Params};
use crate::read_models::{self, views};
use crate::store::Kind;
use crate::validate::check_id;

/// Log entries per page of a timeline.
const TIMELINE_LIMIT: usize = 50;

/// The four object pages: a closed set, each with its read-model kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectPage {
    Customers,
    Subscriptions,
    Invoices,
    Orders,
}

impl ObjectPage {
    fn kind(self) -> ObjectKind {
        match self {
            ObjectPage::Customers => ObjectKind::Customer,
            ObjectPage::Subscriptions => ObjectKind::Subscription,
            ObjectPage::Invoices => ObjectKind::Invoice,
            ObjectPage::Orders => ObjectKind::Order,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            ObjectPage::Customers => "Customer",
            ObjectPage::Subscriptions => "Subscription",
            ObjectPage::Invoices => "Invoice",
            ObjectPage::Orders => "Order",
        }
    }
}

/// The as-of form's current values.
#[derive(Default)]
pub struct AsOfForm {
    pub position: String,
    pub received: String,
    pub created: String,
}

#[derive(askama::Template)]
#[template(path = "ui/object.html")]
struct ObjectView {
    chrome: Chrome,
    noun: &'static str,
    id: String,
    base: String,
    /// The state as pretty JSON; `None` when the log mentions the id but nothing was folded
    /// for it (yet).
    state: Option<String>,
    /// What the state is as of, when a point was chosen.
    as_of: Option<String>,
    form: AsOfForm,
    steps: Vec<Step>,
    events_href: String,
    /// The entitlement page of the user the object is linked to, if any.
    entitlement_href: Option<String>,
    newest_href: Option<String>,
    older_href: Option<String>,
}

/// `/ui/entitlements/{user_id}` for an object the service linked to a user.
fn user_link(state: Option<&Value>) -> Option<String> {
    let user = state?.get("user_id")?.as_str()?;
    Some(format!("/ui/entitlements/{}", urlencode(user)))
}

/// An id from the path, checked by the id rules.
pub fn path_id(name: &str, path: Result<Path<String>, PathRejection>) -> Result<String, UiError> {
    let Path(id) = path.map_err(|_| {
        UiError::bad_request(
            "invalid_path",
            "the path is not valid percent-encoded UTF-8",
        )
    })?;
    check_id(name, &id)?;
    Ok(id)
}

/// `?before=<position>`: continue the timeline with entries older than this log position.
fn before_param(params: &Params) -> Result<Option<i64>, UiError> {
    match params.get("before").filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n > 0 && !v.starts_with('+') => Ok(Some(n)),
            _ => Err(UiError::bad_request(
                "invalid_parameter",
                "`before` must be a log position (a positive whole number)",
            )),
        },
    }
}

/// The read API's JSON for a folded object.
fn view_of(fact: &Fact, payment: Option<&Fact>) -> Option<Value> {
    Some(match (fact, payment) {
        (Fact::Customer(c), _) => views::customer(c),
        (Fact::Subscription(s), _) => views::subscription(s),
        (Fact::Invoice(i), _) => views::invoice(i),
        (Fact::Order(o), Some(Fact::Payment(p))) => views::order(o, Some(p)),
        (Fact::Order(o), _) => views::order(o, None),
        (Fact::Payment(_), _) => return None,
    })
}

/// The current read model, as `GET /api/...` answers it (orders with their payment).
async fn current_state(
    state: &AppState,
    page: ObjectPage,
    id: &str,
) -> Result<Option<Value>, UiError> {
    let kind = page.kind().kind();
    let Some(json) = read_models::get(&state.db, kind, id).await? else {
        return Ok(None);
    };
    let fact = state_from_json(kind, &json)?;
    let payment = match &fact {
        Fact::Order(o) => match o.view().and_then(|v| v.payment_intent.clone()) {
            Some(pi) => match read_models::get(&state.db, Kind::Payment, &pi).await? {
                Some(json) => Some(state_from_json(Kind::Payment, &json)?),
                None => None,
            },
            None => None,
        },
        _ => None,
    };
    Ok(view_of(&fact, payment.as_ref()))
}

/// The state folded from the log up to the cut `as_of` names, and a note saying what it is as
/// of.
async fn state_as_of(
    state: &AppState,
    page: ObjectPage,
    id: &str,
    as_of: &Params,
) -> Result<(Option<Value>, Option<String>), UiError> {
    let Some(cut) = history::parse_as_of(as_of)? else {
        return Ok((current_state(state, page, id).await?, None));
    };
    let resolved = history::resolve(&state.db, cut, state.now()).await?;
    let found = history::state_as_of(&state.db, page.kind(), id, &resolved).await?;
    let note = history::as_of_json(&resolved.cut, found.folded).to_string();
    Ok((view_of(&found.fact, found.payment.as_ref()), Some(note)))
}

fn query_of(params: &Params) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn show(
    state: AppState,
    session: UiSession,
    page: ObjectPage,
    path: Result<Path<String>, PathRejection>,
    raw: Option<String>,
) -> Result<Response, UiError> {
    session.require(Scope::Audit)?;
    let id = path_id("id", path)?;
    let params = query::parse_query(raw.as_deref())?;
    let mut known = vec!["before"];
    known.extend(history::AS_OF_PARAMS);
    query::refuse_unknown(&params, &known)?;
    let before = before_param(&params)?;
    let as_of = as_of_fields(&params);
    let not_found = || {
        UiError::not_found(
            "object_not_found",
            format!(
                "no {} with that id in the read models or the log",
                page.noun().to_lowercase()
            ),
        )
    };
    let mut steps = match whole_history(&state.db, page.kind(), &id, &as_of, state.now()).await {
        Err(UiError::Client { code, .. }) if code == page.kind().not_found_code() => {
            return Err(not_found())
        }
        other => other?,
    };
    let (current, as_of_note) = state_as_of(&state, page, &id, &as_of).await?;
    steps.reverse();
    steps.retain(|s| before.is_none_or(|b| s.position < b));
    let more = steps.len() > TIMELINE_LIMIT;
    steps.truncate(TIMELINE_LIMIT);
    let base = format!("/ui/{}/{}", page.kind().plural(), urlencode(&id));
    let keep = query_of(&as_of);
    let with = |extra: String| {
        let q = [keep.clone(), extra]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("&");
        if q.is_empty() {
            base.clone()
        } else {
            format!("{base}?{q}")
        }
    };
    let view = ObjectView {
        chrome: Chrome::new(&state, &session, ""),
        noun: page.noun(),
        state: current
            .as_ref()
            .map(serde_json::to_string_pretty)
            .transpose()
            .map_err(UiError::internal)?,
        as_of: as_of_note,
        form: AsOfForm {
            position: as_of.get("as_of_position").cloned().unwrap_or_default(),
            received: as_of.get("as_of").cloned().unwrap_or_default(),
            created: as_of.get("as_of_created").cloned().unwrap_or_default(),
        },
        newest_href: before.map(|_| with(String::new())),
        older_href: more
            .then(|| steps.last().map(|s| with(format!("before={}", s.position))))
            .flatten(),
        steps,
        events_href: format!("/ui/events?object_id={}", urlencode(&id)),
        entitlement_href: user_link(current.as_ref()),
        base,
        id,
    };
    super::render(StatusCode::OK, &view)
}

pub async fn customer(
    State(state): State<AppState>,
    session: UiSession,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    show(state, session, ObjectPage::Customers, path, raw).await
}

pub async fn subscription(
    State(state): State<AppState>,
    session: UiSession,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    show(state, session, ObjectPage::Subscriptions, path, raw).await
}

pub async fn invoice(
    State(state): State<AppState>,
    session: UiSession,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    show(state, session, ObjectPage::Invoices, path, raw).await
}

pub async fn order(
    State(state): State<AppState>,
    session: UiSession,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    show(state, session, ObjectPage::Orders, path, raw).await
}
