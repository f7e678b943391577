-- Only objects linked to a user are looked up by user; invoices and orders, most of the rows,
-- never are. Every look-up by user has `user_id = ?`, which implies `user_id IS NOT NULL`, so
-- SQLite's planner uses the partial index for it, and rows without a user no longer pay for
-- an entry. (PostgreSQL's 0015 also moves the key columns to byte order, which is SQLite's
-- only order for text already.)
DROP INDEX read_models_user;
CREATE INDEX read_models_user ON read_models (user_id, generation, kind, id)
    WHERE user_id IS NOT NULL;
