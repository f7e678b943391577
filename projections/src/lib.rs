//! Pure core of stripe-ledger: decoding of Stripe events and the folds that turn the event log
//! into read models.
//!
//! Nothing in this crate performs IO or reads a clock; CI checks that it depends on no runtime,
//! database or HTTP crate, so every function here is deterministic and trivially testable.

pub mod envelope;

pub use envelope::{Envelope, EnvelopeError, ObjectRef};
