//! The sealed log's routes (scope `audit`): the latest checkpoint, inclusion and consistency
//! proofs. The library does the work (`crate::sealer::proofs`); this maps it to HTTP.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::query::{parse_query, path_id};
use super::ApiError;
use crate::app::AppState;
use crate::auth::Scope;
use crate::query::{refuse_unknown, FilterError, Params};
use crate::sealer::proofs::{self, ConsistencyProof, InclusionProof, ProofError};
use crate::store::seal::SealStore as _;

impl From<ProofError> for ApiError {
    fn from(e: ProofError) -> Self {
        let message = e.to_string();
        match e {
            ProofError::UnknownEvent => ApiError::not_found("event_not_found", message),
            ProofError::NoCheckpoint => ApiError::not_found("no_checkpoint", message),
            ProofError::NotYetSealed(_) => {
                ApiError::client(StatusCode::CONFLICT, "not_yet_sealed", message)
            }
            ProofError::LeafMismatch => {
                ApiError::client(StatusCode::CONFLICT, "sealed_leaf_mismatch", message)
            }
            ProofError::BadSize(_) => ApiError::bad_request("invalid_tree_size", message),
            ProofError::Storage(e) => e.into(),
            ProofError::Tree(detail) => ApiError::internal(detail),
        }
    }
}

/// The latest signed checkpoint, as the note's text.
pub async fn checkpoint(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.require(&headers, Scope::Audit)?;
    // Checkpoints signed before sealing was switched off are still served (the proof routes
    // still prove against them); with none, and sealing off, none will ever come: a client
    // polling for the first one should stop.
    let latest = state.db.latest_checkpoint().await?.ok_or_else(|| {
        if state.sealing_on {
            ApiError::not_found("no_checkpoint", "no checkpoint has been signed yet")
        } else {
            sealing_off()
        }
    })?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        latest.note,
    )
        .into_response())
}

pub async fn inclusion_proof(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Json<InclusionProof>, ApiError> {
    state.require(&headers, Scope::Audit)?;
    let event_id = path_id("event_id", path)?;
    let params = parse_query(query.as_deref())?;
    refuse_unknown(&params, &["tree_size"])?;
    let tree_size = size_param(&params, "tree_size")?;
    let proof = proofs::inclusion(&state.db, &event_id, tree_size).await;
    Ok(Json(proof.map_err(|e| proof_error(&state, e))?))
}

pub async fn consistency_proof(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<ConsistencyProof>, ApiError> {
    state.require(&headers, Scope::Audit)?;
    let params = parse_query(query.as_deref())?;
    refuse_unknown(&params, &["from", "to"])?;
    let required = |name: &str| {
        size_param(&params, name)?
            .ok_or_else(|| FilterError::invalid(name, "is required (a tree size)"))
    };
    let (from, to) = (required("from")?, required("to")?);
    let proof = proofs::consistency(&state.db, from, to).await;
    Ok(Json(proof.map_err(|e| proof_error(&state, e))?))
}

/// No checkpoint, or a size not sealed, on a service with sealing off is `sealing_off`: neither
/// will ever come. With sealing switched off after it ran, what was sealed and signed before
/// still proves entries.
fn proof_error(state: &AppState, e: ProofError) -> ApiError {
    match e {
        ProofError::NoCheckpoint | ProofError::NotYetSealed(_) if !state.sealing_on => {
            sealing_off()
        }
        e => e.into(),
    }
}

fn sealing_off() -> ApiError {
    ApiError::not_found(
        "sealing_off",
        "sealing is off on this service (LEDGER_SIGNING_KEY=off): no checkpoint is signed",
    )
}

/// A tree size: 1 to 2^63 - 1, plain decimal digits (no sign, no spaces).
fn size_param(params: &Params, name: &str) -> Result<Option<u64>, FilterError> {
    let Some(v) = params.get(name) else {
        return Ok(None);
    };
    v.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| v.parse::<i64>().ok())
        .flatten()
        .filter(|n| *n >= 1)
        .map(|n| Some(n.unsigned_abs()))
        .ok_or_else(|| {
            FilterError::invalid(name, "must be a whole number from 1 to 9223372036854775807")
        })
}
