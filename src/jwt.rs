//! Verification of the app's user tokens: HS256 JWTs in `Authorization: Bearer`, signed with
//! `JWT_SECRET`, with `sub` = the app's user id and a mandatory `exp`.
//!
//! Only HS256 exists here. The algorithm in the header is checked to be exactly `HS256` and is
//! never used to choose how to verify, so `alg: none`, `HS512` or an RSA/HMAC confusion cannot
//! get a token through. (Why not the `jsonwebtoken` crate: docs/adr/0006.)

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::secret::Secret;

/// Shortest secret accepted: HS256 wants at least 256 bits of key.
pub const MIN_SECRET_LEN: usize = 32;

/// Seconds of clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: i64 = 30;

#[derive(Clone)]
pub struct JwtKey(Secret<Vec<u8>>);

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKey([REDACTED])")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    Missing,
    Malformed,
    /// `alg` is not HS256 (including `none`).
    Algorithm,
    Signature,
    Expired,
    NotYetValid,
    /// No `exp`, or no (or an empty) `sub`.
    Claims,
}

impl JwtError {
    pub fn code(self) -> &'static str {
        match self {
            JwtError::Missing => "token_missing",
            JwtError::Malformed => "token_malformed",
            JwtError::Algorithm => "token_algorithm_not_allowed",
            JwtError::Signature => "token_signature_invalid",
            JwtError::Expired => "token_expired",
            JwtError::NotYetValid => "token_not_yet_valid",
            JwtError::Claims => "token_claims_invalid",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            JwtError::Missing => {
                "a signed-in user's token is required: Authorization: Bearer <jwt>"
            }
            JwtError::Malformed => "the token is not a JWT",
            JwtError::Algorithm => "only HS256 tokens are accepted",
            JwtError::Signature => "the token's signature is invalid",
            JwtError::Expired => "the token has expired",
            JwtError::NotYetValid => "the token is not valid yet",
            JwtError::Claims => "the token needs `sub` (the user id) and `exp`",
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<i64>,
    nbf: Option<i64>,
}

impl JwtKey {
    pub fn new(secret: &str) -> Result<JwtKey, String> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "must be at least {MIN_SECRET_LEN} bytes (HS256 needs a 256-bit key)"
            ));
        }
        Ok(JwtKey(Secret::new(secret.as_bytes().to_vec())))
    }

    /// Checks an `Authorization` header and returns the user id (`sub`).
    pub fn verify(&self, header: Option<&str>, now: i64) -> Result<String, JwtError> {
        let header = header
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .ok_or(JwtError::Missing)?;
        let token = match header.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(JwtError::Missing),
        };
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| JwtError::Malformed)
        };
        let header: Header =
            serde_json::from_slice(&decode(h)?).map_err(|_| JwtError::Malformed)?;
        if header.alg != "HS256" {
            return Err(JwtError::Algorithm);
        }
        let signature = decode(s)?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.expose())
            .expect("HMAC accepts keys of any length");
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(p.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| JwtError::Signature)?;
        // Claims are read only after the signature holds.
        let claims: Claims = serde_json::from_slice(&decode(p)?).map_err(|_| JwtError::Claims)?;
        let exp = claims.exp.ok_or(JwtError::Claims)?;
        if now > exp + LEEWAY_SECS {
            return Err(JwtError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| now + LEEWAY_SECS < nbf) {
            return Err(JwtError::NotYetValid);
        }
        let sub = claims
            .sub
            .filter(|s| !s.is_empty() && s.len() <= 255)
            .ok_or(JwtError::Claims)?;
        Ok(sub)
    }

    /// Issues a token (tests, and apps that want to see the expected shape).
    pub fn sign(&self, sub: &str, exp: i64) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims =
            URL_SAFE_NO_PAD.encode(serde_json::json!({"sub": sub, "exp": exp}).to_string());
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.expose())
            .expect("HMAC accepts keys of any length");
        mac.update(header.as_bytes());
        mac.update(b".");
        mac.update(claims.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{header}.{claims}.{signature}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn bearer(t: &str) -> String {
        format!("Bearer {t}")
    }

    fn forge(header: &str, claims: &str, key: &[u8]) -> String {
        let h = URL_SAFE_NO_PAD.encode(header);
        let c = URL_SAFE_NO_PAD.encode(claims);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
        mac.update(format!("{h}.{c}").as_bytes());
        format!(
            "{h}.{c}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn a_valid_token_yields_its_subject() {
        let key = JwtKey::new(SECRET).unwrap();
        let token = key.sign("user_1", 1_000);
        assert_eq!(key.verify(Some(&bearer(&token)), 900), Ok("user_1".into()));
    }

    #[test]
    fn every_kind_of_bad_token_is_refused_with_its_code() {
        let key = JwtKey::new(SECRET).unwrap();
        let good = key.sign("user_1", 1_000);
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"sub":"user_1","exp":1000}"#)
        );
        let hs512 = forge(
            r#"{"alg":"HS512"}"#,
            r#"{"sub":"u","exp":1000}"#,
            SECRET.as_bytes(),
        );
        let other_key = forge(
            r#"{"alg":"HS256"}"#,
            r#"{"sub":"u","exp":1000}"#,
            b"another-secret-another-secret-xx",
        );
        let no_exp = forge(r#"{"alg":"HS256"}"#, r#"{"sub":"u"}"#, SECRET.as_bytes());
        let no_sub = forge(r#"{"alg":"HS256"}"#, r#"{"exp":1000}"#, SECRET.as_bytes());
        let future = forge(
            r#"{"alg":"HS256"}"#,
            r#"{"sub":"u","exp":5000,"nbf":2000}"#,
            SECRET.as_bytes(),
        );
        let mut tampered = good.clone();
        tampered.insert(good.find('.').unwrap() + 2, 'A');
        let cases: Vec<(Option<String>, JwtError)> = vec![
            (None, JwtError::Missing),
            (Some("Basic abc".into()), JwtError::Missing),
            (Some(bearer("not-a-jwt")), JwtError::Malformed),
            (Some(bearer(&none)), JwtError::Algorithm),
            (Some(bearer(&hs512)), JwtError::Algorithm),
            (Some(bearer(&other_key)), JwtError::Signature),
            (Some(bearer(&tampered)), JwtError::Signature),
            (Some(bearer(&no_exp)), JwtError::Claims),
            (Some(bearer(&no_sub)), JwtError::Claims),
            (Some(bearer(&future)), JwtError::NotYetValid),
        ];
        for (header, expected) in cases {
            assert_eq!(
                key.verify(header.as_deref(), 900),
                Err(expected),
                "{header:?}"
            );
        }
        assert_eq!(
            key.verify(Some(&bearer(&good)), 1_031),
            Err(JwtError::Expired)
        );
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(JwtKey::new("short").is_err());
    }
}
