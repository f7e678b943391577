//! SQLite implementation of the outbox concern (see `store::outbox`). Filled by the outbox helper: src/outbox/mod.rs.

use super::{SqliteStore, SqliteTx};
use crate::store::outbox::*;

impl OutboxStore for SqliteStore {}

impl OutboxTx for SqliteTx<'_> {}
