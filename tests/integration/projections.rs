//! Read models folded from the log: through the webhook, the read API, rebuild and catch-up.

use std::sync::Arc;

use serde_json::Value;
use stripe_ledger::projector::{self, RebuildOptions};

use crate::helpers::{TestApp, TestDatabase, READ_TOKEN};
use crate::stripe_objects::{
    checkout_subscription, customer, event, invoice, subscription, MONTH, T0,
};

async fn read(app: &TestApp, path: &str) -> crate::helpers::Reply {
    app.get(path, Some(READ_TOKEN)).await
}

/// Stripe's events, after what `/api/checkout` logged for them (the evidence of the links).
async fn deliver_all(app: &TestApp, events: &[Vec<u8>]) {
    crate::scenarios::log_what_checkout_created(app, events).await;
    for e in events {
        let reply = app.deliver(e).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
}

fn lifecycle(n: &str) -> Vec<Vec<u8>> {
    let (cus, sub, user) = (format!("cus_{n}"), format!("sub_{n}"), format!("user_{n}"));
    let end = T0 + MONTH;
    vec![
        event(
            &format!("evt_{n}_1"),
            "customer.created",
            T0,
            customer(&cus, None),
        ),
        event(
            &format!("evt_{n}_2"),
            "checkout.session.completed",
            T0 + 5,
            checkout_subscription(&format!("cs_{n}"), &cus, &sub, &user),
        ),
        event(
            &format!("evt_{n}_3"),
            "customer.subscription.created",
            T0 + 4,
            subscription(&sub, &cus, "active", end, false),
        ),
        event(
            &format!("evt_{n}_4"),
            "invoice.paid",
            T0 + 4,
            invoice(&sub, &cus, end, "paid", 1),
        ),
    ]
}

async fn check_rebuild(app: &TestApp) {
    let report = projector::rebuild(
        &app.db,
        &RebuildOptions {
            check_only: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(
        report.differences.is_empty(),
        "rebuild differs from live: {:?}",
        report.differences
    );
}

#[tokio::test]
async fn a_subscription_checkout_grants_the_user_access_once_its_webhooks_are_in() {
    let app = TestApp::builder().clock_at(T0 + 60).spawn().await;
    let before = read(&app, "/api/entitlements/user_a").await;
    assert_eq!(before.json["access"], "denied");
    assert_eq!(before.json["reason"], "no_subscription");

    deliver_all(&app, &lifecycle("a")).await;

    let e = read(&app, "/api/entitlements/user_a").await;
    assert_eq!(e.status, 200, "{}", e.text);
    assert_eq!(e.json["access"], "granted");
    assert_eq!(e.json["reason"], "subscription_active");
    assert_eq!(e.json["subscription_id"], "sub_a");
    assert_eq!(e.json["until"], "2025-12-22T08:26:40Z");

    let sub = read(&app, "/api/subscriptions/sub_a").await;
    assert_eq!(sub.json["status"], "active");
    assert_eq!(sub.json["user_id"], "user_a");
    assert_eq!(sub.json["items"][0]["unit_amount"], 1500);
    assert_eq!(sub.json["items"][0]["currency"], "usd");
    let by_user = read(&app, "/api/customers?user_id=user_a").await;
    assert_eq!(by_user.json["data"][0]["id"], "cus_a");
    let invoices = read(&app, "/api/invoices?customer=cus_a").await;
    assert_eq!(invoices.json["data"][0]["status"], "paid");
    assert_eq!(invoices.json["data"][0]["subscription"], "sub_a");
    check_rebuild(&app).await;
}

#[tokio::test]
async fn a_late_update_never_resurrects_a_canceled_subscription() {
    let app = TestApp::builder().clock_at(T0 + MONTH + 60).spawn().await;
    let end = T0 + MONTH;
    deliver_all(&app, &lifecycle("late")).await;
    deliver_all(
        &app,
        &[event(
            "evt_late_del",
            "customer.subscription.deleted",
            end,
            subscription("sub_late", "cus_late", "canceled", end, true),
        )],
    )
    .await;
    // Stripe retries an update from before the deletion.
    deliver_all(
        &app,
        &[event(
            "evt_late_upd",
            "customer.subscription.updated",
            end - 1,
            subscription("sub_late", "cus_late", "active", end, true),
        )],
    )
    .await;
    let sub = read(&app, "/api/subscriptions/sub_late").await;
    assert_eq!(sub.json["status"], "canceled");
    let e = read(&app, "/api/entitlements/user_late").await;
    assert_eq!(e.json["access"], "denied");
    assert_eq!(e.json["reason"], "canceled");
    check_rebuild(&app).await;
}

#[tokio::test]
async fn past_due_keeps_access_for_the_grace_period_from_the_first_failed_payment() {
    let end = T0 + MONTH;
    let failed_at = end + 100;
    let events = |n: &str| {
        let mut e = lifecycle(n);
        let (cus, sub) = (format!("cus_{n}"), format!("sub_{n}"));
        let next = end + MONTH;
        e.push(event(
            &format!("evt_{n}_f1"),
            "invoice.payment_failed",
            failed_at,
            invoice(&sub, &cus, next, "open", 1),
        ));
        e.push(event(
            &format!("evt_{n}_pd"),
            "customer.subscription.updated",
            failed_at + 1,
            subscription(&sub, &cus, "past_due", next, false),
        ));
        e.push(event(
            &format!("evt_{n}_f2"),
            "invoice.payment_failed",
            failed_at + 3 * 86_400,
            invoice(&sub, &cus, next, "open", 2),
        ));
        e
    };
    let during = TestApp::builder()
        .env("GRACE_PERIOD_DAYS", "7")
        .clock_at(failed_at + 6 * 86_400)
        .spawn()
        .await;
    deliver_all(&during, &events("g1")).await;
    let e = read(&during, "/api/entitlements/user_g1").await;
    assert_eq!(e.json["access"], "grace", "{}", e.text);
    assert_eq!(e.json["reason"], "past_due_grace");
    assert_eq!(e.json["until"], views_time(failed_at + 7 * 86_400));

    let after = TestApp::builder()
        .env("GRACE_PERIOD_DAYS", "7")
        .clock_at(failed_at + 8 * 86_400)
        .spawn()
        .await;
    deliver_all(&after, &events("g2")).await;
    let e = read(&after, "/api/entitlements/user_g2").await;
    assert_eq!(e.json["access"], "denied");
    assert_eq!(e.json["reason"], "past_due_grace_expired");
}

fn views_time(secs: i64) -> Value {
    stripe_ledger::read_models::views::time(Some(secs))
}

#[tokio::test]
async fn a_projection_failure_is_dead_lettered_answered_500_and_cleared_by_a_successful_retry() {
    let app = TestApp::spawn().await;
    // An operator's mistake poisons a read-model row; projecting onto it fails.
    deliver_all(&app, &lifecycle("dl")).await;
    poison(&app, "subscription", "sub_dl").await;
    let update = event(
        "evt_dl_upd",
        "customer.subscription.updated",
        T0 + 100,
        subscription("sub_dl", "cus_dl", "past_due", T0 + MONTH, false),
    );
    let reply = app.deliver(&update).await;
    assert_eq!(reply.status, 500, "{}", reply.text);
    assert_eq!(reply.code(), "projection_failed");
    // Logged all the same, and listed as a dead letter.
    assert_eq!(app.audit("/api/audit/events/evt_dl_upd").await.status, 200);
    let dead = app.audit("/api/dead-letters").await;
    assert_eq!(dead.json["data"][0]["event_id"], "evt_dl_upd");
    assert_eq!(dead.json["data"][0]["attempts"], 1);
    // Stripe retries before the fix: still failing, attempts counted.
    assert_eq!(app.deliver(&update).await.status, 500);
    let dead = app.audit("/api/dead-letters").await;
    assert_eq!(dead.json["data"][0]["attempts"], 2);

    // The operator rebuilds (which replaces the poisoned row); the next retry succeeds.
    projector::rebuild(&app.db, &RebuildOptions::default())
        .await
        .unwrap();
    let retry = app.deliver(&update).await;
    assert_eq!(retry.status, 200, "{}", retry.text);
    assert_eq!(retry.json["status"], "duplicate");
    assert_eq!(
        app.audit("/api/dead-letters").await.json["data"],
        serde_json::json!([])
    );
    assert_eq!(
        read(&app, "/api/subscriptions/sub_dl").await.json["status"],
        "past_due"
    );
    check_rebuild(&app).await;
}

pub(crate) async fn poison(app: &TestApp, kind: &str, id: &str) {
    // The version moves as with any write: a hand edit that kept it would be overwritten by
    // the next write folded from the writer's memory, never read (docs/adr/0024).
    let sql = "UPDATE read_models SET state = 'not json', version = version + 1 \
               WHERE kind = $1 AND id = $2";
    match &app.db {
        stripe_ledger::store::Db::Postgres(stripe_ledger::store::PgStore { pool, .. }) => {
            sqlx::query(sql)
                .bind(kind)
                .bind(id)
                .execute(pool)
                .await
                .unwrap();
        }
        stripe_ledger::store::Db::Sqlite(db) => {
            sqlx::query(sql)
                .bind(kind)
                .bind(id)
                .execute(&db.write)
                .await
                .unwrap();
        }
    }
}

/// Appends a trialing subscription's creation as another source would, without projecting
/// it; its position.
async fn append_unprojected(app: &TestApp, event_id: &str, sub: &str, cus: &str) -> i64 {
    let body = event(
        event_id,
        "customer.subscription.created",
        T0,
        subscription(sub, cus, "trialing", T0 + MONTH, false),
    );
    let entry = crate::helpers::backfill_entry(&body);
    match stripe_ledger::event_log::append(&app.db, &entry)
        .await
        .unwrap()
    {
        stripe_ledger::event_log::AppendOutcome::Appended { position } => position,
        other => panic!("{event_id} was logged already: {other:?}"),
    }
}

#[tokio::test]
async fn catch_up_projects_entries_appended_by_other_sources() {
    let app = TestApp::spawn().await;
    append_unprojected(&app, "evt_backfill_1", "sub_bf", "cus_bf").await;
    assert_eq!(read(&app, "/api/subscriptions/sub_bf").await.status, 404);
    let report = projector::catch_up(&app.db).await.unwrap();
    assert!(report.projected >= 1);
    assert_eq!(
        read(&app, "/api/subscriptions/sub_bf").await.json["status"],
        "trialing"
    );
    // A second run finds nothing new.
    assert_eq!(projector::catch_up(&app.db).await.unwrap().projected, 0);
}

#[tokio::test]
async fn catch_up_reads_whole_only_the_entries_ingestion_did_not_project_chunk_by_chunk() {
    use stripe_ledger::store::read_models::ReadModelStore as _;
    let app = TestApp::spawn().await;
    let start = stripe_ledger::event_log::last_position(&app.db)
        .await
        .unwrap();
    deliver_all(&app, &lifecycle("cu1")).await;
    let backfill = append_unprojected(&app, "evt_cu_backfill", "sub_cu", "cus_cu").await;
    deliver_all(&app, &lifecycle("cu2")).await;
    let end = stripe_ledger::event_log::last_position(&app.db)
        .await
        .unwrap();

    let whole = app.db.unprojected_after(start, 500).await.unwrap();
    assert_eq!(whole.through, Some(end));
    let read: Vec<i64> = whole.entries.iter().map(|e| e.position).collect();
    assert_eq!(
        read,
        vec![backfill],
        "only the entry nobody projected is read"
    );
    assert_eq!(whole.entries[0].event_id, "evt_cu_backfill");
    assert!(whole.entries[0].payload.is_some(), "read with its payload");

    // A chunk ends at its limit's entry, whether or not it holds anything to project.
    let first = app.db.unprojected_after(start, 1).await.unwrap();
    assert!(first.through.is_some_and(|p| p > start && p < backfill));
    assert!(first.entries.is_empty());
    let upto = app.db.unprojected_after(backfill - 1, 1).await.unwrap();
    assert_eq!(upto.through, Some(backfill));
    assert_eq!(upto.entries.len(), 1);
    assert_eq!(
        app.db.unprojected_after(end, 500).await.unwrap().through,
        None
    );
}

#[tokio::test]
async fn rebuild_switches_to_an_identical_generation_and_a_partial_rebuild_keeps_the_rest() {
    let app = TestApp::spawn().await;
    deliver_all(&app, &lifecycle("rb")).await;
    let before = read(&app, "/api/subscriptions/sub_rb").await.json;
    let report = projector::rebuild(&app.db, &RebuildOptions::default())
        .await
        .unwrap();
    assert!(report.switched);
    // Four events and the customer and session `/api/checkout` logged.
    assert_eq!(report.events, 6);
    assert_eq!(read(&app, "/api/subscriptions/sub_rb").await.json, before);
    let partial = RebuildOptions {
        kinds: Some(vec!["subscriptions".into()]),
        ..Default::default()
    };
    projector::rebuild(&app.db, &partial).await.unwrap();
    assert_eq!(read(&app, "/api/subscriptions/sub_rb").await.json, before);
    assert_eq!(
        read(&app, "/api/customers/cus_rb").await.json["user_id"],
        "user_rb"
    );
    check_rebuild(&app).await;
    let unknown = RebuildOptions {
        kinds: Some(vec!["widgets".into()]),
        ..Default::default()
    };
    assert!(projector::rebuild(&app.db, &unknown).await.is_err());
}

#[tokio::test]
async fn a_rebuild_with_a_tiny_cache_reads_evicted_states_back_and_matches_the_live_models() {
    let app = TestApp::spawn().await;
    // Round-robin over users, so each object is touched again long after the cache (two
    // states) evicted it.
    let lifecycles: Vec<Vec<Vec<u8>>> = (0..6).map(|i| lifecycle(&format!("tc{i}"))).collect();
    let events: Vec<Vec<u8>> = (0..4)
        .flat_map(|step| lifecycles.iter().map(move |l| l[step].clone()))
        .collect();
    deliver_all(&app, &events).await;
    let before = read(&app, "/api/subscriptions?limit=100").await.json;
    let tiny = |check_only| RebuildOptions {
        check_only,
        chunk: 3,
        cache_objects: 2,
        ..Default::default()
    };
    let report = projector::rebuild(&app.db, &tiny(true)).await.unwrap();
    assert!(
        report.differences.is_empty(),
        "rebuild differs from live: {:?}",
        report.differences
    );
    projector::rebuild(&app.db, &tiny(false)).await.unwrap();
    assert_eq!(
        read(&app, "/api/subscriptions?limit=100").await.json,
        before
    );
    for i in 0..6 {
        let e = read(&app, &format!("/api/entitlements/user_tc{i}")).await;
        assert_eq!(e.json["access"], "granted", "user_tc{i}");
    }
    check_rebuild(&app).await;
}

#[tokio::test]
async fn a_rebuild_under_concurrent_ingestion_loses_nothing() {
    let app = Arc::new(TestApp::spawn().await);
    deliver_all(
        &app,
        &(0..20)
            .flat_map(|i| lifecycle(&format!("pre{i}")))
            .collect::<Vec<_>>(),
    )
    .await;
    let ingest = {
        let app = app.clone();
        tokio::spawn(async move {
            for i in 0..30 {
                deliver_all(&app, &lifecycle(&format!("during{i}"))).await;
            }
        })
    };
    let mut rebuilds = 0;
    while !ingest.is_finished() {
        crate::helpers::rebuild(&app.db, 7).await;
        rebuilds += 1;
    }
    ingest.await.unwrap();
    assert!(rebuilds >= 1);
    for i in 0..30 {
        let sub = read(&app, &format!("/api/subscriptions/sub_during{i}")).await;
        assert_eq!(
            sub.json["status"], "active",
            "sub_during{i} lost by a rebuild"
        );
        let e = read(&app, &format!("/api/entitlements/user_during{i}")).await;
        assert_eq!(e.json["access"], "granted", "user_during{i}");
    }
    check_rebuild(&app).await;
}

#[tokio::test]
async fn two_instances_ingesting_interleaved_events_for_one_subscription_end_like_one_instance() {
    let end = T0 + MONTH;
    let events: Vec<Vec<u8>> = {
        let mut e = lifecycle("ii");
        for k in 0..12 {
            let status = if k % 3 == 2 { "past_due" } else { "active" };
            // Same-second pairs, and periods that move on.
            let t = T0 + 10 + k / 2;
            e.push(event(
                &format!("evt_ii_u{k}"),
                "customer.subscription.updated",
                t,
                subscription(
                    "sub_ii",
                    "cus_ii",
                    status,
                    end + (k % 4) * MONTH,
                    k % 5 == 0,
                ),
            ));
        }
        e.push(event(
            "evt_ii_del",
            "customer.subscription.deleted",
            T0 + 30,
            subscription("sub_ii", "cus_ii", "canceled", end + 3 * MONTH, true),
        ));
        e
    };
    let database = TestDatabase::create().await;
    let a = Arc::new(TestApp::builder().database(database.clone()).spawn().await);
    let b = Arc::new(
        TestApp::builder()
            .database(database.clone())
            .env("STRIPE_WEBHOOK_SECRET", &a.secret)
            .spawn()
            .await,
    );
    crate::scenarios::log_what_checkout_created(&a, &events).await;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, body) in events.iter().enumerate() {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        let body = body.clone();
        tasks.spawn(async move { app.deliver(&body).await });
    }
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let single = TestApp::spawn().await;
    deliver_all(&single, &events).await;
    for path in [
        "/api/subscriptions/sub_ii",
        "/api/customers/cus_ii",
        "/api/invoices?customer=cus_ii",
        "/api/entitlements/user_ii",
    ] {
        assert_eq!(
            read(&a, path).await.json,
            read(&single, path).await.json,
            "{path}"
        );
    }
    assert_eq!(
        read(&a, "/api/subscriptions/sub_ii").await.json["status"],
        "canceled"
    );
    check_rebuild(&a).await;
}

#[tokio::test]
async fn two_instances_writing_one_object_at_once_retry_the_loser_and_end_like_one_instance() {
    let end = T0 + MONTH;
    let base = lifecycle("vc");
    // Two updates of one subscription in the same second: both are kept (a conflict the read
    // model reports), so losing either write would show.
    let update = |n: &str, status: &str| {
        event(
            &format!("evt_vc_{n}"),
            "customer.subscription.updated",
            T0 + 20,
            subscription("sub_vc", "cus_vc", status, end, false),
        )
    };
    let (first, second) = (update("a", "past_due"), update("b", "unpaid"));
    let database = TestDatabase::create().await;
    let a = Arc::new(TestApp::builder().database(database.clone()).spawn().await);
    let b = Arc::new(
        TestApp::builder()
            .database(database.clone())
            .env("STRIPE_WEBHOOK_SECRET", &a.secret)
            .spawn()
            .await,
    );
    deliver_all(&a, &base).await;
    let send = |app: &Arc<TestApp>, body: &Vec<u8>| {
        let (app, body) = (app.clone(), body.clone());
        tokio::spawn(async move { app.deliver(&body).await })
    };
    let (ra, rb) = if crate::helpers::backend() == stripe_ledger::store::Backend::Postgres {
        use sqlx::Connection as _;
        // Hold the subscription's row: both instances read version v, fold, and queue on the
        // row to write. The first to write moves it to v + 1; the other's check then fails,
        // and it must read and fold again rather than fail or overwrite.
        let mut conn = sqlx::PgConnection::connect(&a.database.url).await.unwrap();
        let mut held = conn.begin().await.unwrap();
        sqlx::query(
            "SELECT 1 FROM read_models WHERE kind = 'subscription' AND id = 'sub_vc' FOR UPDATE",
        )
        .execute(&mut *held)
        .await
        .unwrap();
        let (ra, rb) = (send(&a, &first), send(&b, &second));
        row_waiters(&a, 2).await;
        held.rollback().await.unwrap();
        (ra.await.unwrap(), rb.await.unwrap())
    } else {
        // One writer: the two batches run one after the other.
        let (ra, rb) = (send(&a, &first), send(&b, &second));
        (ra.await.unwrap(), rb.await.unwrap())
    };
    assert_eq!(ra.status, 200, "{}", ra.text);
    assert_eq!(rb.status, 200, "{}", rb.text);
    if crate::helpers::backend() == stripe_ledger::store::Backend::Postgres {
        let logs = crate::helpers::captured_logs();
        assert!(
            logs.lines().any(|l| (l.contains("batch lost a race")
                || l.contains("was refused; reading it"))
                && (l.contains("evt_vc_a") || l.contains("evt_vc_b"))),
            "neither write conflicted"
        );
    }
    let single = TestApp::spawn().await;
    deliver_all(&single, &base).await;
    deliver_all(&single, &[first, second]).await;
    for path in ["/api/subscriptions/sub_vc", "/api/entitlements/user_vc"] {
        assert_eq!(
            read(&a, path).await.json,
            read(&single, path).await.json,
            "{path}"
        );
    }
    check_rebuild(&a).await;
}

/// Waits until `n` backends wait for a row lock (or the transaction holding it).
async fn row_waiters(app: &TestApp, n: i64) {
    let count = "SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted \
                 AND locktype IN ('transactionid', 'tuple')";
    crate::helpers::until_lock_waiters(app, count, n, || false, "row locks").await;
}

#[tokio::test]
async fn the_read_api_needs_a_read_token_and_validates_its_parameters() {
    let app = TestApp::spawn().await;
    for path in [
        "/api/customers/cus_x",
        "/api/subscriptions?status=active",
        "/api/entitlements/user_x",
        "/api/orders?customer=cus_x",
    ] {
        assert_eq!(app.get(path, None).await.status, 401, "{path}");
        let audit_only = app.get(path, Some(crate::helpers::AUDIT_TOKEN)).await;
        assert_eq!(audit_only.status, 403, "{path}");
    }
    assert_eq!(
        app.get("/api/dead-letters", Some(READ_TOKEN)).await.status,
        403
    );
    let cases = [
        ("/api/subscriptions?colour=blue", 400, "unknown_parameter"),
        ("/api/subscriptions?limit=0", 400, "invalid_parameter"),
        ("/api/subscriptions?cursor=sub_1", 400, "invalid_cursor"),
        (
            "/api/subscriptions/sub_missing",
            404,
            "subscription_not_found",
        ),
        ("/api/customers/cus_missing", 404, "customer_not_found"),
    ];
    for (path, status, code) in cases {
        let r = read(&app, path).await;
        assert_eq!((r.status, r.code()), (status, code), "{path}: {}", r.text);
    }
}

#[tokio::test]
async fn subscriptions_list_by_status_with_cursor_pagination() {
    let app = TestApp::spawn().await;
    for i in 0..5 {
        deliver_all(&app, &lifecycle(&format!("pg{i}"))).await;
    }
    let mut seen = Vec::new();
    let mut path = "/api/subscriptions?status=active&limit=2".to_owned();
    loop {
        let page = read(&app, &path).await;
        assert_eq!(page.status, 200, "{}", page.text);
        for s in page.json["data"].as_array().unwrap() {
            seen.push(s["id"].as_str().unwrap().to_owned());
        }
        match page.json["next_cursor"].as_str() {
            Some(c) => path = format!("/api/subscriptions?status=active&limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["sub_pg0", "sub_pg1", "sub_pg2", "sub_pg3", "sub_pg4"]
    );
    let none = read(&app, "/api/subscriptions?status=canceled").await;
    assert_eq!(none.json["data"], serde_json::json!([]));
}

/// Waits until `n` advisory-lock requests are queued on PostgreSQL.
async fn advisory_waiters(app: &TestApp, n: i64) {
    let count = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted";
    crate::helpers::until_lock_waiters(app, count, n, || false, "advisory locks").await;
}

#[tokio::test]
async fn an_event_arriving_while_a_rebuild_waits_to_switch_lands_in_the_new_generation() {
    let app = Arc::new(TestApp::spawn().await);
    deliver_all(&app, &lifecycle("gen_a")).await;
    let late = lifecycle("gen_b");
    if crate::helpers::backend() == stripe_ledger::store::Backend::Postgres {
        use sqlx::Connection as _;
        // Another batch in its critical section: appends (and the rebuild's switch) wait.
        let mut conn = sqlx::PgConnection::connect(&app.database.url)
            .await
            .unwrap();
        let mut held = conn.begin().await.unwrap();
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(stripe_ledger::event_log::APPEND_LOCK)
            .execute(&mut *held)
            .await
            .unwrap();
        let rebuild = {
            let app = app.clone();
            tokio::spawn(async move { crate::helpers::rebuild(&app.db, 100).await })
        };
        // The rebuild has replayed the log and queues for the switch...
        advisory_waiters(&app, 1).await;
        // ...when events arrive. They must not be projected into the generation about to be
        // switched away (they would be missing from the new one, and marked projected).
        let ingest = {
            let app = app.clone();
            tokio::spawn(async move { deliver_all(&app, &late[2..3]).await })
        };
        advisory_waiters(&app, 2).await;
        held.rollback().await.unwrap();
        assert!(rebuild.await.unwrap().switched);
        ingest.await.unwrap();
    } else {
        // SQLite's single writer serialises the switch and ingestion by construction.
        crate::helpers::rebuild(&app.db, 100).await;
        deliver_all(&app, &late[2..3]).await;
    }
    let sub = read(&app, "/api/subscriptions/sub_gen_b").await;
    assert_eq!(sub.status, 200, "the late event was lost: {}", sub.text);
    check_rebuild(&app).await;
}

#[tokio::test]
async fn a_foreign_checkout_session_naming_another_user_does_not_link_and_is_reported() {
    let app = TestApp::builder().clock_at(T0 + 60).spawn().await;
    // The victim's own checkout, through the service.
    deliver_all(&app, &lifecycle("victim")).await;
    // A Payment Link session (not made by us) with the victim's id as client_reference_id.
    let end = T0 + MONTH;
    let foreign = [
        event(
            "evt_evil_1",
            "customer.created",
            T0 - 100,
            customer("cus_0evil", None),
        ),
        event(
            "evt_evil_2",
            "checkout.session.completed",
            T0 - 90,
            checkout_subscription("cs_evil", "cus_0evil", "sub_evil", "user_victim"),
        ),
        event(
            "evt_evil_3",
            "customer.subscription.created",
            T0 - 95,
            subscription("sub_evil", "cus_0evil", "active", end, false),
        ),
    ];
    for e in &foreign {
        assert_eq!(app.deliver(e).await.status, 200);
    }
    let evil = read(&app, "/api/customers/cus_0evil").await.json;
    assert_eq!(evil["user_id"], serde_json::Value::Null);
    assert_eq!(evil["link_conflicts"][0]["user_id"], "user_victim");
    assert_eq!(evil["link_conflicts"][0]["event_id"], "evt_evil_2");
    let mine = read(&app, "/api/customers?user_id=user_victim").await.json;
    assert_eq!(mine["data"].as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine["data"][0]["id"], "cus_victim");
    let e = read(&app, "/api/entitlements/user_victim").await.json;
    assert_eq!(e["subscription_id"], "sub_victim");
    check_rebuild(&app).await;
}
