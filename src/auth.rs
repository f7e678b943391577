//! Service tokens for the read-model and audit APIs (`API_TOKENS=scope:token,...`).
//!
//! Tokens are kept only as SHA-256 digests and compared in constant time, so neither a memory
//! dump nor response timing gives a token away.

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Read models: customers, subscriptions, entitlements...
    Read,
    /// The raw event log and operations data.
    Audit,
    /// `GET /metrics`, for the Prometheus scraper.
    Metrics,
}

impl Scope {
    /// Every scope; the OpenAPI document's `x-scopes` must list exactly these (a test checks).
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Audit, Scope::Metrics];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Audit => "audit",
            Scope::Metrics => "metrics",
        }
    }

    fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "audit" => Some(Scope::Audit),
            "metrics" => Some(Scope::Metrics),
            _ => None,
        }
    }
}

/// Shortest token accepted: 16 characters of a random token is 80+ bits.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Clone, Default)]
pub struct ApiTokens {
    entries: Vec<([u8; 32], Scope)>,
}

impl std::fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scopes: Vec<&str> = self.entries.iter().map(|(_, s)| s.as_str()).collect();
        f.debug_struct("ApiTokens")
            .field("scopes", &scopes)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokensError {
    #[error("entry #{0} is not `scope:token`")]
    NotAPair(usize),
    #[error("entry #{0} has an unknown scope (expected `read`, `audit` or `metrics`)")]
    UnknownScope(usize),
    #[error("entry #{0} has a token shorter than {MIN_TOKEN_LEN} characters")]
    TooShort(usize),
    #[error("entry #{0} has a token with whitespace or control characters")]
    Whitespace(usize),
}

/// Outcome of checking a request's bearer token against a required scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorization {
    Granted,
    /// No token, a malformed header, or a token nobody configured: 401.
    Unauthenticated,
    /// A valid token without the required scope: 403.
    Forbidden,
}

impl ApiTokens {
    pub fn parse(list: &str) -> Result<Self, TokensError> {
        let mut entries = Vec::new();
        for (i, entry) in list.split(',').map(str::trim).enumerate() {
            let n = i + 1;
            if entry.is_empty() {
                continue;
            }
            let (scope, token) = entry.split_once(':').ok_or(TokensError::NotAPair(n))?;
            let scope = Scope::parse(scope.trim()).ok_or(TokensError::UnknownScope(n))?;
            if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(TokensError::Whitespace(n));
            }
            if token.chars().count() < MIN_TOKEN_LEN {
                return Err(TokensError::TooShort(n));
            }
            entries.push((digest(token), scope));
        }
        Ok(ApiTokens { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks an `Authorization` header value. Every configured token is compared, so the time
    /// taken does not depend on which (if any) matched.
    pub fn authorize(&self, header: Option<&str>, required: Scope) -> Authorization {
        let Some(token) = header.and_then(bearer) else {
            return Authorization::Unauthenticated;
        };
        let presented = digest(token);
        let mut known = false;
        let mut scoped = false;
        for (stored, scope) in &self.entries {
            let equal = constant_time_eq(stored, &presented);
            known |= equal;
            scoped |= equal && *scope == required;
        }
        match (known, scoped) {
            (_, true) => Authorization::Granted,
            (true, false) => Authorization::Forbidden,
            (false, _) => Authorization::Unauthenticated,
        }
    }
}

fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUDIT: &str = "audit-token-0123456789";
    const READ: &str = "read-token-0123456789";

    fn tokens() -> ApiTokens {
        ApiTokens::parse(&format!("audit:{AUDIT}, read:{READ}")).unwrap()
    }

    #[test]
    fn scopes_are_enforced() {
        let t = tokens();
        let h = |tok: &str| format!("Bearer {tok}");
        assert_eq!(
            t.authorize(Some(&h(AUDIT)), Scope::Audit),
            Authorization::Granted
        );
        assert_eq!(
            t.authorize(Some(&h(READ)), Scope::Audit),
            Authorization::Forbidden
        );
        assert_eq!(
            t.authorize(Some(&h(READ)), Scope::Read),
            Authorization::Granted
        );
        assert_eq!(
            t.authorize(Some(&h("nope-nope-nope-nope")), Scope::Read),
            Authorization::Unauthenticated
        );
        assert_eq!(
            t.authorize(None, Scope::Read),
            Authorization::Unauthenticated
        );
        assert_eq!(
            t.authorize(Some(AUDIT), Scope::Audit),
            Authorization::Unauthenticated
        );
        assert_eq!(
            t.authorize(Some(&format!("bearer  {AUDIT} ")), Scope::Audit),
            Authorization::Granted
        );
    }

    #[test]
    fn one_token_may_carry_two_scopes() {
        let t = ApiTokens::parse(&format!("audit:{AUDIT},read:{AUDIT}")).unwrap();
        let h = format!("Bearer {AUDIT}");
        assert_eq!(t.authorize(Some(&h), Scope::Read), Authorization::Granted);
        assert_eq!(t.authorize(Some(&h), Scope::Audit), Authorization::Granted);
    }

    #[test]
    fn no_configured_tokens_means_nobody_gets_in() {
        let t = ApiTokens::default();
        assert_eq!(
            t.authorize(Some("Bearer anything-at-all-123"), Scope::Read),
            Authorization::Unauthenticated
        );
    }

    #[test]
    fn bad_lists_are_refused() {
        assert_eq!(
            ApiTokens::parse("audit").unwrap_err(),
            TokensError::NotAPair(1)
        );
        assert_eq!(
            ApiTokens::parse("admin:0123456789abcdef").unwrap_err(),
            TokensError::UnknownScope(1)
        );
        assert_eq!(
            ApiTokens::parse("read:short").unwrap_err(),
            TokensError::TooShort(1)
        );
    }
}
