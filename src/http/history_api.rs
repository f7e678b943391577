//! History, as-of and explain over HTTP (issue 13), scope `read`:
//! `GET /api/{kind}/{id}/history`, `GET /api/entitlements/{user_id}/explain`, and the as-of
//! variant of the single-object GETs and of `GET /api/entitlements/{user_id}`.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use ledger_projections::{Cited, Considered, Explanation, Fact};
use serde_json::{json, Value};

use super::query::parse_query;
use super::ApiError;
use crate::app::AppState;
use crate::auth::Scope;
use crate::history::{self, HistoryError, HistoryQuery, ObjectKind};
use crate::query::Params;
use crate::read_models::views;
use crate::validate::check_id;

impl From<HistoryError> for ApiError {
    fn from(e: HistoryError) -> Self {
        let status = match &e {
            HistoryError::Storage(s) => return ApiError::from(s.clone()),
            HistoryError::UnknownKind(_)
            | HistoryError::NotFound(_)
            | HistoryError::NotYetExisting(_) => StatusCode::NOT_FOUND,
            HistoryError::Query(_)
            | HistoryError::ContradictoryAsOf
            | HistoryError::InvalidAsOf(..)
            | HistoryError::BeyondLog { .. } => StatusCode::BAD_REQUEST,
        };
        ApiError::client(status, e.code(), e.to_string())
    }
}

fn invalid(field: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_parameter", format!("`{field}` {why}"))
}

/// `GET /api/{kind}/{id}/history`: the entries that touched the object, oldest first, each
/// with its effect and, when applied, the fields it changed.
pub async fn history(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    state.require(&headers, Scope::Read)?;
    let Ok(Path((kind, id))) = path else {
        return Err(invalid("id", "is not valid percent-encoded UTF-8"));
    };
    let kind = ObjectKind::parse(&kind)?;
    check_id("id", &id).map_err(|e| ApiError::bad_request("invalid_parameter", e.to_string()))?;
    let q = HistoryQuery::parse(kind, &id, &parse_query(query.as_deref())?)?;
    let page = history::history_page(&state.db, kind, &id, &q, state.now()).await?;
    Ok(Json(
        serde_json::to_value(page).map_err(ApiError::internal)?,
    ))
}

/// The as-of parameters of a single-object GET (nothing else is accepted there).
pub(super) fn as_of_params(query: Option<&str>) -> Result<Params, ApiError> {
    let params = parse_query(query)?;
    crate::query::refuse_unknown(&params, &history::AS_OF_PARAMS)?;
    Ok(params)
}

/// A single object as of the cut the query names, rendered by `view`, with `as_of`; `None`
/// when the query names no cut (the caller answers from the read model).
pub(super) async fn object_as_of(
    state: &AppState,
    kind: ObjectKind,
    id: &str,
    query: Option<&str>,
) -> Result<Option<Value>, ApiError> {
    let Some(cut) = history::parse_as_of(&as_of_params(query)?)? else {
        return Ok(None);
    };
    let resolved = history::resolve(&state.db, cut, state.now()).await?;
    let found = history::state_as_of(&state.db, kind, id, &resolved).await?;
    let mut body = match (&found.fact, &found.payment) {
        (Fact::Customer(c), _) => views::customer(c),
        (Fact::Subscription(s), _) => views::subscription(s),
        (Fact::Invoice(i), _) => views::invoice(i),
        (Fact::Order(o), Some(Fact::Payment(p))) => views::order(o, Some(p)),
        (Fact::Order(o), _) => views::order(o, None),
        (Fact::Payment(_), _) => return Err(ApiError::internal("payment asked as an object")),
    };
    body["as_of"] = history::as_of_json(&resolved.cut, found.folded);
    Ok(Some(body))
}

/// `GET /api/entitlements/{user_id}?as_of...`: the decision folded from the log at the cut,
/// evaluated at the cut's time.
pub(super) async fn entitlement_as_of(
    state: &AppState,
    user_id: &str,
    query: Option<&str>,
) -> Result<Option<Value>, ApiError> {
    let Some(cut) = history::parse_as_of(&as_of_params(query)?)? else {
        return Ok(None);
    };
    let (e, resolved) = history::explain(
        &state.db,
        user_id,
        Some(cut),
        state.now(),
        state.grace_period_secs,
    )
    .await?;
    let mut body = views::entitlement(user_id, &e.entitlement);
    if let Some(r) = resolved {
        body["as_of"] = history::as_of_json(&r.cut, e.position);
    }
    Ok(Some(body))
}

/// `GET /api/entitlements/{user_id}/explain`: the decision, the rule that produced it, every
/// subscription considered and, for each input, the entry that set it.
pub async fn explain(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    state.require(&headers, Scope::Read)?;
    let user_id = super::query::path_id("user_id", path)?;
    let cut = history::parse_as_of(&as_of_params(query.as_deref())?)?;
    let (e, resolved) = history::explain(
        &state.db,
        &user_id,
        cut,
        state.now(),
        state.grace_period_secs,
    )
    .await?;
    let mut body = explanation_json(&e);
    if let Some(r) = resolved {
        body["as_of"] = history::as_of_json(&r.cut, e.position);
    }
    with_inclusion_proofs(&state.db, &mut body).await?;
    Ok(Json(body))
}

/// Proofs fetched at once by [`with_inclusion_proofs`]: a few, not the whole pool.
const PROOFS_AT_ONCE: usize = 4;

/// Adds to every cited entry its inclusion proof against the latest checkpoint (the sealed
/// log, ADR 18), so the explanation can be verified offline; `null` while the entry is not
/// sealed yet or no checkpoint is signed. One proof per distinct entry.
pub async fn with_inclusion_proofs(
    db: &crate::store::Db,
    body: &mut Value,
) -> Result<(), ApiError> {
    use crate::sealer::proofs::{inclusion, ProofError};
    use futures_util::{StreamExt as _, TryStreamExt as _};
    let mut cited: Vec<&mut Value> = Vec::new();
    let Value::Object(map) = body else {
        return Ok(());
    };
    for (key, value) in map.iter_mut() {
        match (key.as_str(), value) {
            ("customers" | "inputs", Value::Array(items)) => cited.extend(items.iter_mut()),
            ("subscriptions", Value::Array(subs)) => {
                for s in subs.iter_mut() {
                    if let Some(Value::Array(items)) = s.get_mut("inputs") {
                        cited.extend(items.iter_mut());
                    }
                }
            }
            _ => {}
        }
    }
    // One proof per distinct entry, fetched a few at a time: each is a couple of reads.
    let ids: std::collections::BTreeSet<String> = cited
        .iter()
        .filter_map(|c| c["event_id"].as_str().map(str::to_owned))
        .collect();
    let proofs: std::collections::BTreeMap<String, Value> = futures_util::stream::iter(ids)
        .map(|id| async move {
            let proof = match inclusion(db, &id, None).await {
                Ok(p) => serde_json::to_value(p).map_err(ApiError::internal)?,
                Err(ProofError::NoCheckpoint | ProofError::NotYetSealed(_)) => Value::Null,
                Err(ProofError::Storage(e)) => return Err(e.into()),
                Err(e) => return Err(ApiError::internal(e)),
            };
            Ok::<_, ApiError>((id, proof))
        })
        .buffer_unordered(PROOFS_AT_ONCE)
        .try_collect()
        .await?;
    for c in cited {
        if let Some(proof) = c["event_id"].as_str().and_then(|id| proofs.get(id)) {
            c["inclusion_proof"] = proof.clone();
        }
    }
    Ok(())
}

/// The explain body: the entitlement as `GET /api/entitlements` renders it, and its reasons.
pub fn explanation_json(e: &Explanation) -> Value {
    let mut body = views::entitlement(&e.user_id, &e.entitlement);
    body["rule"] = rule_json(&e.rule);
    body["explanation"] = json!(e.sentence);
    body["evaluated_at"] = views::time(Some(e.now));
    body["customers"] = e.links.iter().map(cited_json).collect();
    body["subscriptions"] = e.subscriptions.iter().map(considered_json).collect();
    body["inputs"] = e.inputs.iter().map(cited_json).collect();
    body
}

fn considered_json(c: &Considered) -> Value {
    json!({
        "id": c.id,
        "status": c.status,
        "status_derived": c.derived,
        "access": c.entitlement.access,
        "reason": c.entitlement.reason,
        "until": views::time(c.entitlement.until),
        "rule": rule_json(&c.rule),
        "inputs": c.inputs.iter().map(cited_json).collect::<Vec<_>>(),
    })
}

fn cited_json(c: &Cited) -> Value {
    json!({
        "input": c.input,
        "object": {"kind": c.object_kind, "id": c.object_id},
        "event_id": c.event_id,
        "position": c.position,
    })
}

/// The rule with its unix-second fields as RFC 3339, like every time of the API.
fn rule_json(rule: &ledger_projections::Rule) -> Value {
    fn times(v: &mut Value) {
        if let Value::Object(map) = v {
            for (k, v) in map.iter_mut() {
                if matches!(k.as_str(), "at" | "period_end" | "cancel_at" | "trial_end") {
                    *v = views::time(v.as_i64());
                } else {
                    times(v);
                }
            }
        }
    }
    let mut v = serde_json::to_value(rule).unwrap_or(Value::Null);
    times(&mut v);
    v["sentence"] = json!(rule.sentence());
    v
}
