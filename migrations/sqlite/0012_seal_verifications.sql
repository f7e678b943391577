-- The outcome of every scheduled re-check of the sealed log: see
-- migrations/postgres/0012_seal_verifications.sql (same columns; `ok` is an integer 0/1).
CREATE TABLE seal_verifications (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    checked_at       INTEGER NOT NULL,
    from_position    INTEGER NOT NULL CHECK (from_position >= 0),
    to_position      INTEGER NOT NULL CHECK (to_position >= from_position),
    tree_size        INTEGER NOT NULL CHECK (tree_size >= 0),
    checkpoint_size  INTEGER,
    ok               INTEGER NOT NULL CHECK (ok IN (0, 1)),
    failure_kind     TEXT,
    failure_position INTEGER,
    failure_detail   TEXT,
    CHECK (ok = (failure_kind IS NULL))
);
