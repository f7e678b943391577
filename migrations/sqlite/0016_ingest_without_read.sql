-- PostgreSQL's 0016 replaces the ingest function, for a batch written without a read
-- (docs/adr/0024). SQLite's batch is statements sent by the service (`src/store/sqlite/`),
-- so there is nothing to change here; the file keeps the two backends' versions in step.
SELECT 1;
