//! SQLite implementation of the read_models concern (see `store::read_models`). Filled by the read-models helper: the read API's queries (src/read_models.rs) and the projector's store (src/projector/store.rs, catch_up.rs, rebuild.rs).

use super::{SqliteStore, SqliteTx};
use crate::store::read_models::*;

impl ReadModelStore for SqliteStore {}

impl ReadModelTx for SqliteTx<'_> {}
