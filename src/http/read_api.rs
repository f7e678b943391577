//! The read API for app services: customers, subscriptions, invoices, orders, entitlements.
//! All behind a service token with the `read` scope (dead letters: `audit`).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::Json;
use ledger_projections::Fact;
use serde_json::{json, Value};

use super::history_api::{entitlement_as_of, object_as_of};
use super::query::{parse_query, path_id};
use super::ApiError;
use crate::app::AppState;
use crate::auth::Scope;
use crate::history::ObjectKind;
use crate::projector::{state_from_json, store};
use crate::query::{Endpoint, Paging};
use crate::read_models::{self, views, Query, ReadList};
use crate::store::Kind;

fn list_query(list: ReadList, query: Option<&str>) -> Result<Query, ApiError> {
    Ok(Query::parse(list, &parse_query(query)?)?)
}

fn list_body(items: Vec<Value>, next_cursor: Option<String>) -> Json<Value> {
    Json(json!({"data": items, "next_cursor": next_cursor}))
}

/// The page's items and the cursor after it, for a read-model list.
fn read_page(
    list: ReadList,
    q: &Query,
    page: read_models::Page,
    view: impl Fn(Fact) -> Option<Value>,
) -> Result<Json<Value>, ApiError> {
    let mut items = Vec::new();
    for json in &page.items {
        if let Some(v) = view(state_from_json(list.kind(), json)?) {
            items.push(v);
        }
    }
    let next = page.next_after.map(|id| q.next_cursor(list, &id));
    Ok(list_body(items, next))
}

async fn typed(state: &AppState, kind: Kind, id: &str) -> Result<Option<Fact>, ApiError> {
    match read_models::get(&state.db, kind, id).await? {
        Some(json) => Ok(Some(state_from_json(kind, &json)?)),
        None => Ok(None),
    }
}

pub async fn list_customers(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    state.require(&headers, Scope::Read)?;
    let list = ReadList::Customers;
    let q = list_query(list, query.as_deref())?;
    let page = read_models::list(&state.db, list.kind(), &q).await?;
    read_page(list, &q, page, |fact| match fact {
        Fact::Customer(x) => Some(views::customer(&x)),
        _ => None,
    })
}

pub async fn list_subscriptions(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    state.require(&headers, Scope::Read)?;
    let list = ReadList::Subscriptions;
    let q = list_query(list, query.as_deref())?;
    let page = read_models::list(&state.db, list.kind(), &q).await?;
    read_page(list, &q, page, |fact| match fact {
        Fact::Subscription(x) => Some(views::subscription(&x)),
        _ => None,
    })
}

/// `GET /api/{customers,subscriptions,invoices,orders}/{id}`, or as of a cut
/// (`?as_of_position`, `?as_of`, `?as_of_created`).
async fn show_object(
    state: AppState,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Option<String>,
    kind: ObjectKind,
) -> Result<Json<Value>, ApiError> {
    state.require(&headers, Scope::Read)?;
    let id = path_id("id", path)?;
    if let Some(body) = object_as_of(&state, kind, &id, query.as_deref()).await? {
        return Ok(Json(body));
    }
    let view = match typed(&state, kind.kind(), &id).await? {
        Some(Fact::Customer(c)) if kind == ObjectKind::Customer => Some(views::customer(&c)),
        Some(Fact::Subscription(s)) if kind == ObjectKind::Subscription => {
            Some(views::subscription(&s))
        }
        Some(Fact::Invoice(i)) if kind == ObjectKind::Invoice => Some(views::invoice(&i)),
        Some(Fact::Order(o)) if kind == ObjectKind::Order => {
            let payment = order_payment(&state, &o).await?;
            Some(views::order(&o, payment.as_ref()))
        }
        _ => None,
    };
    view.map(Json).ok_or_else(|| {
        ApiError::not_found(
            kind.not_found_code(),
            format!("no {} with that id", kind.kind().as_str()),
        )
    })
}

macro_rules! show_handler {
    ($name:ident, $kind:expr) => {
        /// The single-object GET of its kind (see [`show_object`]).
        pub async fn $name(
            State(state): State<AppState>,
            headers: HeaderMap,
            path: Result<Path<String>, PathRejection>,
            RawQuery(query): RawQuery,
        ) -> Result<Json<Value>, ApiError> {
            show_object(state, headers, path, query, $kind).await
        }
    };
}

show_handler!(show_customer, ObjectKind::Customer);
show_handler!(show_subscription, ObjectKind::Subscription);
show_handler!(show_invoice, ObjectKind::Invoice);
show_handler!(show_order, ObjectKind::Order);

/// The payment of an order's PaymentIntent, if known.
async fn order_payment(
    state: &AppState,
    o: &ledger_projections::OrderState,
) -> Result<Option<ledger_projections::PaymentState>, ApiError> {
    Ok(match o.view().and_then(|v| v.payment_intent.clone()) {
        Some(pi) => match typed(state, Kind::Payment, &pi).await? {
            Some(Fact::Payment(p)) => Some(p),
            _ => None,
        },
        None => None,
    })
}

pub async fn list_invoices(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    state.require(&headers, Scope::Read)?;
    let list = ReadList::Invoices;
    let q = list_query(list, query.as_deref())?;
    let page = read_models::list(&state.db, list.kind(), &q).await?;
    read_page(list, &q, page, |fact| match fact {
        Fact::Invoice(x) => Some(views::invoice(&x)),
        _ => None,
    })
}

pub async fn list_orders(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    state.require(&headers, Scope::Read)?;
    let q = list_query(ReadList::Orders, query.as_deref())?;
    let page = read_models::list(&state.db, ReadList::Orders.kind(), &q).await?;
    let mut items = Vec::new();
    for json in &page.items {
        if let Fact::Order(o) = state_from_json(Kind::Order, json)? {
            let payment = order_payment(&state, &o).await?;
            items.push(views::order(&o, payment.as_ref()));
        }
    }
    let next = page
        .next_after
        .map(|id| q.next_cursor(ReadList::Orders, &id));
    Ok(list_body(items, next))
}

/// `GET /api/entitlements/{user_id}`: "is this user paid?", evaluated now, or as of a cut
/// (folded from the log, evaluated at the cut's time).
pub async fn entitlement(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    state.require(&headers, Scope::Read)?;
    let user_id = path_id("user_id", path)?;
    if let Some(body) = entitlement_as_of(&state, &user_id, query.as_deref()).await? {
        return Ok(Json(body));
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

/// `GET /api/dead-letters`: logged events whose projection failed (operations data), by log
/// position.
pub async fn dead_letters(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    state.require(&headers, Scope::Audit)?;
    let paging = Paging::parse(Endpoint::DeadLetters, &parse_query(query.as_deref())?)?;
    let (letters, next) = store::dead_letters_page(&state.db, paging.after, paging.limit).await?;
    Ok(Json(
        json!({"data": letters, "next_cursor": next.map(|p| paging.next_cursor(p))}),
    ))
}

/// `GET /api/reconciliations`: scheduled runs, newest first (operations data).
pub async fn reconciliations(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    state.require(&headers, Scope::Audit)?;
    let paging = Paging::parse(Endpoint::Reconciliations, &parse_query(query.as_deref())?)?;
    let (runs, next) =
        crate::reconcile::schedule::runs_page(&state.db, paging.after, paging.limit).await?;
    Ok(Json(
        json!({"data": runs, "next_cursor": next.map(|id| paging.next_cursor(id))}),
    ))
}

/// `GET /api/reconciliations/{id}`: one run with its full report.
pub async fn reconciliation(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<crate::reconcile::schedule::Run>, ApiError> {
    state.require(&headers, Scope::Audit)?;
    let raw = path_id("id", path)?;
    let id: i64 = raw
        .parse()
        .ok()
        .filter(|id| *id > 0 && raw.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            ApiError::bad_request("invalid_parameter", "`id` is a run number, e.g. 12")
        })?;
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
    let q = crate::outbox::ListQuery::parse(&parse_query(query.as_deref())?)?;
    let (items, next) = crate::outbox::list(&state.db, q.status, q.after_id, q.limit).await?;
    let items = items
        .into_iter()
        .map(|i| serde_json::to_value(i).expect("outbox items serialise"))
        .collect();
    Ok(list_body(items, next.map(|id| q.next_cursor(id))))
}
