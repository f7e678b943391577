use std::collections::HashMap;

use super::*;
use crate::seal::leaf::tests::sample;
use crate::seal::merkle::Frontier;
use crate::seal::note::SigningKey;

fn key() -> SigningKey {
    SigningKey::from_seed("ledger.example/acct_1/test", [3u8; 32]).unwrap()
}

/// A log of `n` entries (the one at `position` shaped by `edit`), sealed and checkpointed;
/// the bundle of the entry at `position`.
fn bundle_for(n: i64, position: i64, edit: impl Fn(&mut StoredEvent)) -> (Bundle, StoredEvent) {
    let mut frontier = Frontier::empty();
    let mut nodes = HashMap::new();
    let mut target = None;
    for p in 1..=n {
        let mut e = sample();
        e.position = p;
        e.event_id = format!("evt_{p}");
        e.payload = Some(format!(
            "{{\n  \"id\": \"evt_{p}\",\n  \"object\": \"event\"\n}}"
        ));
        if p == position {
            edit(&mut e);
            target = Some(e.clone());
        }
        nodes.extend(frontier.push(merkle::leaf_hash(&leaf::encode(&e).unwrap())));
    }
    let note = key().sign(&Checkpoint {
        origin: "ledger.example/acct_1/test".into(),
        size: frontier.size(),
        root: frontier.root(),
    });
    let target = target.unwrap();
    let index = (position - 1) as u64;
    let proof = merkle::inclusion_proof(index, n as u64, &nodes).unwrap();
    (Bundle::new(&note, &target, &proof).unwrap(), target)
}

fn round_trip(bundle: &Bundle) -> Result<VerifiedBundle, BundleError> {
    verify(&parse(bundle.to_file_text().as_bytes())?, &key().verifier())
}

#[test]
fn a_bundle_verifies_offline_with_the_verifier_key() {
    let (bundle, event) = bundle_for(11, 6, |_| {});
    let verified = round_trip(&bundle).unwrap();
    assert_eq!(verified.leaf_index, 5);
    assert_eq!(verified.tree_size, 11);
    assert_eq!(verified.leaf.event_id, "evt_6");
    assert_eq!(verified.origin, "ledger.example/acct_1/test");
    // The entry is the audit API's view, payload included verbatim.
    let entry: serde_json::Value = serde_json::from_str(bundle.entry.get()).unwrap();
    let api = serde_json::to_value(EventDetail::from(&event)).unwrap();
    assert_eq!(entry, api);
    assert!(bundle
        .entry
        .get()
        .contains(event.payload.as_deref().unwrap()));
}

#[test]
fn first_last_and_only_entries_verify() {
    for (n, p) in [(1, 1), (2, 1), (2, 2), (64, 64), (65, 65), (65, 1)] {
        let (bundle, _) = bundle_for(n, p, |_| {});
        round_trip(&bundle).unwrap_or_else(|e| panic!("{p} of {n}: {e}"));
    }
}

#[test]
fn payloads_that_are_not_a_bare_json_value_keep_their_exact_bytes() {
    for payload in ["{\"id\":1}\n", " {}", "not json", "", "\"quoted\""] {
        let (bundle, _) = bundle_for(3, 2, |e| e.payload = Some(payload.into()));
        round_trip(&bundle).unwrap_or_else(|e| panic!("{payload:?}: {e}"));
    }
}

#[test]
fn unsigned_and_webhook_entries_verify() {
    let (bundle, _) = bundle_for(4, 3, |e| {
        e.source = crate::event_log::Source::ApiBackfill;
        e.signature_header = None;
        e.signature_timestamp = None;
        e.verified_by_index = None;
        e.verified_by_fingerprint = None;
        e.api_version = None;
        e.account = Some("acct_9".into());
        e.payload_redacted = true;
    });
    round_trip(&bundle).unwrap();
}

#[test]
fn flipping_any_byte_of_the_file_fails_it() {
    let (bundle, _) = bundle_for(13, 7, |_| {});
    let file = bundle.to_file_text().into_bytes();
    let v = key().verifier();
    let mut kinds = std::collections::BTreeMap::new();
    for i in 0..file.len() {
        for mask in [0x01u8, 0x20, 0x80] {
            let mut bad = file.clone();
            bad[i] ^= mask;
            match parse(&bad).and_then(|b| verify(&b, &v)) {
                Ok(_) => panic!("byte {i} ^ {mask:#04x} verifies: {:?}", bad[i] as char),
                Err(e) => *kinds.entry(e.kind()).or_insert(0) += 1,
            }
        }
    }
    // Flips are caught by the parser and by each semantic check, not by one of them only.
    for kind in [
        "malformed",
        "checkpoint",
        "entry_mismatch",
        "payload_mismatch",
        "leaf",
    ] {
        assert!(kinds.contains_key(kind), "{kind} never seen: {kinds:?}");
    }
}

#[test]
fn each_check_names_what_failed() {
    let (bundle, _) = bundle_for(5, 2, |_| {});
    let v = key().verifier();
    let other = SigningKey::from_seed("ledger.example/acct_1/test", [4u8; 32]).unwrap();
    assert!(matches!(
        verify(&bundle, &other.verifier()),
        Err(BundleError::Checkpoint(NoteError::NotSignedByKey(_)))
    ));

    let mut b = parse(bundle.to_file_text().as_bytes()).unwrap();
    b.tree_size = 6;
    assert_eq!(
        verify(&b, &v).unwrap_err(),
        BundleError::SizeMismatch {
            bundle: 6,
            checkpoint: 5
        }
    );

    let mut b = parse(bundle.to_file_text().as_bytes()).unwrap();
    b.leaf_index = 2;
    assert!(matches!(
        verify(&b, &v),
        Err(BundleError::PositionMismatch { .. })
    ));

    // A leaf for another entry (edited fingerprint) with the right proof shape.
    let (edited, _) = bundle_for(5, 2, |e| e.verified_by_fingerprint = Some("fp_x".into()));
    let mut b = parse(bundle.to_file_text().as_bytes()).unwrap();
    b.leaf = edited.leaf.clone();
    assert_eq!(
        verify(&b, &v).unwrap_err(),
        BundleError::EntryMismatch("verification.secret_fingerprint".into())
    );
    b.entry = edited.entry;
    assert!(matches!(
        verify(&b, &v),
        Err(BundleError::Proof(ProofError::RootMismatch))
    ));

    let mut b = parse(bundle.to_file_text().as_bytes()).unwrap();
    b.inclusion_proof.pop();
    assert!(matches!(verify(&b, &v), Err(BundleError::Proof(_))));
}

#[test]
fn a_reformatted_or_extended_file_is_refused() {
    let (bundle, _) = bundle_for(3, 1, |_| {});
    let text = bundle.to_file_text();
    let compact: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        parse(compact.to_string().as_bytes()).unwrap_err(),
        BundleError::NotCanonical
    );
    let extra = text.replacen('{', "{\n  \"extra\": 1,", 1);
    assert_eq!(parse(extra.as_bytes()).unwrap_err().kind(), "malformed");
    assert_eq!(parse(&[0xff, 0xfe]).unwrap_err().kind(), "malformed");
}
