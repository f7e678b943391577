//! The log itself: immutable in the database, whoever the client is.

use stripe_ledger::db::Db;

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

async fn execute(db: &Db, sql: &str) -> Result<u64, String> {
    let result = match db {
        Db::Postgres(pool) => sqlx::query(sql)
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
    use sqlx::Connection as _;
    let url = app.database.url.clone();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let (locked, is_locked) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        if url.starts_with("postgres") {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            let mut tx = conn.begin().await.unwrap();
            sqlx::query("LOCK TABLE event_log IN ACCESS EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await
                .unwrap();
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
