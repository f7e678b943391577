//! SQLite implementation of the jobs concern (see `store::jobs`). Filled by the jobs helper: the reconcile schedule and leases (src/reconcile/schedule.rs), the metrics gauges (src/metrics.rs) and the bench's scratch databases (src/bench.rs).

use super::{SqliteStore, SqliteTx};
use crate::store::jobs::*;

impl JobStore for SqliteStore {}

impl JobTx for SqliteTx<'_> {}
