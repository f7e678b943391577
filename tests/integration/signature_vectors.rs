//! Stripe's own SDK vectors (kept in `tests/fixtures/stripe-signature-vectors/`), each checked with its expected outcome: against the verifier with the
//! vector's exact clock and tolerance, and through the real endpoint where the service's
//! configuration can express the case.

use serde_json::Value;
use stripe_ledger::stripe::api_version;
use stripe_ledger::stripe::signature::{self, SignatureError, WebhookSecrets};

use crate::helpers::TestApp;

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/stripe-signature-vectors")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The vectors' expected outcomes, in our error vocabulary.
fn expected(outcome: &str) -> Result<(), SignatureError> {
    match outcome {
        "ok" => Ok(()),
        "error:no_signatures_with_expected_scheme" => Err(SignatureError::NoV1Signature),
        "error:no_matching_signature" => Err(SignatureError::Mismatch),
        "error:timestamp_outside_tolerance" => Err(SignatureError::TimestampOutOfTolerance),
        "error:unable_to_extract" | "error:invalid_header(go)" => Err(SignatureError::Malformed),
        "error:no_header" => Err(SignatureError::Missing),
        other => panic!("unknown expected outcome {other}"),
    }
}

fn tolerance(vector: &Value) -> Option<u64> {
    // The SDKs treat tolerance 0 as "do not check the age".
    vector["tolerance"].as_u64().filter(|t| *t > 0)
}

#[test]
fn every_derived_sdk_vector_verifies_with_its_expected_outcome() {
    let vectors: Vec<Value> = serde_json::from_str(&fixture("derived_vectors.json")).unwrap();
    assert_eq!(vectors.len(), 42);
    for v in &vectors {
        let name = v["name"].as_str().unwrap();
        let secrets =
            WebhookSecrets::exact(vec![v["secret"].as_str().unwrap().to_owned()]).unwrap();
        let header = v["header"].as_str().unwrap();
        let outcome = signature::verify(
            v["payload"].as_str().unwrap().as_bytes(),
            Some(header),
            &secrets,
            v["now"].as_i64().unwrap(),
            tolerance(v),
        )
        .map(|_| ());
        assert_eq!(
            outcome,
            expected(v["expect"].as_str().unwrap()),
            "vector {name}"
        );
    }
}

#[tokio::test]
async fn the_derived_vectors_get_the_same_verdict_through_the_webhook_endpoint() {
    let vectors: Vec<Value> = serde_json::from_str(&fixture("derived_vectors.json")).unwrap();
    let signature_codes = [
        "signature_missing",
        "signature_malformed",
        "signature_no_v1",
        "signature_mismatch",
        "timestamp_out_of_tolerance",
    ];
    for v in &vectors {
        let name = v["name"].as_str().unwrap();
        // The service always checks the age (tolerance 0 cannot be configured) and trims
        // whitespace around configured secrets; those vectors are covered by the test above.
        if tolerance(v).is_none() || name == "secret_with_trailing_space" {
            continue;
        }
        let app = TestApp::builder()
            .env("STRIPE_WEBHOOK_SECRET", v["secret"].as_str().unwrap())
            .env("WEBHOOK_TOLERANCE_SECS", &v["tolerance"].to_string())
            .clock_at(v["now"].as_i64().unwrap())
            .spawn()
            .await;
        let header = v["header"].as_str().unwrap();
        let reply = app
            .post_webhook(
                v["payload"].as_str().unwrap().as_bytes(),
                (!header.is_empty()).then_some(header),
            )
            .await;
        match expected(v["expect"].as_str().unwrap()) {
            // The vectors' payload has no `type`: it passes verification, then fails the
            // envelope check. What matters is that it got past the signature.
            Ok(()) => assert!(
                !signature_codes.contains(&reply.code()),
                "vector {name}: {}",
                reply.text
            ),
            Err(e) => {
                assert_eq!(reply.status, 400, "vector {name}");
                assert_eq!(reply.code(), e.code(), "vector {name}");
            }
        }
        assert_eq!(app.event_count().await, 0, "vector {name}");
    }
}

// The .NET vector is a full event whose signature covers the file's trailing newline.
fn dotnet_payload() -> String {
    fixture("dotnet_event_test_signature.json")
}

#[test]
fn the_official_dotnet_vector_verifies_only_with_its_exact_bytes() {
    let official: Value =
        serde_json::from_str(&fixture("official_vectors.json").replace("\\ud802", "\\ufffd"))
            .unwrap();
    let t = &official["stripe_dotnet_EventUtilityTest"];
    let secrets = WebhookSecrets::exact(vec![t["secret"].as_str().unwrap().to_owned()]).unwrap();
    let header = t["header"].as_str().unwrap();
    let payload = dotnet_payload();
    assert!(payload.ends_with('\n'));
    for case in t["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let expect_ok = case["expect"] == "ok";
        match name {
            "ConstructEvent"
            | "ValidateSignature_ValidSignatureDoesNotThrow"
            | "RejectOutdatedTimestamp" => {
                let outcome = signature::verify(
                    payload.as_bytes(),
                    Some(header),
                    &secrets,
                    case["now"].as_i64().unwrap(),
                    case["tolerance"].as_u64(),
                );
                assert_eq!(outcome.is_ok(), expect_ok, "{name}");
                if !expect_ok {
                    assert_eq!(
                        outcome.unwrap_err(),
                        SignatureError::TimestampOutOfTolerance
                    );
                }
            }
            "RejectIncorrectSignature" => {
                let tampered = format!("{payload}this_changes_the_json");
                let outcome = signature::verify(
                    tampered.as_bytes(),
                    Some(header),
                    &secrets,
                    1_533_204_720,
                    Some(300),
                );
                assert_eq!(outcome.unwrap_err(), SignatureError::Mismatch);
            }
            "RejectSecretWithUnicode" => {
                // A lone surrogate cannot exist in a Rust string or a UTF-8 environment
                // variable; the nearest expressible secret simply fails to verify.
                let odd = WebhookSecrets::exact(vec!["webhook_secret\u{fffd}".to_owned()]).unwrap();
                let outcome = signature::verify(
                    payload.as_bytes(),
                    Some(header),
                    &odd,
                    1_533_204_720,
                    Some(300),
                );
                assert_eq!(outcome.unwrap_err(), SignatureError::Mismatch);
            }
            "RejectMessageWithUnicode" => {
                // The WTF-8 bytes of a lone surrogate appended to the raw body.
                let mut tampered = payload.clone().into_bytes();
                tampered.extend_from_slice(&[0xED, 0xA0, 0x82]);
                let outcome =
                    signature::verify(&tampered, Some(header), &secrets, 1_533_204_720, Some(300));
                assert_eq!(outcome.unwrap_err(), SignatureError::Mismatch);
            }
            "ValidateSignatureHandlesIncorrectHeaderValues" => {
                for bad in case["headers"].as_array().unwrap() {
                    let outcome =
                        signature::verify(b"{}", bad.as_str(), &secrets, 1_533_204_720, Some(300));
                    assert!(outcome.is_err(), "header {bad} must be refused");
                }
            }
            "ValidateSignature_EmptyOrNullSecretThrows" => {
                assert!(WebhookSecrets::parse("").is_err());
                assert!(WebhookSecrets::exact(vec![]).is_err());
                assert!(WebhookSecrets::exact(vec![String::new()]).is_err());
            }
            "ValidateSignature_NoV1Signatures_ShouldThrow" => {
                let v1 = signature::sign(payload.as_bytes(), "webhook_secret", 1_533_204_620);
                let v0_only = v1.replace("v1=", "v0=");
                let outcome = signature::verify(
                    payload.as_bytes(),
                    Some(&v0_only),
                    &secrets,
                    1_533_204_620,
                    Some(300),
                );
                assert_eq!(outcome.unwrap_err(), SignatureError::NoV1Signature);
            }
            "ValidateSignature_MultipleSignatures_AtLeastOneValid_ShouldPass" => {
                let valid = signature::sign(payload.as_bytes(), "webhook_secret", 1_533_204_620);
                let header = format!("{valid},v1={}", "deadbeef".repeat(8));
                let outcome = signature::verify(
                    payload.as_bytes(),
                    Some(&header),
                    &secrets,
                    1_533_204_620,
                    Some(300),
                );
                assert!(outcome.is_ok());
            }
            "GenerateSignatureHeader_ProducesCorrectFormat" => {
                let header = signature::sign(b"{}", "test_secret", 1_700_000_000);
                let (t, v1) = header.split_once(',').unwrap();
                assert_eq!(t, "t=1700000000");
                let hex = v1.strip_prefix("v1=").unwrap();
                assert_eq!(hex.len(), 64);
                assert!(hex
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
            }
            other => panic!("unhandled .NET case {other}"),
        }
    }
    let without_newline = payload.trim_end_matches('\n');
    let outcome = signature::verify(
        without_newline.as_bytes(),
        Some(header),
        &secrets,
        1_533_204_720,
        Some(300),
    );
    assert_eq!(outcome.unwrap_err(), SignatureError::Mismatch);
}

#[test]
fn the_official_hmac_and_api_version_vectors_hold() {
    let official: Value =
        serde_json::from_str(&fixture("official_vectors.json").replace("\\ud802", "\\ufffd"))
            .unwrap();
    let crypto = &official["stripe_node_crypto_provider_vectors"];
    let key = crypto["secret"].as_str().unwrap();
    for case in crypto["cases"].as_array().unwrap() {
        // One payload carries a note after the emoji: "😀 (U+1F600, ...)"; the HMAC is the emoji's.
        let payload = case["payload"].as_str().unwrap();
        let payload = payload.split(" (U+").next().unwrap();
        assert_eq!(
            signature::hmac_sha256_hex(key.as_bytes(), payload.as_bytes()),
            case["hmac_sha256_hex"].as_str().unwrap(),
            "payload {payload:?}"
        );
    }
    for table in [
        &official["stripe_go_api_version_compat_table"]["rows"],
        &official["stripe_dotnet_EventUtilityTest"]["api_version_compat_table"],
    ] {
        for row in table.as_array().unwrap() {
            let (event, pinned, compatible) = (
                row[0].as_str().unwrap(),
                row[1].as_str().unwrap(),
                row[2].as_bool().unwrap(),
            );
            assert_eq!(
                api_version::same_release(event, pinned),
                compatible,
                "{event} vs {pinned}"
            );
        }
    }
}

#[test]
fn the_java_clock_cases_follow_our_documented_future_timestamp_rule() {
    let official: Value =
        serde_json::from_str(&fixture("official_vectors.json").replace("\\ud802", "\\ufffd"))
            .unwrap();
    let java = &official["stripe_java_clock_cases"];
    let secret = java["secret"].as_str().unwrap();
    let secrets = WebhookSecrets::exact(vec![secret.to_owned()]).unwrap();
    let payload = java["payload"].as_str().unwrap().as_bytes();
    for case in java["cases"].as_array().unwrap() {
        if let Some(header) = case["header"].as_str() {
            let outcome = signature::verify(payload, Some(header), &secrets, 0, Some(10));
            assert_eq!(outcome.unwrap_err(), SignatureError::Malformed);
            continue;
        }
        let t = case["timestamp"].as_i64().unwrap();
        let now = case["clock_millis"].as_i64().unwrap() / 1000;
        let tolerance = case["tolerance"].as_u64().unwrap();
        let header = signature::sign(payload, secret, t);
        let outcome = signature::verify(payload, Some(&header), &secrets, now, Some(tolerance));
        // Java accepts any future timestamp; we refuse one beyond the tolerance in either
        // direction (README: "Future timestamps"). Stale ones are refused by both.
        let expected_ok = now.abs_diff(t) <= tolerance;
        assert_eq!(outcome.is_ok(), expected_ok, "t={t} now={now}");
        if t > now + tolerance as i64 {
            assert_eq!(
                outcome.unwrap_err(),
                SignatureError::TimestampOutOfTolerance
            );
        }
    }
}

#[tokio::test]
async fn the_dotnet_event_is_recorded_through_the_endpoint_with_its_exact_bytes() {
    let app = TestApp::builder()
        .env("STRIPE_WEBHOOK_SECRET", "webhook_secret")
        .clock_at(1_533_204_720)
        .spawn()
        .await;
    let official: Value =
        serde_json::from_str(&fixture("official_vectors.json").replace("\\ud802", "\\ufffd"))
            .unwrap();
    let header = official["stripe_dotnet_EventUtilityTest"]["header"]
        .as_str()
        .unwrap();
    let payload = dotnet_payload();

    let trimmed = app
        .post_webhook(payload.trim_end().as_bytes(), Some(header))
        .await;
    assert_eq!(trimmed.status, 400);
    assert_eq!(trimmed.code(), "signature_mismatch");
    assert_eq!(app.event_count().await, 0);

    let reply = app.post_webhook(payload.as_bytes(), Some(header)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["status"], "recorded");
    let stored = app.audit("/api/audit/events/evt_123").await;
    assert_eq!(stored.json["account"], "acct_123");
    assert_eq!(
        stored.json["payload"]["request"]["idempotency_key"],
        "idempotency-key-123"
    );
    assert_eq!(stored.json["verification"]["signature_header"], header);
}
