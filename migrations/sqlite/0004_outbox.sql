-- Notifications written in the projection transaction and delivered by the outbox worker.
-- One row per cause: the unique dedupe key is what keeps a duplicate, replayed or backfilled
-- event from sending twice. Times are unix seconds, so both backends compare them the same way.
CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key       TEXT    NOT NULL UNIQUE,
    -- welcome | payment_failed | access_ended
    kind             TEXT    NOT NULL,
    customer_id      TEXT    NOT NULL,
    -- The log entry that caused it.
    event_id         TEXT    NOT NULL,
    -- JSON: what the message says (invoice, link, amount in minor units, ...).
    details          TEXT    NOT NULL,
    -- pending | sent | failed | skipped
    status           TEXT    NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    -- A worker that claimed the row owns it until then; after that another may take it over.
    claimed_until    INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    sent_at          INTEGER
);

CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
