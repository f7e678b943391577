//! Making drift visible and repairable against the Stripe API. Anything learned from the API
//! is appended to the log first, then folded like every other entry.

pub mod diff;
pub mod schedule;
pub mod sync_events;

pub use diff::{
    reconcile, reconcile_objects, render_text, Drift, DriftField, Objects, Problem, ReconcileReport,
};
pub use sync_events::{sync_events, SyncReport};
