//! `POST /api/checkout`, `POST /api/billing-portal`, `GET /api/config`: for signed-in users,
//! authenticated by the app's JWT.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::ApiError;
use crate::app::AppState;
use crate::billing::{Billing, BillingError, Purchase};
use crate::stripe::client::{StripeCode, StripeError};

fn billing(state: &AppState) -> Result<&Arc<Billing>, ApiError> {
    state.billing.as_ref().ok_or_else(|| {
        ApiError::client(
            StatusCode::SERVICE_UNAVAILABLE,
            "billing_not_configured",
            "checkout is not configured on this service (JWT_SECRET and Stripe settings)",
        )
    })
}

fn user(state: &AppState, billing: &Billing, headers: &HeaderMap) -> Result<String, ApiError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    billing
        .config
        .jwt
        .verify(header, state.now())
        .map_err(|e| ApiError::client(StatusCode::UNAUTHORIZED, e.code(), e.message()))
}

fn error(e: BillingError) -> Response {
    match e {
        BillingError::Unknown { kind, name, valid } => ApiError::bad_request(
            if kind == "tier" {
                "unknown_tier"
            } else {
                "unknown_product"
            },
            format!("unknown {kind} `{name}`; valid: {valid}"),
        )
        .into_response(),
        BillingError::AlreadySubscribed { subscription } => {
            let body = json!({"error": {
                "code": "already_subscribed",
                "message": "the user already has access; manage the subscription in the Customer Portal",
                "portal": "/api/billing-portal",
                "subscription_id": subscription,
            }});
            (StatusCode::CONFLICT, Json(body)).into_response()
        }
        BillingError::NoCustomer => ApiError::not_found(
            "no_customer",
            "the user has no Stripe customer yet; start with POST /api/checkout",
        )
        .into_response(),
        // Our own failure to build a request is a 500, never "Stripe is down".
        BillingError::Stripe(e @ StripeError::Local(_)) => ApiError::internal(e).into_response(),
        BillingError::Stripe(e) => stripe_error(e),
        BillingError::Storage(e) => ApiError::from(e).into_response(),
    }
}

fn stripe_error(e: StripeError) -> Response {
    tracing::error!(error = %e, "Stripe request failed");
    if e.is_transient() {
        let mut response = ApiError::client(
            StatusCode::SERVICE_UNAVAILABLE,
            "stripe_unavailable",
            "Stripe is unavailable; retry in a few seconds",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    }
    // Only a code from the closed set, never Stripe's message: both can echo our input.
    let code = e.code().map(StripeCode::as_str);
    let detail = code.map(|c| format!(" ({c})")).unwrap_or_default();
    let body = json!({"error": {
        "code": "stripe_request_failed",
        "message": format!("Stripe refused the request{detail}"),
        "stripe_code": code,
    }});
    (StatusCode::BAD_GATEWAY, Json(body)).into_response()
}

/// A checkout body is a tier or product name; anything near this size is not one.
pub const CHECKOUT_MAX_BODY_BYTES: usize = 16 * 1024;

pub async fn checkout(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let billing = billing(&state)?;
        let user_id = user(&state, billing, &headers)?;
        let body = super::body::read(
            &headers,
            body,
            CHECKOUT_MAX_BODY_BYTES,
            state.transport.header_timeout,
        )
        .await?;
        let body: Value = serde_json::from_slice(&body).map_err(|_| {
            ApiError::bad_request(
                "invalid_body",
                "the body must be JSON like {\"tier\": \"tier1\"}",
            )
        })?;
        let field = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
        let purchase = match (field("tier"), field("one_time")) {
            (Some(tier), None) => Purchase::Tier(tier),
            (None, Some(product)) => Purchase::OneTime(product),
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_body",
                    "give exactly one of `tier` (a subscription) or `one_time` (a product)",
                ))
            }
        };
        Ok((billing.clone(), user_id, purchase))
    }
    .await;
    let (billing, user_id, purchase) = match result {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match billing
        .checkout(
            &state.db,
            &user_id,
            &purchase,
            state.now(),
            state.grace_period_secs,
        )
        .await
    {
        Ok(session) => {
            Json(json!({"url": session.url, "session_id": session.session_id})).into_response()
        }
        Err(e) => error(e),
    }
}

pub async fn portal(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let billing = match billing(&state) {
        Ok(b) => b.clone(),
        Err(e) => return e.into_response(),
    };
    let user_id = match user(&state, &billing, &headers) {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    match billing.portal(&state.db, &user_id).await {
        Ok(url) => Json(json!({"url": url})).into_response(),
        Err(e) => error(e),
    }
}

/// What a signed-in front end needs: the publishable key (the only key that ever leaves the
/// server) and the names it may offer.
pub async fn config(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let billing = billing(&state)?;
    user(&state, billing, &headers)?;
    Ok(Json(json!({
        "publishable_key": billing.config.publishable_key,
        "tiers": billing.config.tiers.keys().collect::<Vec<_>>(),
        "one_time": billing.config.one_time.keys().collect::<Vec<_>>(),
    })))
}
