//! The console's tables on PostgreSQL (see `store::ui`): every statement is shared
//! (`common/ui.rs`) but the catalog read of the log's triggers (`pg_trigger`).

use super::PgStore;
use crate::store::common::ui as sql;
use crate::store::ui::*;
use crate::store::StorageError;

impl UiStore for PgStore {
    async fn ui_log_triggers(&self) -> Result<Vec<String>, StorageError> {
        const TRIGGERS: &str = "SELECT tgname::text FROM pg_trigger \
             WHERE tgrelid = 'event_log'::regclass AND NOT tgisinternal ORDER BY tgname";
        Ok(sqlx::query_scalar(TRIGGERS).fetch_all(&self.pool).await?)
    }

    crate::store::common::ui::ui_store_same_on_both!(pool, pool);
}
