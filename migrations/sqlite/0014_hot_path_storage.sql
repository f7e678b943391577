-- PostgreSQL only: page fill for in-place updates of read models, and lz4 compression of
-- payloads and states. SQLite neither leaves room on pages for updates nor compresses values.
SELECT 1;
