//! Query strings and path ids at the HTTP boundary: the library's validation, as `ApiError`s.

use axum::extract::rejection::PathRejection;
use axum::extract::Path;

use super::ApiError;
use crate::query::{FilterError, Params};
use crate::validate::check_id;

impl From<FilterError> for ApiError {
    fn from(e: FilterError) -> Self {
        ApiError::bad_request(e.code.as_str(), e.message)
    }
}

/// The decoded query string; see [`crate::query::parse_query`].
pub(crate) fn parse_query(query: Option<&str>) -> Result<Params, ApiError> {
    Ok(crate::query::parse_query(query)?)
}

/// A path id (`/api/customers/{id}`), held to the same rules as id-like query parameters.
/// Anything that cannot be an id (invalid UTF-8 once percent-decoded, empty, too long, control
/// or format characters) is 400 `invalid_parameter` on both backends, before any query: never a
/// 404 that depends on what the database makes of a NUL.
pub(crate) fn path_id(
    field: &str,
    path: Result<Path<String>, PathRejection>,
) -> Result<String, ApiError> {
    let Ok(Path(id)) = path else {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("`{field}` is not valid percent-encoded UTF-8"),
        ));
    };
    check_id(field, &id).map_err(|e| ApiError::bad_request("invalid_parameter", e.to_string()))?;
    Ok(id)
}
