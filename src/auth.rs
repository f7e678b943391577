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
    /// The console's actions: retry a dead letter, re-queue an email, run a reconcile report.
    Operate,
}

impl Scope {
    /// Every scope; the OpenAPI document's `x-scopes` must list exactly these (a test checks).
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Audit, Scope::Metrics, Scope::Operate];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Audit => "audit",
            Scope::Metrics => "metrics",
            Scope::Operate => "operate",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of scopes (a token listed twice in `API_TOKENS` with two scopes holds both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScopeSet(u8);

impl ScopeSet {
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn insert(&mut self, scope: Scope) {
        self.0 |= scope.bit();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes in both sets.
    pub fn intersection(self, other: ScopeSet) -> ScopeSet {
        ScopeSet(self.0 & other.0)
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// `read,audit`: the stored and displayed form.
    pub fn to_list(self) -> String {
        self.iter().map(Scope::as_str).collect::<Vec<_>>().join(",")
    }

    /// Reads [`ScopeSet::to_list`] back; names this version does not know are dropped (they
    /// grant nothing).
    pub fn from_list(list: &str) -> ScopeSet {
        let mut set = ScopeSet::default();
        for scope in list.split(',').filter_map(|s| Scope::parse(s.trim())) {
            set.insert(scope);
        }
        set
    }
}

/// A configured token, as the console's sessions know it: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIdentity {
    /// `tok_` and 16 hex digits of a hash of the token's digest: names the token in sessions
    /// and in the operator-action log without revealing it.
    pub fingerprint: String,
    pub scopes: ScopeSet,
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
    #[error("entry #{0} has an unknown scope (expected `read`, `audit`, `metrics` or `operate`)")]
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

impl ApiTokens {
    /// Checks a token typed into the console's sign-in form exactly as [`ApiTokens::authorize`]
    /// checks a bearer token (digest, constant-time comparison with every entry), and returns
    /// the token's identity with all its scopes, or `None` for a token nobody configured.
    pub fn identify(&self, token: &str) -> Option<TokenIdentity> {
        let presented = digest(token.trim());
        let mut scopes = ScopeSet::default();
        for (stored, scope) in &self.entries {
            if constant_time_eq(stored, &presented) {
                scopes.insert(*scope);
            }
        }
        (!scopes.is_empty()).then(|| TokenIdentity {
            fingerprint: fingerprint(&presented),
            scopes,
        })
    }

    /// The scopes the token with `fingerprint` has now; empty when it is no longer configured
    /// (a removed token ends its console sessions).
    pub fn scopes_of(&self, fingerprint_text: &str) -> ScopeSet {
        let mut scopes = ScopeSet::default();
        for (stored, scope) in &self.entries {
            if fingerprint(stored) == fingerprint_text {
                scopes.insert(*scope);
            }
        }
        scopes
    }
}

/// Derived from the stored digest, so it can be computed for every configured token without
/// the token; a hash of a hash, so it reveals nothing a digest would not.
fn fingerprint(digest: &[u8; 32]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"stripe-ledger token fingerprint\0");
    hasher.update(digest);
    format!("tok_{}", hex::encode(&hasher.finalize()[..8]))
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
    fn identify_collects_every_scope_and_fingerprints_without_the_token() {
        let t = ApiTokens::parse(&format!("audit:{AUDIT},operate:{AUDIT},read:{READ}")).unwrap();
        let who = t.identify(AUDIT).unwrap();
        assert!(who.scopes.contains(Scope::Audit) && who.scopes.contains(Scope::Operate));
        assert!(!who.scopes.contains(Scope::Read));
        assert!(who.fingerprint.starts_with("tok_") && !who.fingerprint.contains(AUDIT));
        assert_eq!(t.scopes_of(&who.fingerprint), who.scopes);
        assert_ne!(t.identify(READ).unwrap().fingerprint, who.fingerprint);
        assert_eq!(t.identify("not-a-configured-token"), None);
        let without = ApiTokens::parse(&format!("read:{READ}")).unwrap();
        assert!(without.scopes_of(&who.fingerprint).is_empty());
        assert_eq!(ScopeSet::from_list(&who.scopes.to_list()), who.scopes);
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
