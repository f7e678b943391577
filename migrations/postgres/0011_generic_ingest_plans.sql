-- Plan `ledger_ingest_batch`'s statements once per connection, not on every call.
--
-- 0006 made the function replan every statement on every call (force_custom_plan), to avoid
-- the trap of ADR 3: a generic plan made while `event_log` was small (a hash join over a
-- sequential scan) stays that way until autoanalyze catches up. A profile of one sequential
-- client (one event per batch) put a quarter of PostgreSQL's CPU per event in the planner,
-- called from this function (docs/adr/0022).
--
-- Every statement in the function is a keyed look-up or write, so with sequential scans off the
-- generic plan uses the indexes whatever the table sizes were when it was made; the scans of the
-- argument arrays are function scans and unaffected. Sequential scans off makes a plan's cost
-- huge where no index exists (the one-row `projection_meta`), which would trip JIT compilation
-- on every call, so JIT is off too. The settings apply only while the function runs.
ALTER FUNCTION ledger_ingest_batch
    SET plan_cache_mode = force_generic_plan
    SET enable_seqscan = off
    SET jit = off;
