//! The console's event page says what the projector did with the entry: every object it
//! touched (from `object_touches`), linked to the object's page, with the effect the history
//! fold gives it there: `applied`, or `superseded` for a late snapshot older than one already
//! applied. Both backends, over HTTP.

use crate::helpers::{TestApp, AUDIT_TOKEN};
use crate::stripe_objects::{customer, event, subscription, MONTH, T0};
use crate::ui_http::{console_app, Browser};

/// A customer and its subscription: created, then past due, then a late `updated` carrying
/// the older `active` snapshot (Stripe created it before the past-due one; it arrived last).
async fn with_a_late_snapshot() -> TestApp {
    let app = console_app().spawn().await;
    let period_end = T0 + MONTH;
    let sub = |status| subscription("sub_ev1", "cus_ev1", status, period_end, false);
    for body in [
        event(
            "evt_ev1",
            "customer.created",
            T0,
            customer("cus_ev1", Some("u_ev1")),
        ),
        event(
            "evt_ev2",
            "customer.subscription.created",
            T0 + 10,
            sub("active"),
        ),
        event(
            "evt_ev3",
            "customer.subscription.updated",
            T0 + 100,
            sub("past_due"),
        ),
        event(
            "evt_ev4",
            "customer.subscription.updated",
            T0 + 50,
            sub("active"),
        ),
    ] {
        let reply = app.deliver(&body).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    app
}

/// The page's row for `object_id`: its link and its effect.
fn touched_row<'p>(page: &'p str, object_id: &str) -> &'p str {
    let table = page
        .find("<table class=\"rows\" data-touched>")
        .unwrap_or_else(|| panic!("no table of touched objects: {page}"));
    let page = &page[table..];
    let at = page
        .find(&format!("<code>{object_id}</code>"))
        .unwrap_or_else(|| panic!("{object_id} is not listed: {page}"));
    let start = page[..at].rfind("<tr>").unwrap();
    let end = at + page[at..].find("</tr>").unwrap();
    &page[start..end]
}

#[tokio::test]
async fn an_event_page_lists_the_objects_the_entry_touched_with_each_effect_and_link() {
    let app = with_a_late_snapshot().await;
    let browser = Browser::signed_in(&app, AUDIT_TOKEN).await;

    let created = browser.get("/ui/events/evt_ev1").await;
    assert_eq!(created.status, 200);
    let row = touched_row(&created.text, "cus_ev1");
    assert!(row.contains("href=\"/ui/customers/cus_ev1\""), "{row}");
    assert!(row.contains("data-effect=\"applied\""), "{row}");

    let newer = browser.get("/ui/events/evt_ev3").await;
    let row = touched_row(&newer.text, "sub_ev1");
    assert!(row.contains("href=\"/ui/subscriptions/sub_ev1\""), "{row}");
    assert!(row.contains("data-effect=\"applied\""), "{row}");
}

#[tokio::test]
async fn a_late_older_snapshot_is_shown_as_superseded_on_its_event_page_as_in_the_timeline() {
    let app = with_a_late_snapshot().await;
    let browser = Browser::signed_in(&app, AUDIT_TOKEN).await;
    let late = browser.get("/ui/events/evt_ev4").await;
    assert_eq!(late.status, 200);
    let row = touched_row(&late.text, "sub_ev1");
    assert!(row.contains("href=\"/ui/subscriptions/sub_ev1\""), "{row}");
    assert!(row.contains("data-effect=\"superseded\""), "{row}");
    assert!(
        !late.text.contains("data-effect=\"applied\""),
        "{}",
        late.text
    );

    // The same fold decides the object's timeline: it says the same of the same entry.
    let history = app
        .get(
            "/api/subscriptions/sub_ev1/history",
            Some(crate::helpers::READ_TOKEN),
        )
        .await;
    assert_eq!(history.status, 200, "{}", history.text);
    let items: serde_json::Value = serde_json::from_str(&history.text).unwrap();
    let effect = items["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["event_id"] == "evt_ev4")
        .map(|i| i["effect"].clone());
    assert_eq!(effect, Some(serde_json::json!("superseded")));
}
