//! PostgreSQL implementation of the outbox concern (see `store::outbox`). Filled by the outbox helper: src/outbox/mod.rs.

use super::{PgStore, PgTx};
use crate::store::outbox::*;

impl OutboxStore for PgStore {}

impl OutboxTx for PgTx<'_> {}
