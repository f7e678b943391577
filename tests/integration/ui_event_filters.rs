//! The console's event filters read each through its own index (types one arm per type, a
//! Stripe `created` range a window of the newest positions and then the range's index): the
//! pages they return, followed by cursor, are exactly those of a plain scan of the log, on
//! both backends, including matches far below the window.

use stripe_ledger::event_log::{EventFilter, Order, PageRequest};
use stripe_ledger::store::event_log::EventLogStore as _;
use stripe_ledger::store::Backend;

use crate::helpers::{backend, TestApp};
use crate::seal::as_owner;
use crate::stripe_objects::{customer, event, T0};

const TYPES: [&str; 3] = ["customer.created", "customer.updated", "customer.deleted"];

async fn deliver(app: &TestApp, from: usize, to: usize) {
    for i in from..to {
        let body = event(
            &format!("evt_f{i}"),
            TYPES[i % 3],
            T0 + 60 * i as i64,
            customer(&format!("cus_f{i}"), None),
        );
        let reply = app.deliver(&body).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
}

/// Fifteen entries, then 20,000 positions skipped (as rolled-back appends leave them), then
/// fifteen more: the first fifteen are far below the newest positions.
async fn log_with_a_gap() -> TestApp {
    let app = TestApp::spawn().await;
    deliver(&app, 0, 15).await;
    let skip = match backend() {
        Backend::Postgres => {
            "SELECT setval(pg_get_serial_sequence('event_log', 'position'), \
             (SELECT max(position) FROM event_log) + 20000)"
        }
        Backend::Sqlite => "UPDATE sqlite_sequence SET seq = seq + 20000 WHERE name = 'event_log'",
    };
    as_owner(&app, &[skip]).await;
    deliver(&app, 15, 30).await;
    let last = stripe_ledger::event_log::last_position(&app.db)
        .await
        .unwrap();
    assert!(last > 20_000, "no gap: the last position is {last}");
    app
}

/// Every page of `filter`, newest first, `limit` at a time, by cursor: the event ids.
async fn paged(app: &TestApp, filter: &EventFilter, limit: u32) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let page = PageRequest {
            order: Order::Desc,
            after_position: after,
            limit,
        };
        let rows = app.db.list_events(filter, &page).await.unwrap();
        let more = rows.len() > limit as usize;
        for row in rows.iter().take(limit as usize) {
            ids.push(row.event_id.clone());
            after = Some(row.position);
        }
        if !more {
            return ids;
        }
    }
}

/// What a plain scan of the whole log says `keep` selects, newest first.
async fn scanned(app: &TestApp, keep: impl Fn(usize) -> bool) -> Vec<String> {
    let all = paged(app, &EventFilter::default(), 1_000).await;
    assert_eq!(all.len(), 30);
    all.into_iter()
        .filter(|id| keep(id.trim_start_matches("evt_f").parse().unwrap()))
        .collect()
}

#[tokio::test]
async fn type_and_created_range_filters_page_exactly_as_a_scan_of_the_log() {
    let app = log_with_a_gap().await;
    let one_type = EventFilter {
        event_type: Some("customer.updated".into()),
        ..Default::default()
    };
    assert_eq!(
        paged(&app, &one_type, 3).await,
        scanned(&app, |i| i % 3 == 1).await
    );
    let two_types = EventFilter {
        event_types: Some(vec!["customer.created".into(), "customer.deleted".into()]),
        ..Default::default()
    };
    assert_eq!(
        paged(&app, &two_types, 4).await,
        scanned(&app, |i| i % 3 != 1).await
    );
    // Only below the gap: the window of the newest positions holds none of them.
    let old_range = EventFilter {
        created_gte: Some(T0 + 60 * 3),
        created_lt: Some(T0 + 60 * 12),
        ..Default::default()
    };
    assert_eq!(
        paged(&app, &old_range, 2).await,
        scanned(&app, |i| (3..12).contains(&i)).await
    );
    // Across the gap: some from the window, the rest from below it.
    let across = EventFilter {
        created_gte: Some(T0 + 60 * 10),
        created_lt: Some(T0 + 60 * 20),
        ..Default::default()
    };
    for limit in [2, 7, 50] {
        assert_eq!(
            paged(&app, &across, limit).await,
            scanned(&app, |i| (10..20).contains(&i)).await
        );
    }
}
