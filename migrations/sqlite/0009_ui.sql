-- The console (`/ui`, docs/adr/0020): server-side sign-in sessions, and the append-only record
-- of what operators did through it. Same tables and columns as on PostgreSQL; times are unix
-- seconds. See postgres/0009_ui.sql for the why of each column.
CREATE TABLE ui_sessions (
    id_sha256         TEXT PRIMARY KEY CHECK (length(id_sha256) = 64),
    token_fingerprint TEXT NOT NULL,
    scopes            TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    last_seen_at      INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL
);
CREATE INDEX ui_sessions_expires_at ON ui_sessions (expires_at);
CREATE INDEX ui_sessions_last_seen_at ON ui_sessions (last_seen_at);

CREATE TABLE operator_actions (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    at                INTEGER NOT NULL,
    token_fingerprint TEXT NOT NULL,
    action            TEXT NOT NULL,
    target            TEXT NOT NULL,
    outcome           TEXT NOT NULL,
    detail            TEXT NOT NULL DEFAULT ''
);
CREATE INDEX operator_actions_at ON operator_actions (at);

CREATE TRIGGER operator_actions_no_update
    BEFORE UPDATE ON operator_actions
    BEGIN SELECT RAISE(ABORT, 'operator_actions is append-only: UPDATE is not allowed'); END;

CREATE TRIGGER operator_actions_no_delete
    BEFORE DELETE ON operator_actions
    BEGIN SELECT RAISE(ABORT, 'operator_actions is append-only: DELETE is not allowed'); END;
