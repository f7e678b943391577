-- The batch's lock-free read (docs/adr/0016), as a function whose plans are made once per
-- connection, like `ledger_ingest_batch`'s since 0011 (docs/adr/0022).
--
-- Connections run with `plan_cache_mode = force_custom_plan` (ADR 3's trap: a generic plan
-- made while a table was small stays until autoanalyze), so the read, sent as a top-level
-- statement, was planned on every batch: a profile of one sequential client put a fifth of
-- PostgreSQL's CPU per event in planning it. Inside a function the same settings as 0011 apply:
-- generic plans, sequential scans off (every part of the read is a keyed look-up, so the plan
-- uses the indexes whatever the table sizes were when it was made), JIT off.
--
-- The states are read per key (a lateral look-up, kept from being flattened into a join by its
-- `LIMIT 1`: a key is unique), so the plan is a nested loop over the primary key: a plain join
-- let the generic plan made on an empty table hash-join the whole generation.
--
-- STABLE: the function's query runs in the calling statement's snapshot, so the generation,
-- the logged ids and the states are still read in one snapshot. The row shape is the read's
-- (a row tagged 0 for the active generation, 1 per logged id, 2 per stored state).
CREATE FUNCTION ledger_ingest_read(event_ids TEXT[], kinds TEXT[], ids TEXT[])
RETURNS TABLE (tag INT, a TEXT, n BIGINT, m BIGINT, b TEXT, c TEXT, d TEXT)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT 0, NULL::text, pm.active_generation, NULL::int8, NULL::text, NULL::text, NULL::text
        FROM projection_meta pm
    UNION ALL
    SELECT 1, e.event_id, e.position, e.stripe_created, e.event_type, e.payload, e.raw_body_sha256
        FROM event_log e WHERE e.event_id = ANY(event_ids)
    UNION ALL
    SELECT 2, r.id, r.version, NULL::int8, r.kind, r.state, NULL::text
        FROM unnest(kinds, ids) AS k(kind, id)
        CROSS JOIN LATERAL (
            SELECT r.id, r.version, r.kind, r.state FROM read_models r
            WHERE r.generation = (SELECT active_generation FROM projection_meta)
              AND r.kind = k.kind AND r.id = k.id
            LIMIT 1
        ) r;
END
$$;
