-- Scheduled reconciliation: one row per run, readable at /api/reconciliations.
CREATE TABLE reconciliation_runs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at   TEXT    NOT NULL,
    finished_at  TEXT,
    -- running | succeeded | failed
    status       TEXT    NOT NULL,
    repair       INTEGER NOT NULL CHECK (repair IN (0, 1)),
    drift_count  INTEGER,
    -- JSON: {"reconcile": ..., "sync_events": ...}
    report       TEXT,
    error        TEXT
);

-- Leases for jobs that one instance at a time may run (unix seconds, so that both backends
-- compare them the same way).
CREATE TABLE job_leases (
    name        TEXT    PRIMARY KEY,
    holder      TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL
);
