//! Verification (and, for `trigger` and the tests, generation) of `Stripe-Signature` headers.
//!
//! The header is `t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=<hex>]`; the signed string is
//! `"{t}.{raw body}"` and `v1` is the lowercase hex HMAC-SHA256 keyed with the endpoint secret's
//! UTF-8 bytes. Rules, all tested against Stripe's own SDK vectors:
//!
//! * any `v1` may match (Stripe sends one per active secret while a secret is rolled), and any of
//!   the configured secrets may match it;
//! * `v0` and unknown schemes are ignored: accepting `v0` would be a downgrade;
//! * comparison is constant-time (`Mac::verify_slice`);
//! * the timestamp must be within the tolerance **in both directions**. Stripe's clock is
//!   authoritative and retries are re-signed with a fresh `t`, so a timestamp far in the future
//!   is as suspicious as a stale one (a captured future-dated header would otherwise replay until
//!   its `t` came into range). The symmetric window is also what absorbs our own clock skew.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Stripe's default, and ours: five minutes.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// Why a signature was refused. Each maps to a stable API error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// No `Stripe-Signature` header at all (or an empty one).
    Missing,
    /// The header could not be read as `t=...,v1=...`.
    Malformed,
    /// The header is well-formed but carries no `v1` signature (e.g. only `v0`).
    NoV1Signature,
    /// No `v1` matched any configured secret.
    Mismatch,
    /// The timestamp is outside the tolerance window.
    TimestampOutOfTolerance,
}

impl SignatureError {
    pub fn code(self) -> &'static str {
        match self {
            SignatureError::Missing => "signature_missing",
            SignatureError::Malformed => "signature_malformed",
            SignatureError::NoV1Signature => "signature_no_v1",
            SignatureError::Mismatch => "signature_mismatch",
            SignatureError::TimestampOutOfTolerance => "timestamp_out_of_tolerance",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            SignatureError::Missing => "the Stripe-Signature header is missing",
            SignatureError::Malformed => {
                "the Stripe-Signature header could not be parsed as t=<timestamp>,v1=<signature>"
            }
            SignatureError::NoV1Signature => {
                "the Stripe-Signature header carries no v1 signature (v0 is not accepted)"
            }
            SignatureError::Mismatch => {
                "no v1 signature matches the payload for any configured webhook secret"
            }
            SignatureError::TimestampOutOfTolerance => {
                "the Stripe-Signature timestamp is outside the allowed tolerance"
            }
        }
    }
}

/// The configured endpoint secrets (`whsec_...`), oldest or newest first: order is irrelevant.
/// Never empty by construction, so there is no way to build a verifier that accepts everything.
#[derive(Clone)]
pub struct WebhookSecrets {
    secrets: Vec<Secret<String>>,
    fingerprints: Vec<String>,
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSecrets")
            .field("count", &self.secrets.len())
            .field("fingerprints", &self.fingerprints)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    #[error("no webhook secret is configured")]
    Empty,
    #[error("webhook secret #{0} is empty")]
    EmptyEntry(usize),
    #[error("webhook secret #{0} contains whitespace or control characters")]
    Whitespace(usize),
}

impl WebhookSecrets {
    /// Parses a comma-separated list, as in `STRIPE_WEBHOOK_SECRET=whsec_new,whsec_old`.
    /// Whitespace around the commas is tolerated; whitespace inside a secret is refused rather
    /// than silently trimmed, since a secret with a stray space never verifies anything.
    pub fn parse(list: &str) -> Result<Self, SecretsError> {
        let entries: Vec<&str> = list.split(',').map(str::trim).collect();
        if entries.iter().all(|e| e.is_empty()) {
            return Err(SecretsError::Empty);
        }
        let mut secrets = Vec::with_capacity(entries.len());
        for (i, entry) in entries.into_iter().enumerate() {
            if entry.is_empty() {
                return Err(SecretsError::EmptyEntry(i + 1));
            }
            if entry.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(SecretsError::Whitespace(i + 1));
            }
            secrets.push(entry.to_owned());
        }
        Ok(Self::from_secrets(secrets))
    }

    /// Secrets used exactly as given, without the trimming `parse` does; for checking Stripe's
    /// SDK vectors, one of which is about a secret with a trailing space.
    pub fn exact(secrets: Vec<String>) -> Result<Self, SecretsError> {
        if secrets.is_empty() {
            return Err(SecretsError::Empty);
        }
        if let Some(i) = secrets.iter().position(String::is_empty) {
            return Err(SecretsError::EmptyEntry(i + 1));
        }
        Ok(Self::from_secrets(secrets))
    }

    fn from_secrets(secrets: Vec<String>) -> Self {
        let fingerprints = secrets.iter().map(|s| fingerprint(s)).collect();
        WebhookSecrets {
            secrets: secrets.into_iter().map(Secret::new).collect(),
            fingerprints,
        }
    }

    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    pub fn fingerprints(&self) -> &[String] {
        &self.fingerprints
    }
}

/// A short, non-reversible name for a secret, safe to store and log: which key verified an
/// event, without the key. Endpoint secrets are high-entropy, so a truncated SHA-256 reveals
/// nothing useful.
pub fn fingerprint(secret: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"stripe-ledger webhook secret fingerprint\0")
        .chain_update(secret.as_bytes())
        .finalize();
    format!("sha256:{}", &hex::encode(digest)[..16])
}

/// Proof that a payload was verified, kept with the event in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub timestamp: i64,
    /// 1-based position of the matching secret in the configured list.
    pub secret_index: usize,
    pub secret_fingerprint: String,
}

/// A parsed header. `v1` entries that are not valid hex are dropped: they can never match,
/// and Stripe's SDKs ignore them too.
#[derive(Debug)]
struct ParsedHeader {
    timestamp: i64,
    v1: Vec<Vec<u8>>,
}

/// Longest header we bother to parse: room for dozens of signatures, and a cap on the work a
/// hostile request can cause.
const MAX_HEADER_LEN: usize = 4096;

fn parse_header(header: &str) -> Result<ParsedHeader, SignatureError> {
    if header.trim().is_empty() {
        return Err(SignatureError::Missing);
    }
    if header.len() > MAX_HEADER_LEN {
        return Err(SignatureError::Malformed);
    }
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        // Stripe never sends a bare word or an empty part; treating them as noise would let a
        // mangled header (`v1,t=1`) read as "well-formed but unsigned".
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match key.trim() {
            "t" => {
                let t = value
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| SignatureError::Malformed)?;
                // Two different timestamps make the signed string ambiguous.
                if timestamp.is_some_and(|prev| prev != t) {
                    return Err(SignatureError::Malformed);
                }
                timestamp = Some(t);
            }
            "v1" => {
                let value = value.trim();
                if value.len() == 64 {
                    if let Ok(bytes) = hex::decode(value) {
                        v1.push(bytes);
                        continue;
                    }
                }
                // Present but unusable; remembered so that "only junk v1" reads as a mismatch
                // rather than as "no v1 at all".
                v1.push(Vec::new());
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    Ok(ParsedHeader { timestamp, v1 })
}

/// Verifies `header` over `payload` at time `now` (unix seconds).
///
/// `tolerance_secs = None` skips the timestamp check; the service never does that, it exists so
/// that Stripe's SDK vectors with "tolerance 0" can be checked verbatim.
pub fn verify(
    payload: &[u8],
    header: Option<&str>,
    secrets: &WebhookSecrets,
    now: i64,
    tolerance_secs: Option<u64>,
) -> Result<Verified, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let parsed = parse_header(header)?;
    if parsed.v1.is_empty() {
        return Err(SignatureError::NoV1Signature);
    }
    // Signature before timestamp: an attacker learns nothing from which check failed, and a
    // genuine-but-stale delivery is reported as such (useful when chasing clock problems).
    let mut matched = None;
    'secrets: for (index, secret) in secrets.secrets.iter().enumerate() {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(parsed.timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(payload);
        for candidate in &parsed.v1 {
            if candidate.len() == 32 && mac.clone().verify_slice(candidate).is_ok() {
                matched = Some(index);
                break 'secrets;
            }
        }
    }
    let index = matched.ok_or(SignatureError::Mismatch)?;
    if let Some(tolerance) = tolerance_secs {
        let age = now.abs_diff(parsed.timestamp);
        if age > tolerance {
            return Err(SignatureError::TimestampOutOfTolerance);
        }
    }
    Ok(Verified {
        timestamp: parsed.timestamp,
        secret_index: index + 1,
        secret_fingerprint: secrets.fingerprints[index].clone(),
    })
}

/// Signs a payload exactly as Stripe does: `t=<timestamp>,v1=<hex>`.
pub fn sign(payload: &[u8], secret: &str, timestamp: i64) -> String {
    let mut signed = Vec::with_capacity(payload.len() + 12);
    signed.extend_from_slice(timestamp.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(payload);
    format!(
        "t={timestamp},v1={}",
        hmac_sha256_hex(secret.as_bytes(), &signed)
    )
}

/// Lowercase hex HMAC-SHA256, the primitive under `v1`.
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(list: &str) -> WebhookSecrets {
        WebhookSecrets::parse(list).unwrap()
    }

    #[test]
    fn a_signature_made_by_sign_verifies() {
        let header = sign(b"{}", "whsec_a", 1_700_000_000);
        let ok = verify(
            b"{}",
            Some(&header),
            &secrets("whsec_a"),
            1_700_000_000,
            Some(300),
        );
        assert_eq!(ok.unwrap().secret_index, 1);
    }

    #[test]
    fn the_second_configured_secret_is_reported_as_the_verifier() {
        let header = sign(b"{}", "whsec_b", 10);
        let ok = verify(
            b"{}",
            Some(&header),
            &secrets("whsec_a, whsec_b"),
            10,
            Some(300),
        );
        let ok = ok.unwrap();
        assert_eq!(ok.secret_index, 2);
        assert_eq!(ok.secret_fingerprint, fingerprint("whsec_b"));
    }

    #[test]
    fn future_timestamps_beyond_the_tolerance_are_refused() {
        let header = sign(b"{}", "whsec_a", 1_000 + 301);
        let err = verify(b"{}", Some(&header), &secrets("whsec_a"), 1_000, Some(300));
        assert_eq!(err, Err(SignatureError::TimestampOutOfTolerance));
        let header = sign(b"{}", "whsec_a", 1_000 + 300);
        assert!(verify(b"{}", Some(&header), &secrets("whsec_a"), 1_000, Some(300)).is_ok());
    }

    #[test]
    fn secret_lists_are_validated() {
        assert_eq!(WebhookSecrets::parse("").unwrap_err(), SecretsError::Empty);
        assert_eq!(
            WebhookSecrets::parse(" , ").unwrap_err(),
            SecretsError::Empty
        );
        assert_eq!(
            WebhookSecrets::parse("a,,b").unwrap_err(),
            SecretsError::EmptyEntry(2)
        );
        assert_eq!(
            WebhookSecrets::parse("a b").unwrap_err(),
            SecretsError::Whitespace(1)
        );
        assert_eq!(WebhookSecrets::parse("a , b").unwrap().len(), 2);
    }

    #[test]
    fn debug_output_of_the_secrets_never_contains_them() {
        let s = secrets("whsec_supersecretvalue");
        assert!(!format!("{s:?}").contains("supersecret"));
    }
}
