use chrono::TimeZone as _;

use super::*;

pub(crate) fn sample() -> StoredEvent {
    StoredEvent {
        position: 42,
        event_id: "evt_1".into(),
        event_type: "invoice.paid".into(),
        api_version: Some("2024-06-20".into()),
        livemode: false,
        account: None,
        object_id: Some("in_1".into()),
        object_type: Some("invoice".into()),
        stripe_created: 1_700_000_000,
        received_at: Utc.timestamp_opt(1_700_000_001, 123_456_000).unwrap(),
        source: Source::Webhook,
        payload_redacted: false,
        raw_body_sha256: "ab".repeat(32),
        signature_header: Some("t=1700000000,v1=00".into()),
        signature_timestamp: Some(1_700_000_000),
        verified_by_index: Some(1),
        verified_by_fingerprint: Some("fp_1".into()),
        payload: Some(r#"{"id":"evt_1"}"#.into()),
    }
}

#[test]
fn an_entry_round_trips_through_its_leaf() {
    let e = sample();
    let fields = decode(&encode(&e).unwrap()).unwrap();
    assert_eq!(fields.position, 42);
    assert_eq!(fields.event_id, "evt_1");
    assert_eq!(fields.api_version.as_deref(), Some("2024-06-20"));
    assert_eq!(fields.account, None);
    assert_eq!(fields.received_at(), e.received_at);
    assert_eq!(fields.source, Source::Webhook);
    assert_eq!(fields.raw_body_sha256, "ab".repeat(32));
    assert_eq!(
        fields.payload_sha256,
        hex::encode(payload_hash(r#"{"id":"evt_1"}"#))
    );
    assert_eq!(fields.signature_timestamp, Some(1_700_000_000));
    assert_eq!(fields.verified_by_index, Some(1));
    assert_eq!(fields.verified_by_fingerprint.as_deref(), Some("fp_1"));
}

#[test]
fn the_layout_is_pinned_byte_for_byte() {
    let mut e = sample();
    e.api_version = None;
    e.object_id = None;
    e.object_type = None;
    e.signature_header = None;
    e.signature_timestamp = None;
    e.verified_by_index = None;
    e.verified_by_fingerprint = None;
    e.source = Source::ApiBackfill;
    e.payload = Some(String::new());
    let want = [
        "01",
        "000000000000002a",
        "00000005",
        "6576745f31",
        "0000000c",
        "696e766f6963652e70616964",
        "00",
        "00",
        "00",
        "00",
        "00",
        "000000006553f100",
        "00060a24182f6480",
        "0000000c",
        "6170695f6261636b66696c6c",
        "00",
        &"ab".repeat(32),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "00",
        "00",
        "00",
        "00",
    ]
    .concat();
    assert_eq!(hex::encode(encode(&e).unwrap()), want);
}

type Edit = fn(&mut StoredEvent);

#[test]
fn every_column_changes_the_leaf() {
    let base = encode(&sample()).unwrap();
    let edits: Vec<(&str, Edit)> = vec![
        ("position", |e| e.position += 1),
        ("event_id", |e| e.event_id.push('x')),
        ("event_type", |e| e.event_type.push('x')),
        ("api_version", |e| e.api_version = None),
        ("livemode", |e| e.livemode = true),
        ("account", |e| e.account = Some(String::new())),
        ("object_id", |e| e.object_id = Some("in_2".into())),
        ("object_type", |e| e.object_type = None),
        ("stripe_created", |e| e.stripe_created -= 1),
        ("received_at", |e| {
            e.received_at += chrono::Duration::microseconds(1)
        }),
        ("source", |e| e.source = Source::ReconcileRepair),
        ("payload_redacted", |e| e.payload_redacted = true),
        ("raw_body_sha256", |e| e.raw_body_sha256 = "ac".repeat(32)),
        ("payload", |e| e.payload = Some(r#"{"id":"evt_2"}"#.into())),
        ("signature_header", |e| {
            e.signature_header = Some("t=1".into())
        }),
        ("signature_timestamp", |e| e.signature_timestamp = None),
        ("verified_by_index", |e| e.verified_by_index = Some(2)),
        ("verified_by_fingerprint", |e| {
            e.verified_by_fingerprint = None
        }),
    ];
    for (column, edit) in edits {
        let mut e = sample();
        edit(&mut e);
        assert_ne!(encode(&e).unwrap(), base, "{column}");
    }
}

#[test]
fn moving_bytes_between_adjacent_text_fields_changes_the_leaf() {
    let mut a = sample();
    a.object_id = Some("in_1invoice".into());
    a.object_type = Some(String::new());
    assert_ne!(encode(&a).unwrap(), encode(&sample()).unwrap());
}

#[test]
fn sub_microsecond_time_encodes_as_the_databases_store_it() {
    let mut e = sample();
    let stored = encode(&e).unwrap();
    e.received_at += chrono::Duration::nanoseconds(999);
    assert_eq!(encode(&e).unwrap(), stored);
}

#[test]
fn entries_that_cannot_be_sealed_are_errors() {
    let mut e = sample();
    e.payload = None;
    assert_eq!(encode(&e), Err(LeafError::MissingPayload));
    for bad in ["AB".repeat(32), "ab".repeat(31), "zz".repeat(32)] {
        let mut e = sample();
        e.raw_body_sha256 = bad;
        assert_eq!(encode(&e), Err(LeafError::BadRawBodyHash));
    }
}

#[test]
fn the_decoder_refuses_every_truncation_and_any_trailing_byte() {
    let bytes = encode(&sample()).unwrap();
    for len in 0..bytes.len() {
        assert!(
            decode(&bytes[..len]).is_err(),
            "prefix of {len} bytes decoded"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(decode(&longer), Err(LeafError::TrailingBytes(1)));
    let mut v2 = bytes.clone();
    v2[0] = 2;
    assert_eq!(decode(&v2), Err(LeafError::UnknownVersion(2)));
}

#[test]
fn any_flipped_byte_fails_to_decode_or_decodes_to_other_fields() {
    let bytes = encode(&sample()).unwrap();
    let fields = decode(&bytes).unwrap();
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[i] ^= mask;
            if let Ok(other) = decode(&b) {
                assert_ne!(other, fields, "byte {i} ^ {mask:#x}");
            }
        }
    }
}
