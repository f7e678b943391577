//! `stripe-ledger verify-proof`: an auditor checks a bundle with the real binary, no database
//! and no configuration, and every flipped byte of the file fails it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{TimeZone as _, Utc};
use stripe_ledger::event_log::{Source, StoredEvent};
use stripe_ledger::seal::bundle::Bundle;
use stripe_ledger::seal::leaf;
use stripe_ledger::seal::merkle::{self, Frontier};
use stripe_ledger::seal::note::{Checkpoint, SigningKey};

use crate::helpers::unique_id;

const BIN: &str = env!("CARGO_BIN_EXE_stripe-ledger");
const ORIGIN: &str = "ledger.example/acct_1/live";

fn entry(position: i64) -> StoredEvent {
    StoredEvent {
        position,
        event_id: format!("evt_{position}"),
        event_type: "invoice.paid".into(),
        api_version: Some("2024-06-20".into()),
        livemode: true,
        account: None,
        object_id: Some(format!("in_{position}")),
        object_type: Some("invoice".into()),
        stripe_created: 1_700_000_000 + position,
        received_at: Utc.timestamp_opt(1_700_000_100 + position, 250_000).unwrap(),
        source: Source::Webhook,
        payload_redacted: false,
        raw_body_sha256: "0f".repeat(32),
        signature_header: Some(format!("t={},v1=ab", 1_700_000_000 + position)),
        signature_timestamp: Some(1_700_000_000 + position),
        verified_by_index: Some(1),
        verified_by_fingerprint: Some("whsec_fp_1".into()),
        payload: Some(format!(
            "{{\n  \"id\": \"evt_{position}\",\n  \"object\": \"event\",\n  \"data\": {{\"amount_paid\": 1200}}\n}}"
        )),
    }
}

/// A sealed log of `n` entries with a checkpoint, and the bundle file of entry `position`.
fn bundle_file(dir: &Path, key: &SigningKey, n: i64, position: i64) -> PathBuf {
    let mut frontier = Frontier::empty();
    let mut nodes = HashMap::new();
    for p in 1..=n {
        let leaf = merkle::leaf_hash(&leaf::encode(&entry(p)).unwrap());
        nodes.extend(frontier.push(leaf));
    }
    let note = key.sign(&Checkpoint {
        origin: ORIGIN.into(),
        size: frontier.size(),
        root: frontier.root(),
    });
    let ids = merkle::inclusion_proof_ids((position - 1) as u64, n as u64).unwrap();
    let fetched: HashMap<_, _> = ids.iter().map(|id| (*id, nodes[id])).collect();
    let proof = merkle::inclusion_proof((position - 1) as u64, n as u64, &fetched).unwrap();
    let bundle = Bundle::new(&note, &entry(position), &proof).unwrap();
    let path = dir.join("bundle.json");
    std::fs::write(&path, bundle.to_file_text()).unwrap();
    path
}

fn workdir() -> PathBuf {
    let dir = std::env::temp_dir().join(unique_id("stripe-ledger-verify-proof"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The binary with an empty environment: no DATABASE_URL, no key, nothing.
fn verify_proof(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .env_clear()
        .current_dir(dir)
        .arg("verify-proof")
        .args(args)
        .output()
        .unwrap()
}

fn key() -> SigningKey {
    SigningKey::from_seed(ORIGIN, [21u8; 32]).unwrap()
}

#[test]
fn a_bundle_verifies_with_the_binary_and_no_configuration() {
    let dir = workdir();
    let k = key();
    let file = bundle_file(&dir, &k, 21, 13);
    let vkey = k.verifier().to_string();
    let out = verify_proof(&dir, &[file.to_str().unwrap(), "--verifier-key", &vkey]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("verified\n"), "{stdout}");
    assert!(
        stdout.contains("evt_13") && stdout.contains("tree size:  21"),
        "{stdout}"
    );

    let out = verify_proof(
        &dir,
        &[
            file.to_str().unwrap(),
            "--verifier-key",
            &vkey,
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verified"], true);
    assert_eq!(report["leaf_index"], 12);
    assert_eq!(report["tree_size"], 21);
    assert_eq!(report["leaf"]["event_id"], "evt_13");
    assert_eq!(report["leaf"]["verified_by_fingerprint"], "whsec_fp_1");
}

#[test]
fn the_verifier_key_may_be_given_as_a_file() {
    let dir = workdir();
    let k = key();
    let file = bundle_file(&dir, &k, 3, 3);
    std::fs::write(dir.join("ledger.pub"), format!("{}\n", k.verifier())).unwrap();
    let out = verify_proof(
        &dir,
        &[file.to_str().unwrap(), "--verifier-key", "ledger.pub"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_bundle_checked_against_another_key_is_not_verified() {
    let dir = workdir();
    let file = bundle_file(&dir, &key(), 5, 2);
    let other = SigningKey::from_seed(ORIGIN, [22u8; 32])
        .unwrap()
        .verifier()
        .to_string();
    let out = verify_proof(
        &dir,
        &[
            file.to_str().unwrap(),
            "--verifier-key",
            &other,
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(4));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verified"], false);
    assert_eq!(report["kind"], "checkpoint");
}

#[test]
fn usage_errors_and_unreadable_files_exit_2() {
    let dir = workdir();
    let k = key();
    let file = bundle_file(&dir, &k, 2, 1);
    let vkey = k.verifier().to_string();
    let missing = verify_proof(&dir, &["nope.json", "--verifier-key", &vkey]);
    assert_eq!(missing.status.code(), Some(2));
    let bad_key = verify_proof(
        &dir,
        &[file.to_str().unwrap(), "--verifier-key", "not+a+key"],
    );
    assert_eq!(bad_key.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad_key.stderr);
    assert!(stderr.contains("--verifier-key"), "{stderr}");
    let no_key = verify_proof(&dir, &[file.to_str().unwrap()]);
    assert_eq!(no_key.status.code(), Some(2));
}

#[test]
fn flipping_any_byte_of_the_bundle_file_fails_it_in_the_binary() {
    let dir = workdir();
    let k = key();
    let file = bundle_file(&dir, &k, 9, 4);
    let original = std::fs::read(&file).unwrap();
    let vkey = k.verifier().to_string();
    // Every byte is flipped by the library test; the binary gets a spread of about 250 of
    // them, covering every field of the file.
    let step = (original.len() / 250).max(1);
    let flipped = dir.join("flipped.json");
    for i in (0..original.len()).step_by(step) {
        let mut bad = original.clone();
        bad[i] ^= 0x01;
        std::fs::write(&flipped, &bad).unwrap();
        let out = verify_proof(&dir, &[flipped.to_str().unwrap(), "--verifier-key", &vkey]);
        assert_eq!(
            out.status.code(),
            Some(4),
            "byte {i} flipped: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
