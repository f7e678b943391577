//! The read API for app services: customers, subscriptions, invoices, orders, entitlements.
//! All behind a service token with the `read` scope (dead letters: `audit`).

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::Json;
use ledger_projections::Fact;
use serde_json::{json, Value};

use super::{parse_query, ApiError};
use crate::app::AppState;
use crate::auth::Scope;
use crate::projector::{state_from_json, store};
use crate::read_models::{self, views, Query};

/// Filters each list accepts besides `limit` and `cursor`, mapped to read-model columns.
const CUSTOMER_FILTERS: &[(&str, &str)] = &[("user_id", "user_id")];
const SUBSCRIPTION_FILTERS: &[(&str, &str)] = &[
    ("customer", "customer_id"),
    ("status", "status"),
    ("user_id", "user_id"),
];
const INVOICE_FILTERS: &[(&str, &str)] = &[("customer", "customer_id"), ("status", "status")];
const ORDER_FILTERS: &[(&str, &str)] = &[
    ("customer", "customer_id"),
    ("status", "status"),
    ("user_id", "user_id"),
];

fn parse_list(query: Option<&str>, filters: &[(&str, &str)]) -> Result<Query, ApiError> {
    let params: BTreeMap<String, String> = parse_query(query)?;
    let mut q = Query {
        limit: read_models::DEFAULT_LIMIT,
        ..Default::default()
    };
    for (name, value) in params {
        if value.is_empty() || value.len() > 255 {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("`{name}` must be 1 to 255 characters"),
            ));
        }
        match name.as_str() {
            "limit" => {
                q.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=read_models::MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_parameter",
                            format!(
                                "`limit` must be a whole number from 1 to {}",
                                read_models::MAX_LIMIT
                            ),
                        )
                    })?;
            }
            "cursor" => {
                q.after_id = Some(
                    value
                        .strip_prefix("after_")
                        .filter(|id| !id.is_empty())
                        .ok_or_else(|| {
                            ApiError::bad_request(
                                "invalid_cursor",
                                "`cursor` is not a cursor returned by this API",
                            )
                        })?
                        .to_owned(),
                );
            }
            other => match filters.iter().find(|(param, _)| *param == other) {
                Some((_, "customer_id")) => q.customer_id = Some(value),
                Some((_, "user_id")) => q.user_id = Some(value),
                Some((_, "status")) => q.status = Some(value),
                _ => {
                    let known: Vec<&str> = filters
                        .iter()
                        .map(|(p, _)| *p)
                        .chain(["limit", "cursor"])
                        .collect();
                    return Err(ApiError::bad_request(
                        "unknown_parameter",
                        format!(
                            "unknown query parameter `{}`; expected one of: {}",
                            other.chars().take(64).collect::<String>(),
                            known.join(", ")
                        ),
                    ));
                }
            },
        }
    }
    Ok(q)
}

fn list_body(items: Vec<Value>, next_after: Option<String>) -> Json<Value> {
    Json(json!({"data": items, "next_cursor": next_after.map(|id| format!("after_{id}"))}))
}

async fn typed(state: &AppState, kind: &str, id: &str) -> Result<Option<Fact>, ApiError> {
    match read_models::get(&state.db, kind, id).await? {
        Some(json) => Ok(Some(state_from_json(kind, &json)?)),
        None => Ok(None),
    }
}

pub async fn show_customer(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.require(&headers, Scope::Read)?;
    match typed(&state, "customer", &id).await? {
        Some(Fact::Customer(c)) => Ok(Json(views::customer(&c))),
        _ => Err(ApiError::not_found(
            "customer_not_found",
            "no customer with that id",
        )),
    }
}

pub async fn list_customers(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    state.require(&headers, Scope::Read)?;
    let q = parse_list(query.as_deref(), CUSTOMER_FILTERS)?;
    let page = read_models::list(&state.db, "customer", &q).await?;
    let mut items = Vec::new();
    for json in &page.items {
        if let Fact::Customer(c) = state_from_json("customer", json)? {
            items.push(views::customer(&c));
        }
    }
    Ok(list_body(items, page.next_after))
}

pub async fn show_subscription(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.require(&headers, Scope::Read)?;
    match typed(&state, "subscription", &id).await? {
        Some(Fact::Subscription(s)) => Ok(Json(views::subscription(&s))),
        _ => Err(ApiError::not_found(
            "subscription_not_found",
            "no subscription with that id",
        )),
    }
}

pub async fn list_subscriptions(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    state.require(&headers, Scope::Read)?;
    let q = parse_list(query.as_deref(), SUBSCRIPTION_FILTERS)?;
    let page = read_models::list(&state.db, "subscription", &q).await?;
    let mut items = Vec::new();
    for json in &page.items {
        if let Fact::Subscription(s) = state_from_json("subscription", json)? {
            items.push(views::subscription(&s));
        }
    }
    Ok(list_body(items, page.next_after))
}

pub async fn list_invoices(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    state.require(&headers, Scope::Read)?;
    let q = parse_list(query.as_deref(), INVOICE_FILTERS)?;
    let page = read_models::list(&state.db, "invoice", &q).await?;
    let mut items = Vec::new();
    for json in &page.items {
        if let Fact::Invoice(i) = state_from_json("invoice", json)? {
            items.push(views::invoice(&i));
        }
    }
    Ok(list_body(items, page.next_after))
}

pub async fn list_orders(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    state.require(&headers, Scope::Read)?;
    let q = parse_list(query.as_deref(), ORDER_FILTERS)?;
    let page = read_models::list(&state.db, "order", &q).await?;
    let mut items = Vec::new();
    for json in &page.items {
        if let Fact::Order(o) = state_from_json("order", json)? {
            let payment = match o.view().and_then(|v| v.payment_intent.clone()) {
                Some(pi) => match typed(&state, "payment", &pi).await? {
                    Some(Fact::Payment(p)) => Some(p),
                    _ => None,
                },
                None => None,
            };
            items.push(views::order(&o, payment.as_ref()));
        }
    }
    Ok(list_body(items, page.next_after))
}

/// `GET /api/entitlements/{user_id}`: "is this user paid?", evaluated now.
pub async fn entitlement(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(user_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.require(&headers, Scope::Read)?;
    if user_id.is_empty() || user_id.len() > 255 {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            "`user_id` must be 1 to 255 characters",
        ));
    }
    let (subscriptions, invoices) = read_models::user_billing(&state.db, &user_id).await?;
    let e = ledger_projections::entitlement(
        &subscriptions,
        &invoices,
        state.now(),
        state.grace_period_secs,
    );
    Ok(Json(views::entitlement(&user_id, &e)))
}

/// `GET /api/dead-letters`: logged events whose projection failed (operations data).
pub async fn dead_letters(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    state.require(&headers, Scope::Audit)?;
    let letters = store::dead_letters(&state.db).await?;
    Ok(Json(json!({"data": letters, "next_cursor": null})))
}

/// `GET /api/reconciliations`: the latest scheduled runs, newest first (operations data).
pub async fn reconciliations(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    state.require(&headers, Scope::Audit)?;
    let runs = crate::reconcile::schedule::runs(&state.db, 100).await?;
    Ok(Json(json!({"data": runs, "next_cursor": null})))
}

/// `GET /api/reconciliations/{id}`: one run with its full report.
pub async fn reconciliation(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<crate::reconcile::schedule::Run>, ApiError> {
    state.require(&headers, Scope::Audit)?;
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request("invalid_parameter", "the run id is a number"))?;
    crate::reconcile::schedule::run(&state.db, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("reconciliation_not_found", "no run with that id"))
}

/// `GET /api/outbox?status=pending|sent|failed|skipped`: notifications and their delivery
/// (operations data), oldest first.
pub async fn outbox(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    state.require(&headers, Scope::Audit)?;
    let q = parse_list(query.as_deref(), &[("status", "status")])?;
    if let Some(status) = &q.status {
        if !crate::outbox::STATUSES.contains(&status.as_str()) {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!(
                    "`status` must be one of: {}",
                    crate::outbox::STATUSES.join(", ")
                ),
            ));
        }
    }
    let after = match &q.after_id {
        Some(id) => Some(id.parse::<i64>().map_err(|_| {
            ApiError::bad_request(
                "invalid_cursor",
                "`cursor` is not a cursor returned by this API",
            )
        })?),
        None => None,
    };
    let (items, next) = crate::outbox::list(&state.db, q.status.as_deref(), after, q.limit).await?;
    let items = items
        .into_iter()
        .map(|i| serde_json::to_value(i).expect("outbox items serialise"))
        .collect();
    Ok(list_body(items, next.map(|id| id.to_string())))
}
