//! PostgreSQL implementation of the read_models concern (see `store::read_models`). Filled by the read-models helper: the read API's queries (src/read_models.rs) and the projector's store (src/projector/store.rs, catch_up.rs, rebuild.rs).

use super::{PgStore, PgTx};
use crate::store::read_models::*;

impl ReadModelStore for PgStore {}

impl ReadModelTx for PgTx<'_> {}
