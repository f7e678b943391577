-- Scheduled reconciliation: one row per run, readable at /api/reconciliations.
CREATE TABLE reconciliation_runs (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ,
    -- running | succeeded | failed
    status       TEXT        NOT NULL,
    repair       BOOLEAN     NOT NULL,
    drift_count  INTEGER,
    -- JSON: {"reconcile": ..., "sync_events": ...}
    report       TEXT,
    error        TEXT
);

-- Leases for jobs that one instance at a time may run (unix seconds, so that both backends
-- compare them the same way).
CREATE TABLE job_leases (
    name        TEXT   PRIMARY KEY,
    holder      TEXT   NOT NULL,
    expires_at  BIGINT NOT NULL
);
