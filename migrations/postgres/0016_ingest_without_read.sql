-- `ledger_ingest_batch` for a batch written without a read, and with fewer statements for
-- the common batch (docs/adr/0024).
--
-- 1. One more parameter, `unread`: the writer folded the batch from the states it remembers
--    instead of reading them. The generation and version checks already hold such a write to
--    what a read would have found; what it cannot know is whether an id it appends is logged
--    already (the read would have found it and projected the logged body). With `unread` an
--    entry that is not appended fails the call with 40001, so nothing is written and the
--    writer reads and folds again.
-- 2. The append returns its rows' positions, and the projected positions and the touches of the
--    appended entries are written from them in the same statement (data-modifying CTEs that
--    read the append's RETURNING rows, so their order is defined). Before, each was a
--    statement of its own joining `event_log` by id, and dead letters were deleted for every
--    projected id. An entry appended by this call cannot have a dead letter (one is recorded
--    only for a logged entry), so the join, the deletion and the clash check run only when
--    the batch holds entries that were logged before it: projected again, or logged
--    concurrently.
--
-- The 42-parameter version (0008) stays beside this one: a different parameter list is another
-- function, so instances still running the previous build keep calling theirs during a rolling
-- upgrade, and both versions check the same versions under the same locks. A later migration
-- drops it once no such build runs. The settings of 0011 (docs/adr/0022) are given at creation.
CREATE FUNCTION ledger_ingest_batch(
    generation_lock  BIGINT,
    append_lock      BIGINT,
    p_generation     BIGINT,
    -- read models to write
    rm_kind TEXT[], rm_id TEXT[], rm_customer TEXT[], rm_user TEXT[], rm_status TEXT[],
    rm_state TEXT[], rm_expected BIGINT[],
    -- outbox rows
    ob_key TEXT[], ob_kind TEXT[], ob_customer TEXT[], ob_event TEXT[], ob_details TEXT[],
    ob_now BIGINT,
    -- entries to append (the columns of event_log, in its insert order)
    e_event_id TEXT[], e_event_type TEXT[], e_api_version TEXT[], e_livemode BOOLEAN[],
    e_account TEXT[], e_object_id TEXT[], e_object_type TEXT[], e_created BIGINT[],
    e_received_at TIMESTAMPTZ[], e_source TEXT[], e_payload TEXT[], e_redacted BOOLEAN[],
    e_sha TEXT[], e_signature TEXT[], e_signature_ts BIGINT[], e_secret_index INTEGER[],
    e_fingerprint TEXT[],
    -- ids projected (appended or not) and positions of logged entries projected again
    projected_ids TEXT[], projected_logged BIGINT[],
    -- dead letters: position NULL for an entry appended here
    dl_id TEXT[], dl_position BIGINT[], dl_error TEXT[], dl_at TIMESTAMPTZ,
    -- objects each projected entry touched, by event id (positions are known only here)
    t_kind TEXT[], t_id TEXT[], t_event TEXT[],
    -- folded without a read: every entry to append must be new
    unread BOOLEAN
) RETURNS TABLE (entry_id TEXT, entry_position BIGINT, entry_new BOOLEAN, entry_sha TEXT)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    active BIGINT;
    written BIGINT;
    new_ids TEXT[] := '{}';
    new_positions BIGINT[] := '{}';
    new_shas TEXT[] := '{}';
    clash TEXT;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(generation_lock);
    SELECT m.active_generation INTO active FROM projection_meta m;
    IF active IS DISTINCT FROM p_generation THEN
        RAISE EXCEPTION 'the active generation is % (the batch read %)', active, p_generation
            USING ERRCODE = '40001';
    END IF;

    IF cardinality(rm_kind) > 0 THEN
        -- In key order: two batches lock common rows in the same order.
        INSERT INTO read_models AS r
            (generation, kind, id, customer_id, user_id, status, state, version)
        SELECT p_generation, u.kind, u.id, u.customer_id, u.user_id, u.status, u.state,
               u.expected + 1
        FROM unnest(rm_kind, rm_id, rm_customer, rm_user, rm_status, rm_state, rm_expected)
             AS u(kind, id, customer_id, user_id, status, state, expected)
        ORDER BY u.kind, u.id
        ON CONFLICT (generation, kind, id) DO UPDATE
            SET customer_id = excluded.customer_id, user_id = excluded.user_id,
                status = excluded.status, state = excluded.state, version = excluded.version
            WHERE r.version + 1 = excluded.version;
        GET DIAGNOSTICS written = ROW_COUNT;
        IF written <> cardinality(rm_kind) THEN
            RAISE EXCEPTION 'read models changed since the batch read them (% of % written)',
                written, cardinality(rm_kind)
                USING ERRCODE = '40001';
        END IF;
    END IF;

    IF cardinality(ob_key) > 0 THEN
        INSERT INTO outbox (dedupe_key, kind, customer_id, event_id, details, status, attempts,
                            next_attempt_at, created_at)
        SELECT n.k, n.kind, n.c, n.e, n.d, 'pending', 0, ob_now, ob_now
        FROM unnest(ob_key, ob_kind, ob_customer, ob_event, ob_details) AS n(k, kind, c, e, d)
        ON CONFLICT (dedupe_key) DO NOTHING;
    END IF;

    IF cardinality(e_event_id) > 0 THEN
        PERFORM pg_advisory_xact_lock(append_lock);
        -- Rows in event-id order: overlapping batches of two instances cannot deadlock. The
        -- projected positions and the touches of the appended entries come from the
        -- append's own rows.
        WITH appended AS (
            INSERT INTO event_log (event_id, event_type, api_version, livemode, account,
                object_id, object_type, stripe_created, received_at, source, payload,
                payload_redacted, raw_body_sha256, signature_header, signature_timestamp,
                verified_by_index, verified_by_fingerprint)
            SELECT * FROM unnest(e_event_id, e_event_type, e_api_version, e_livemode, e_account,
                e_object_id, e_object_type, e_created, e_received_at, e_source, e_payload,
                e_redacted, e_sha, e_signature, e_signature_ts, e_secret_index, e_fingerprint)
            ORDER BY 1
            ON CONFLICT (event_id) DO NOTHING
            RETURNING event_log.event_id, event_log.position, event_log.raw_body_sha256),
        projected AS (
            INSERT INTO projected_positions (position)
            SELECT a.position FROM appended a WHERE a.event_id = ANY(projected_ids)
            ON CONFLICT DO NOTHING),
        touched AS (
            INSERT INTO object_touches (kind, object_id, position)
            SELECT t.kind, t.id, a.position
            FROM unnest(t_kind, t_id, t_event) AS t(kind, id, event_id)
            JOIN appended a ON a.event_id = t.event_id
            ON CONFLICT DO NOTHING)
        SELECT COALESCE(array_agg(a.event_id), '{}'), COALESCE(array_agg(a.position), '{}'),
               COALESCE(array_agg(a.raw_body_sha256), '{}')
        INTO new_ids, new_positions, new_shas
        FROM appended a;
        IF cardinality(new_ids) < cardinality(e_event_id) THEN
            IF unread THEN
                RAISE EXCEPTION 'an entry the batch took for new is logged already'
                    USING ERRCODE = '40001';
            END IF;
            -- An id someone else logged meanwhile (the conflict waited for their commit, so
            -- this fresh snapshot sees it) must be the same body, or what was projected is not
            -- logged.
            SELECT u.id INTO clash
            FROM unnest(e_event_id, e_sha) AS u(id, sha)
            JOIN event_log l ON l.event_id = u.id
            WHERE l.raw_body_sha256 <> u.sha
            LIMIT 1;
            IF clash IS NOT NULL THEN
                RAISE EXCEPTION 'event % was logged concurrently with a different body', clash
                    USING ERRCODE = 'LG001';
            END IF;
        END IF;
    END IF;

    -- Entries this call did not append: logged before the batch and projected again, or
    -- logged concurrently. Their positions come from the log.
    IF cardinality(projected_logged) > 0 OR cardinality(new_ids) < cardinality(e_event_id) THEN
        INSERT INTO projected_positions (position)
        SELECT l.position FROM event_log l
        WHERE l.event_id = ANY(e_event_id) AND l.event_id = ANY(projected_ids)
        UNION ALL
        SELECT unnest(projected_logged)
        ON CONFLICT DO NOTHING;
        DELETE FROM dead_letters d WHERE d.event_id = ANY(projected_ids);
        INSERT INTO object_touches (kind, object_id, position)
        SELECT t.kind, t.id, l.position
        FROM unnest(t_kind, t_id, t_event) AS t(kind, id, event_id)
        JOIN event_log l ON l.event_id = t.event_id
        ON CONFLICT DO NOTHING;
    END IF;
    IF cardinality(dl_id) > 0 THEN
        INSERT INTO dead_letters AS d
            (event_id, position, error, attempts, first_seen_at, last_seen_at)
        SELECT f.id, COALESCE(f.position, l.position), f.error, 1, dl_at, dl_at
        FROM unnest(dl_id, dl_position, dl_error) AS f(id, position, error)
        LEFT JOIN event_log l ON f.position IS NULL AND l.event_id = f.id
        ON CONFLICT (event_id) DO UPDATE SET error = excluded.error,
            attempts = d.attempts + 1, last_seen_at = excluded.last_seen_at;
    END IF;

    RETURN QUERY
    SELECT u.id, u.position, true, u.sha
    FROM unnest(new_ids, new_positions, new_shas) AS u(id, position, sha);
    IF cardinality(new_ids) < cardinality(e_event_id) THEN
        RETURN QUERY
        SELECT l.event_id, l.position, false, l.raw_body_sha256
        FROM event_log l
        WHERE l.event_id = ANY(e_event_id) AND NOT l.event_id = ANY(new_ids);
    END IF;
END;
$$;
