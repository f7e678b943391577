//! The read models (the `read_models` generations, `projection_meta`, dead letters, checkpoints, projected positions) concern: its storage operations and typed rows. Filled by the read-models helper: the read API's queries (src/read_models.rs) and the projector's store (src/projector/store.rs, catch_up.rs, rebuild.rs).
//!
//! [`ReadModelStore`] lists the operations on the database handle (reads, one-off writes) and
//! [`ReadModelTx`] those inside a transaction. Each is implemented by both backends
//! (`postgres/read_models.rs`, `sqlite/read_models.rs`) and by [`Db`] / [`Tx`], which only dispatch.

use super::{Db, Tx};

/// Operations on the database handle. Dispatched statically through [`Db`], never `dyn`.
#[allow(async_fn_in_trait)] // static dispatch only: callers see the concrete futures, and they are Send.
pub trait ReadModelStore {}

/// Operations inside a transaction. Dispatched statically through [`Tx`], never `dyn`.
#[allow(async_fn_in_trait)] // as above
pub trait ReadModelTx {}

impl ReadModelStore for Db {}

impl ReadModelTx for Tx<'_> {}
