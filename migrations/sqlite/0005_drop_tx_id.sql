-- SQLite never had `tx_id` (see migrations/postgres/0005_drop_tx_id.sql): its single writer
-- makes positions visible in position order. This file keeps the two directories in step.
SELECT 1;
