//! The console's tables on PostgreSQL (see `store::ui`): every statement is shared
//! (`common/ui.rs`).

use super::PgStore;
use crate::store::common::ui as sql;
use crate::store::ui::*;
use crate::store::StorageError;

impl UiStore for PgStore {
    crate::store::common::ui::ui_store_same_on_both!(pool, pool);
}
