-- The immutable event log: one row per Stripe event (or per entry learned from the Stripe API),
-- never updated or deleted. Read models are a pure function of this table.
CREATE TABLE event_log (
    -- Global, monotonic order of appends. Not a commit order: see tx_id.
    position          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id          TEXT        NOT NULL,
    event_type        TEXT        NOT NULL,
    api_version       TEXT,
    livemode          BOOLEAN     NOT NULL,
    account           TEXT,
    object_id         TEXT,
    object_type       TEXT,
    -- Stripe's `created` (unix seconds, one-second resolution), kept as Stripe sent it.
    stripe_created    BIGINT      NOT NULL,
    received_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    source            TEXT        NOT NULL,
    -- The event JSON as received, byte for byte, unless the redaction policy removed a
    -- cardholder name (then payload_redacted is true and the bytes are re-serialised).
    payload           TEXT        NOT NULL,
    payload_redacted  BOOLEAN     NOT NULL,
    -- Lowercase hex SHA-256 of the raw body as received, before any redaction.
    raw_body_sha256   TEXT        NOT NULL,
    -- Verification record for webhook entries: the header as received, the signed timestamp,
    -- and which configured secret verified it (index and fingerprint, never the secret).
    signature_header  TEXT,
    signature_timestamp BIGINT,
    verified_by_index INTEGER,
    verified_by_fingerprint TEXT,
    -- Transaction that appended the row. Positions become visible in commit order, not in
    -- position order; readers that tail the log order by (tx_id, position) and read only below
    -- the oldest in-flight transaction, so a late commit is never skipped.
    tx_id             xid8        NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT event_log_event_id_unique UNIQUE (event_id),
    CONSTRAINT event_log_source_known CHECK (source ~ '^[a-z][a-z_]*$'),
    CONSTRAINT event_log_sha256_hex CHECK (raw_body_sha256 ~ '^[0-9a-f]{64}$'),
    CONSTRAINT event_log_verified_webhook CHECK (
        source <> 'webhook'
        OR (signature_header IS NOT NULL AND verified_by_fingerprint IS NOT NULL)
    )
);

CREATE INDEX event_log_type_position ON event_log (event_type, position);
CREATE INDEX event_log_object_position ON event_log (object_id, position);
CREATE INDEX event_log_created ON event_log (stripe_created, position);
CREATE INDEX event_log_tx_position ON event_log (tx_id, position);

-- Immutability is enforced by the database, not by convention: no UPDATE, DELETE or TRUNCATE,
-- whoever the client is.
CREATE FUNCTION event_log_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'event_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER event_log_no_update_or_delete
    BEFORE UPDATE OR DELETE ON event_log
    FOR EACH ROW EXECUTE FUNCTION event_log_reject_change();

CREATE TRIGGER event_log_no_truncate
    BEFORE TRUNCATE ON event_log
    FOR EACH STATEMENT EXECUTE FUNCTION event_log_reject_change();
