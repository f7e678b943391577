//! The log itself: immutable in the database, whoever the client is.

use stripe_ledger::store::Db;

use crate::helpers::{event, TestApp};

#[tokio::test]
async fn update_delete_and_truncate_on_the_log_fail_in_the_database() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.deliver(&event("evt_immutable", "customer.created"))
            .await
            .status,
        200
    );

    let statements = [
        "UPDATE event_log SET event_type = 'tampered' WHERE event_id = 'evt_immutable'",
        "UPDATE event_log SET payload = '{}'",
        "DELETE FROM event_log WHERE event_id = 'evt_immutable'",
        "DELETE FROM event_log",
    ];
    for sql in statements {
        let err = execute(&app.db, sql).await.expect_err(sql);
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    if let Db::Postgres(_) = app.db {
        let err = execute(&app.db, "TRUNCATE event_log")
            .await
            .expect_err("truncate");
        assert!(err.contains("append-only"), "{err}");
    }
    let stored = stripe_ledger::event_log::get(&app.db, "evt_immutable")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.event_type, "customer.created");
    assert_eq!(app.event_count().await, 1);
}

pub(crate) async fn execute(db: &Db, sql: &str) -> Result<u64, String> {
    let result = match db {
        Db::Postgres(stripe_ledger::store::PgStore { pool, .. }) => sqlx::query(sql)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
        Db::Sqlite(db) => sqlx::query(sql)
            .execute(&db.write)
            .await
            .map(|r| r.rows_affected()),
    };
    result.map_err(|e| e.to_string())
}

/// A transaction on a separate connection that blocks every append until released.
pub struct WriteLock {
    release: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

impl WriteLock {
    pub async fn release(self) {
        let _ = self.release.send(());
        self.done.await.unwrap();
    }
}

pub async fn hold_write_lock(app: &TestApp) -> WriteLock {
    hold_lock(app, "LOCK TABLE event_log IN ACCESS EXCLUSIVE MODE").await
}

/// A transaction on a separate connection holding `pg_lock` (a `LOCK TABLE` statement) on
/// PostgreSQL, or SQLite's write lock (which WAL readers pass), until released.
pub async fn hold_lock(app: &TestApp, pg_lock: &'static str) -> WriteLock {
    use sqlx::Connection as _;
    let url = app.database.url.clone();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let (locked, is_locked) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        if url.starts_with("postgres") {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            let mut tx = conn.begin().await.unwrap();
            sqlx::query(pg_lock).execute(&mut *tx).await.unwrap();
            let _ = locked.send(());
            let _ = released.await;
            tx.rollback().await.unwrap();
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .unwrap();
            let _ = locked.send(());
            let _ = released.await;
            sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
        }
    });
    is_locked.await.unwrap();
    WriteLock { release, done }
}

/// Inserts an entry the way an append does (taking the append lock on PostgreSQL) inside a
/// transaction that stays open until `commit` is signalled: a slow, in-flight append, as
/// another instance would make it. `body` is the stored event (default: an empty object).
pub async fn slow_append(
    url: String,
    event_id: &'static str,
    body: Option<Vec<u8>>,
    commit: tokio::sync::oneshot::Receiver<()>,
    inserted: tokio::sync::oneshot::Sender<()>,
) {
    use sha2::Digest as _;
    use sqlx::Connection as _;
    let body = body.unwrap_or_else(|| b"{}".to_vec());
    let sha = hex::encode(sha2::Sha256::digest(&body));
    let payload = String::from_utf8(body).unwrap();
    const INSERT: &str = "INSERT INTO event_log (event_id, event_type, livemode, stripe_created, \
        received_at, source, payload, payload_redacted, raw_body_sha256) \
        VALUES ($1, $2, false, 1, '2026-01-01T00:00:00.000000Z', 'api_backfill', $3, false, $4)";
    let event_type = serde_json::from_str::<serde_json::Value>(&payload)
        .ok()
        .and_then(|v| v["type"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "customer.updated".to_owned());
    if url.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(stripe_ledger::event_log::APPEND_LOCK)
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query(&INSERT.replace("'2026-01-01T00:00:00.000000Z'", "now()"))
            .bind(event_id)
            .bind(&event_type)
            .bind(&payload)
            .bind(&sha)
            .execute(&mut *tx)
            .await
            .unwrap();
        let _ = inserted.send(());
        let _ = commit.await;
        tx.commit().await.unwrap();
    } else {
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(INSERT)
            .bind(event_id)
            .bind(&event_type)
            .bind(&payload)
            .bind(&sha)
            .execute(&mut conn)
            .await
            .unwrap();
        let _ = inserted.send(());
        let _ = commit.await;
        sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
    }
}

async fn tail(db: &Db, after: i64) -> Vec<(i64, String)> {
    let page = stripe_ledger::event_log::list(
        db,
        &Default::default(),
        &stripe_ledger::event_log::PageRequest {
            order: stripe_ledger::event_log::Order::Asc,
            after_position: Some(after),
            limit: 100,
        },
    )
    .await
    .unwrap();
    page.events
        .into_iter()
        .map(|e| (e.position, e.event_id))
        .collect()
}

#[tokio::test]
async fn an_append_cannot_become_visible_before_an_earlier_position_commits() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let (commit, committed) = tokio::sync::oneshot::channel();
    let (inserted, is_inserted) = tokio::sync::oneshot::channel();
    let slow = tokio::spawn(slow_append(
        app.database.url.clone(),
        "evt_slow_first",
        None,
        committed,
        inserted,
    ));
    is_inserted.await.unwrap();

    // A webhook arrives while the earlier append is still in flight.
    let fast = {
        let app = app.clone();
        tokio::spawn(async move {
            app.deliver(&event("evt_fast_second", "customer.updated"))
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // A reader tailing the log sees neither: the later append waits for the earlier one,
    // instead of becoming visible at a higher position first (which the reader would then
    // checkpoint past, skipping the earlier one for ever).
    assert_eq!(tail(&app.db, 0).await, vec![]);
    assert!(
        !fast.is_finished(),
        "the second append committed before the first"
    );

    commit.send(()).unwrap();
    slow.await.unwrap();
    let reply = fast.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text);
    let seen = tail(&app.db, 0).await;
    let ids: Vec<&str> = seen.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids, ["evt_slow_first", "evt_fast_second"]);
}

#[tokio::test]
async fn a_reader_tailing_by_position_during_concurrent_appends_from_two_instances_skips_nothing() {
    let database = crate::helpers::TestDatabase::create().await;
    let a = std::sync::Arc::new(TestApp::builder().database(database.clone()).spawn().await);
    let b = std::sync::Arc::new(
        TestApp::builder()
            .database(database.clone())
            .env("STRIPE_WEBHOOK_SECRET", &a.secret)
            .spawn()
            .await,
    );
    let total = 200;
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..total {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        writers.spawn(async move {
            let reply = app
                .deliver(&event(&format!("evt_tail_{i:04}"), "invoice.paid"))
                .await;
            assert_eq!(reply.status, 200, "{}", reply.text);
        });
    }
    // The reader checkpoints at the highest position it has seen, as a catch-up projector does.
    let reader_db = a.db.clone();
    let reader = tokio::spawn(async move {
        let mut checkpoint = 0;
        let mut seen = std::collections::BTreeSet::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while seen.len() < total && std::time::Instant::now() < deadline {
            for (position, id) in tail(&reader_db, checkpoint).await {
                assert!(seen.insert(id), "an entry was read twice");
                checkpoint = position;
            }
            tokio::task::yield_now().await;
        }
        seen
    });
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    let seen = reader.await.unwrap();
    assert_eq!(seen.len(), total, "the tailing reader skipped entries");
}

#[tokio::test]
async fn an_event_logged_by_another_instance_with_another_body_mid_batch_is_refused_then_projected_as_logged(
) {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let with_email = |email: &str| {
        serde_json::json!({
            "id": "evt_race_body", "object": "event", "api_version": "2025-03-31.basil",
            "created": 1_763_800_000, "livemode": false, "type": "customer.created",
            "data": {"object": {"id": "cus_race_body", "object": "customer", "email": email}}
        })
        .to_string()
        .into_bytes()
    };
    // Another instance is appending this id, with another body, and has not committed.
    let (commit, committed) = tokio::sync::oneshot::channel();
    let (inserted, is_inserted) = tokio::sync::oneshot::channel();
    let slow = tokio::spawn(slow_append(
        app.database.url.clone(),
        "evt_race_body",
        Some(with_email("logged@example.com")),
        committed,
        inserted,
    ));
    is_inserted.await.unwrap();
    let ours = {
        let app = app.clone();
        tokio::spawn(async move { app.deliver(&with_email("arrived@example.com")).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    commit.send(()).unwrap();
    slow.await.unwrap();
    let first = ours.await.unwrap();
    match crate::helpers::backend() {
        // Our batch looked the id up before the other commit and projected what arrived; the
        // append then found the other body: refused as a whole, so nothing of ours remains.
        stripe_ledger::store::Backend::Postgres => {
            assert_eq!(first.status, 503, "{}", first.text);
            assert_eq!(first.code(), "storage_unavailable");
            let retry = app.deliver(&with_email("arrived@example.com")).await;
            assert_eq!(retry.status, 200, "{}", retry.text);
            assert_eq!(retry.json["status"], "duplicate");
        }
        // The single writer waited for the other append before looking up.
        stripe_ledger::store::Backend::Sqlite => {
            assert_eq!(first.status, 200, "{}", first.text);
            assert_eq!(first.json["status"], "duplicate");
        }
    }
    assert_eq!(app.event_count().await, 1);
    // The read models hold what the log holds.
    let customer = app
        .get(
            "/api/customers/cus_race_body",
            Some(crate::helpers::READ_TOKEN),
        )
        .await;
    assert_eq!(
        customer.json["email"], "logged@example.com",
        "{}",
        customer.text
    );
}
