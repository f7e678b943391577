-- The sealed log (docs/adr/0018-sealed-log-in-the-database.md): the RFC 9162 Merkle tree over
-- event_log, kept incrementally, and the signed checkpoints of it. Same tables and columns as
-- on PostgreSQL; see postgres/0007_sealed_log.sql for the comments.

CREATE TABLE seal_nodes (
    level  INTEGER NOT NULL CHECK (level BETWEEN 0 AND 63),
    idx    INTEGER NOT NULL CHECK (idx >= 0),
    hash   BLOB    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;

CREATE TABLE seal_state (
    singleton  INTEGER PRIMARY KEY DEFAULT 1 CHECK (singleton = 1),
    size       INTEGER NOT NULL CHECK (size >= 0),
    root       BLOB    NOT NULL CHECK (length(root) = 32)
);
INSERT INTO seal_state (size, root)
VALUES (0, X'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');

CREATE TABLE checkpoints (
    size          INTEGER PRIMARY KEY CHECK (size > 0),
    root          BLOB    NOT NULL CHECK (length(root) = 32),
    origin        TEXT    NOT NULL,
    note          TEXT    NOT NULL,
    verifier_key  TEXT    NOT NULL,
    signed_at     INTEGER NOT NULL
);

CREATE TRIGGER seal_nodes_no_update
    BEFORE UPDATE ON seal_nodes
    BEGIN SELECT RAISE(ABORT, 'seal_nodes is append-only: UPDATE is not allowed'); END;
CREATE TRIGGER seal_nodes_no_delete
    BEFORE DELETE ON seal_nodes
    BEGIN SELECT RAISE(ABORT, 'seal_nodes is append-only: DELETE is not allowed'); END;
CREATE TRIGGER checkpoints_no_update
    BEFORE UPDATE ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'checkpoints is append-only: UPDATE is not allowed'); END;
CREATE TRIGGER checkpoints_no_delete
    BEFORE DELETE ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'checkpoints is append-only: DELETE is not allowed'); END;
CREATE TRIGGER seal_state_grows
    BEFORE UPDATE ON seal_state WHEN NEW.size < OLD.size
    BEGIN SELECT RAISE(ABORT, 'seal_state only grows'); END;
CREATE TRIGGER seal_state_no_delete
    BEFORE DELETE ON seal_state
    BEGIN SELECT RAISE(ABORT, 'seal_state only grows: DELETE is not allowed'); END;
