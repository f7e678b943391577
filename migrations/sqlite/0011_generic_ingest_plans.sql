-- PostgreSQL only (see migrations/postgres/0011_generic_ingest_plans.sql): SQLite has no plan
-- cache modes; its prepared statements are reused by sqlx. This file keeps the two directories
-- in step.
SELECT 1;
