-- Which log entries touched which object (docs/adr/0019): for each projected entry, every
-- read-model object its facts are about, which is more than `event_log.object_id` (an invoice
-- event touches its subscription, a Checkout Session its customer's user link). History, as-of
-- and explain read an object's entries through it, by primary key, without scanning the log.
-- Derived data, like the read models: written by the projector with them, and filled again by
-- `rebuild` (entries logged before this migration get theirs there). Not per generation.
CREATE TABLE object_touches (
    kind TEXT NOT NULL,
    object_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (kind, object_id, position)
) WITHOUT ROWID;
