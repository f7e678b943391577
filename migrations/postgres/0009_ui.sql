-- The console (`/ui`, docs/adr/0020): server-side sign-in sessions, and the append-only record
-- of what operators did through it. Times are unix seconds, as in `outbox`: the service computes
-- with them (idle and absolute expiry), it never sorts by calendar.

-- One row per signed-in browser. The cookie holds a 256-bit random id; only its SHA-256 is
-- stored, so a copy of this table cannot be replayed as cookies. `token_fingerprint` names the
-- service token that signed in (never the token): every request checks that token is still
-- configured, so removing it from API_TOKENS ends its sessions.
CREATE TABLE ui_sessions (
    id_sha256         TEXT PRIMARY KEY CHECK (id_sha256 ~ '^[0-9a-f]{64}$'),
    token_fingerprint TEXT NOT NULL,
    -- The scopes the token had at sign-in, comma-separated; a request gets at most these.
    scopes            TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    last_seen_at      BIGINT NOT NULL,
    -- The absolute expiry (created_at + UI_SESSION_MAX); the idle timeout is checked against
    -- last_seen_at with the configured UI_SESSION_IDLE.
    expires_at        BIGINT NOT NULL
);
CREATE INDEX ui_sessions_expires_at ON ui_sessions (expires_at);
CREATE INDEX ui_sessions_last_seen_at ON ui_sessions (last_seen_at);

-- Who (token fingerprint) did what, to what, when, and how it went. Append-only like the log.
CREATE TABLE operator_actions (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at                BIGINT NOT NULL,
    token_fingerprint TEXT NOT NULL,
    action            TEXT NOT NULL,
    target            TEXT NOT NULL,
    outcome           TEXT NOT NULL,
    detail            TEXT NOT NULL DEFAULT ''
);
CREATE INDEX operator_actions_at ON operator_actions (at);

CREATE FUNCTION operator_actions_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'operator_actions is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER operator_actions_no_update_or_delete
    BEFORE UPDATE OR DELETE ON operator_actions
    FOR EACH ROW EXECUTE FUNCTION operator_actions_reject_change();

CREATE TRIGGER operator_actions_no_truncate
    BEFORE TRUNCATE ON operator_actions
    FOR EACH STATEMENT EXECUTE FUNCTION operator_actions_reject_change();
