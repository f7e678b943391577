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

/// Longest `sub` accepted: Stripe's limit for `client_reference_id`, where it ends up.
pub const MAX_SUB_CHARS: usize = 200;

#[derive(Clone)]
pub struct JwtKey {
    secret: Secret<Vec<u8>>,
    /// `JWT_AUDIENCE`: when set, `aud` must name it (a string or an array holding it).
    audience: Option<String>,
    /// `JWT_ISSUER`: when set, `iss` must equal it.
    issuer: Option<String>,
}

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
    /// No `exp`; no `sub`, or one that is empty, blank, too long or has control characters;
    /// a claim of the wrong type; `aud`/`iss` not the configured ones.
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
            JwtError::Claims => {
                "the token needs `exp` and a `sub` (the user id: 1-200 printable characters), and the configured `aud`/`iss`"
            }
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    /// RFC 7515 §4.1.11: a token naming extensions the verifier must understand is refused,
    /// since this verifier understands none.
    crit: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<i64>,
    nbf: Option<i64>,
    aud: Option<Audience>,
    iss: Option<String>,
}

/// RFC 7519 §4.1.3: one audience or several.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn names(&self, wanted: &str) -> bool {
        match self {
            Audience::One(a) => a == wanted,
            Audience::Many(all) => all.iter().any(|a| a == wanted),
        }
    }
}

/// A user id we can pass to Stripe as `client_reference_id` and in an `Idempotency-Key`
/// header: 1-200 characters, no control characters (NUL, newline, ...), not only whitespace.
pub fn valid_sub(sub: &str) -> bool {
    !sub.trim().is_empty()
        && sub.chars().count() <= MAX_SUB_CHARS
        && !sub.chars().any(char::is_control)
}

impl JwtKey {
    pub fn new(secret: &str) -> Result<JwtKey, String> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "must be at least {MIN_SECRET_LEN} bytes (HS256 needs a 256-bit key)"
            ));
        }
        Ok(JwtKey {
            secret: Secret::new(secret.as_bytes().to_vec()),
            audience: None,
            issuer: None,
        })
    }

    /// Requires `aud` to name this audience and `iss` to equal this issuer (each when `Some`).
    pub fn with_claims(mut self, audience: Option<String>, issuer: Option<String>) -> Self {
        self.audience = audience;
        self.issuer = issuer;
        self
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
        if header.crit.is_some() {
            return Err(JwtError::Malformed);
        }
        let signature = decode(s)?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.secret.expose())
            .expect("HMAC accepts keys of any length");
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(p.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| JwtError::Signature)?;
        // Claims are read only after the signature holds.
        let claims: Claims = serde_json::from_slice(&decode(p)?).map_err(|_| JwtError::Claims)?;
        self.check_claims(claims, now)
    }

    fn check_claims(&self, claims: Claims, now: i64) -> Result<String, JwtError> {
        let exp = claims.exp.ok_or(JwtError::Claims)?;
        // Saturating: `exp = i64::MAX` (or `nbf = i64::MIN`) must not wrap into the past.
        if now > exp.saturating_add(LEEWAY_SECS) {
            return Err(JwtError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| now.saturating_add(LEEWAY_SECS) < nbf)
        {
            return Err(JwtError::NotYetValid);
        }
        if let Some(wanted) = &self.audience {
            if !claims.aud.as_ref().is_some_and(|a| a.names(wanted)) {
                return Err(JwtError::Claims);
            }
        }
        if let Some(wanted) = &self.issuer {
            if claims.iss.as_deref() != Some(wanted.as_str()) {
                return Err(JwtError::Claims);
            }
        }
        claims.sub.filter(|s| valid_sub(s)).ok_or(JwtError::Claims)
    }

    /// Issues a token (tests, `go-live-check`'s fresh users, and apps that want to see the
    /// expected shape), with the configured `aud` and `iss`, so this key's own `verify`
    /// accepts it.
    pub fn sign(&self, sub: &str, exp: i64) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let mut claims = serde_json::json!({"sub": sub, "exp": exp});
        if let Some(aud) = &self.audience {
            claims["aud"] = aud.as_str().into();
        }
        if let Some(iss) = &self.issuer {
            claims["iss"] = iss.as_str().into();
        }
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.secret.expose())
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

    fn claims_token(claims: &str) -> String {
        bearer(&forge(r#"{"alg":"HS256"}"#, claims, SECRET.as_bytes()))
    }

    #[test]
    fn an_exp_at_the_end_of_time_does_not_wrap_into_the_past() {
        let key = JwtKey::new(SECRET).unwrap();
        let max = format!(r#"{{"sub":"u","exp":{}}}"#, i64::MAX);
        assert_eq!(key.verify(Some(&claims_token(&max)), 900), Ok("u".into()));
        let min_nbf = format!(r#"{{"sub":"u","exp":1000,"nbf":{}}}"#, i64::MIN);
        assert_eq!(
            key.verify(Some(&claims_token(&min_nbf)), 900),
            Ok("u".into())
        );
        let max_nbf = format!(r#"{{"sub":"u","exp":1000,"nbf":{}}}"#, i64::MAX);
        assert_eq!(
            key.verify(Some(&claims_token(&max_nbf)), i64::MAX),
            Err(JwtError::Expired)
        );
        let huge = r#"{"sub":"u","exp":1e400}"#;
        assert_eq!(
            key.verify(Some(&claims_token(huge)), 900),
            Err(JwtError::Claims)
        );
    }

    #[test]
    fn subjects_with_control_characters_blank_or_too_long_are_refused() {
        let key = JwtKey::new(SECRET).unwrap();
        let long = "u".repeat(MAX_SUB_CHARS + 1);
        let at_limit = "é".repeat(MAX_SUB_CHARS);
        for bad in [
            r"a\nb",
            r"a\u0000b",
            r"a\rb",
            "   ",
            r"\t",
            "",
            r"a\u007fb",
            &long,
        ] {
            let claims = format!(r#"{{"sub":"{bad}","exp":1000}}"#);
            assert_eq!(
                key.verify(Some(&claims_token(&claims)), 900),
                Err(JwtError::Claims),
                "{bad:?}"
            );
        }
        let claims = format!(r#"{{"sub":"{at_limit}","exp":1000}}"#);
        assert_eq!(key.verify(Some(&claims_token(&claims)), 900), Ok(at_limit));
        let wrong_type = r#"{"sub":42,"exp":1000}"#;
        assert_eq!(
            key.verify(Some(&claims_token(wrong_type)), 900),
            Err(JwtError::Claims)
        );
    }

    #[test]
    fn a_token_with_critical_extensions_is_refused() {
        let key = JwtKey::new(SECRET).unwrap();
        let crit = forge(
            r#"{"alg":"HS256","crit":["exp"],"exp":1}"#,
            r#"{"sub":"u","exp":1000}"#,
            SECRET.as_bytes(),
        );
        assert_eq!(
            key.verify(Some(&bearer(&crit)), 900),
            Err(JwtError::Malformed)
        );
    }

    #[test]
    fn audience_and_issuer_are_checked_only_when_configured() {
        let open = JwtKey::new(SECRET).unwrap();
        let strict = JwtKey::new(SECRET)
            .unwrap()
            .with_claims(Some("app".into()), Some("https://id.test".into()));
        let good = claims_token(r#"{"sub":"u","exp":1000,"aud":"app","iss":"https://id.test"}"#);
        let many =
            claims_token(r#"{"sub":"u","exp":1000,"aud":["x","app"],"iss":"https://id.test"}"#);
        let other_aud =
            claims_token(r#"{"sub":"u","exp":1000,"aud":"other","iss":"https://id.test"}"#);
        let no_iss = claims_token(r#"{"sub":"u","exp":1000,"aud":"app"}"#);
        let plain = claims_token(r#"{"sub":"u","exp":1000}"#);
        assert_eq!(strict.verify(Some(&good), 900), Ok("u".into()));
        assert_eq!(strict.verify(Some(&many), 900), Ok("u".into()));
        for bad in [&other_aud, &no_iss, &plain] {
            assert_eq!(strict.verify(Some(bad), 900), Err(JwtError::Claims));
        }
        assert_eq!(open.verify(Some(&plain), 900), Ok("u".into()));
        assert_eq!(open.verify(Some(&other_aud), 900), Ok("u".into()));
        // What the strict key issues carries its audience and issuer.
        let issued = bearer(&strict.sign("u", 1000));
        assert_eq!(strict.verify(Some(&issued), 900), Ok("u".into()));
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<f64>().prop_map(|f| serde_json::json!(f)),
                Just(serde_json::json!(i64::MAX)),
                Just(serde_json::json!(u64::MAX)),
                ".{0,40}".prop_map(serde_json::Value::from),
                Just(serde_json::Value::from("a\n\u{0}b")),
                Just(serde_json::Value::from("   ")),
                Just(serde_json::Value::from("HS256")),
            ];
            leaf.prop_recursive(3, 16, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                    prop::collection::btree_map(
                        prop_oneof![
                            Just("sub".to_owned()),
                            Just("exp".to_owned()),
                            Just("nbf".to_owned()),
                            Just("aud".to_owned()),
                            Just("iss".to_owned()),
                            Just("alg".to_owned()),
                            Just("crit".to_owned()),
                            "[a-z]{1,4}",
                        ],
                        inner,
                        0..6
                    )
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// A header and claims object with the keys that matter, each of any shape.
        fn token_parts() -> impl Strategy<Value = (String, String)> {
            let header = (json_value(), prop::option::of(json_value())).prop_map(|(alg, crit)| {
                let mut h = serde_json::json!({"alg": "HS256"});
                if let Some(crit) = crit {
                    h["crit"] = crit;
                }
                if !alg.is_null() {
                    h["alg"] = alg;
                }
                h.to_string()
            });
            let claims = prop::collection::vec(
                (
                    prop_oneof![
                        Just("sub"),
                        Just("exp"),
                        Just("nbf"),
                        Just("aud"),
                        Just("iss")
                    ],
                    json_value(),
                ),
                0..6,
            )
            .prop_map(|pairs| {
                let mut c = serde_json::json!({"sub": "user_1", "exp": 1000});
                for (k, v) in pairs {
                    c[k] = v;
                }
                c.to_string()
            });
            (header, claims)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn arbitrary_bytes_never_panic_and_are_classified(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
                let key = JwtKey::new(SECRET).unwrap();
                let text = String::from_utf8_lossy(&bytes);
                let header = format!("Bearer {text}");
                let result = key.verify(Some(&header), 900);
                // Random bytes never carry a valid signature.
                prop_assert!(result.is_err());
                prop_assert!(result.unwrap_err().code().starts_with("token_"));
            }

            #[test]
            fn arbitrary_dotted_base64_segments_never_panic(segments in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..5)) {
                let key = JwtKey::new(SECRET).unwrap();
                let token = segments.iter().map(|s| URL_SAFE_NO_PAD.encode(s)).collect::<Vec<_>>().join(".");
                prop_assert!(key.verify(Some(&bearer(&token)), 900).is_err());
            }

            #[test]
            fn signed_tokens_with_mutated_headers_and_claims_are_accepted_only_when_sane(
                (header, claims) in token_parts(),
                now in prop_oneof![Just(900i64), Just(i64::MAX), Just(i64::MIN), any::<i64>()],
            ) {
                let key = JwtKey::new(SECRET).unwrap().with_claims(None, None);
                let token = forge(&header, &claims, SECRET.as_bytes());
                match key.verify(Some(&bearer(&token)), now) {
                    Ok(sub) => {
                        // Accepted only with an HS256 header without `crit` and a sane `sub`.
                        let h: serde_json::Value = serde_json::from_str(&header).unwrap();
                        prop_assert_eq!(&h["alg"], "HS256");
                        prop_assert!(h.get("crit").is_none_or(serde_json::Value::is_null));
                        prop_assert!(valid_sub(&sub));
                        let c: serde_json::Value = serde_json::from_str(&claims).unwrap();
                        prop_assert_eq!(c["sub"].as_str(), Some(sub.as_str()));
                        prop_assert!(c["exp"].as_i64().is_some());
                    }
                    Err(e) => prop_assert!(e.code().starts_with("token_")),
                }
            }
        }
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(JwtKey::new("short").is_err());
    }
}
