//! The edge of the router: limits every request must pass, and the guarantee that every error
//! leaves as `{"error": {"code", "message"}}`, whoever produced it (our handlers, axum's
//! extractors and fallbacks, tower layers).

use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// Longest path and query we accept (414 `uri_too_long` past it).
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most header bytes (names, values, and 4 bytes of framing each) and headers we accept
/// (431 `headers_too_large` past either).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
pub const MAX_HEADERS: usize = 100;

/// The stable code and message of an error status that no handler described (the router's,
/// axum's extractors', hyper's own). Closed: every status maps to one of these.
pub fn describe(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::BAD_REQUEST => ("bad_request", "the request is malformed"),
        StatusCode::NOT_FOUND => ("route_not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this route does not accept that method",
        ),
        StatusCode::REQUEST_TIMEOUT => ("request_timeout", "the request took too long to send"),
        StatusCode::LENGTH_REQUIRED => ("length_required", "this request needs a Content-Length"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
        StatusCode::URI_TOO_LONG => (
            "uri_too_long",
            "the request's path and query are longer than 8192 bytes",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "the request body's content type is not accepted here",
        ),
        StatusCode::UNPROCESSABLE_ENTITY => (
            "unprocessable_request",
            "the request body has the wrong shape",
        ),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            "headers_too_large",
            "the request's headers are larger than 16384 bytes or more than 100",
        ),
        s if s.is_client_error() => ("bad_request", "the request was refused"),
        _ => ("internal_error", "internal error"),
    }
}

pub async fn boundary(request: Request, next: Next) -> Response {
    if let Err(e) = check(&request) {
        return e.into_response();
    }
    let response = next.run(request).await;
    if response.status().is_client_error() || response.status().is_server_error() {
        as_json(response)
    } else {
        response
    }
}

fn check(request: &Request) -> Result<(), ApiError> {
    let uri_len = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return Err(refusal(StatusCode::URI_TOO_LONG));
    }
    if too_many_header_bytes(request.headers()) {
        return Err(refusal(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
    }
    // axum's `Path` would refuse this itself, but as text/plain "Invalid URL".
    if !percent_decodes_to_utf8(request.uri().path()) {
        return Err(ApiError::bad_request(
            "invalid_path",
            "the path is not valid percent-encoded UTF-8",
        ));
    }
    Ok(())
}

fn refusal(status: StatusCode) -> ApiError {
    let (code, message) = describe(status);
    ApiError::client(status, code, message)
}

fn too_many_header_bytes(headers: &HeaderMap) -> bool {
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES
}

fn percent_decodes_to_utf8(path: &str) -> bool {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                decoded.push(b);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&decoded).is_ok()
}

/// An error response that is not JSON yet becomes the documented shape for its status; its
/// other headers (`Allow`, `Retry-After`...) are kept. The console's HTML error pages
/// (`ui::UiError`, which carry the same stable codes) stay HTML.
fn as_json(response: Response) -> Response {
    let kept = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if kept {
        return response;
    }
    let (mut parts, _body) = response.into_parts();
    let (code, message) = describe(parts.status);
    if parts.status.is_server_error() {
        tracing::error!(
            status = parts.status.as_u16(),
            "an error response without a body was answered as JSON"
        );
    }
    let json = ApiError::client(parts.status, code, message).into_response();
    let (json_parts, body) = json.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(json_parts.headers);
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked_after_percent_decoding() {
        assert!(percent_decodes_to_utf8("/api/customers/cus_123"));
        assert!(percent_decodes_to_utf8("/api/entitlements/%C3%A9t%C3%A9"));
        assert!(percent_decodes_to_utf8("/a/%zz/100%"));
        assert!(!percent_decodes_to_utf8("/api/customers/%FF"));
        assert!(!percent_decodes_to_utf8("/api/customers/%C3"));
    }

    #[test]
    fn every_error_status_has_a_stable_code() {
        assert_eq!(describe(StatusCode::URI_TOO_LONG).0, "uri_too_long");
        assert_eq!(
            describe(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE).0,
            "headers_too_large"
        );
        assert_eq!(describe(StatusCode::IM_A_TEAPOT).0, "bad_request");
        assert_eq!(describe(StatusCode::BAD_GATEWAY).0, "internal_error");
    }
}
