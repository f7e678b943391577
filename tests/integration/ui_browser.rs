//! The console in a real headless Chromium (harness: `browser/`, ADR 0021). The checks read the
//! DOM, the URL and the cookies, never pixels; every view visited is also checked with axe-core
//! (no serious or critical violation) and screenshotted to `target/ui-shots/<view>.png`.
//!
//! Without a chromedriver these tests print why and pass, except under `CI=true`.

use serde_json::Value;

use crate::browser::Browser;
use crate::helpers::{TestApp, AUDIT_TOKEN, READ_TOKEN};
use crate::stripe_objects::{customer, event, subscription, MONTH, T0};
use crate::ui_http::{console_app, OPERATOR_TOKEN};

/// The console app, with the longest ingest budget: a loaded CI machine must not turn a
/// delivery into a 503 here (these tests are about the pages, not ingest latency).
async fn app() -> TestApp {
    console_app()
        .env("INGEST_TIMEOUT_MS", "25000")
        .spawn()
        .await
}

/// WebDriver's code for the Enter key.
const ENTER: &str = "\u{E007}";

/// Opens `path`, checks it with axe-core and screenshots it as `name`.
async fn visit(b: &Browser, app: &TestApp, path: &str, name: &str) {
    b.goto(&app.url(path)).await;
    look(b, name).await;
}

/// Checks the current page with axe-core and screenshots it as `name`.
async fn look(b: &Browser, name: &str) {
    b.shot(name).await;
    b.assert_accessible(name).await;
}

async fn texts(b: &Browser, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in b.find_all(css).await {
        out.push(e.text().await.expect("element text"));
    }
    out
}

/// The session cookie as the browser holds it (`name=value; HttpOnly; SameSite=...`); the
/// sign-in form's nonce cookie (`sl_ui_login`) is not one.
async fn session_cookies(b: &Browser) -> Vec<String> {
    b.client
        .get_all_cookies()
        .await
        .expect("read cookies")
        .iter()
        .filter(|c| c.name() == "sl_ui" || c.name() == "__Host-sl_ui")
        .map(|c| {
            format!(
                "{c}; http_only={:?}; same_site={:?}",
                c.http_only(),
                c.same_site()
            )
        })
        .collect()
}

#[tokio::test]
async fn a_browser_is_refused_a_bad_token_signs_in_with_a_strict_http_only_cookie_and_signs_out() {
    let app = app().await;
    let Some(b) = Browser::launch("sign in and out").await else {
        return;
    };
    // A token that is not configured: the form again, with the problem, and no cookie.
    let landed = b
        .sign_in(&app.base_url, "not-a-configured-token-0123456789")
        .await;
    assert!(landed.starts_with("/ui/login"), "{landed}");
    let alert = b.text("[role=alert]").await;
    assert!(alert.contains("not a configured service token"), "{alert}");
    assert!(session_cookies(&b).await.is_empty());
    look(&b, "login-bad-token").await;
    // A configured token without `audit` is refused as well.
    b.sign_in(&app.base_url, READ_TOKEN).await;
    assert!(b.text("[role=alert]").await.contains("audit"));
    assert!(session_cookies(&b).await.is_empty());

    let landed = b.sign_in(&app.base_url, AUDIT_TOKEN).await;
    assert_eq!(landed, "/ui/events");
    let cookies = session_cookies(&b).await;
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert!(cookies[0].starts_with("sl_ui="), "{cookies:?}");
    assert!(cookies[0].contains("http_only=Some(true)"), "{cookies:?}");
    assert!(cookies[0].contains("same_site=Some(Strict)"), "{cookies:?}");
    // The empty log says how to send a first event.
    assert!(b.text(".empty").await.contains("stripe-ledger trigger"));
    look(&b, "events-empty").await;
    // The token is never in the page, the URL or the cookie.
    let html = b.client.source().await.unwrap();
    assert!(!html.contains(AUDIT_TOKEN) && !cookies[0].contains(AUDIT_TOKEN));

    b.find("form[action='/ui/logout'] button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    b.wait_for_path("/ui/login").await;
    // The session is gone on the server: the list sends the browser back to the sign-in.
    b.goto(&app.url("/ui/events")).await;
    let path = b.wait_for_path("/ui/login").await;
    assert!(path.contains("next=%2Fui%2Fevents"), "{path}");
    b.close().await;
}

/// Four events of three kinds, delivered through the signed webhook path.
async fn deliver_mixed(app: &TestApp) -> Vec<(String, String)> {
    let events = [
        ("evt_ui_1", "customer.created"),
        ("evt_ui_2", "invoice.paid"),
        ("evt_ui_3", "customer.subscription.created"),
        ("evt_ui_4", "invoice.payment_failed"),
    ];
    for (id, kind) in events {
        let reply = app.deliver(&crate::helpers::event(id, kind)).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    events
        .iter()
        .map(|(i, k)| (i.to_string(), k.to_string()))
        .collect()
}

#[tokio::test]
async fn the_event_list_filters_to_the_right_rows_the_jump_box_finds_ids_and_keys_move_the_focus() {
    let app = app().await;
    let Some(b) = Browser::launch("event list").await else {
        return;
    };
    deliver_mixed(&app).await;
    b.sign_in(&app.base_url, AUDIT_TOKEN).await;
    look(&b, "events").await;
    let all = texts(&b, "[data-rows] tbody th a").await;
    assert_eq!(
        all,
        ["evt_ui_4", "evt_ui_3", "evt_ui_2", "evt_ui_1"],
        "newest first"
    );

    // The type filter is a GET form: the URL carries it, and only matching rows are shown.
    b.find("#f-type")
        .await
        .send_keys("invoice.paid")
        .await
        .unwrap();
    b.find("form.filters button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    let path = b.wait_for_path("/ui/events?").await;
    assert!(path.contains("type=invoice.paid"), "{path}");
    assert_eq!(texts(&b, "[data-rows] tbody th a").await, ["evt_ui_2"]);
    assert_eq!(texts(&b, "td[data-label=Type]").await, ["invoice.paid"]);
    assert_eq!(b.text("[data-count]").await, "1");
    look(&b, "events-filtered").await;
    // A prefix: customer.* is customer.created and customer.subscription.created.
    b.goto(&app.url("/ui/events?type=customer.*")).await;
    assert_eq!(
        texts(&b, "[data-rows] tbody th a").await,
        ["evt_ui_3", "evt_ui_1"]
    );

    // `/` focuses the jump box; an object id goes to the object's page.
    b.goto(&app.url("/ui/events")).await;
    b.press('/').await;
    let focused = b.client.active_element().await.unwrap();
    assert_eq!(focused.attr("id").await.unwrap().as_deref(), Some("jump-q"));
    focused
        .send_keys(&format!("cus_evt_ui_1{ENTER}"))
        .await
        .unwrap();
    assert_eq!(
        b.wait_for_path("/ui/customers/").await,
        "/ui/customers/cus_evt_ui_1"
    );
    assert_eq!(b.text("[data-object-id]").await, "cus_evt_ui_1");
    // An event id goes to the event.
    b.find("#jump-q")
        .await
        .send_keys(&format!("evt_ui_2{ENTER}"))
        .await
        .unwrap();
    assert_eq!(b.wait_for_path("/ui/events/").await, "/ui/events/evt_ui_2");
    look(&b, "event").await;

    // j / k move the row focus, Enter opens the focused row.
    b.goto(&app.url("/ui/events")).await;
    b.press('j').await;
    b.press('j').await;
    b.press('k').await;
    b.press('j').await;
    let focused = texts(&b, "tr.focused th a").await;
    assert_eq!(focused, ["evt_ui_3"], "second row after j j k j");
    let active = b.client.active_element().await.unwrap();
    assert_eq!(active.text().await.unwrap(), "evt_ui_3");
    b.press('\u{E007}').await;
    assert_eq!(b.wait_for_path("/ui/events/").await, "/ui/events/evt_ui_3");
    // Switched off, the keys do nothing (and the choice sticks across pages).
    b.goto(&app.url("/ui/events")).await;
    b.find("[data-keys-toggle]").await.click().await.unwrap();
    b.goto(&app.url("/ui/events")).await;
    assert_eq!(b.text("[data-keys-state]").await, "off");
    b.press('j').await;
    assert!(b.find_all("tr.focused").await.is_empty());
    b.close().await;
}

/// A scenario fixture (`tests/fixtures/scenarios/<name>.jsonl`), one event per line.
pub fn scenario(name: &str) -> Vec<Vec<u8>> {
    let path = format!(
        "{}/tests/fixtures/scenarios/{name}.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.as_bytes().to_vec())
        .collect()
}

/// How many rows the timeline page shows (each one a distinct log entry).
async fn events_about_or_touching(b: &Browser) -> usize {
    let ids = texts(b, "[data-timeline] tbody th a").await;
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "an entry listed twice: {ids:?}");
    ids.len()
}

/// Ids of the fixture's events about `object`, in delivery order.
fn events_about(events: &[Vec<u8>], object: &str) -> Vec<String> {
    events
        .iter()
        .map(|e| serde_json::from_slice::<Value>(e).unwrap())
        .filter(|v| v["data"]["object"]["id"] == object)
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_object_timeline_lists_the_scenarios_events_about_it_newest_first() {
    let app = app().await;
    let Some(b) = Browser::launch("object timeline").await else {
        return;
    };
    // A subscription bought through Checkout, and a one-time purchase (an order).
    let mut events = scenario("happy_path_checkout");
    events.extend(scenario("one_time_purchase"));
    crate::scenarios::log_what_checkout_created(&app, &events).await;
    for e in &events {
        assert_eq!(app.deliver(e).await.status, 200);
    }
    b.sign_in(&app.base_url, AUDIT_TOKEN).await;
    visit(&b, &app, "/ui/events", "events-scenarios").await;

    for (page, id) in [
        ("subscriptions", "sub_happy1"),
        ("customers", "cus_happy1"),
        ("orders", "cs_test_once1"),
    ] {
        visit(&b, &app, &format!("/ui/{page}/{id}"), page).await;
        let mut expected = events_about(&events, id);
        expected.reverse();
        let shown = texts(&b, "[data-timeline] tbody th a").await;
        // The customer and the session also have the snapshots checkout logged: Stripe's events
        // are all there, newest first, after them.
        let stripe_only: Vec<String> = shown
            .iter()
            .filter(|e| expected.contains(e))
            .cloned()
            .collect();
        assert_eq!(stripe_only, expected, "{page} {id}: {shown:?}");
        assert!(!expected.is_empty(), "{id} has events in the fixture");
        let state = b.text("[data-state]").await;
        assert!(
            state.contains(&format!("\"id\": \"{id}\"")),
            "{page}: {state}"
        );
    }
    // Applied entries show the fields they changed; the as-of form folds the log up to a
    // point, and the timeline ends there too.
    b.goto(&app.url("/ui/subscriptions/sub_happy1")).await;
    let applied = b
        .find_all("tr[data-effect=applied] [data-changes] li")
        .await;
    assert!(
        !applied.is_empty(),
        "an applied entry lists its changed fields"
    );
    let oldest = b.find_all("[data-timeline] tbody tr").await.len();
    assert_eq!(oldest, events_about_or_touching(&b).await);
    let last_link = b
        .find("[data-timeline] tbody tr:last-child td[data-label=State] a")
        .await;
    last_link.click().await.unwrap();
    let path = b
        .wait_for_path("/ui/subscriptions/sub_happy1?as_of_position=")
        .await;
    assert!(!b.text("[data-as-of]").await.is_empty(), "{path}");
    assert_eq!(
        b.find_all("[data-timeline] tbody tr").await.len(),
        1,
        "only the first entry"
    );
    look(&b, "subscription-as-of").await;
    // Each row links to its event.
    b.goto(&app.url("/ui/subscriptions/sub_happy1")).await;
    let first = b.find("[data-timeline] tbody th a").await;
    let id = first.text().await.unwrap();
    first.click().await.unwrap();
    assert_eq!(
        b.wait_for_path("/ui/events/").await,
        format!("/ui/events/{id}")
    );

    let invoice = events
        .iter()
        .map(|e| serde_json::from_slice::<Value>(e).unwrap())
        .find_map(|v| {
            let o = &v["data"]["object"];
            (o["object"] == "invoice").then(|| o["id"].as_str().unwrap().to_owned())
        })
        .expect("the scenario has an invoice");
    visit(&b, &app, &format!("/ui/invoices/{invoice}"), "invoices").await;
    assert!(!b.find_all("[data-timeline] tbody tr").await.is_empty());
    // The customer the service linked to a user links to that user's entitlement.
    b.goto(&app.url("/ui/customers/cus_happy1")).await;
    b.find("[data-entitlement-link]")
        .await
        .click()
        .await
        .unwrap();
    b.wait_for_path("/ui/entitlements/user_happy_1").await;
    look(&b, "entitlement").await;
    assert!(!b.text("[data-access]").await.is_empty());
    visit(&b, &app, "/ui/integrity", "integrity").await;
    b.close().await;
}

/// Makes the projection of an update to `sub` fail (its stored state does not parse), so the
/// event is logged and dead-lettered; then removes the bad row, so a retry can succeed.
pub async fn dead_letter(app: &TestApp, n: &str) -> String {
    let (cus, sub) = (format!("cus_{n}"), format!("sub_{n}"));
    for e in [
        event(
            &format!("evt_{n}_1"),
            "customer.created",
            T0,
            customer(&cus, None),
        ),
        event(
            &format!("evt_{n}_2"),
            "customer.subscription.created",
            T0 + 1,
            subscription(&sub, &cus, "active", T0 + MONTH, false),
        ),
    ] {
        assert_eq!(app.deliver(&e).await.status, 200);
    }
    set_state(app, &sub, Some("not json")).await;
    let update = format!("evt_{n}_3");
    let reply = app
        .deliver(&event(
            &update,
            "customer.subscription.updated",
            T0 + 100,
            subscription(&sub, &cus, "past_due", T0 + MONTH, false),
        ))
        .await;
    assert_eq!(reply.status, 500, "{}", reply.text);
    set_state(app, &sub, None).await;
    update
}

/// Overwrites (or, with `None`, deletes) a subscription's read-model row behind the service's
/// back: an operator's mistake, for provoking a dead letter.
async fn set_state(app: &TestApp, id: &str, state: Option<&str>) {
    let (sql, binds) = match state {
        Some(s) => (
            // The version moves as with any write (see `projections::poison`).
            "UPDATE read_models SET state = $1, version = version + 1 \
             WHERE kind = 'subscription' AND id = $2",
            vec![s, id],
        ),
        None => (
            "DELETE FROM read_models WHERE kind = 'subscription' AND id = $1",
            vec![id],
        ),
    };
    match &app.db {
        stripe_ledger::store::Db::Postgres(stripe_ledger::store::PgStore { pool, .. }) => {
            let mut query = sqlx::query(sql);
            for b in &binds {
                query = query.bind(*b);
            }
            query.execute(pool).await.unwrap();
        }
        stripe_ledger::store::Db::Sqlite(db) => {
            let mut query = sqlx::query(sql);
            for b in &binds {
                query = query.bind(*b);
            }
            query.execute(&db.write).await.unwrap();
        }
    }
}

async fn subscription_status(app: &TestApp, id: &str) -> Value {
    let reply = app
        .get(&format!("/api/subscriptions/{id}"), Some(READ_TOKEN))
        .await;
    reply.json["status"].clone()
}

#[tokio::test]
async fn a_dead_letter_retried_from_the_operations_page_is_projected_and_the_action_is_recorded() {
    let app = app().await;
    let Some(b) = Browser::launch("dead-letter retry").await else {
        return;
    };
    let one = dead_letter(&app, "uidl1").await;
    let two = dead_letter(&app, "uidl2").await;
    assert_eq!(subscription_status(&app, "sub_uidl1").await, Value::Null);

    // An auditor sees the dead letters but no buttons.
    b.sign_in(&app.base_url, AUDIT_TOKEN).await;
    b.goto(&app.url("/ui/operations")).await;
    assert_eq!(
        texts(&b, "[data-dead-letters] tbody th a").await,
        [one.as_str(), two.as_str()]
    );
    assert!(b.find_all("button[data-retry]").await.is_empty());
    assert!(b.find_all("[data-retry-all]").await.is_empty());
    b.find("form[action='/ui/logout'] button")
        .await
        .click()
        .await
        .unwrap();
    b.wait_for_path("/ui/login").await;

    b.sign_in(&app.base_url, OPERATOR_TOKEN).await;
    visit(&b, &app, "/ui/operations", "operations").await;
    b.find(&format!("button[data-retry][aria-label='Retry {one}']"))
        .await
        .click()
        .await
        .unwrap();
    b.wait_for_path("/ui/operations?action=").await;
    let flash = b.text("[data-flash]").await;
    assert!(
        flash.contains("succeeded") && flash.contains(&one),
        "{flash}"
    );
    assert_eq!(
        texts(&b, "[data-dead-letters] tbody th a").await,
        [two.as_str()]
    );
    assert_eq!(subscription_status(&app, "sub_uidl1").await, "past_due");
    // The action is on the page, by the operator's token fingerprint.
    let actions = texts(&b, "[data-actions] tbody tr").await;
    assert!(
        actions[0].contains("dead_letter_retry") && actions[0].contains("tok_"),
        "{actions:?}"
    );

    // Retry all: the dry run counts first, changes nothing, then the confirming POST.
    b.find("[data-retry-all]").await.click().await.unwrap();
    b.wait_for_path("/ui/operations/dead-letters/retry-all")
        .await;
    assert_eq!(b.text("[data-plan-count]").await, "1");
    look(&b, "operations-retry-all").await;
    assert_eq!(subscription_status(&app, "sub_uidl2").await, Value::Null);
    b.find("button[data-confirm]").await.click().await.unwrap();
    b.wait_for_path("/ui/operations?action=").await;
    let flash = b.text("[data-flash]").await;
    assert!(flash.contains("retried 1, projected 1"), "{flash}");
    assert!(b.find_all("[data-dead-letters]").await.is_empty());
    assert_eq!(subscription_status(&app, "sub_uidl2").await, "past_due");
    look(&b, "operations-after-retry").await;
    b.close().await;
}

#[tokio::test]
async fn the_accessibility_check_fails_on_a_page_with_a_serious_violation() {
    let Some(browser) = Browser::launch("axe self-test").await else {
        return;
    };
    // An image without alt text and an unlabelled input: axe rates both critical.
    browser
        .goto("data:text/html,<html lang=en><title>t</title><main><img src=x.png><input></main>")
        .await;
    let blocking = browser.blocking_violations().await;
    let rules: Vec<&str> = blocking.iter().filter_map(|v| v["id"].as_str()).collect();
    assert!(rules.contains(&"image-alt"), "{rules:?}");
    assert!(rules.contains(&"label"), "{rules:?}");
    // The same check passes a page without them.
    browser
        .goto("data:text/html,<html lang=en><head><title>t</title></head><body><main><h1>Hi</h1></main></body></html>")
        .await;
    browser.assert_accessible("clean page").await;
    browser.close().await;
}

#[test]
fn without_a_driver_the_browser_tests_skip_locally_and_fail_under_ci() {
    use crate::browser::{gate, Gate};
    let driver = std::path::PathBuf::from("/usr/bin/chromedriver");
    assert_eq!(gate(Some(driver.clone()), true, "t"), Gate::Run(driver));
    assert!(matches!(gate(None, false, "t"), Gate::Skip(m) if m.contains("skipped")));
    assert!(matches!(gate(None, true, "t"), Gate::Fail(m) if m.contains("CI=true")));
}
