//! Query strings and list filters, shared by the HTTP API and the CLI so both refuse the same
//! input with the same code and message.
//!
//! Parsed by hand rather than with axum's `Query`, whose rejections are plain text: every error
//! here has a stable code. Each list endpoint has one `parse` function (`audit::ListQuery::parse`,
//! `read_models::Query::parse`, `outbox::ListQuery::parse`, [`Paging::parse`]) taking the decoded
//! [`Params`].

pub mod cursor;

use std::collections::BTreeMap;
use std::fmt;

use crate::validate::check_id;

pub use cursor::Endpoint;

/// Decoded query parameters. A map: a repeated parameter is refused as ambiguous.
pub type Params = BTreeMap<String, String>;

/// At most this many parameters in one query string; no list takes more than nine.
pub const MAX_PARAMS: usize = 32;

/// The classes of query error; each is a stable `code` of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterCode {
    /// The query string itself is malformed (bad percent-encoding, invalid UTF-8, a nameless
    /// parameter, too many parameters).
    InvalidQuery,
    /// A known parameter with an unusable value, or given twice.
    InvalidParameter,
    /// A parameter this endpoint does not take.
    UnknownParameter,
    /// A cursor this endpoint did not issue for these filters and this order.
    InvalidCursor,
}

impl FilterCode {
    pub fn as_str(self) -> &'static str {
        match self {
            FilterCode::InvalidQuery => "invalid_query",
            FilterCode::InvalidParameter => "invalid_parameter",
            FilterCode::UnknownParameter => "unknown_parameter",
            FilterCode::InvalidCursor => "invalid_cursor",
        }
    }
}

/// A query the endpoint refuses: a 400 over HTTP, a usage error in the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub code: FilterCode,
    pub message: String,
}

impl FilterError {
    pub fn new(code: FilterCode, message: impl Into<String>) -> Self {
        FilterError {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(param: &str, why: &str) -> Self {
        Self::new(FilterCode::InvalidParameter, format!("`{param}` {why}"))
    }

    pub fn cursor(why: &str) -> Self {
        Self::new(FilterCode::InvalidCursor, format!("`cursor` {why}"))
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FilterError {}

impl From<crate::validate::InvalidId> for FilterError {
    fn from(e: crate::validate::InvalidId) -> Self {
        FilterError::new(FilterCode::InvalidParameter, e.to_string())
    }
}

/// A parameter name safe to echo in a message: at most 64 characters, controls escaped.
pub fn shown(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().take(64) {
        if c.is_control() || ledger_projections::text::is_invisible(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Splits and decodes `a=1&b=2`. Empty pairs (`a=1&&b=2`) are skipped; a pair without `=` has
/// an empty value.
pub fn parse_query(query: Option<&str>) -> Result<Params, FilterError> {
    let mut params = Params::new();
    let Some(query) = query else {
        return Ok(params);
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if params.len() == MAX_PARAMS {
            return Err(FilterError::new(
                FilterCode::InvalidQuery,
                format!("at most {MAX_PARAMS} query parameters"),
            ));
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = decode_component(k)?;
        let v = decode_component(v)?;
        if k.is_empty() {
            return Err(FilterError::new(
                FilterCode::InvalidQuery,
                "a query parameter has no name",
            ));
        }
        if params.contains_key(&k) {
            return Err(FilterError::invalid(&shown(&k), "is given more than once"));
        }
        params.insert(k, v);
    }
    Ok(params)
}

/// Percent-decodes one component (`+` is a space) into UTF-8. Overlong and other invalid UTF-8
/// sequences are refused here; what the characters may be is each parameter's business.
pub fn decode_component(s: &str) -> Result<String, FilterError> {
    let bad = || {
        FilterError::new(
            FilterCode::InvalidQuery,
            "the query string is not valid percent-encoded UTF-8",
        )
    };
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                // from_str_radix would take a sign: `%+1` is not an escape.
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad());
                }
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// Refuses any parameter not in `known`, so a typo such as `?typ=invoice.paid` cannot silently
/// return the unfiltered list.
pub fn refuse_unknown(params: &Params, known: &[&str]) -> Result<(), FilterError> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(unknown) => Err(FilterError::new(
            FilterCode::UnknownParameter,
            format!(
                "unknown query parameter `{}`; expected one of: {}",
                shown(unknown),
                known.join(", ")
            ),
        )),
    }
}

/// An id-like parameter, checked by [`check_id`].
pub fn id_param(params: &Params, name: &str) -> Result<Option<String>, FilterError> {
    match params.get(name) {
        None => Ok(None),
        Some(v) => {
            check_id(name, v)?;
            Ok(Some(v.clone()))
        }
    }
}

/// A parameter from a closed set of values.
pub fn choice_param<T: Copy>(
    params: &Params,
    name: &str,
    choices: &[(&str, T)],
) -> Result<Option<T>, FilterError> {
    let Some(v) = params.get(name) else {
        return Ok(None);
    };
    match choices.iter().find(|(text, _)| text == v) {
        Some((_, value)) => Ok(Some(*value)),
        None => {
            let names: Vec<&str> = choices.iter().map(|(t, _)| *t).collect();
            Err(FilterError::invalid(
                name,
                &format!("must be one of: {}", names.join(", ")),
            ))
        }
    }
}

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 100;

/// `limit`: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
pub fn limit_param(params: &Params) -> Result<u32, FilterError> {
    match params.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n) && !v.starts_with('+'))
            .ok_or_else(|| {
                FilterError::invalid(
                    "limit",
                    &format!("must be a whole number from 1 to {MAX_LIMIT}"),
                )
            }),
    }
}

/// `limit` and `cursor` of a list with no filters (dead letters, reconciliation runs), whose
/// cursor is a row's integer key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paging {
    pub endpoint: Endpoint,
    pub limit: u32,
    /// Continue after this key (exclusive), in the list's order.
    pub after: Option<i64>,
}

impl Paging {
    pub fn parse(endpoint: Endpoint, params: &Params) -> Result<Paging, FilterError> {
        refuse_unknown(params, &["limit", "cursor"])?;
        let binding = cursor::Binding::new(endpoint, &[]);
        Ok(Paging {
            endpoint,
            limit: limit_param(params)?,
            after: params
                .get("cursor")
                .map(|c| binding.decode_position(c))
                .transpose()?,
        })
    }

    pub fn next_cursor(&self, last: i64) -> String {
        cursor::Binding::new(self.endpoint, &[]).encode(&last.to_string())
    }
}

#[cfg(test)]
mod tests;
