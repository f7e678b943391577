//! The outbox (`outbox` rows: enqueue, claim with a lease, deliver, list) concern: its storage operations and typed rows. Filled by the outbox helper: src/outbox/mod.rs.
//!
//! [`OutboxStore`] lists the operations on the database handle (reads, one-off writes) and
//! [`OutboxTx`] those inside a transaction. Each is implemented by both backends
//! (`postgres/outbox.rs`, `sqlite/outbox.rs`) and by [`Db`] / [`Tx`], which only dispatch.

use super::{Db, Tx};

/// Operations on the database handle. Dispatched statically through [`Db`], never `dyn`.
#[allow(async_fn_in_trait)] // static dispatch only: callers see the concrete futures, and they are Send.
pub trait OutboxStore {}

/// Operations inside a transaction. Dispatched statically through [`Tx`], never `dyn`.
#[allow(async_fn_in_trait)] // as above
pub trait OutboxTx {}

impl OutboxStore for Db {}

impl OutboxTx for Tx<'_> {}
