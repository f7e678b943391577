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

/// A parsed header. `v1` entries that are not 64 lower-case hex digits are kept as empty
/// (unusable) signatures: they can never match, and Stripe's SDKs ignore them too.
#[derive(Debug)]
struct ParsedHeader<'h> {
    timestamp: i64,
    /// `t` exactly as sent: the signed string is built from this text, never from a
    /// re-formatted number, so what verifies here verifies in Stripe's SDKs too.
    timestamp_text: &'h str,
    v1: Vec<Vec<u8>>,
}

/// Most digits a `t` may have: enough for any `i64` of seconds.
const MAX_TIMESTAMP_DIGITS: usize = 18;

/// A timestamp as Stripe writes it: canonical decimal digits (no sign, no leading zero, no
/// spaces inside). `t=000N` or `t=+N` would name the same second with another signed string.
fn canonical_timestamp(text: &str) -> Option<i64> {
    let canonical = !text.is_empty()
        && text.len() <= MAX_TIMESTAMP_DIGITS
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

/// A `v1` as Stripe writes it: 64 lower-case hex digits. Upper-case hex is refused, like the
/// SDKs' string comparison refuses it.
fn v1_signature(text: &str) -> Option<Vec<u8>> {
    let lower_hex = text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    lower_hex.then(|| hex::decode(text).ok()).flatten()
}

/// Longest header we bother to parse: room for dozens of signatures, and a cap on the work a
/// hostile request can cause.
const MAX_HEADER_LEN: usize = 4096;

fn parse_header(header: &str) -> Result<ParsedHeader<'_>, SignatureError> {
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
                let text = value.trim();
                let t = canonical_timestamp(text).ok_or(SignatureError::Malformed)?;
                // Two different timestamps make the signed string ambiguous.
                if timestamp.is_some_and(|(_, prev)| prev != text) {
                    return Err(SignatureError::Malformed);
                }
                timestamp = Some((t, text));
            }
            "v1" => {
                // Present but unusable (junk, upper case) is remembered as empty, so that
                // "only junk v1" reads as a mismatch rather than as "no v1 at all".
                v1.push(v1_signature(value.trim()).unwrap_or_default());
            }
            _ => {}
        }
    }
    let (timestamp, timestamp_text) = timestamp.ok_or(SignatureError::Malformed)?;
    Ok(ParsedHeader {
        timestamp,
        timestamp_text,
        v1,
    })
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
        mac.update(parsed.timestamp_text.as_bytes());
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
    fn only_a_canonical_timestamp_and_lower_case_hex_verify() {
        let s = secrets("whsec_a");
        let header = sign(b"{}", "whsec_a", 1_000);
        let v1 = header.split_once(",v1=").unwrap().1;
        let signed_over = |t: &str| hmac_sha256_hex(b"whsec_a", format!("{t}.{{}}").as_bytes());
        for t in [
            "0001000", "+1000", "1_000", "1000 1", "-1000", "١٠٠٠", "1e3",
        ] {
            for sig in [v1.to_owned(), signed_over(t)] {
                let header = format!("t={t},v1={sig}");
                let outcome = verify(b"{}", Some(&header), &s, 1_000, Some(300));
                assert_eq!(outcome, Err(SignatureError::Malformed), "{header}");
            }
        }
        let upper = format!("t=1000,v1={}", v1.to_uppercase());
        let outcome = verify(b"{}", Some(&upper), &s, 1_000, Some(300));
        assert_eq!(outcome, Err(SignatureError::Mismatch));
        assert!(verify(b"{}", Some(&header), &s, 1_000, Some(300)).is_ok());
        let zero = sign(b"{}", "whsec_a", 0);
        assert!(verify(b"{}", Some(&zero), &s, 0, Some(300)).is_ok());
        // The same literal `t` twice is harmless; two spellings of one second are not.
        let twice = format!("t=1000,{header}");
        assert!(verify(b"{}", Some(&twice), &s, 1_000, Some(300)).is_ok());
        let respelled = format!("t=01000,{header}");
        let outcome = verify(b"{}", Some(&respelled), &s, 1_000, Some(300));
        assert_eq!(outcome, Err(SignatureError::Malformed));
    }

    /// Header fragments the property test splices together, seeded with the hostile cases.
    const PARTS: &[&str] = &[
        "t=1000",
        "t=0001000",
        "t=+1000",
        "t=",
        "t=99999999999999999999",
        "v1=",
        "v0=ab",
        "v1=DEADBEEF",
        "=",
        ",",
        "v1",
        " ",
        "\u{0}",
        "t=1000,t=1000",
        "x=y",
        "é",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn any_header_gets_a_classified_answer_without_panicking(
            parts in proptest::collection::vec(proptest::sample::select(PARTS), 0..8),
            noise in "\\PC{0,40}",
            sign_it in proptest::bool::ANY,
        ) {
            let mut header = parts.join(",");
            header.push_str(&noise);
            if sign_it {
                let valid = sign(b"{}", "whsec_a", 1_000);
                header = format!("{valid},{header}");
            }
            let outcome = verify(b"{}", Some(&header), &secrets("whsec_a"), 1_000, Some(300));
            match outcome {
                Ok(v) => proptest::prop_assert_eq!(v.timestamp, 1_000),
                Err(e) => proptest::prop_assert!(!e.code().is_empty()),
            }
        }
    }

    #[test]
    fn debug_output_of_the_secrets_never_contains_them() {
        let s = secrets("whsec_supersecretvalue");
        assert!(!format!("{s:?}").contains("supersecret"));
    }
}
