-- The immutable event log: one row per Stripe event (or per entry learned from the Stripe API),
-- never updated or deleted. Read models are a pure function of this table.
-- SQLite has a single writer, so positions become visible in position order: no tx_id needed.
CREATE TABLE event_log (
    position          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id          TEXT    NOT NULL,
    event_type        TEXT    NOT NULL,
    api_version       TEXT,
    livemode          INTEGER NOT NULL CHECK (livemode IN (0, 1)),
    account           TEXT,
    object_id         TEXT,
    object_type       TEXT,
    -- Stripe's `created` (unix seconds, one-second resolution), kept as Stripe sent it.
    stripe_created    INTEGER NOT NULL,
    -- RFC 3339 UTC with microseconds, so text order is time order.
    received_at       TEXT    NOT NULL,
    source            TEXT    NOT NULL,
    -- The event JSON as received, byte for byte, unless the redaction policy removed a
    -- cardholder name (then payload_redacted is 1 and the bytes are re-serialised).
    payload           TEXT    NOT NULL,
    payload_redacted  INTEGER NOT NULL CHECK (payload_redacted IN (0, 1)),
    raw_body_sha256   TEXT    NOT NULL CHECK (length(raw_body_sha256) = 64),
    signature_header  TEXT,
    signature_timestamp INTEGER,
    verified_by_index INTEGER,
    verified_by_fingerprint TEXT,
    CONSTRAINT event_log_event_id_unique UNIQUE (event_id),
    CONSTRAINT event_log_verified_webhook CHECK (
        source <> 'webhook'
        OR (signature_header IS NOT NULL AND verified_by_fingerprint IS NOT NULL)
    )
);

CREATE INDEX event_log_type_position ON event_log (event_type, position);
CREATE INDEX event_log_object_position ON event_log (object_id, position);
CREATE INDEX event_log_created ON event_log (stripe_created, position);

-- Immutability is enforced by the database, not by convention.
CREATE TRIGGER event_log_no_update
    BEFORE UPDATE ON event_log
    BEGIN SELECT RAISE(ABORT, 'event_log is append-only: UPDATE is not allowed'); END;

CREATE TRIGGER event_log_no_delete
    BEFORE DELETE ON event_log
    BEGIN SELECT RAISE(ABORT, 'event_log is append-only: DELETE is not allowed'); END;
