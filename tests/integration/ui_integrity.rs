//! The console's integrity page and the sealer's scheduled re-check: the page shows the last
//! verification the sealer recorded (when, what it covered, its outcome), says "never
//! verified" before the first, and names the kind and position of a tampered entry. Both
//! backends; tampering as in `seal` (the database owner with the triggers out of the way).

use stripe_ledger::sealer;

use crate::helpers::{TestApp, AUDIT_TOKEN};
use crate::seal::{as_owner, deliver, seal, sealing};
use crate::ui_http::{console_app, Browser};

/// When the scheduled checks of these tests ran (unix seconds).
const CHECKED_AT: i64 = 1_764_000_100;

/// A console app with five sealed entries and a checkpoint of them.
async fn sealed_console() -> TestApp {
    let app = console_app().spawn().await;
    deliver(&app, 5).await;
    seal(&app).await;
    app
}

async fn scheduled_check(app: &TestApp) {
    sealer::scheduled_recheck(&app.db, sealing(app), &app.state.metrics, CHECKED_AT).await;
}

#[tokio::test]
async fn the_integrity_page_says_never_verified_until_a_scheduled_check_runs_and_then_shows_it() {
    let app = sealed_console().await;
    let browser = Browser::signed_in(&app, AUDIT_TOKEN).await;
    let before = browser.get("/ui/integrity").await;
    assert_eq!(before.status, 200);
    assert!(
        before.text.contains("data-last-verification=\"never\"")
            && before.text.contains("Never verified"),
        "{}",
        before.text
    );

    scheduled_check(&app).await;
    let after = browser.get("/ui/integrity").await;
    assert!(!after.text.contains("Never verified"), "{}", after.text);
    let when = "2025-11-24T16:01:40Z"; // CHECKED_AT, as every console time is shown
    assert!(
        after
            .text
            .contains(&format!("data-verified-at>{when}</time>")),
        "{}",
        after.text
    );
    assert!(after
        .text
        .contains("positions 1 to 5 recomputed from the log"));
    assert!(after.text.contains("the latest checkpoint (tree size 5)"));
    assert!(after.text.contains("data-verification-outcome=\"ok\""));
}

#[tokio::test]
async fn the_integrity_page_names_the_kind_and_position_of_a_tampered_entry_after_the_check() {
    let app = sealed_console().await;
    scheduled_check(&app).await;
    as_owner(
        &app,
        &["UPDATE event_log SET livemode = NOT livemode WHERE position = 4"],
    )
    .await;
    scheduled_check(&app).await;

    let browser = Browser::signed_in(&app, AUDIT_TOKEN).await;
    let page = browser.get("/ui/integrity").await;
    assert_eq!(page.status, 200);
    assert!(
        page.text.contains("data-verification-outcome=\"failed\""),
        "{}",
        page.text
    );
    assert!(page
        .text
        .contains("<strong data-failure-kind>edited</strong>"));
    assert!(page
        .text
        .contains("<strong data-failure-position>4</strong>"));
    assert!(!page.text.contains("data-verification-outcome=\"ok\""));
}

#[tokio::test]
async fn the_integrity_page_counts_a_small_log_exactly_and_the_count_stops_at_its_cap() {
    use stripe_ledger::store::ui::UiStore as _;
    let app = sealed_console().await;
    let browser = Browser::signed_in(&app, AUDIT_TOKEN).await;
    let page = browser.get("/ui/integrity").await;
    assert!(
        page.text.contains("<dd data-log-count>5</dd>"),
        "{}",
        page.text
    );
    assert!(page.text.contains(">1 to 5</a>"));
    // The page asks for 10,001 at most; the same statement with a smaller cap stops there and
    // still gives the log's ends (a million-entry log is not built here).
    let capped = app.db.ui_log_range(3).await.unwrap();
    assert_eq!(
        (capped.count, capped.first, capped.last),
        (3, Some(1), Some(5))
    );
}

#[tokio::test]
async fn successful_checks_older_than_thirty_days_are_pruned_and_failed_ones_are_kept() {
    use stripe_ledger::store::seal::{
        SealStore as _, VerificationFailure, VerificationRecord, KEEP_OK_VERIFICATIONS_SECS,
    };
    let app = sealed_console().await;
    let record = |checked_at: i64, failed: bool| VerificationRecord {
        checked_at,
        from_position: 1,
        to_position: 5,
        tree_size: 5,
        checkpoint_size: Some(5),
        failure: failed.then(|| VerificationFailure {
            kind: "edited".into(),
            position: 3,
            detail: "the entry at position 3 no longer matches its sealed leaf".into(),
        }),
    };
    let old = CHECKED_AT - KEEP_OK_VERIFICATIONS_SECS - 1;
    for (at, failed) in [(old, false), (old, true), (old + 2, false)] {
        app.db
            .record_verification(&record(at, failed))
            .await
            .unwrap();
    }
    assert_eq!(
        verifications(&app).await,
        vec![(old, false), (old, true), (old + 2, false)]
    );
    app.db
        .record_verification(&record(CHECKED_AT, false))
        .await
        .unwrap();
    assert_eq!(
        verifications(&app).await,
        vec![(old, true), (old + 2, false), (CHECKED_AT, false)],
        "the successful check past thirty days is gone; the failure and the recent ones stay"
    );
    assert_eq!(
        app.db.latest_verification().await.unwrap(),
        Some(record(CHECKED_AT, false))
    );
}

/// Every recorded check, oldest first: (checked_at, failed).
async fn verifications(app: &TestApp) -> Vec<(i64, bool)> {
    use sqlx::Connection as _;
    let sql = "SELECT checked_at, ok FROM seal_verifications ORDER BY id";
    let url = &app.database.url;
    let rows: Vec<(i64, bool)> = if url.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap()
    } else {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap()
    };
    rows.into_iter().map(|(at, ok)| (at, !ok)).collect()
}
