//! The console's tables on SQLite (see `store::ui`): every statement is shared
//! (`common/ui.rs`).

use super::SqliteStore;
use crate::store::common::ui as sql;
use crate::store::ui::*;
use crate::store::StorageError;

impl UiStore for SqliteStore {
    crate::store::common::ui::ui_store_same_on_both!(read, write);
}
