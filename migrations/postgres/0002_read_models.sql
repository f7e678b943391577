-- Read models folded from the event log. Nothing but the projector writes here, and everything
-- here can be rebuilt from the log.
--
-- All models share one table, keyed by (generation, kind, id). `rebuild` folds the whole log
-- into a fresh generation while the service keeps serving the active one, then switches
-- `projection_meta.active_generation` in one transaction: an atomic swap without DDL.
CREATE TABLE projection_meta (
    singleton          BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    active_generation  BIGINT  NOT NULL
);
INSERT INTO projection_meta (active_generation) VALUES (1);

CREATE TABLE read_models (
    generation   BIGINT NOT NULL,
    kind         TEXT   NOT NULL,   -- customer | subscription | invoice | order
    id           TEXT   NOT NULL,   -- Stripe's id (cus_, sub_, in_, cs_)
    customer_id  TEXT,
    user_id      TEXT,
    status       TEXT,
    -- The fold's state for this object, JSON (ledger-projections' serde form).
    state        TEXT   NOT NULL,
    PRIMARY KEY (generation, kind, id)
);
-- The filter column leads: with (generation, kind) first, a planner without statistics (a new
-- table) takes these for the primary key and scans a whole kind to find one id.
CREATE INDEX read_models_customer ON read_models (customer_id, generation, kind, id);
CREATE INDEX read_models_user ON read_models (user_id, generation, kind, id);
CREATE INDEX read_models_status ON read_models (status, generation, kind, id);

-- Events that are logged but could not be projected. Cleared when a retry succeeds.
CREATE TABLE dead_letters (
    event_id       TEXT        PRIMARY KEY,
    position       BIGINT      NOT NULL,
    error          TEXT        NOT NULL,
    attempts       INTEGER     NOT NULL,
    first_seen_at  TIMESTAMPTZ NOT NULL,
    last_seen_at   TIMESTAMPTZ NOT NULL
);

-- Log positions projected since the catch-up projector's checkpoint, so that it re-projects
-- only what ingestion did not (crashes between append and projection, other sources).
-- Rows at or below the checkpoint are deleted as it advances.
CREATE TABLE projected_positions (
    position  BIGINT PRIMARY KEY
);

-- How far each background reader of the log has got.
CREATE TABLE projection_checkpoints (
    name      TEXT   PRIMARY KEY,
    position  BIGINT NOT NULL
);
