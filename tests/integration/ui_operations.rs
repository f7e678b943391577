//! The console's operations, object and entitlement pages at HTTP level: who may act, that every
//! action is a CSRF-checked POST that is recorded (refusals too), the outbox re-queue, a
//! reconcile report with its drift linked to the object pages, a user's entitlement with its
//! explanation, and escaping on the object and entitlement pages. The browser
//! tests (`ui_browser`) drive the dead-letter retry itself in Chromium.

use serde_json::json;
use stripe_ledger::outbox::{self, OutboxStatus, Outcome};

use crate::fake_stripe::FakeStripe;
use crate::helpers::{TestApp, AUDIT_TOKEN, READ_TOKEN};
use crate::stripe_objects::{customer, event, subscription, MONTH, T0};
use crate::ui_http::{console_app, console_tokens, Browser, OPERATOR_TOKEN};

/// A customer with an email and an active subscription: one welcome email in the outbox.
async fn subscriber(app: &TestApp, n: &str) {
    let cus = format!("cus_{n}");
    let mut c = customer(&cus, None);
    c["email"] = json!(format!("{n}@example.com"));
    for e in [
        event(&format!("evt_{n}_1"), "customer.created", T0, c),
        event(
            &format!("evt_{n}_2"),
            "customer.subscription.created",
            T0 + 1,
            subscription(&format!("sub_{n}"), &cus, "active", T0 + MONTH, false),
        ),
    ] {
        let reply = app.deliver(&e).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
}

const ACTIONS: [(&str, &[(&str, &str)]); 4] = [
    (
        "/ui/operations/dead-letters/retry",
        &[("event_id", "evt_x")],
    ),
    (
        "/ui/operations/dead-letters/retry-all",
        &[("expected", "0")],
    ),
    ("/ui/operations/outbox/requeue", &[("id", "1")]),
    ("/ui/operations/reconcile", &[]),
];

#[tokio::test]
async fn an_audit_session_sees_no_action_buttons_and_each_attempted_action_is_refused_and_recorded()
{
    let app = console_app().spawn().await;
    let auditor = Browser::signed_in(&app, AUDIT_TOKEN).await;
    let page = auditor.get("/ui/operations").await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(!page.text.contains("<button type=\"submit\" data-retry"));
    let csrf = page.csrf();
    for (path, fields) in ACTIONS {
        let mut fields = fields.to_vec();
        fields.push(("csrf", &csrf));
        let reply = auditor.post(path, &fields).await;
        assert_eq!(
            (reply.status, reply.code()),
            (403, "insufficient_scope"),
            "{path}"
        );
    }
    // The dry run needs `operate` too.
    let plan = auditor.get("/ui/operations/dead-letters/retry-all").await;
    assert_eq!((plan.status, plan.code()), (403, "insufficient_scope"));
    // Every refusal is on the record, by the auditor's token.
    let page = auditor.get("/ui/operations").await;
    for action in [
        "dead_letter_retry",
        "dead_letters_retry_all",
        "outbox_requeue",
        "reconcile_run",
    ] {
        assert!(page.text.contains(action), "{action} not listed");
    }
    assert_eq!(page.text.matches(">refused<").count(), 4, "{}", page.text);
}

#[tokio::test]
async fn an_operator_action_without_the_csrf_token_or_from_another_site_is_refused_and_changes_nothing(
) {
    let app = console_app().spawn().await;
    subscriber(&app, "csrf1").await;
    let (rows, _) = outbox::list(&app.db, Some(OutboxStatus::Pending), None, 10)
        .await
        .unwrap();
    outbox::settle_all(
        &app.db,
        &[(
            rows[0].id,
            Outcome::Failed {
                error: "550 no such mailbox".into(),
            },
        )],
        app.now(),
    )
    .await
    .unwrap();
    let id = rows[0].id.to_string();
    let operator = Browser::signed_in(&app, OPERATOR_TOKEN).await;
    let csrf = operator.get("/ui/operations").await.csrf();

    let no_token = operator
        .post("/ui/operations/outbox/requeue", &[("id", &id)])
        .await;
    assert_eq!(
        (no_token.status, no_token.code()),
        (403, "csrf_token_invalid")
    );
    let forged = operator
        .post_with(
            "/ui/operations/outbox/requeue",
            &[("id", &id), ("csrf", &csrf)],
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(
        (forged.status, forged.code()),
        (403, "cross_origin_request")
    );
    let (failed, _) = outbox::list(&app.db, Some(OutboxStatus::Failed), None, 10)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1, "still failed");

    // With both checks passed it is re-queued, due now, and the page says so from the record.
    let done = operator
        .post(
            "/ui/operations/outbox/requeue",
            &[("id", &id), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.text);
    let location = done.header("location").to_owned();
    assert!(location.starts_with("/ui/operations?action="), "{location}");
    let (pending, _) = outbox::list(&app.db, Some(OutboxStatus::Pending), None, 10)
        .await
        .unwrap();
    assert_eq!(
        pending.iter().map(|r| r.id).collect::<Vec<_>>(),
        [rows[0].id]
    );
    assert_eq!(pending[0].attempts, 0, "a fresh attempt budget");
    let page = operator.get(&location).await;
    assert!(
        page.text.contains("data-flash>Outbox re-queue (")
            && page.text.contains("succeeded: re-queued"),
        "{}",
        page.text
    );
    // Re-queueing it again finds no failed row: recorded as failed, nothing changes.
    let again = operator
        .post(
            "/ui/operations/outbox/requeue",
            &[("id", &id), ("csrf", &csrf)],
        )
        .await;
    let page = operator.get(again.header("location")).await;
    assert!(
        page.text.contains("failed: no failed or skipped row"),
        "{}",
        page.text
    );
}

#[tokio::test]
async fn a_crafted_flash_link_shows_only_a_recorded_action_and_bad_parameters_are_refused() {
    let app = console_app().spawn().await;
    let operator = Browser::signed_in(&app, OPERATOR_TOKEN).await;
    let page = operator.get("/ui/operations?action=999999").await;
    assert_eq!(page.status, 200);
    assert!(!page.text.contains("data-flash"));
    for bad in ["action=-1", "action=abc", "run=0", "nope=1"] {
        let page = operator.get(&format!("/ui/operations?{bad}")).await;
        assert_eq!(page.status, 400, "{bad}: {}", page.text);
    }
    let page = operator.get("/ui/operations?run=424242").await;
    assert_eq!((page.status, page.code()), (404, "run_not_found"));
    // Retrying an event that is not a dead letter is refused: the button never re-projects at
    // will.
    subscriber(&app, "notdead").await;
    let csrf = operator.get("/ui/operations").await.csrf();
    let reply = operator
        .post(
            "/ui/operations/dead-letters/retry",
            &[("event_id", "evt_notdead_1"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!((reply.status, reply.code()), (404, "dead_letter_not_found"));
}

#[tokio::test]
async fn a_reconcile_report_from_the_console_is_recorded_as_a_run_with_its_drift_linked_to_the_object(
) {
    let fake = FakeStripe::start().await;
    let app = crate::billing::builder_with(&fake)
        .env("API_TOKENS", &console_tokens())
        .spawn()
        .await;
    for e in [
        event("evt_rc_1", "customer.created", T0, customer("cus_rc", None)),
        event(
            "evt_rc_2",
            "customer.subscription.created",
            T0 + 1,
            subscription("sub_rc", "cus_rc", "active", T0 + MONTH, false),
        ),
    ] {
        assert_eq!(app.deliver(&e).await.status, 200);
    }
    // Stripe says the subscription was canceled; the ledger missed it.
    fake.set_list(
        "/v1/subscriptions",
        vec![subscription(
            "sub_rc",
            "cus_rc",
            "canceled",
            T0 + MONTH,
            false,
        )],
    );
    fake.set_list("/v1/customers", vec![customer("cus_rc", None)]);
    let operator = Browser::signed_in(&app, OPERATOR_TOKEN).await;
    let page = operator.get("/ui/operations").await;
    assert!(
        page.text.contains("data-reconcile"),
        "the button is offered"
    );
    let reply = operator
        .post("/ui/operations/reconcile", &[("csrf", &page.csrf())])
        .await;
    assert_eq!(reply.status, 303, "{}", reply.text);
    let flash = operator.get(reply.header("location")).await;
    assert!(
        flash.text.contains("succeeded: report only; 1 drifting"),
        "{}",
        flash.text
    );
    let run = flash.text.split("Reconcile report (run ").nth(1).unwrap();
    let run: i64 = run[..run.find(')').unwrap()].parse().unwrap();
    let page = operator.get(&format!("/ui/operations?run={run}")).await;
    assert!(
        page.text
            .contains("<a href=\"/ui/subscriptions/sub_rc\"><code>sub_rc</code></a>"),
        "{}",
        page.text
    );
    assert!(
        page.text.contains("&#34;canceled&#34;"),
        "Stripe's side is shown"
    );
    // Report only: the ledger still says active.
    let sub = app
        .get(
            "/api/subscriptions/sub_rc",
            Some(crate::helpers::READ_TOKEN),
        )
        .await;
    assert_eq!(sub.json["status"], "active");
}

#[tokio::test]
async fn object_pages_escape_hostile_ids_and_payloads_and_unknown_objects_are_not_found() {
    let app = console_app().spawn().await;
    let id = r#"cus_"><img/src=x/onerror=alert(1)>"#;
    let mut c = customer(id, None);
    c["email"] = json!("<script>alert(2)</script>@example.com");
    let reply = app
        .deliver(&event("evt_hostile_obj", "customer.created", T0, c))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let auditor = Browser::signed_in(&app, AUDIT_TOKEN).await;
    let page = auditor
        .get(&format!(
            "/ui/customers/{}",
            stripe_ledger::ui::urlencode(id)
        ))
        .await;
    assert_eq!(page.status, 200, "{}", page.text);
    for raw in ["<img/src=x", "<script>alert(2)"] {
        assert!(!page.text.contains(raw), "unescaped {raw}");
    }
    assert!(page
        .text
        .contains("cus_&#34;&#62;&#60;img/src=x/onerror=alert(1)&#62;"));
    assert!(page
        .text
        .contains("&#60;script&#62;alert(2)&#60;/script&#62;"));
    assert!(page.text.contains("/ui/events/evt_hostile_obj"));

    for path in [
        "/ui/customers/cus_nobody",
        "/ui/invoices/in_nobody",
        "/ui/orders/cs_nobody",
        "/ui/subscriptions/sub_nobody",
    ] {
        let page = auditor.get(path).await;
        assert_eq!(
            (page.status, page.code()),
            (404, "object_not_found"),
            "{path}"
        );
    }
    let page = auditor.get("/ui/customers/cus_x?before=abc").await;
    assert_eq!(page.status, 400);
    // Signed out, an object page sends the browser to the sign-in, and comes back after.
    let anonymous = Browser::new(&app);
    let page = anonymous.get("/ui/subscriptions/sub_x").await;
    assert_eq!(page.status, 303);
    assert!(page
        .header("location")
        .starts_with("/ui/login?next=%2Fui%2Fsubscriptions%2Fsub_x"));
}

#[tokio::test]
async fn an_object_page_as_of_a_point_shows_the_folded_state_and_refuses_bad_points() {
    let app = console_app().spawn().await;
    for e in [
        event(
            "evt_asof_1",
            "customer.created",
            T0,
            customer("cus_asof", None),
        ),
        event(
            "evt_asof_2",
            "customer.subscription.created",
            T0 + 1,
            subscription("sub_asof", "cus_asof", "active", T0 + MONTH, false),
        ),
        event(
            "evt_asof_3",
            "customer.subscription.updated",
            T0 + 2,
            subscription("sub_asof", "cus_asof", "past_due", T0 + MONTH, false),
        ),
    ] {
        assert_eq!(app.deliver(&e).await.status, 200);
    }
    let auditor = Browser::signed_in(&app, AUDIT_TOKEN).await;
    let now = auditor.get("/ui/subscriptions/sub_asof").await;
    assert!(now.text.contains("&#34;past_due&#34;"), "{}", now.text);
    assert!(now.text.contains("data-effect=\"applied\""));
    // The first entry of the subscription is at position 2: active then, past_due after.
    let then = auditor
        .get("/ui/subscriptions/sub_asof?as_of_position=2&as_of=&as_of_created=")
        .await;
    assert_eq!(then.status, 200, "{}", then.text);
    assert!(then.text.contains("&#34;active&#34;") && !then.text.contains("&#34;past_due&#34;"));
    assert!(then.text.contains("data-as-of"));
    for (query, code) in [
        (
            "as_of_position=1&as_of=2026-01-01T00:00:00Z",
            "contradictory_as_of",
        ),
        ("as_of=yesterday", "invalid_as_of"),
        ("as_of_position=999", "as_of_beyond_log"),
    ] {
        let page = auditor
            .get(&format!("/ui/subscriptions/sub_asof?{query}"))
            .await;
        assert_eq!((page.status, page.code()), (400, code), "{query}");
    }
    let early = auditor
        .get("/ui/subscriptions/sub_asof?as_of_position=1")
        .await;
    assert_eq!((early.status, early.code()), (404, "not_yet_existing"));
}

/// Text as the templates escape it (askama's HTML escaper).
fn escaped(text: &str) -> String {
    text.replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

#[tokio::test]
async fn an_entitlement_page_shows_the_decision_its_explanation_and_the_inputs_it_cites_escaped() {
    let app = console_app().spawn().await;
    let events = crate::ui_browser::scenario("happy_path_checkout");
    crate::scenarios::log_what_checkout_created(&app, &events).await;
    for e in &events {
        let reply = app.deliver(e).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    // The page shows what the API explains, field by field.
    let api = app
        .get("/api/entitlements/user_happy_1/explain", Some(READ_TOKEN))
        .await
        .json;
    let auditor = Browser::signed_in(&app, AUDIT_TOKEN).await;
    let page = auditor.get("/ui/entitlements/user_happy_1").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let access = api["access"].as_str().unwrap();
    assert_eq!(access, "granted", "the scenario's user paid");
    assert!(page
        .text
        .contains(&format!("<dd data-access>{access}</dd>")));
    let explanation = api["explanation"].as_str().unwrap();
    assert!(!explanation.is_empty());
    assert!(
        page.text.contains(&format!(
            "<dd data-explanation>{}</dd>",
            escaped(explanation)
        )),
        "{explanation} in {}",
        page.text
    );
    let inputs = api["inputs"].as_array().unwrap();
    assert!(!inputs.is_empty(), "the decision cites its inputs");
    for input in inputs {
        let event_id = input["event_id"].as_str().unwrap();
        let object_id = input["object"]["id"].as_str().unwrap();
        let name = input["input"].as_str().unwrap();
        for shown in [
            format!(
                "<th scope=\"row\" data-label=\"Input\">{}</th>",
                escaped(name)
            ),
            format!("<code>{}</code>", escaped(object_id)),
            format!(
                "<a href=\"/ui/events/{}\" data-open><code>{}</code></a>",
                stripe_ledger::ui::urlencode(event_id),
                escaped(event_id)
            ),
        ] {
            assert!(page.text.contains(&shown), "{shown} in {}", page.text);
        }
    }
    assert!(page.text.contains("<code>sub_happy1</code>"), "considered");

    // A hostile user id is escaped in the page and percent-encoded in its links.
    let user = r#"user_"><img/src=x/onerror=alert(1)>"#;
    let page = auditor
        .get(&format!(
            "/ui/entitlements/{}",
            stripe_ledger::ui::urlencode(user)
        ))
        .await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(!page.text.contains("<img/src"), "unescaped");
    assert!(page.text.contains(&escaped(user)));
    assert!(page.text.contains(&format!(
        "action=\"/ui/entitlements/{}\"",
        stripe_ledger::ui::urlencode(user)
    )));
}
