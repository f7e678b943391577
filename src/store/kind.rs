//! The kinds of read model, as stored in `read_models.kind`.

use std::str::FromStr;

use ledger_projections::Fact;

/// A read-model kind: the closed set of objects the projector folds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Customer,
    Subscription,
    Invoice,
    Order,
    Payment,
}

impl Kind {
    /// Every kind, in the order rebuilds and reports walk them.
    pub const ALL: [Kind; 5] = [
        Kind::Customer,
        Kind::Subscription,
        Kind::Invoice,
        Kind::Order,
        Kind::Payment,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Customer => "customer",
            Kind::Subscription => "subscription",
            Kind::Invoice => "invoice",
            Kind::Order => "order",
            Kind::Payment => "payment",
        }
    }

    /// The kind of a folded fact.
    pub fn of(fact: &Fact) -> Kind {
        match fact {
            Fact::Customer(_) => Kind::Customer,
            Fact::Subscription(_) => Kind::Subscription,
            Fact::Invoice(_) => Kind::Invoice,
            Fact::Order(_) => Kind::Order,
            Fact::Payment(_) => Kind::Payment,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored kind that is none of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown read-model kind {0:?}")]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_the_projections_kinds_and_read_back_as_themselves() {
        let spelled: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(spelled, ledger_projections::KINDS);
        for kind in Kind::ALL {
            assert_eq!(kind.as_str().parse::<Kind>(), Ok(kind));
        }
        assert!("Customer".parse::<Kind>().is_err());
        assert!("".parse::<Kind>().is_err());
    }
}
