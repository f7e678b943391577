//! Unit and property tests for query parsing and every list's filter parser: hostile input
//! never panics and always gets one of the four query codes.

use proptest::prelude::*;

use super::*;
use crate::outbox;
use crate::read_models::{Query, ReadList};

fn code_of(query: &str) -> Option<&'static str> {
    parse_query(Some(query)).err().map(|e| e.code.as_str())
}

#[test]
fn percent_encoding_and_utf8_are_checked_before_anything_else() {
    assert_eq!(parse_query(Some("a=%41+b&&c")).unwrap()["a"], "A b");
    assert_eq!(parse_query(Some("c")).unwrap()["c"], "");
    // NUL decodes; whether a parameter may hold it is the parameter's business.
    assert_eq!(parse_query(Some("a=%00")).unwrap()["a"], "\0");
    for bad in [
        "a=%ff",
        "a=%C0%80",
        "a=%ED%A0%80",
        "a=%",
        "a=%4",
        "a=%ZZ",
        "a=%+1",
        "%ff=1",
    ] {
        assert_eq!(code_of(bad), Some("invalid_query"), "{bad}");
    }
    assert_eq!(code_of("=1"), Some("invalid_query"));
    assert_eq!(code_of("a=1&a=2"), Some("invalid_parameter"));
    let many: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("p{i}=1")).collect();
    assert_eq!(code_of(&many.join("&")), Some("invalid_query"));
}

#[test]
fn messages_never_echo_control_or_format_characters() {
    let e = parse_query(Some("a%00%E2%80%8B=1&a%00%E2%80%8B=2")).unwrap_err();
    assert_eq!(e.message, "`a\\u{0}\\u{200b}` is given more than once");
    let e = refuse_unknown(&parse_query(Some("%E2%80%AEx=1")).unwrap(), &["limit"]).unwrap_err();
    assert!(
        e.message
            .starts_with("unknown query parameter `\\u{202e}x`"),
        "{e}"
    );
}

/// Every list parser, by name, over the same decoded parameters.
fn parse_every_list(params: &Params) -> Vec<(&'static str, Result<(), FilterError>)> {
    let read = |list| Query::parse(list, params).map(drop);
    vec![
        ("audit", crate::audit::ListQuery::parse(params).map(drop)),
        ("customers", read(ReadList::Customers)),
        ("subscriptions", read(ReadList::Subscriptions)),
        ("invoices", read(ReadList::Invoices)),
        ("orders", read(ReadList::Orders)),
        ("outbox", outbox::ListQuery::parse(params).map(drop)),
        (
            "dead_letters",
            Paging::parse(Endpoint::DeadLetters, params).map(drop),
        ),
        (
            "reconciliations",
            Paging::parse(Endpoint::Reconciliations, params).map(drop),
        ),
    ]
}

#[test]
fn hostile_values_of_every_filter_get_invalid_parameter() {
    let long = "x".repeat(3000);
    let hostile = [
        "%00",
        "cus_%00",
        "%E2%80%8B",
        "cus_%E2%80%AE1",
        "%7F",
        "%C2%85",
        &long,
        "",
    ];
    let cases = [
        ("audit", "type"),
        ("audit", "object_id"),
        ("audit", "source"),
        ("customers", "user_id"),
        ("subscriptions", "customer"),
        ("subscriptions", "status"),
        ("subscriptions", "user_id"),
        ("invoices", "customer"),
        ("invoices", "status"),
        ("orders", "customer"),
        ("orders", "status"),
        ("orders", "user_id"),
        ("outbox", "status"),
    ];
    for (list, param) in cases {
        for value in hostile {
            let params = parse_query(Some(&format!("{param}={value}"))).unwrap();
            let (_, result) = parse_every_list(&params)
                .into_iter()
                .find(|(name, _)| *name == list)
                .unwrap();
            let e = result.unwrap_err();
            assert_eq!(
                e.code,
                FilterCode::InvalidParameter,
                "{list} {param}={value}: {e}"
            );
        }
    }
}

#[test]
fn a_cursor_from_one_list_is_refused_by_every_other() {
    let empty = Params::new();
    let cursors = [
        (
            "audit",
            crate::audit::ListQuery::parse(&empty)
                .unwrap()
                .next_cursor(5),
        ),
        (
            "customers",
            Query::parse(ReadList::Customers, &empty)
                .unwrap()
                .next_cursor(ReadList::Customers, "cus_1"),
        ),
        (
            "outbox",
            outbox::ListQuery::parse(&empty).unwrap().next_cursor(5),
        ),
        (
            "dead_letters",
            Paging::parse(Endpoint::DeadLetters, &empty)
                .unwrap()
                .next_cursor(5),
        ),
    ];
    for (issuer, cursor) in cursors {
        let params: Params = [("cursor".to_owned(), cursor)].into();
        for (list, result) in parse_every_list(&params) {
            match result {
                Ok(()) => assert_eq!(list, issuer),
                Err(e) => {
                    assert_ne!(list, issuer, "{e}");
                    assert_eq!(e.code, FilterCode::InvalidCursor, "{issuer} -> {list}: {e}");
                }
            }
        }
    }
}

/// Seeds from the adversarial review, mixed into the generated inputs.
const SEEDS: &[&str] = &[
    "%00",
    "%ff",
    "%C0%80",
    "%E2%80%8B",
    "%E2%80%AE",
    "%EF%BB%BF",
    "%7F",
    "%",
    "%%",
    "+",
    "=",
    "&",
    "cus_1",
    "asc",
    "desc",
    "50",
    "0",
    "-1",
    "pending",
    "invoice.paid",
    "2023-11-14T22:13:20Z",
];
const NAMES: &[&str] = &[
    "type",
    "object_id",
    "source",
    "created_gte",
    "created_lt",
    "order",
    "limit",
    "cursor",
    "customer",
    "user_id",
    "status",
    "",
    "typ",
    "%00",
    "%E2%80%8B",
];

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(SEEDS).prop_map(str::to_owned),
        "[a-zA-Z0-9_.%+=&-]{0,24}",
        (1usize..4).prop_map(|n| "x".repeat(n * 1000)),
        prop::collection::vec(any::<u8>(), 0..12)
            .prop_map(|b| b.iter().map(|b| format!("%{b:02X}")).collect()),
    ]
}

fn query_string() -> impl Strategy<Value = String> {
    let pair = (prop::sample::select(NAMES), component()).prop_map(|(k, v)| format!("{k}={v}"));
    prop_oneof![
        prop::collection::vec(pair, 0..6).prop_map(|p| p.join("&")),
        // Repeated parameters.
        (prop::sample::select(NAMES), component(), component())
            .prop_map(|(k, a, b)| format!("{k}={a}&{k}={b}")),
        ".{0,64}",
    ]
}

const CODES: [&str; 4] = [
    "invalid_query",
    "invalid_parameter",
    "unknown_parameter",
    "invalid_cursor",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decode_component_never_panics_and_refuses_only_as_invalid_query(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = decode_component(&text) {
            prop_assert_eq!(e.code, FilterCode::InvalidQuery);
        }
    }

    #[test]
    fn every_list_parser_accepts_only_clean_values_or_gives_a_query_code(query in query_string()) {
        match parse_query(Some(&query)) {
            Err(e) => prop_assert!(CODES.contains(&e.code.as_str())),
            Ok(params) => {
                for (list, result) in parse_every_list(&params) {
                    match result {
                        Err(e) => prop_assert!(CODES.contains(&e.code.as_str()), "{}: {}", list, e),
                        // Whatever a parser accepted is safe to bind: no NUL, no controls.
                        Ok(()) => for (k, v) in &params {
                            if k != "cursor" {
                                prop_assert!(!v.chars().any(char::is_control), "{} {}={:?}", list, k, v);
                            }
                        },
                    }
                }
            }
        }
    }

    #[test]
    fn the_cursor_decoder_refuses_arbitrary_text_without_panicking(raw in ".{0,80}", bytes in prop::collection::vec(any::<u8>(), 0..80)) {
        use base64::Engine as _;
        let b = cursor::Binding::new(Endpoint::Customers, &[("user_id", None)]);
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        for c in [raw.as_str(), forged.as_str()] {
            prop_assert_eq!(b.decode(c).unwrap_err().code, FilterCode::InvalidCursor);
        }
    }

    #[test]
    fn a_mutated_cursor_is_refused_or_decodes_to_a_checked_id(position in "[a-z_0-9]{1,40}", at in 0usize..200, byte in any::<u8>()) {
        let b = cursor::Binding::new(Endpoint::Subscriptions, &[("status", Some("active"))]);
        let cursor = b.encode(&position);
        let mut bytes = cursor.clone().into_bytes();
        let i = at % bytes.len();
        bytes[i] = byte;
        let mutated = String::from_utf8_lossy(&bytes).into_owned();
        match b.decode_id(&mutated) {
            Ok(p) => {
                // Only a mutation base64 cannot see (the unused low bits of the last symbol)
                // may decode, and then to the very same position.
                prop_assert_eq!(p, position);
            }
            Err(e) => prop_assert_eq!(e.code, FilterCode::InvalidCursor),
        }
    }
}
