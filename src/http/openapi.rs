//! `GET /api/openapi.json`: the OpenAPI 3.1 document of this API.
//!
//! The document is hand-written in `docs/openapi.json` and embedded byte for byte, so the file
//! in the repository and the one served are the same. It cannot drift from the code: the
//! integration tests (`tests/integration/openapi.rs`) compare its routes with the router, its
//! error codes with the codes in the source, its scopes with `Scope::ALL`, and validate every
//! response the suite sees against its schemas (ADR 14).

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::app::AppState;
use crate::auth::{Authorization, Scope};

pub const DOCUMENT: &str = include_str!("../../docs/openapi.json");

/// Any configured service token, whatever its scope: the document holds nothing secret, but the
/// API is for service callers, so it is not public either.
pub async fn document(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // `Forbidden` means a known token that lacks the scope asked about: still a known token.
    let known = Scope::ALL
        .iter()
        .any(|scope| state.tokens.authorize(header, *scope) != Authorization::Unauthenticated);
    if !known {
        return ApiError::unauthenticated().into_response();
    }
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT).into_response()
}
