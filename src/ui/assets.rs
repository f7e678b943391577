//! The console's stylesheet and script, compiled into the binary (no files beside it, no build
//! step). `GET /ui/static/{ver}/{name}`: `ver` is a hash of the assets' bytes, so a URL never
//! names two contents and the response may be cached forever; a request for another version
//! (a page rendered by an older or newer instance during a deploy) still gets today's bytes,
//! but uncached.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::UiError;

const APP_CSS: &[u8] = include_bytes!("../../assets/ui/app.css");
const UI_JS: &[u8] = include_bytes!("../../assets/ui/ui.js");

/// The assets this handler serves: (name, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("app.css", "text/css; charset=utf-8", APP_CSS),
    ("ui.js", "text/javascript; charset=utf-8", UI_JS),
];

/// 12 hex digits of the SHA-256 of every asset, in order.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hasher = Sha256::new();
        for (name, _, bytes) in ASSETS {
            hasher.update(name.as_bytes());
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        }
        hex::encode(&hasher.finalize()[..6])
    })
}

pub async fn serve(Path((ver, name)): Path<(String, String)>) -> Result<Response, UiError> {
    let Some((_, content_type, bytes)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return Err(UiError::not_found("asset_not_found", "no such asset"));
    };
    let cache = if ver == version() {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    Ok(response)
}
