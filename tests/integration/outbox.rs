//! The outbox: notifications written with the projection, delivered over real SMTP (a sink on
//! loopback), once per cause whatever Stripe does.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use stripe_ledger::outbox::{self, OutboxStatus, RetryTarget};
use stripe_ledger::projector;

use crate::helpers::{unique_id, TestApp, AUDIT_TOKEN, READ_TOKEN};
use crate::smtp_sink::SmtpSink;

const T0: i64 = 1_763_800_000;

fn envelope(event_type: &str, created: i64, object: Value) -> Vec<u8> {
    json!({
        "id": unique_id("evt"),
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": created,
        "livemode": false,
        "type": event_type,
        "data": {"object": object}
    })
    .to_string()
    .into_bytes()
}

fn customer(cus: &str, email: &str) -> Vec<u8> {
    envelope(
        "customer.created",
        T0,
        json!({"id": cus, "object": "customer", "email": email, "metadata": {"user_id": format!("user_{cus}")}}),
    )
}

fn subscription(event_type: &str, created: i64, sub: &str, cus: &str, status: &str) -> Vec<u8> {
    envelope(
        event_type,
        created,
        json!({
            "id": sub, "object": "subscription", "customer": cus, "status": status,
            "cancel_at_period_end": false, "metadata": {},
            "items": {"object": "list", "data": [{"id": format!("si_{sub}"), "quantity": 1,
                "current_period_start": T0, "current_period_end": T0 + 2_592_000,
                "price": {"id": "price_pro", "unit_amount": 1500, "currency": "eur"}}]}
        }),
    )
}

fn payment_failed(inv: &str, cus: &str, attempt: i64, hosted: Option<&str>) -> Vec<u8> {
    envelope(
        "invoice.payment_failed",
        T0 + 100 + attempt,
        json!({
            "id": inv, "object": "invoice", "customer": cus, "status": "open",
            "amount_due": 1999, "currency": "eur", "attempt_count": attempt,
            "hosted_invoice_url": hosted, "next_payment_attempt": T0 + 86_400 * 3
        }),
    )
}

/// A customer with an address and an active subscription: one welcome's worth of events.
fn subscriber(cus: &str, email: &str) -> Vec<Vec<u8>> {
    vec![
        customer(cus, email),
        subscription(
            "customer.subscription.created",
            T0,
            &unique_id("sub"),
            cus,
            "active",
        ),
    ]
}

/// `n` new customers with an address each, subscribed: `n` welcomes to send.
fn subscribers(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .flat_map(|_| {
            let cus = unique_id("cus");
            subscriber(&cus, &format!("{cus}@example.com"))
        })
        .collect()
}

async fn app_with(sink: &SmtpSink) -> TestApp {
    TestApp::builder()
        .env("SMTP_URL", &sink.url())
        .env("MAIL_FROM", "Example Billing <billing@example.com>")
        .env("BILLING_URL", "https://app.example.com/billing")
        .spawn()
        .await
}

async fn deliver_all(app: &TestApp, events: &[Vec<u8>]) {
    for body in events {
        let reply = app.deliver(body).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
}

fn recipients(sink: &SmtpSink) -> Vec<String> {
    let mut to: Vec<String> = sink
        .messages()
        .iter()
        .flat_map(|m| m.rcpt_to.clone())
        .collect();
    to.sort();
    to
}

#[tokio::test]
async fn a_lifecycle_delivered_twice_in_any_order_sends_one_welcome_and_a_rebuild_or_replay_sends_none(
) {
    let sink = SmtpSink::start().await;
    let app = app_with(&sink).await;
    let orders: [&[usize]; 3] = [&[0, 1, 2, 3], &[3, 2, 1, 0], &[2, 0, 3, 1]];
    let mut emails = Vec::new();
    let mut all_events = Vec::new();
    for order in orders {
        let cus = unique_id("cus");
        let sub = unique_id("sub");
        let email = format!("{cus}@example.com");
        let events = [
            customer(&cus, &email),
            subscription(
                "customer.subscription.created",
                T0,
                &sub,
                &cus,
                "incomplete",
            ),
            subscription(
                "customer.subscription.updated",
                T0 + 5,
                &sub,
                &cus,
                "active",
            ),
            // A renewal while active: a second "active" fact, the same cause.
            subscription(
                "customer.subscription.updated",
                T0 + 9,
                &sub,
                &cus,
                "active",
            ),
        ];
        for &i in order {
            deliver_all(&app, &[events[i].clone(), events[i].clone()]).await;
        }
        emails.push(email);
        all_events.extend(events);
    }

    let report = app.deliver_outbox(app.now()).await;
    assert_eq!(report.sent, 3, "{report:?}");
    emails.sort();
    assert_eq!(recipients(&sink), emails);
    for message in sink.messages() {
        assert_eq!(
            message.header("Subject").as_deref(),
            Some("Welcome: your subscription is active")
        );
        assert_eq!(message.mail_from, "billing@example.com");
    }

    // Replaying every logged event (the dead-letter retrier's path) and rebuilding the read
    // models write no new notification, and so send nothing.
    for body in &all_events {
        let id = serde_json::from_slice::<Value>(body).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            projector::retry_dead_letter(&app.db, &id).await.unwrap(),
            (1, 0)
        );
    }
    crate::helpers::rebuild(&app.db, 500).await;
    let again = app.deliver_outbox(app.now() + 86_400).await;
    assert_eq!(again.total(), 0, "{again:?}");
    assert_eq!(sink.count(), 3);
    let (items, _) = outbox::list(&app.db, None, None, 100).await.unwrap();
    assert_eq!(items.len(), 3);
    assert!(items
        .iter()
        .all(|i| i.status == OutboxStatus::Sent && i.kind == "welcome"));
}

#[tokio::test]
async fn a_welcome_waits_for_the_customers_address_and_is_sent_once_it_arrives() {
    let sink = SmtpSink::start().await;
    let app = app_with(&sink).await;
    let cus = unique_id("cus");
    let sub = unique_id("sub");
    deliver_all(
        &app,
        &[subscription(
            "customer.subscription.created",
            T0,
            &sub,
            &cus,
            "trialing",
        )],
    )
    .await;
    let now = app.now();
    let first = app.deliver_outbox(now).await;
    assert_eq!(first.retrying, 1, "{first:?}");
    assert_eq!(sink.count(), 0);
    let (pending, _) = outbox::list(&app.db, Some(OutboxStatus::Pending), None, 10)
        .await
        .unwrap();
    assert!(pending[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("not known yet"));

    deliver_all(&app, &[customer(&cus, "late@example.com")]).await;
    // Not due before its backoff...
    assert_eq!(app.deliver_outbox(now + 1).await.total(), 0);
    // ...and sent once it is.
    let later = app.deliver_outbox(now + outbox::backoff_secs(1)).await;
    assert_eq!(later.sent, 1, "{later:?}");
    assert_eq!(recipients(&sink), vec!["late@example.com".to_owned()]);
}

#[tokio::test]
async fn a_failed_payment_emails_the_hosted_invoice_link_once_per_attempt() {
    let sink = SmtpSink::start().await;
    let app = app_with(&sink).await;
    let cus = unique_id("cus");
    let inv = unique_id("in");
    let link = format!("https://invoice.stripe.com/i/acct_1/{inv}");
    let first = payment_failed(&inv, &cus, 1, Some(&link));
    deliver_all(
        &app,
        &[
            customer(&cus, "payer@example.com"),
            first.clone(),
            first,
            payment_failed(&inv, &cus, 2, None),
        ],
    )
    .await;
    let report = app.deliver_outbox(app.now()).await;
    assert_eq!(report.sent, 2, "{report:?}");
    let messages = sink.messages();
    assert_eq!(messages.len(), 2);
    let bodies: Vec<&str> = messages.iter().map(|m| m.data.as_str()).collect();
    assert!(bodies.iter().all(|b| b.contains("19.99 EUR")), "{bodies:?}");
    // The first attempt links Stripe's hosted invoice; the second had none, so the app's page.
    assert!(bodies.iter().any(|b| b.contains(&link)), "{bodies:?}");
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("https://app.example.com/billing")),
        "{bodies:?}"
    );
    let ids: BTreeSet<String> = messages
        .iter()
        .map(|m| m.header("Message-ID").unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "one Message-ID per cause");
}

#[tokio::test]
async fn access_ended_is_sent_when_a_subscription_ends_but_not_while_another_one_continues() {
    let sink = SmtpSink::start().await;
    let app = app_with(&sink).await;
    let alone = unique_id("cus");
    let both = unique_id("cus");
    let (sub_a, sub_b, sub_c) = (unique_id("sub"), unique_id("sub"), unique_id("sub"));
    deliver_all(
        &app,
        &[
            customer(&alone, "alone@example.com"),
            customer(&both, "both@example.com"),
            subscription(
                "customer.subscription.created",
                T0,
                &sub_a,
                &alone,
                "active",
            ),
            subscription(
                "customer.subscription.deleted",
                T0 + 50,
                &sub_a,
                &alone,
                "canceled",
            ),
            subscription("customer.subscription.created", T0, &sub_b, &both, "active"),
            subscription("customer.subscription.created", T0, &sub_c, &both, "active"),
            subscription(
                "customer.subscription.deleted",
                T0 + 50,
                &sub_b,
                &both,
                "canceled",
            ),
        ],
    )
    .await;
    let report = app.deliver_outbox(app.now()).await;
    // Two welcomes, one "ended" for the customer left without access, one skipped.
    assert_eq!((report.sent, report.skipped), (3, 1), "{report:?}");
    let ended: Vec<String> = sink
        .messages()
        .iter()
        .filter(|m| m.header("Subject").as_deref() == Some("Your subscription has ended"))
        .flat_map(|m| m.rcpt_to.clone())
        .collect();
    assert_eq!(ended, vec!["alone@example.com".to_owned()]);
    let (skipped, _) = outbox::list(&app.db, Some(OutboxStatus::Skipped), None, 10)
        .await
        .unwrap();
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].last_error.as_deref().unwrap().contains(&sub_c));
}

#[tokio::test]
async fn smtp_refusals_are_retried_with_backoff_or_failed_for_good_until_an_operator_retries() {
    let sink = SmtpSink::start().await;
    let app = app_with(&sink).await;
    let (temp, perm) = (unique_id("cus"), unique_id("cus"));
    deliver_all(&app, &subscriber(&temp, "temp@example.com")).await;
    let now = app.now();
    sink.refuse_next(451);
    let first = app.deliver_outbox(now).await;
    assert_eq!(first.retrying, 1, "{first:?}");
    let (pending, _) = outbox::list(&app.db, Some(OutboxStatus::Pending), None, 10)
        .await
        .unwrap();
    assert_eq!(pending[0].attempts, 1);
    assert_eq!(
        pending[0].next_attempt_at.unwrap().timestamp(),
        now + outbox::backoff_secs(1)
    );
    let second = app.deliver_outbox(now + outbox::backoff_secs(1)).await;
    assert_eq!(second.sent, 1, "{second:?}");

    deliver_all(&app, &subscriber(&perm, "perm@example.com")).await;
    sink.refuse_next(550);
    let refused = app.deliver_outbox(now + 1000).await;
    assert_eq!(refused.failed, 1, "{refused:?}");
    // Failed rows are visible to operators, behind the audit scope.
    assert_eq!(app.get("/api/outbox", None).await.status, 401);
    assert_eq!(app.get("/api/outbox", Some(READ_TOKEN)).await.status, 403);
    let failed = app
        .get("/api/outbox?status=failed", Some(AUDIT_TOKEN))
        .await;
    assert_eq!(failed.status, 200, "{}", failed.text);
    let data = failed.json["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["kind"], "welcome");
    assert!(data[0]["last_error"].as_str().unwrap().contains("550"));
    let bad = app.get("/api/outbox?status=lost", Some(AUDIT_TOKEN)).await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_parameter"));

    // Nothing is due until an operator re-queues it; then it goes out once.
    assert_eq!(app.deliver_outbox(now + 100_000).await.total(), 0);
    assert_eq!(
        outbox::retry(&app.db, RetryTarget::AllFailed, now + 100_000)
            .await
            .unwrap(),
        1
    );
    let retried = app.deliver_outbox(now + 100_000).await;
    assert_eq!(retried.sent, 1, "{retried:?}");
    assert_eq!(
        recipients(&sink),
        vec!["perm@example.com".to_owned(), "temp@example.com".to_owned()]
    );
    // A sent row is never re-queued.
    assert_eq!(
        outbox::retry(&app.db, RetryTarget::AllFailed, now + 100_001)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn an_smtp_refusal_quoting_nul_and_controls_is_recorded_without_the_nul_and_cut_beside_its_batch(
) {
    let sink = SmtpSink::start().await;
    let app = app_with(&sink).await;
    let events = subscribers(3);
    deliver_all(&app, &events).await;
    // The first of three is refused with a hostile text; the other two are sent in the same
    // claimed batch, so their outcomes are written together with the refusal's.
    let hostile = format!("no\u{0}such\u{1b}[2Jmailbox\u{202e} {}", "x".repeat(900));
    sink.refuse_next_saying(550, &hostile);
    let report = app.deliver_outbox(app.now()).await;
    assert_eq!((report.failed, report.sent), (1, 2), "{report:?}");
    let (failed, _) = outbox::list(&app.db, Some(OutboxStatus::Failed), None, 10)
        .await
        .unwrap();
    let error = failed[0].last_error.clone().unwrap();
    assert!(error.contains("550") && error.contains("such"), "{error}");
    assert!(!error.contains('\u{0}'), "NUL stored");
    assert!(error.contains('\u{fffd}'), "{error}");
    assert_eq!(error.chars().count(), outbox::MAX_ERROR_CHARS);
    assert!(error.ends_with('…'));
    let (sent, _) = outbox::list(&app.db, Some(OutboxStatus::Sent), None, 10)
        .await
        .unwrap();
    assert_eq!(sent.len(), 2, "the batch's other outcomes are recorded");
    // The API returns it as stored, inside JSON.
    let listed = app
        .get("/api/outbox?status=failed", Some(AUDIT_TOKEN))
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.json["data"][0]["last_error"], error.as_str());
}

#[tokio::test]
async fn two_instances_delivering_at_once_send_each_notification_once() {
    let sink = SmtpSink::start().await;
    let first = app_with(&sink).await;
    let second = TestApp::builder()
        .database(first.database.clone())
        .env("SMTP_URL", &sink.url())
        .env("MAIL_FROM", "Example Billing <billing@example.com>")
        .spawn()
        .await;
    let events = subscribers(30);
    deliver_all(&first, &events).await;
    let now = first.now();
    let (a, b) = tokio::join!(first.deliver_outbox(now), second.deliver_outbox(now));
    assert_eq!(a.sent + b.sent, 30, "{a:?} {b:?}");
    let to = recipients(&sink);
    let unique: BTreeSet<&String> = to.iter().collect();
    assert_eq!((to.len(), unique.len()), (30, 30));
}

#[tokio::test]
async fn a_batch_of_outcomes_is_one_statement_whatever_its_size() {
    use stripe_ledger::store::outbox::OutboxStore as _;
    let database = crate::helpers::TestDatabase::create().await;
    let (db, meter) = crate::hot_path::metered(&database).await;
    let mut entries = Vec::new();
    for _ in 0..5 {
        let cus = unique_id("cus");
        for body in subscriber(&cus, &format!("{cus}@example.com")) {
            entries.push(crate::hot_path::webhook_entry(&body));
        }
    }
    for result in stripe_ledger::ingest::write_batch(&db, entries).await {
        result.unwrap();
    }
    let now = chrono::Utc::now().timestamp() + 1;
    let claimed = db.outbox_claim(now, now + 600, 20).await.unwrap();
    assert_eq!(claimed.len(), 5);
    let outcome = |i: usize| match i % 3 {
        0 => outbox::Outcome::Sent,
        1 => outbox::Outcome::Retry {
            at: now + 30,
            error: "451 try later".into(),
        },
        _ => outbox::Outcome::Skipped {
            reason: "the customer was deleted".into(),
        },
    };
    let outcomes: Vec<(i64, outbox::Outcome)> = claimed
        .iter()
        .enumerate()
        .map(|(i, item)| (item.id, outcome(i)))
        .collect();
    // Two sizes: on PostgreSQL each is one round trip; on SQLite the second size prepares
    // nothing new (the statement's text does not depend on the batch's size).
    // The pool checks a connection when it comes back, after the reply: wait for that round
    // trip too, so the three rows are charged the statement and the check, nothing else.
    let settle_gap = std::time::Duration::from_millis(100);
    outbox::settle_all(&db, &outcomes[..2], now).await.unwrap();
    tokio::time::sleep(settle_gap).await;
    let before = meter.now().await;
    outbox::settle_all(&db, &outcomes[2..], now).await.unwrap();
    tokio::time::sleep(settle_gap).await;
    let spent = meter.now().await - before;
    match meter {
        crate::hot_path::Meter::Wire(_) => assert_eq!(spent, 2, "round trips"),
        crate::hot_path::Meter::Writer(_) => assert_eq!(spent, 0, "statements prepared"),
    }
    let (all, _) = outbox::list(&db, None, None, 10).await.unwrap();
    let statuses: Vec<OutboxStatus> = all.iter().map(|i| i.status).collect();
    use OutboxStatus::{Pending, Sent, Skipped};
    assert_eq!(statuses, [Sent, Pending, Skipped, Sent, Pending]);
    assert_eq!(all[1].last_error.as_deref(), Some("451 try later"));
    assert_eq!(all[1].next_attempt_at.unwrap().timestamp(), now + 30);
    assert_eq!(all[0].sent_at.unwrap().timestamp(), now);
    assert!(all[0].last_error.is_none() && all[3].sent_at.is_some());
    // A row no longer pending is left as it is.
    outbox::settle_all(&db, &[(all[0].id, outcome(1))], now)
        .await
        .unwrap();
    let (again, _) = outbox::list(&db, None, None, 1).await.unwrap();
    assert_eq!(again[0].status, Sent);
}

#[tokio::test]
async fn a_claimed_batch_reads_its_recipients_in_one_statement_whatever_its_size() {
    let sink = SmtpSink::start().await;
    let app = app_with(&sink).await;
    let (db, meter) = crate::hot_path::metered(&app.database).await;
    // The first run also prepares its statements on the connection; the next two compare.
    let mut spent = Vec::new();
    for size in [2, 2, 6] {
        let mut events = subscribers(size);
        // A notification for a customer whose own event has not arrived: it waits.
        events.push(subscription(
            "customer.subscription.created",
            T0,
            &unique_id("sub"),
            &unique_id("cus"),
            "active",
        ));
        deliver_all(&app, &events).await;
        // As in the settle test: the pool's check of a returned connection comes after the
        // reply, so wait for it before reading the meter.
        let gap = Duration::from_millis(100);
        tokio::time::sleep(gap).await;
        let before = meter.now().await;
        let report = outbox::deliver_due(
            &db,
            &app.state.mailer,
            app.state.billing_url.as_deref(),
            None,
            app.now(),
        )
        .await
        .unwrap();
        tokio::time::sleep(gap).await;
        spent.push(meter.now().await - before);
        assert_eq!((report.sent, report.retrying), (size, 1), "{report:?}");
    }
    assert_eq!(sink.messages().len(), 10);
    match meter {
        // Claim, recipients, settle, and the empty claim that ends the run: the same round
        // trips for 3 rows as for 7 (one look-up per row made it 4 more).
        crate::hot_path::Meter::Wire(_) => assert_eq!(spent[1], spent[2], "round trips"),
        // SQLite reads on its read pool, which the meter does not see; the outcomes above are
        // what this backend checks.
        crate::hot_path::Meter::Writer(_) => {}
    }
}

#[tokio::test]
async fn outcomes_wait_for_the_end_of_their_batch_at_most_about_a_second_behind_a_slow_server() {
    let sink = SmtpSink::start().await;
    let app = app_with(&sink).await;
    let events = subscribers(8);
    deliver_all(&app, &events).await;
    // Eight welcomes, one claimed batch, 2.4 s of sending: the first ones must be recorded
    // long before the batch ends, or a crash would send them all again.
    sink.answer_after(Duration::from_millis(300));
    let recorded_meanwhile = async {
        sink.wait_for(7, Duration::from_secs(30)).await;
        let (sent, _) = outbox::list(&app.db, Some(OutboxStatus::Sent), None, 100)
            .await
            .unwrap();
        sent.len()
    };
    let (report, recorded) = tokio::join!(app.deliver_outbox(app.now()), recorded_meanwhile);
    // Settled after the fourth at the latest (1.2 s); the eighth cannot be in yet, but a slow
    // machine may look late, so only the lower bound is held.
    assert!(
        recorded >= 3,
        "{recorded} of 8 recorded as sent when the seventh arrived"
    );
    assert_eq!(report.sent, 8, "{report:?}");
    let (sent, _) = outbox::list(&app.db, Some(OutboxStatus::Sent), None, 100)
        .await
        .unwrap();
    assert_eq!(sent.len(), 8);
}

#[tokio::test]
async fn without_smtp_the_email_goes_to_the_log_with_the_address_masked() {
    let app = TestApp::spawn().await;
    let cus = unique_id("cus");
    deliver_all(&app, &subscriber(&cus, "logged.person@example.com")).await;
    let report = app.deliver_outbox(app.now()).await;
    assert_eq!(report.sent, 1, "{report:?}");
    let logs = crate::helpers::captured_logs();
    let line = logs
        .lines()
        .find(|l| l.contains("SMTP_URL is not set") && l.contains("l***@example.com"))
        .expect("the email is logged");
    assert!(!line.contains("logged.person"), "{line}");
}

#[tokio::test]
async fn the_cli_lists_and_requeues_outbox_items_and_refuses_the_filters_the_api_refuses() {
    let sink = SmtpSink::start().await;
    let app = app_with(&sink).await;
    let cus = unique_id("cus");
    deliver_all(&app, &subscriber(&cus, "cli@example.com")).await;
    sink.refuse_next(550);
    app.deliver_outbox(app.now()).await;
    let mail = stripe_ledger::config::mail_config(
        &stripe_ledger::config::MapEnv(
            [
                ("SMTP_URL".to_owned(), sink.url()),
                ("MAIL_FROM".to_owned(), "billing@example.com".to_owned()),
            ]
            .into(),
        ),
        None,
    )
    .unwrap();
    let run = |command| {
        let db = app.db.clone();
        let mail = mail.clone();
        async move {
            let mut out = Vec::new();
            let code = stripe_ledger::cli::outbox(&db, &mail, command, &mut out)
                .await
                .unwrap();
            (code, String::from_utf8(out).unwrap())
        }
    };
    let (_, listed) = run(stripe_ledger::cli::OutboxCommand::List {
        status: Some("failed".into()),
        limit: 10,
        format: stripe_ledger::cli::OutputFormat::Text,
    })
    .await;
    assert!(
        listed.contains("failed") && listed.contains(&cus),
        "{listed}"
    );
    // The API's validation of the same filters: refused with exit code 2, nothing listed.
    for (status, limit) in [(Some("lost"), 10), (Some(""), 10), (None, 0), (None, 1000)] {
        let (code, listed) = run(stripe_ledger::cli::OutboxCommand::List {
            status: status.map(str::to_owned),
            limit,
            format: stripe_ledger::cli::OutputFormat::Json,
        })
        .await;
        assert_eq!(code, std::process::ExitCode::from(2), "{status:?} {limit}");
        assert!(listed.is_empty(), "{listed}");
    }
    let id = outbox::list(&app.db, Some(OutboxStatus::Failed), None, 1)
        .await
        .unwrap()
        .0[0]
        .id;
    let (code, out) = run(stripe_ledger::cli::OutboxCommand::Retry {
        all: false,
        id: Some(id),
    })
    .await;
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    assert_eq!(out.trim(), "re-queued 1");
    let (code, out) = run(stripe_ledger::cli::OutboxCommand::Deliver).await;
    assert_eq!(code, std::process::ExitCode::SUCCESS, "{out}");
    assert_eq!(out.trim(), "sent 1, retrying 0, failed 0, skipped 0");
    assert_eq!(recipients(&sink), vec!["cli@example.com".to_owned()]);
}

#[tokio::test]
async fn a_payment_failure_already_recovered_when_the_worker_runs_is_not_sent() {
    let sink = SmtpSink::start().await;
    let app = app_with(&sink).await;
    let cus = unique_id("cus");
    let inv = unique_id("in");
    let paid = envelope(
        "invoice.paid",
        T0 + 500,
        json!({"id": inv, "object": "invoice", "customer": cus, "status": "paid",
               "amount_due": 1999, "amount_paid": 1999, "currency": "eur", "attempt_count": 2}),
    );
    deliver_all(
        &app,
        &[
            customer(&cus, "recovered@example.com"),
            payment_failed(&inv, &cus, 1, None),
            paid,
        ],
    )
    .await;
    let report = app.deliver_outbox(app.now()).await;
    assert_eq!((report.sent, report.skipped), (0, 1), "{report:?}");
    assert_eq!(sink.count(), 0);
    let (skipped, _) = outbox::list(&app.db, Some(OutboxStatus::Skipped), None, 10)
        .await
        .unwrap();
    assert_eq!(
        skipped[0].last_error.as_deref(),
        Some("the invoice is paid by now")
    );
}

#[tokio::test]
async fn a_customer_without_an_email_address_is_skipped_not_retried() {
    let sink = SmtpSink::start().await;
    let app = app_with(&sink).await;
    let cus = unique_id("cus");
    let no_email = envelope(
        "customer.created",
        T0,
        json!({"id": cus, "object": "customer", "email": null, "metadata": {}}),
    );
    deliver_all(
        &app,
        &[
            no_email,
            subscription(
                "customer.subscription.created",
                T0,
                &unique_id("sub"),
                &cus,
                "active",
            ),
        ],
    )
    .await;
    let report = app.deliver_outbox(app.now()).await;
    assert_eq!(report.skipped, 1, "{report:?}");
    let (skipped, _) = outbox::list(&app.db, Some(OutboxStatus::Skipped), None, 10)
        .await
        .unwrap();
    assert_eq!(
        skipped[0].last_error.as_deref(),
        Some("the customer has no email address")
    );
    assert_eq!(sink.count(), 0);
}

#[tokio::test]
async fn a_customer_state_that_cannot_be_read_holds_back_only_its_own_notification() {
    let sink = SmtpSink::start().await;
    let app = app_with(&sink).await;
    let customers: Vec<String> = (0..3).map(|_| unique_id("cus")).collect();
    for cus in &customers {
        deliver_all(&app, &subscriber(cus, &format!("{cus}@example.com"))).await;
    }
    // An operator's hand edit leaves the middle customer's state unreadable.
    crate::projections::poison(&app, "customer", &customers[1]).await;
    let mut now = app.now();
    let report = app.deliver_outbox(now).await;
    assert_eq!(
        (report.sent, report.retrying, report.failed),
        (2, 1, 0),
        "{report:?}"
    );
    let (pending, _) = outbox::list(&app.db, Some(OutboxStatus::Pending), None, 10)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].customer_id, customers[1]);
    let error = pending[0].last_error.as_deref().unwrap();
    assert!(error.contains("unreadable customer state"), "{error}");

    // Retried with backoff like a refusal, and failed in the end; a notification queued
    // meanwhile is claimed with it and sent all the same.
    deliver_all(&app, &subscribers(1)).await;
    for _ in 0..stripe_ledger::outbox::MAX_ATTEMPTS {
        now += 3_600;
        app.deliver_outbox(now).await;
    }
    let (failed, _) = outbox::list(&app.db, Some(OutboxStatus::Failed), None, 10)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].customer_id, customers[1]);
    assert_eq!(sink.messages().len(), 3);
}

/// A backlog is drained oldest-due first, each row once (ADR 33). The rows' due times are a
/// permutation of their ids' order, in pairs (ties go by id), so a claim by id, as before,
/// fails here. That the claim reads only the rows it takes, in `outbox_due_order`'s order, is
/// a property of SQLite's plan, checked next to the statements (`store::sqlite::outbox`).
#[tokio::test]
async fn a_backlog_is_claimed_once_per_row_in_the_order_its_rows_fell_due() {
    use stripe_ledger::store::outbox::OutboxStore as _;
    const ROWS: i64 = 600;
    let app = TestApp::spawn().await;
    // Due far in the future of the server's own outbox worker, so that it never takes them.
    let base = chrono::Utc::now().timestamp() + 10_000_000;
    let insert = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS}) \
         INSERT INTO outbox (dedupe_key, kind, customer_id, event_id, details, status, \
         attempts, next_attempt_at, created_at) \
         SELECT 'backlog_' || i, 'welcome', 'cus_backlog', 'evt_backlog_' || i, '{{}}', \
         'pending', 0, {base} + (i * 7) % {half}, {base} FROM n",
        half = ROWS / 2
    );
    crate::event_log::execute(&app.db, &insert).await.unwrap();
    let now = base + ROWS;
    // Neither a row due later nor one another worker holds is taken.
    let later = format!(
        "INSERT INTO outbox (dedupe_key, kind, customer_id, event_id, details, status, \
         attempts, next_attempt_at, created_at) VALUES ('backlog_later', 'welcome', 'cus_backlog', \
         'evt_backlog_later', '{{}}', 'pending', 0, {}, {base}), ('backlog_held', 'welcome', \
         'cus_backlog', 'evt_backlog_held', '{{}}', 'pending', 0, {base}, {base})",
        now + 1
    );
    crate::event_log::execute(&app.db, &later).await.unwrap();
    crate::event_log::execute(
        &app.db,
        &format!(
            "UPDATE outbox SET claimed_until = {} WHERE dedupe_key = 'backlog_held'",
            now + 60
        ),
    )
    .await
    .unwrap();
    let (all, _) = outbox::list(&app.db, None, None, 1000).await.unwrap();
    let mut expected: Vec<(i64, i64)> = all
        .iter()
        .filter(|i| i.dedupe_key.starts_with("backlog_") && i.next_attempt_at.is_some())
        .filter(|i| !matches!(i.dedupe_key.as_str(), "backlog_later" | "backlog_held"))
        .map(|i| (i.next_attempt_at.unwrap().timestamp(), i.id))
        .collect();
    assert_eq!(expected.len(), ROWS as usize);
    expected.sort();
    let mut claimed = Vec::new();
    loop {
        let batch = app.db.outbox_claim(now, now + 60, 20).await.unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.windows(2).all(|w| w[0].id < w[1].id), "a batch by id");
        let mut batch: Vec<(i64, i64)> = batch
            .iter()
            .map(|i| (i.next_attempt_at.unwrap().timestamp(), i.id))
            .collect();
        batch.sort();
        claimed.extend(batch);
    }
    assert_eq!(claimed, expected, "each row once, in the order it fell due");
}
