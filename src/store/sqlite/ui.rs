//! The console's tables on SQLite (see `store::ui`): every statement is shared
//! (`common/ui.rs`) but the catalog read of the log's triggers (`sqlite_master`).

use super::SqliteStore;
use crate::store::common::ui as sql;
use crate::store::ui::*;
use crate::store::StorageError;

impl UiStore for SqliteStore {
    async fn ui_log_triggers(&self) -> Result<Vec<String>, StorageError> {
        const TRIGGERS: &str = "SELECT name FROM sqlite_master \
             WHERE type = 'trigger' AND tbl_name = 'event_log' ORDER BY name";
        Ok(sqlx::query_scalar(TRIGGERS).fetch_all(&self.read).await?)
    }

    crate::store::common::ui::ui_store_same_on_both!(read, write);
}
