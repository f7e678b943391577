//! `/ui/entitlements/{user_id}`: "is this user paid?", evaluated now exactly as
//! `GET /api/entitlements/{user_id}` evaluates it, with the subscriptions and invoices the
//! answer was computed from, each linked to its page.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::objects::path_id;
use super::{urlencode, Chrome, UiError, UiSession};
use crate::app::AppState;
use crate::auth::Scope;
use crate::read_models::{self, views};

pub struct Basis {
    pub id: String,
    pub href: String,
    pub status: String,
}

#[derive(askama::Template)]
#[template(path = "ui/entitlement.html")]
struct EntitlementPage {
    chrome: Chrome,
    user_id: String,
    /// `views::entitlement` as pretty JSON: the API's answer.
    answer: String,
    access: String,
    reason: String,
    until: String,
    /// The deciding subscription: its page and id.
    deciding: Option<(String, String)>,
    subscriptions: Vec<Basis>,
    invoices: Vec<Basis>,
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub async fn show(
    State(state): State<AppState>,
    session: UiSession,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, UiError> {
    session.require(Scope::Audit)?;
    let user_id = path_id("user_id", path)?;
    let (subscriptions, invoices) = read_models::user_billing(&state.db, &user_id).await?;
    let e = ledger_projections::entitlement(
        &subscriptions,
        &invoices,
        state.now(),
        state.grace_period_secs,
    );
    let answer = views::entitlement(&user_id, &e);
    let page = EntitlementPage {
        chrome: Chrome::new(&state, &session, ""),
        answer: serde_json::to_string_pretty(&answer).map_err(UiError::internal)?,
        access: text(&answer["access"]),
        reason: text(&answer["reason"]),
        until: text(&answer["until"]),
        deciding: e.subscription_id.as_deref().map(|id| {
            (
                format!("/ui/subscriptions/{}", urlencode(id)),
                id.to_owned(),
            )
        }),
        subscriptions: subscriptions
            .iter()
            .map(|s| Basis {
                href: format!("/ui/subscriptions/{}", urlencode(&s.id)),
                status: text(&views::subscription(s)["status"]),
                id: s.id.clone(),
            })
            .collect(),
        invoices: invoices
            .iter()
            .map(|i| Basis {
                href: format!("/ui/invoices/{}", urlencode(&i.id)),
                status: text(&views::invoice(i)["status"]),
                id: i.id.clone(),
            })
            .collect(),
        user_id,
    };
    super::render(StatusCode::OK, &page)
}
