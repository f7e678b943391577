-- The outbox's claim reads its due rows in index order (docs/adr/0033).
--
-- A claim takes the 20 rows that fell due first. With `outbox_due (status, next_attempt_at)`
-- and `ORDER BY id`, no index gave that order: PostgreSQL walked the primary key from the
-- oldest row, past every row already sent (they are never deleted) and every row waiting for
-- a retry, filtering each, and SQLite read every due row and sorted them. One claim cost time
-- in proportion to the table, and draining a backlog of N rows took N / 20 claims: quadratic.
-- The claim now orders by `(next_attempt_at, id)`, the order of this index after its status,
-- so it reads the due rows it takes and stops (plus rows another worker holds, which it skips).
--
-- The new index has the old one's columns as its prefix, so every statement that used
-- `outbox_due` can use this one. Building it holds off writes to `outbox` (and so ingestion
-- batches that enqueue a notification) for as long as the build takes: a few seconds per
-- million rows.
CREATE INDEX outbox_due_order ON outbox (status, next_attempt_at, id);
DROP INDEX outbox_due;
