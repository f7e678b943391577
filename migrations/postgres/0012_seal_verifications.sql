-- The outcome of every scheduled re-check of the sealed log (docs/adr/0018): the sealer of
-- `serve` re-verifies the newest sealed entries and the latest checkpoint every checkpoint
-- interval; the console's integrity page shows the latest row as "the last verification".
-- Before this table the outcome was only a metric and a log line, gone with the process.
-- The sealer inserts one row per checkpoint interval and deletes successful rows older than
-- 30 days (store::seal::KEEP_OK_VERIFICATIONS_SECS); failed checks are kept for good.
CREATE TABLE seal_verifications (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Unix seconds, when the check finished.
    checked_at       BIGINT  NOT NULL,
    -- The positions re-read and re-hashed: from_position..=to_position (both 0 when the tree
    -- was still empty), and the sealed size at the time.
    from_position    BIGINT  NOT NULL CHECK (from_position >= 0),
    to_position      BIGINT  NOT NULL CHECK (to_position >= from_position),
    tree_size        BIGINT  NOT NULL CHECK (tree_size >= 0),
    -- The size of the checkpoint whose signature and root were checked, if any was stored.
    checkpoint_size  BIGINT,
    ok               BOOLEAN NOT NULL,
    -- The first finding when not ok: its kind (`edited`, `missing`, ...) and log position.
    failure_kind     TEXT,
    failure_position BIGINT,
    failure_detail   TEXT,
    CHECK (ok = (failure_kind IS NULL))
);
