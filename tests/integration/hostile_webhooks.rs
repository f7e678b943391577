//! Signed but hostile webhook bodies (issue 10): whatever the projection could not read is
//! refused with a stable 4xx before the append, the same on both backends, and the redaction
//! policy cannot be bypassed by encoding tricks.

use serde_json::{json, Value};
use stripe_ledger::stripe::signature;

use crate::helpers::{event_json, TestApp};

const NOW: i64 = 1_763_800_000;

/// Inserts `raw` as the first member of the JSON object that starts at `marker` in `body`.
fn insert_after(body: &[u8], marker: &[u8], raw: &[u8]) -> Vec<u8> {
    let at = body
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("marker in body")
        + marker.len();
    let mut out = body[..at].to_vec();
    out.extend_from_slice(raw);
    out.push(b',');
    out.extend_from_slice(&body[at..]);
    out
}

/// A valid customer event with `raw` (`"key":value`) added to its `data.object`.
fn with_object_member(id: &str, raw: &[u8]) -> Vec<u8> {
    let base = event_json(id, "customer.created", false).to_string();
    insert_after(base.as_bytes(), br#""data":{"object":{"#, raw)
}

/// A valid customer event after `edit` changed it.
fn edited(id: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v = event_json(id, "customer.created", false);
    edit(&mut v);
    v.to_string().into_bytes()
}

async fn assert_refused(app: &TestApp, name: &str, body: &[u8], code: &str, mentions: &str) {
    let reply = app.deliver(body).await;
    assert_eq!(reply.status, 400, "{name}: {}", reply.text);
    assert_eq!(reply.code(), code, "{name}: {}", reply.text);
    let message = reply.json["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(mentions),
        "{name}: message {message:?} should mention {mentions:?}"
    );
    assert_eq!(app.event_count().await, 0, "{name}: nothing may be logged");
}

#[tokio::test]
async fn bodies_the_projection_could_not_read_are_refused_as_malformed_json_and_nothing_is_logged()
{
    let app = TestApp::builder().clock_at(NOW).spawn().await;
    let deep = {
        let mut raw = br#""deep":"#.to_vec();
        raw.extend(std::iter::repeat_n(b'[', 100_000));
        raw.extend(std::iter::repeat_n(b']', 100_000));
        raw
    };
    let long_integer = format!(r#""big":{}"#, "9".repeat(10_000));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "invalid UTF-8 in an ignored string",
            with_object_member("evt_utf8", b"\"note\":\"caf\xff\""),
            "UTF-8",
        ),
        (
            "invalid UTF-8 next to a cardholder name",
            with_object_member(
                "evt_utf8_card",
                b"\"note\":\"\xc3\x28\",\"card\":{\"name\":\"Jenny Rosen\"}",
            ),
            "UTF-8",
        ),
        (
            "a top-level array",
            br#"["evt_x","customer.created","event",null,false,null,1700000000,null]"#.to_vec(),
            "object",
        ),
        (
            "a number out of range",
            with_object_member("evt_1e400", br#""balance":1e400"#),
            "number",
        ),
        (
            "a 10,000-digit integer",
            with_object_member("evt_digits", long_integer.as_bytes()),
            "number",
        ),
        (
            "a lone surrogate",
            with_object_member("evt_surrogate", br#""note":"\ud800""#),
            "hex escape",
        ),
        (
            "100,000 levels of nesting",
            with_object_member("evt_deep", &deep),
            "recursion",
        ),
        (
            "a repeated key",
            insert_after(
                event_json("evt_dup", "customer.created", false)
                    .to_string()
                    .as_bytes(),
                b"{",
                br#""id":"evt_other""#,
            ),
            "duplicate",
        ),
    ];
    for (name, body, mentions) in cases {
        assert_refused(&app, name, &body, "malformed_json", mentions).await;
    }
}

#[tokio::test]
async fn hostile_envelope_fields_are_refused_as_invalid_events_naming_the_field_on_both_backends() {
    let app = TestApp::builder().clock_at(NOW).spawn().await;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "data.object as an array",
            edited("evt_arr", |v| {
                v["data"]["object"] = json!(["cus_1", "customer"])
            }),
            "data.object",
        ),
        (
            "NUL in api_version",
            edited("evt_nul_v", |v| v["api_version"] = json!("2025-03-31\u{0}")),
            "api_version",
        ),
        (
            "NUL in account",
            edited("evt_nul_a", |v| v["account"] = json!("acct_\u{0}1")),
            "account",
        ),
        (
            "NUL in data.object.id",
            edited("evt_nul_o", |v| {
                v["data"]["object"]["id"] = json!("cus_\u{0}")
            }),
            "data.object.id",
        ),
        (
            "a 3,000-byte data.object.id",
            edited("evt_long_o", |v| {
                v["data"]["object"]["id"] = json!(format!("cus_{}", "x".repeat(3_000)))
            }),
            "data.object.id",
        ),
        (
            "NUL deep inside the payload",
            edited("evt_nul_deep", |v| {
                v["data"]["object"]["metadata"] = json!({"note": "a\u{0}b"})
            }),
            "data.object.metadata.note",
        ),
        (
            "a zero-width space in the id",
            edited("evt_zw", |v| v["id"] = json!("evt_\u{200B}zw")),
            "`id`",
        ),
        (
            "a right-to-left override in the type",
            edited("evt_rlo", |v| v["type"] = json!("customer.\u{202E}created")),
            "`type`",
        ),
        (
            "a byte-order mark in data.object.object",
            edited("evt_bom", |v| {
                v["data"]["object"]["object"] = json!("\u{FEFF}customer")
            }),
            "data.object.object",
        ),
        (
            "livemode as a string",
            edited("evt_lm", |v| v["livemode"] = json!("no")),
            "livemode",
        ),
        (
            "created as a string",
            edited("evt_cr", |v| v["created"] = json!("1763800000")),
            "created",
        ),
        (
            "created as a fraction",
            edited("evt_cr_f", |v| v["created"] = json!(1.5)),
            "created",
        ),
        (
            "type as a number",
            edited("evt_ty", |v| v["type"] = json!(7)),
            "type",
        ),
        (
            "data missing",
            edited("evt_nodata", |v| {
                v.as_object_mut().unwrap().remove("data");
            }),
            "data",
        ),
    ];
    for (name, body, mentions) in cases {
        assert_refused(&app, name, &body, "invalid_event", mentions).await;
    }
}

#[tokio::test]
async fn an_escaped_key_cannot_smuggle_a_cardholder_name_past_the_redaction() {
    let app = TestApp::builder().clock_at(NOW).spawn().await;
    let body = with_object_member(
        "evt_escaped",
        br#""billing_\u0064etails":{"name":"Jenny Rosen"},"c\u0061rd":{"name":"J Rosen"}"#,
    );
    let reply = app.deliver(&body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let stored = app.audit("/api/audit/events/evt_escaped").await;
    assert_eq!(stored.json["payload_redacted"], true);
    let object = &stored.json["payload"]["data"]["object"];
    assert_eq!(object["billing_details"]["name"], "[redacted]");
    assert_eq!(object["card"]["name"], "[redacted]");
    assert!(!stored.text.contains("Rosen"), "{}", stored.text);
}

#[tokio::test]
async fn a_parseable_body_is_stored_byte_for_byte_and_an_unknown_type_is_acknowledged() {
    let app = TestApp::builder().clock_at(NOW).spawn().await;
    let mut nested = br#""nested":"#.to_vec();
    nested.extend(std::iter::repeat_n(b'[', 100));
    nested.extend(std::iter::repeat_n(b']', 100));
    let body = with_object_member(
        "evt_fidelity",
        &[
            &nested[..],
            br#","big":123456789012345678901234567890,"e":1E+2,"s":"caf\u00e9 \ud83d\ude00""#,
        ]
        .concat(),
    );
    let reply = app.deliver(&body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let stored = app.audit("/api/audit/events/evt_fidelity").await;
    assert_eq!(stored.json["payload_redacted"], false);
    let logged = stripe_ledger::event_log::get(&app.db, "evt_fidelity")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(logged.payload.unwrap().as_bytes(), &body[..]);

    let unknown = edited("evt_unknown", |v| v["type"] = json!("issuing_card.created"));
    let reply = app.deliver(&unknown).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["status"], "recorded");
    assert_eq!(app.event_count().await, 2);
}

#[tokio::test]
async fn a_signature_header_with_a_non_canonical_timestamp_or_upper_case_hex_does_not_verify() {
    let app = TestApp::builder().clock_at(NOW).spawn().await;
    let body = edited("evt_sig", |_| {});
    let mac = |t: &str| {
        let mut signed = format!("{t}.").into_bytes();
        signed.extend_from_slice(&body);
        signature::hmac_sha256_hex(app.secret.as_bytes(), &signed)
    };
    let canonical = NOW.to_string();
    let cases = [
        // Signed over the re-formatted timestamp: what the old parser accepted.
        (
            format!("t=000{NOW},v1={}", mac(&canonical)),
            "signature_malformed",
        ),
        (
            format!("t=+{NOW},v1={}", mac(&canonical)),
            "signature_malformed",
        ),
        // Signed over the literal text: still not a timestamp Stripe would send.
        (
            format!("t=000{NOW},v1={}", mac(&format!("000{NOW}"))),
            "signature_malformed",
        ),
        (
            format!("t=+{NOW},v1={}", mac(&format!("+{NOW}"))),
            "signature_malformed",
        ),
        (
            format!("t={NOW},v1={}", mac(&canonical).to_uppercase()),
            "signature_mismatch",
        ),
    ];
    for (header, code) in &cases {
        let reply = app.post_webhook(&body, Some(header)).await;
        assert_eq!(reply.status, 400, "{header}: {}", reply.text);
        assert_eq!(reply.code(), *code, "{header}");
    }
    assert_eq!(app.event_count().await, 0);
    let good = format!("t={NOW},v1={}", mac(&canonical));
    assert_eq!(app.post_webhook(&body, Some(&good)).await.status, 200);
}
