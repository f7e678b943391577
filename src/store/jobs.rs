//! The jobs (`job_leases`, `reconciliation_runs`, the metrics gauges, the bench's scratch databases) concern: its storage operations and typed rows. Filled by the jobs helper: the reconcile schedule and leases (src/reconcile/schedule.rs), the metrics gauges (src/metrics.rs) and the bench's scratch databases (src/bench.rs).
//!
//! [`JobStore`] lists the operations on the database handle (reads, one-off writes) and
//! [`JobTx`] those inside a transaction. Each is implemented by both backends
//! (`postgres/jobs.rs`, `sqlite/jobs.rs`) and by [`Db`] / [`Tx`], which only dispatch.

use super::{Db, Tx};

/// Operations on the database handle. Dispatched statically through [`Db`], never `dyn`.
#[allow(async_fn_in_trait)] // static dispatch only: callers see the concrete futures, and they are Send.
pub trait JobStore {}

/// Operations inside a transaction. Dispatched statically through [`Tx`], never `dyn`.
#[allow(async_fn_in_trait)] // as above
pub trait JobTx {}

impl JobStore for Db {}

impl JobTx for Tx<'_> {}
