//! Stripe API keys and the mode (test or live) they imply.

use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Test,
    Live,
}

impl Mode {
    pub fn is_live(self) -> bool {
        self == Mode::Live
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Test => "test",
            Mode::Live => "live",
        })
    }
}

/// `STRIPE_SECRET_KEY`: a standard (`sk_`) or restricted (`rk_`) key. Its prefix decides the
/// mode for everything else (the livemode check on webhooks, later the API client).
#[derive(Debug, Clone)]
pub struct SecretKey {
    key: Secret<String>,
    mode: Mode,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    // The messages never include the key: a startup error is printed and often shipped to logs.
    #[error("must start with sk_test_, sk_live_, rk_test_ or rk_live_ (a publishable pk_ key or a webhook whsec_ secret does not belong here)")]
    UnknownPrefix,
    #[error("has nothing after its prefix")]
    Truncated,
    #[error("contains whitespace or control characters")]
    Whitespace,
}

impl SecretKey {
    pub fn parse(raw: &str) -> Result<Self, KeyError> {
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(KeyError::Whitespace);
        }
        let (mode, rest) = if let Some(rest) = raw
            .strip_prefix("sk_test_")
            .or_else(|| raw.strip_prefix("rk_test_"))
        {
            (Mode::Test, rest)
        } else if let Some(rest) = raw
            .strip_prefix("sk_live_")
            .or_else(|| raw.strip_prefix("rk_live_"))
        {
            (Mode::Live, rest)
        } else {
            return Err(KeyError::UnknownPrefix);
        };
        if rest.is_empty() {
            return Err(KeyError::Truncated);
        }
        Ok(SecretKey {
            key: Secret::new(raw.to_owned()),
            mode,
        })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn expose(&self) -> &str {
        self.key.expose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_decides_the_mode() {
        assert_eq!(SecretKey::parse("sk_test_123").unwrap().mode(), Mode::Test);
        assert_eq!(SecretKey::parse("rk_test_123").unwrap().mode(), Mode::Test);
        assert_eq!(SecretKey::parse("sk_live_123").unwrap().mode(), Mode::Live);
        assert_eq!(SecretKey::parse("rk_live_123").unwrap().mode(), Mode::Live);
        assert_eq!(
            SecretKey::parse("pk_test_123").unwrap_err(),
            KeyError::UnknownPrefix
        );
        assert_eq!(
            SecretKey::parse("sk_test_").unwrap_err(),
            KeyError::Truncated
        );
        assert_eq!(
            SecretKey::parse("sk_test_1 ").unwrap_err(),
            KeyError::Whitespace
        );
    }

    #[test]
    fn debug_hides_the_key() {
        let key = SecretKey::parse("sk_live_verysecret").unwrap();
        assert!(!format!("{key:?}").contains("verysecret"));
    }
}
