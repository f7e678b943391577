-- `tx_id` (0001) was meant for readers tailing the log by (tx_id, position). Nothing ever read
-- it: appends are serialised by an advisory lock held to commit (ADR 3), so positions become
-- visible in position order and readers tail by position alone. Dropping it also drops its
-- index, which every append maintained for nothing, and leaves both backends with the same
-- columns. DDL does not fire the row triggers that keep event_log append-only.
DROP INDEX IF EXISTS event_log_tx_position;
ALTER TABLE event_log DROP COLUMN tx_id;
