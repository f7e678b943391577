//! `/ui/entitlements/{user_id}`: "is this user paid?" and why: the decision, the rule that made
//! it (in a sentence), every subscription considered with its own verdict, and each input with
//! the log entry that set it (`crate::history::explain`, the same as
//! `GET /api/entitlements/{user_id}/explain`). With `as_of_position`, `as_of` or
//! `as_of_created`, the decision as it stood at that point of the log, evaluated at its time.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::events::object_href;
use super::history_view::as_of_fields;
use super::objects::{path_id, AsOfForm};
use super::{urlencode, Chrome, UiError, UiSession};
use crate::app::AppState;
use crate::auth::Scope;
use crate::history;
use crate::query;

/// An input of the decision and the entry that set it.
pub struct Input {
    pub input: String,
    pub object_id: String,
    pub object_href: String,
    pub event_id: String,
    pub event_href: String,
    pub position: String,
}

/// A subscription the decision considered.
pub struct Considered {
    pub id: String,
    pub href: String,
    pub status: String,
    pub derived: bool,
    pub access: String,
    pub reason: String,
    pub until: String,
    pub sentence: String,
    pub inputs: Vec<Input>,
}

#[derive(askama::Template)]
#[template(path = "ui/entitlement.html")]
struct EntitlementPage {
    chrome: Chrome,
    user_id: String,
    base: String,
    access: String,
    reason: String,
    until: String,
    explanation: String,
    evaluated_at: String,
    as_of: Option<String>,
    form: AsOfForm,
    subscriptions: Vec<Considered>,
    inputs: Vec<Input>,
    /// The API's answer, pretty JSON.
    answer: String,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn inputs(list: &Value) -> Vec<Input> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .map(|c| {
                    let object_id = text(&c["object"]["id"]);
                    let event_id = text(&c["event_id"]);
                    Input {
                        input: text(&c["input"]),
                        object_href: object_href(&object_id),
                        object_id,
                        event_href: format!("/ui/events/{}", urlencode(&event_id)),
                        event_id,
                        position: text(&c["position"]),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

fn considered(list: &Value) -> Vec<Considered> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .map(|s| {
                    let id = text(&s["id"]);
                    Considered {
                        href: format!("/ui/subscriptions/{}", urlencode(&id)),
                        id,
                        status: text(&s["status"]),
                        derived: s["status_derived"].as_bool().unwrap_or(false),
                        access: text(&s["access"]),
                        reason: text(&s["reason"]),
                        until: text(&s["until"]),
                        sentence: text(&s["rule"]["sentence"]),
                        inputs: inputs(&s["inputs"]),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

pub async fn show(
    State(state): State<AppState>,
    session: UiSession,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    session.require(Scope::Audit)?;
    let user_id = path_id("user_id", path)?;
    let params = query::parse_query(raw.as_deref())?;
    query::refuse_unknown(&params, &history::AS_OF_PARAMS)?;
    let as_of = as_of_fields(&params);
    let cut = history::parse_as_of(&as_of)?;
    let (e, resolved) = history::explain(
        &state.db,
        &user_id,
        cut,
        state.now(),
        state.grace_period_secs,
    )
    .await?;
    let mut body = crate::http::explanation_json(&e);
    if let Some(r) = resolved {
        body["as_of"] = history::as_of_json(&r.cut, e.position);
    }
    let page = EntitlementPage {
        chrome: Chrome::new(&state, &session, ""),
        base: format!("/ui/entitlements/{}", urlencode(&user_id)),
        access: text(&body["access"]),
        reason: text(&body["reason"]),
        until: text(&body["until"]),
        explanation: text(&body["explanation"]),
        evaluated_at: text(&body["evaluated_at"]),
        as_of: resolved.map(|_| body["as_of"].to_string()),
        form: AsOfForm {
            position: as_of.get("as_of_position").cloned().unwrap_or_default(),
            received: as_of.get("as_of").cloned().unwrap_or_default(),
            created: as_of.get("as_of_created").cloned().unwrap_or_default(),
        },
        subscriptions: considered(&body["subscriptions"]),
        inputs: inputs(&body["inputs"]),
        answer: serde_json::to_string_pretty(&body).map_err(UiError::internal)?,
        user_id,
    };
    super::render(StatusCode::OK, &page)
}
