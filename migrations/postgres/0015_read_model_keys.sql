-- Cheaper index maintenance for the read models and object touches (README "Performance",
-- the rebuild). Neither changes what any query returns.
--
-- 1. Byte order for the key columns. Under the database's default collation every comparison
--    of these columns in an index goes through the C library's locale-aware `strcoll` (even
--    for a `C.UTF-8` database; on an `en_US.UTF-8` one it costs several times more), and the
--    values are Stripe ids, kinds and statuses: ASCII, where locale order only differs in
--    punctuation. `COLLATE "C"` compares bytes, which is also SQLite's order, so a list
--    ordered by id pages the same on both backends. The type stays `text`, so no row is
--    rewritten; the indexes over these columns are rebuilt once.
ALTER TABLE read_models
    ALTER COLUMN kind TYPE text COLLATE "C",
    ALTER COLUMN id TYPE text COLLATE "C",
    ALTER COLUMN customer_id TYPE text COLLATE "C",
    ALTER COLUMN user_id TYPE text COLLATE "C",
    ALTER COLUMN status TYPE text COLLATE "C";
ALTER TABLE object_touches
    ALTER COLUMN kind TYPE text COLLATE "C",
    ALTER COLUMN object_id TYPE text COLLATE "C";

-- 2. Only objects linked to a user are looked up by user (customers, and subscriptions whose
--    metadata names one); invoices and orders, most of the rows, never are. Every look-up by
--    user has `user_id = $n`, which implies `user_id IS NOT NULL`, so the partial index serves
--    it, and rows without a user no longer pay for an entry.
DROP INDEX read_models_user;
CREATE INDEX read_models_user ON read_models (user_id, generation, kind, id)
    WHERE user_id IS NOT NULL;
