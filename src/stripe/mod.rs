//! Everything that speaks Stripe's protocols: webhook signatures and key modes.

pub mod api_version;
pub mod client;
pub mod keys;
pub mod signature;
