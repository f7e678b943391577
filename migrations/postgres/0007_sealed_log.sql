-- The sealed log (docs/adr/0018-sealed-log-in-the-database.md): the RFC 9162 Merkle tree over
-- event_log, kept incrementally, and the signed checkpoints of it.
--
-- Leaf `position - 1` is the entry at `position`; a position that never held an entry (an
-- identity value consumed by a conflict or a rolled-back append) is sealed as a hole leaf, so
-- leaf indexes and positions stay one and the same.

-- Every complete subtree: leaves [idx << level, (idx + 1) << level). Level 0 holds the leaf
-- hashes. Written once, when the subtree completes, and never changed.
CREATE TABLE seal_nodes (
    level  INTEGER NOT NULL CHECK (level BETWEEN 0 AND 63),
    idx    BIGINT  NOT NULL CHECK (idx >= 0),
    hash   BYTEA   NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (level, idx)
);

-- How far the tree reaches: one row. The sealer moves it forward in the same transaction that
-- writes the nodes, so a crash leaves either both or neither.
CREATE TABLE seal_state (
    singleton  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    size       BIGINT  NOT NULL CHECK (size >= 0),
    root       BYTEA   NOT NULL CHECK (octet_length(root) = 32)
);
-- The empty tree: SHA-256 of nothing.
INSERT INTO seal_state (size, root)
VALUES (0, '\xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'::bytea);

-- Signed checkpoints (C2SP signed notes), one per tree size.
CREATE TABLE checkpoints (
    size          BIGINT PRIMARY KEY CHECK (size > 0),
    root          BYTEA  NOT NULL CHECK (octet_length(root) = 32),
    origin        TEXT   NOT NULL,
    -- The whole signed note, exactly as published.
    note          TEXT   NOT NULL,
    -- The verifier key string of the key that signed it (public; never the seed).
    verifier_key  TEXT   NOT NULL,
    -- Unix seconds.
    signed_at     BIGINT NOT NULL
);

CREATE FUNCTION seal_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER seal_nodes_no_update_or_delete
    BEFORE UPDATE OR DELETE ON seal_nodes
    FOR EACH ROW EXECUTE FUNCTION seal_reject_change();
CREATE TRIGGER seal_nodes_no_truncate
    BEFORE TRUNCATE ON seal_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION seal_reject_change();
CREATE TRIGGER checkpoints_no_update_or_delete
    BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION seal_reject_change();
CREATE TRIGGER checkpoints_no_truncate
    BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION seal_reject_change();

-- The state only grows.
CREATE FUNCTION seal_state_only_grows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' OR NEW.size < OLD.size THEN
        RAISE EXCEPTION 'seal_state only grows: % is not allowed', TG_OP
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER seal_state_grows
    BEFORE UPDATE OR DELETE ON seal_state
    FOR EACH ROW EXECUTE FUNCTION seal_state_only_grows();
CREATE TRIGGER seal_state_no_truncate
    BEFORE TRUNCATE ON seal_state
    FOR EACH STATEMENT EXECUTE FUNCTION seal_reject_change();
