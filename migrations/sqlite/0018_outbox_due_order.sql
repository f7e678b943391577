-- The outbox's claim reads its due rows in index order (see
-- migrations/postgres/0018_outbox_due_order.sql, docs/adr/0033). SQLite read every due row
-- through `outbox_due` and sorted them by id in a temporary B-tree on every claim; with this
-- index and `ORDER BY next_attempt_at, id` it reads only what it takes. In an index SQLite
-- ends each entry with the rowid anyway, so the third column costs nothing extra.
CREATE INDEX outbox_due_order ON outbox (status, next_attempt_at, id);
DROP INDEX outbox_due;
