//! Hostile path ids, query parameters and cursors on every read, audit and outbox route: the
//! same stable 4xx on SQLite and PostgreSQL, never a 500 (PostgreSQL refuses NUL in text).

use serde_json::Value;

use crate::helpers::{event_json, TestApp, AUDIT_TOKEN, READ_TOKEN};

/// Values that are not ids, percent-encoded as a client would send them.
fn hostile_values() -> Vec<(&'static str, String)> {
    vec![
        ("NUL", "%00".to_owned()),
        ("NUL inside", "cus_%00x".to_owned()),
        ("3000 bytes", "x".repeat(3000)),
        ("U+200B", "cus_%E2%80%8B1".to_owned()),
        ("U+202E", "cus_%E2%80%AE1".to_owned()),
        ("DEL", "cus_%7F".to_owned()),
        ("C1 NEL", "cus_%C2%85".to_owned()),
    ]
}

/// Every route with a path id: (template, token).
const PATH_ROUTES: &[(&str, &str)] = &[
    ("/api/audit/events/{}", AUDIT_TOKEN),
    ("/api/customers/{}", READ_TOKEN),
    ("/api/subscriptions/{}", READ_TOKEN),
    ("/api/entitlements/{}", READ_TOKEN),
    ("/api/reconciliations/{}", AUDIT_TOKEN),
];

/// Every route with an id-like or closed-set query parameter: (path, parameter, token).
const QUERY_ROUTES: &[(&str, &str, &str)] = &[
    ("/api/audit/events", "type", AUDIT_TOKEN),
    ("/api/audit/events", "object_id", AUDIT_TOKEN),
    ("/api/audit/events", "source", AUDIT_TOKEN),
    ("/api/customers", "user_id", READ_TOKEN),
    ("/api/subscriptions", "customer", READ_TOKEN),
    ("/api/subscriptions", "status", READ_TOKEN),
    ("/api/subscriptions", "user_id", READ_TOKEN),
    ("/api/invoices", "customer", READ_TOKEN),
    ("/api/invoices", "status", READ_TOKEN),
    ("/api/orders", "customer", READ_TOKEN),
    ("/api/orders", "status", READ_TOKEN),
    ("/api/orders", "user_id", READ_TOKEN),
    ("/api/outbox", "status", AUDIT_TOKEN),
];

/// Every paginated list: (path, token).
const LISTS: &[(&str, &str)] = &[
    ("/api/audit/events", AUDIT_TOKEN),
    ("/api/customers", READ_TOKEN),
    ("/api/subscriptions", READ_TOKEN),
    ("/api/invoices", READ_TOKEN),
    ("/api/orders", READ_TOKEN),
    ("/api/dead-letters", AUDIT_TOKEN),
    ("/api/reconciliations", AUDIT_TOKEN),
    ("/api/outbox", AUDIT_TOKEN),
];

fn assert_refused(reply: &crate::helpers::Reply, status: u16, code: &str, what: &str) {
    assert_eq!(
        (reply.status, reply.code()),
        (status, code),
        "{what}: {}",
        reply.text.chars().take(300).collect::<String>()
    );
    assert!(
        reply.json["error"]["message"].as_str().is_some(),
        "{what}: {}",
        reply.text
    );
}

#[tokio::test]
async fn path_ids_that_cannot_be_ids_get_400_invalid_parameter_on_every_route() {
    let app = TestApp::spawn().await;
    for (template, token) in PATH_ROUTES {
        for (name, value) in hostile_values() {
            let path = template.replace("{}", &value);
            let reply = app.get(&path, Some(token)).await;
            assert_refused(
                &reply,
                400,
                "invalid_parameter",
                &format!("{template} {name}"),
            );
        }
        // A path that is not UTF-8 once decoded is refused at the boundary, for every route,
        // before any handler sees it.
        for (name, value) in [("invalid UTF-8", "%FF"), ("overlong NUL", "%C0%80")] {
            let reply = app.get(&template.replace("{}", value), Some(token)).await;
            assert_refused(&reply, 400, "invalid_path", &format!("{template} {name}"));
        }
    }
}

#[tokio::test]
async fn id_like_query_parameters_that_cannot_be_ids_get_400_invalid_parameter() {
    let app = TestApp::spawn().await;
    for (path, param, token) in QUERY_ROUTES {
        for (name, value) in hostile_values()
            .into_iter()
            .chain([("empty", String::new())])
        {
            let reply = app
                .get(&format!("{path}?{param}={value}"), Some(token))
                .await;
            assert_refused(
                &reply,
                400,
                "invalid_parameter",
                &format!("{path} {param} {name}"),
            );
        }
    }
}

#[tokio::test]
async fn malformed_query_strings_and_foreign_parameters_get_their_codes_on_every_list() {
    let app = TestApp::spawn().await;
    let cases = [
        ("limit=%00", 400, "invalid_parameter"),
        ("limit=1&limit=2", 400, "invalid_parameter"),
        ("cursor=%00", 400, "invalid_cursor"),
        ("cursor=pos_1", 400, "invalid_cursor"),
        ("cursor=after_cus_1", 400, "invalid_cursor"),
        ("cursor=%E2%80%8B", 400, "invalid_cursor"),
        ("x%00=1", 400, "unknown_parameter"),
        ("%E2%80%8Blimit=1", 400, "unknown_parameter"),
        ("=1", 400, "invalid_query"),
        ("limit=%ff", 400, "invalid_query"),
        ("limit=%C0%80", 400, "invalid_query"),
    ];
    for (path, token) in LISTS {
        let long_cursor = format!("cursor={}", "A".repeat(3000));
        for (query, status, code) in
            cases
                .iter()
                .copied()
                .chain([(long_cursor.as_str(), 400, "invalid_cursor")])
        {
            let reply = app.get(&format!("{path}?{query}"), Some(token)).await;
            assert_refused(&reply, status, code, &format!("{path}?{query}"));
        }
        assert_eq!(app.get(path, Some(token)).await.status, 200, "{path}");
    }
}

async fn seeded() -> TestApp {
    let app = TestApp::spawn().await;
    for i in 0..3 {
        for t in [
            "customer.created",
            "customer.subscription.created",
            "invoice.paid",
        ] {
            // Object ids follow the first argument; the event id must differ per event.
            let mut e = event_json(&format!("hq{i}"), t, false);
            e["id"] = format!("evt_hq{i}_{t}").into();
            let reply = app.deliver(e.to_string().as_bytes()).await;
            assert_eq!(reply.status, 200, "{}", reply.text);
        }
    }
    app
}

fn next_cursor(reply: &crate::helpers::Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json["next_cursor"]
        .as_str()
        .unwrap_or_else(|| panic!("no next_cursor: {}", reply.text))
        .to_owned()
}

fn ids(reply: &crate::helpers::Reply, key: &str) -> Vec<String> {
    reply.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| match &v[key] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

#[tokio::test]
async fn a_cursor_only_pages_the_list_filters_and_order_it_came_from() {
    let app = seeded().await;
    // (first page, same query continued, the same list with other filters or order)
    let cases = [
        (
            "/api/audit/events?type=invoice.paid&limit=1",
            "/api/audit/events?type=invoice.paid",
            "/api/audit/events?type=customer.created",
            AUDIT_TOKEN,
        ),
        (
            "/api/audit/events?limit=1",
            "/api/audit/events?order=desc",
            "/api/audit/events?order=asc",
            AUDIT_TOKEN,
        ),
        (
            "/api/customers?limit=1",
            "/api/customers?limit=5",
            "/api/customers?user_id=user_1",
            READ_TOKEN,
        ),
        (
            "/api/subscriptions?status=active&limit=1",
            "/api/subscriptions?status=active",
            "/api/subscriptions?status=canceled",
            READ_TOKEN,
        ),
        (
            "/api/invoices?limit=1",
            "/api/invoices",
            "/api/invoices?customer=cus_hq0",
            READ_TOKEN,
        ),
    ];
    for (first, same, other, token) in cases {
        let cursor = next_cursor(&app.get(first, Some(token)).await);
        let sep = |p: &str| if p.contains('?') { '&' } else { '?' };
        let ok = app
            .get(&format!("{same}{}cursor={cursor}", sep(same)), Some(token))
            .await;
        assert_eq!(ok.status, 200, "{same}: {}", ok.text);
        let refused = app
            .get(
                &format!("{other}{}cursor={cursor}", sep(other)),
                Some(token),
            )
            .await;
        assert_refused(
            &refused,
            400,
            "invalid_cursor",
            &format!("{first} -> {other}"),
        );
        // And no other list takes it either.
        for (list, list_token) in LISTS {
            if first.starts_with(&format!("{list}?")) {
                continue;
            }
            let reply = app
                .get(&format!("{list}?cursor={cursor}"), Some(list_token))
                .await;
            assert_refused(&reply, 400, "invalid_cursor", &format!("{first} -> {list}"));
        }
    }
}

#[tokio::test]
async fn a_tampered_cursor_is_refused_and_an_intact_one_pages_to_the_end() {
    use base64::Engine as _;
    let app = seeded().await;
    let read = |path: String| {
        let app = &app;
        async move { app.get(&path, Some(READ_TOKEN)).await }
    };
    let first = read("/api/customers?limit=2".into()).await;
    assert_eq!(ids(&first, "id"), ["cus_hq0", "cus_hq1"]);
    let cursor = next_cursor(&first);
    let rest = read(format!("/api/customers?limit=2&cursor={cursor}")).await;
    assert_eq!(ids(&rest, "id"), ["cus_hq2"]);
    assert_eq!(rest.json["next_cursor"], Value::Null);

    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let raw = String::from_utf8(engine.decode(&cursor).unwrap()).unwrap();
    assert!(raw.ends_with("|cus_hq1"), "{raw}");
    for forged in [
        raw.replace("|cus_hq1", "|cus_hq0"),
        raw.replace("|cus_hq1", "|cus_\0"),
        raw.replace("v1|", "v2|"),
        raw.replace("customers", "invoices"),
    ] {
        let forged = engine.encode(forged);
        let reply = read(format!("/api/customers?cursor={forged}")).await;
        assert_refused(&reply, 400, "invalid_cursor", &forged);
    }
}

#[tokio::test]
async fn dead_letters_page_with_a_cursor_bound_to_their_list() {
    let app = TestApp::spawn().await;
    for position in [3, 5, 8] {
        stripe_ledger::projector::store::record_dead_letter(
            &app.db,
            &format!("evt_dead_{position}"),
            position,
            "boom",
        )
        .await
        .unwrap();
    }
    let first = app.audit("/api/dead-letters?limit=2").await;
    assert_eq!(ids(&first, "position"), ["3", "5"]);
    let cursor = next_cursor(&first);
    let rest = app
        .audit(&format!("/api/dead-letters?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(ids(&rest, "position"), ["8"]);
    assert_eq!(rest.json["next_cursor"], Value::Null);
    let foreign = app
        .audit(&format!("/api/reconciliations?cursor={cursor}"))
        .await;
    assert_refused(
        &foreign,
        400,
        "invalid_cursor",
        "dead letters -> reconciliations",
    );
    let foreign = app.audit(&format!("/api/outbox?cursor={cursor}")).await;
    assert_refused(&foreign, 400, "invalid_cursor", "dead letters -> outbox");
}
