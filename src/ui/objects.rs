//! `/ui/customers/{id}`, `/ui/subscriptions/{id}`, `/ui/invoices/{id}`, `/ui/orders/{id}`: an
//! object's current read model (the JSON the read API answers, escaped) and its log entries
//! (events whose `data.object` is this object), newest first, each linked to its event page.
//!
//! The read model is looked up with the same functions as `GET /api/...`; the entries are the
//! event log's own object-id filter, paged by log position (`?before=<position>`).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use ledger_projections::Fact;
use serde_json::Value;

use super::events::Row;
use super::{urlencode, Chrome, UiError, UiSession};
use crate::app::AppState;
use crate::auth::Scope;
use crate::event_log::{self, EventFilter, Order, PageRequest};
use crate::projector::state_from_json;
use crate::query;
use crate::read_models::{self, views};
use crate::store::Kind;
use crate::validate::check_id;

/// Log entries per page of a timeline.
const TIMELINE_LIMIT: u32 = 50;

/// The four object pages: a closed set, each with its read-model kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectPage {
    Customers,
    Subscriptions,
    Invoices,
    Orders,
}

impl ObjectPage {
    fn kind(self) -> Kind {
        match self {
            ObjectPage::Customers => Kind::Customer,
            ObjectPage::Subscriptions => Kind::Subscription,
            ObjectPage::Invoices => Kind::Invoice,
            ObjectPage::Orders => Kind::Order,
        }
    }

    /// The path segment (`/ui/<segment>/{id}`).
    pub fn segment(self) -> &'static str {
        match self {
            ObjectPage::Customers => "customers",
            ObjectPage::Subscriptions => "subscriptions",
            ObjectPage::Invoices => "invoices",
            ObjectPage::Orders => "orders",
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

#[derive(askama::Template)]
#[template(path = "ui/object.html")]
struct ObjectView {
    chrome: Chrome,
    noun: &'static str,
    id: String,
    /// The read model as pretty JSON; `None` when the log mentions the id but nothing was
    /// folded for it (yet).
    state: Option<String>,
    rows: Vec<Row>,
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
fn before_param(raw: Option<&str>) -> Result<Option<i64>, UiError> {
    let params = query::parse_query(raw)?;
    query::refuse_unknown(&params, &["before"])?;
    match params.get("before") {
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

/// The read API's JSON for the object, if the read models have it.
async fn current_state(
    state: &AppState,
    page: ObjectPage,
    id: &str,
) -> Result<Option<Value>, UiError> {
    let Some(json) = read_models::get(&state.db, page.kind(), id).await? else {
        return Ok(None);
    };
    let value = match state_from_json(page.kind(), &json)? {
        Fact::Customer(c) => views::customer(&c),
        Fact::Subscription(s) => views::subscription(&s),
        Fact::Invoice(i) => views::invoice(&i),
        Fact::Order(o) => {
            // As `GET /api/orders` shows it: with its payment's refund and dispute state.
            let payment = match o.view().and_then(|v| v.payment_intent.clone()) {
                Some(pi) => match read_models::get(&state.db, Kind::Payment, &pi).await? {
                    Some(json) => match state_from_json(Kind::Payment, &json)? {
                        Fact::Payment(p) => Some(p),
                        _ => None,
                    },
                    None => None,
                },
                None => None,
            };
            views::order(&o, payment.as_ref())
        }
        _ => return Ok(None),
    };
    Ok(Some(value))
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
    let before = before_param(raw.as_deref())?;
    let current = current_state(&state, page, &id).await?;
    let filter = EventFilter {
        object_id: Some(id.clone()),
        ..Default::default()
    };
    let request = PageRequest {
        order: Order::Desc,
        after_position: before,
        limit: TIMELINE_LIMIT,
    };
    let entries = event_log::list(&state.db, &filter, &request).await?;
    if current.is_none() && entries.events.is_empty() && before.is_none() {
        return Err(UiError::not_found(
            "object_not_found",
            format!(
                "no {} with that id in the read models or the log",
                page.noun().to_lowercase()
            ),
        ));
    }
    let base = format!("/ui/{}/{}", page.segment(), urlencode(&id));
    let view = ObjectView {
        chrome: Chrome::new(&state, &session, ""),
        noun: page.noun(),
        state: current
            .as_ref()
            .map(serde_json::to_string_pretty)
            .transpose()
            .map_err(UiError::internal)?,
        rows: entries.events.iter().map(Row::from).collect(),
        events_href: format!("/ui/events?object_id={}", urlencode(&id)),
        entitlement_href: user_link(current.as_ref()),
        newest_href: before.map(|_| base.clone()),
        older_href: entries.next_position.map(|p| format!("{base}?before={p}")),
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
