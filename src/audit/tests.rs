use super::*;

fn params(pairs: &[(&str, &str)]) -> Params {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn code(p: &[(&str, &str)]) -> &'static str {
    ListQuery::parse(&params(p)).unwrap_err().code.as_str()
}

#[test]
fn list_params_are_parsed_and_validated() {
    let first = ListQuery::parse(&params(&[
        ("type", "invoice.paid"),
        ("created_gte", "2023-11-14T22:13:20Z"),
        ("order", "asc"),
        ("limit", "10"),
    ]))
    .unwrap();
    let cursor = first.next_cursor(7);
    let q = ListQuery::parse(&params(&[
        ("type", "invoice.paid"),
        ("created_gte", "1700000000"),
        ("order", "asc"),
        ("limit", "3"),
        ("cursor", &cursor),
    ]))
    .unwrap();
    assert_eq!(q.filter.event_type.as_deref(), Some("invoice.paid"));
    assert_eq!(q.filter.created_gte, Some(1_700_000_000));
    assert_eq!(q.page.order, Order::Asc);
    assert_eq!(q.page.limit, 3);
    assert_eq!(q.page.after_position, Some(7));

    assert_eq!(code(&[("typ", "x")]), "unknown_parameter");
    assert_eq!(code(&[("limit", "0")]), "invalid_parameter");
    assert_eq!(code(&[("limit", "101")]), "invalid_parameter");
    assert_eq!(code(&[("limit", "+5")]), "invalid_parameter");
    assert_eq!(code(&[("order", "up")]), "invalid_parameter");
    assert_eq!(code(&[("created_lt", "yesterday")]), "invalid_parameter");
    assert_eq!(code(&[("cursor", "7")]), "invalid_cursor");
    assert_eq!(code(&[("cursor", "pos_7")]), "invalid_cursor");
    assert_eq!(code(&[("type", "")]), "invalid_parameter");
    assert_eq!(code(&[("source", "carrier_pigeon")]), "invalid_parameter");
}

#[test]
fn id_like_filters_follow_the_id_rules() {
    for field in ["type", "object_id"] {
        for bad in ["a\0b", "in_\u{200B}1", "in_\u{202E}1", "\u{7f}"] {
            assert_eq!(
                code(&[(field, bad)]),
                "invalid_parameter",
                "{field}={bad:?}"
            );
        }
        assert_eq!(code(&[(field, &"x".repeat(3000))]), "invalid_parameter");
    }
    assert_eq!(code(&[("source", "webhook\0")]), "invalid_parameter");
}

#[test]
fn a_cursor_only_pages_the_query_it_came_from() {
    let of = |p: &[(&str, &str)]| ListQuery::parse(&params(p)).unwrap().next_cursor(3);
    let by_type = of(&[("type", "invoice.paid")]);
    let asc = of(&[("order", "asc")]);
    let desc = of(&[]);
    assert_eq!(
        code(&[("type", "invoice.created"), ("cursor", &by_type)]),
        "invalid_cursor"
    );
    assert_eq!(code(&[("cursor", &by_type)]), "invalid_cursor");
    assert_eq!(code(&[("cursor", &asc)]), "invalid_cursor");
    assert_eq!(
        code(&[("order", "asc"), ("cursor", &desc)]),
        "invalid_cursor"
    );
    // `order=desc` is the default spelled out: the same query.
    assert!(ListQuery::parse(&params(&[("order", "desc"), ("cursor", &desc)])).is_ok());
    // The same instant written two ways is the same filter.
    let unix = of(&[("created_lt", "1700000000")]);
    assert!(ListQuery::parse(&params(&[
        ("created_lt", "2023-11-14T22:13:20Z"),
        ("cursor", &unix)
    ]))
    .is_ok());
    // A different page size is fine.
    assert!(ListQuery::parse(&params(&[("limit", "7"), ("cursor", &desc)])).is_ok());
}
