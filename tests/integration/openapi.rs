//! The OpenAPI document (`docs/openapi.json`, served at `GET /api/openapi.json`) against the
//! code, mechanically, so it cannot drift (ADR 14):
//!
//! - routes: the `.route(...)` calls in `src/` equal the document's paths and methods, and a
//!   live probe of every documented operation finds it served, guarded as documented;
//! - error codes: every code literal in the source is in the `ErrorCode` enum and back;
//! - scopes: the service-token scheme's `x-scopes` equal `Scope::ALL`;
//! - responses: every response the integration suite reads through `TestApp` (helpers.rs) is
//!   validated against the document by `check_response`, so the whole suite exercises it.

mod schema;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{json, Value};
use stripe_ledger::auth::Scope;

use crate::helpers::{TestApp, AUDIT_TOKEN, METRICS_TOKEN, OPERATE_TOKEN, READ_TOKEN};
pub use schema::Document;

pub const DOCUMENT_TEXT: &str = include_str!("../../docs/openapi.json");
const DOC: &str = "docs/openapi.json";

pub fn document() -> &'static Document {
    static DOCUMENT: OnceLock<Document> = OnceLock::new();
    DOCUMENT.get_or_init(|| Document::load(DOCUMENT_TEXT).unwrap_or_else(|e| panic!("{DOC}: {e}")))
}

/// The documented operation for a request, if any.
enum Found<'a> {
    Operation {
        template: &'a str,
        op: &'a Value,
    },
    /// The path is documented, the method is not.
    OtherMethod {
        template: &'a str,
    },
    Nothing,
}

fn segments_match(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && t.ends_with('}') && !p.is_empty()) || t == p)
}

fn find<'a>(doc: &'a Document, method: &str, path: &str) -> Found<'a> {
    let paths = doc.root["paths"].as_object().expect("paths");
    // A literal path wins over a template that also matches it.
    let mut candidates: Vec<(&String, &Value)> = paths
        .iter()
        .filter(|(t, _)| segments_match(t, path))
        .collect();
    candidates.sort_by_key(|(t, _)| t.matches('{').count());
    let Some((template, item)) = candidates.first() else {
        return Found::Nothing;
    };
    match item.get(method.to_ascii_lowercase()) {
        Some(op) => Found::Operation { template, op },
        None => Found::OtherMethod { template },
    }
}

/// Checks one live response against the document. The error says exactly what to add.
pub fn check_response(
    method: &str,
    path: &str,
    status: u16,
    content_type: Option<&str>,
    body: &str,
) -> Result<(), String> {
    let doc = document();
    let error_schema = json!({"$ref": "#/components/schemas/Error"});
    let (template, op) = match find(doc, method, path) {
        Found::Operation { template, op } => (template, op),
        // Unrouted requests are refused by the router or the middleware before any handler:
        // they must be errors in the documented shape, never a success.
        Found::OtherMethod { template } if status >= 400 => {
            return json_body(body, content_type)
                .and_then(|v| doc.validate(&error_schema, &v))
                .map_err(|e| format!("{method} {path} (path {template}, method undocumented) answered {status}, not an Error: {e}"));
        }
        Found::OtherMethod { template } => {
            return Err(format!(
                "{method} {path} answered {status}, but {DOC} has no `{}` operation under paths.\"{template}\": add it",
                method.to_ascii_lowercase()
            ))
        }
        Found::Nothing if status >= 400 => {
            return json_body(body, content_type)
                .and_then(|v| doc.validate(&error_schema, &v))
                .map_err(|e| format!("{method} {path} (no documented path) answered {status}, not an Error: {e}"));
        }
        Found::Nothing => {
            return Err(format!(
                "{method} {path} answered {status}, but no path in {DOC} matches it: add it to paths"
            ))
        }
    };
    let at = format!("paths.\"{template}\".{}", method.to_ascii_lowercase());
    let Some(mut response) = op["responses"].get(status.to_string()) else {
        return Err(format!(
            "{method} {path} answered {status} ({}), which {DOC} does not list: add a \"{status}\" response to {at}.responses",
            code_of(body)
        ));
    };
    if let Some(r) = response.get("$ref").and_then(Value::as_str) {
        response = doc
            .resolve(r)
            .ok_or_else(|| format!("{at}: {r} does not resolve"))?;
    }
    let content = response["content"]
        .as_object()
        .ok_or_else(|| format!("{at}.responses.{status}: no content"))?;
    let actual = content_type
        .and_then(|c| c.split(';').next())
        .map(str::trim);
    let (media, media_type) = content
        .iter()
        .find(|(m, _)| Some(m.as_str()) == actual)
        .ok_or_else(|| {
            format!(
                "{method} {path} {status}: content type {actual:?} is not one of {:?} ({at}.responses.{status}.content)",
                content.keys().collect::<Vec<_>>()
            )
        })?;
    let value = if media == "application/json" {
        json_body(body, content_type)?
    } else {
        Value::String(body.to_owned())
    };
    doc.validate(&media_type["schema"], &value).map_err(|e| {
        format!(
            "{method} {path} {status} does not match {at}.responses.{status}: {e}\nbody: {}",
            cut(body)
        )
    })
}

fn json_body(body: &str, content_type: Option<&str>) -> Result<Value, String> {
    if !content_type.is_some_and(|c| c.starts_with("application/json")) {
        return Err(format!(
            "content type {content_type:?} is not application/json"
        ));
    }
    serde_json::from_str(body).map_err(|e| format!("the body is not JSON ({e}): {}", cut(body)))
}

fn code_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "no error code".to_owned())
}

fn cut(s: &str) -> String {
    s.chars().take(300).collect()
}

// ------------------------------------------------------------------------------------------
// The source, read as text: the router's routes and the error codes.

fn source_files() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(&root.join("src"), &mut files);
    // The trigger fixtures render Stripe's own objects (a decline's `"code": "card_declined"`),
    // not our errors.
    files.retain(|p| !p.starts_with(root.join("src/trigger")));
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// The string literal at the start of `s`, if `s` starts with `"`. Escapes are not decoded:
/// codes and paths have none (and `is_code` refuses anything else).
fn literal(s: &str) -> Option<&str> {
    let rest = s.strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(&rest[..end])
}

/// The text of the call arguments after an opening `(` at `s[0]`, split at top-level commas.
fn call_args(s: &str) -> Vec<String> {
    let mut args = vec![String::new()];
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for c in s.chars().skip(1) {
        if in_string {
            in_string = c != '"' || escaped;
            escaped = c == '\\' && !escaped;
            args.last_mut().unwrap().push(c);
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth == 0 => break,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                args.push(String::new());
                continue;
            }
            _ => {}
        }
        args.last_mut().unwrap().push(c);
    }
    args.into_iter().map(|a| a.trim().to_owned()).collect()
}

fn is_code(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The one `.nest` the scan knows: the console's router, whose `.route`s in `src/ui/` are
/// relative to `/ui`.
const CONSOLE_NEST: &str = ".nest(\"/ui\", crate::ui::router())";

/// Every `.route("path", get(..).post(..))` in `src/`, as (METHOD, path).
fn routed() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (file, text) in source_files() {
        let text = text.replace(CONSOLE_NEST, "");
        let prefix = if file.starts_with("src/ui/") {
            "/ui"
        } else {
            ""
        };
        for unsupported in [".nest(", ".merge(", ".route_service(", ".nest_service("] {
            assert!(
                !text.contains(unsupported),
                "{file} uses `{unsupported}`; the route scan in tests/integration/openapi.rs reads only `.route(\"path\", method(..))` (and `{CONSOLE_NEST}`): teach it, or register the routes with `.route`"
            );
        }
        for (i, _) in text.match_indices(".route(") {
            let args = call_args(&text[i + ".route".len()..]);
            let path = literal(&args[0]).unwrap_or_else(|| {
                panic!(
                    "{file}: `.route({}` has no literal path; the route scan needs one",
                    args[0]
                )
            });
            let path = match (prefix, path) {
                ("/ui", "/") => "/ui".to_owned(),
                _ => format!("{prefix}{path}"),
            };
            let path = path.as_str();
            let methods = args.get(1).map(String::as_str).unwrap_or("");
            let mut found = false;
            for m in ["get", "post", "put", "patch", "delete", "head", "options"] {
                let at_start = methods.starts_with(&format!("{m}("));
                if at_start || methods.contains(&format!(".{m}(")) {
                    routes.insert((m.to_ascii_uppercase(), path.to_owned()));
                    found = true;
                }
            }
            assert!(
                found,
                "{file}: cannot read the methods of `.route(\"{path}\", {methods})`"
            );
        }
    }
    routes
}

fn documented() -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in document().root["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    ops
}

/// Where an `ApiError` constructor gets a code that is not a literal, and why that is covered:
/// the codes behind each of these are literals the scan below finds in another position.
const INDIRECT_CODES: &[(&str, &str)] = &[
    // `Self::client(StatusCode::.., code, message)` in `bad_request`/`not_found` themselves.
    ("src/http/error.rs", "code"),
    // `describe(status)`: `fn describe(` bodies are scanned.
    ("src/http/boundary.rs", "code"),
    // `FilterError`'s `FilterCode::as_str`: scanned in `src/query/mod.rs`.
    ("src/http/query.rs", "e.code.as_str()"),
    // `JwtError::code()`: `fn code(` bodies are scanned.
    ("src/http/billing_api.rs", "e.code()"),
    // `HistoryError::code()`: `fn code(` bodies are scanned.
    ("src/http/history_api.rs", "e.code()"),
    // `ObjectKind::not_found_code()`: its four codes are literals in `fn not_found_code(`,
    // scanned below.
    ("src/http/read_api.rs", "kind.not_found_code()"),
    // The console's pages of the same errors (`src/ui/history_view.rs`).
    ("src/ui/history_view.rs", "e.code()"),
    // `(StatusCode::.., "stripe_unavailable", ..)` tuples: `StatusCode::X, "code"` is scanned.
    ("src/http/billing_api.rs", "code"),
    // `IngestError::code()` / `SignatureError::code()`: `fn code(` bodies are scanned.
    ("src/http/webhook.rs", "code"),
    // `UiError::client`'s own `Self::client(.., code, ..)` in its constructors.
    ("src/ui/error.rs", "code"),
];

/// Every error code the source can emit, with where it was found.
fn codes_in_source() -> BTreeMap<String, BTreeSet<String>> {
    let mut codes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut add = |code: &str, file: &str| {
        codes
            .entry(code.to_owned())
            .or_default()
            .insert(file.to_owned());
    };
    for (file, text) in source_files() {
        // 1. The code argument of an `ApiError` constructor.
        for (ctor, index) in [
            ("ApiError::bad_request(", 0),
            ("ApiError::not_found(", 0),
            ("ApiError::client(", 1),
            ("Self::client(", 1),
            ("UiError::bad_request(", 0),
            ("UiError::not_found(", 0),
            ("UiError::client(", 1),
        ] {
            for (i, _) in text.match_indices(ctor) {
                let args = call_args(&text[i + ctor.len() - 1..]);
                let arg = args.get(index).map(String::as_str).unwrap_or("");
                if let Some(code) = literal(arg).filter(|c| is_code(c)) {
                    add(code, &file);
                    continue;
                }
                // `if .. { "a" } else { "b" }`: the literals in value position.
                let branches: Vec<&str> = arg
                    .split('{')
                    .skip(1)
                    .filter_map(|b| literal(b.trim_start()))
                    .filter(|c| is_code(c))
                    .collect();
                if !branches.is_empty() {
                    branches.iter().for_each(|c| add(c, &file));
                    continue;
                }
                assert!(
                    INDIRECT_CODES.contains(&(file.as_str(), arg)),
                    "{file}: `{ctor}` gets its code from `{arg}`, which this scan cannot read. Pass a string literal, or return it from a `fn code(` or set it in a `code: \"..\"` field (both scanned) and add (\"{file}\", \"{arg}\") to INDIRECT_CODES in tests/integration/openapi.rs"
                );
            }
        }
        // 2. `=> "code"` and `=> ("code", ..)` arms inside the functions that name codes:
        // `fn code(` anywhere, `fn describe(` (the status fallback of `http/boundary.rs`),
        // `fn not_found_code(` (`ObjectKind`'s) and `FilterCode::as_str` (`query/mod.rs`).
        let mut code_fns = vec!["fn code(", "fn describe(", "fn not_found_code("];
        if file == "src/query/mod.rs" {
            code_fns.push("fn as_str(");
        }
        for marker in code_fns {
            for (i, _) in text.match_indices(marker) {
                let body_start = i + text[i..].find('{').unwrap();
                let body = &call_args(&text[body_start..]).join(",");
                for arm in body.split("=>").skip(1) {
                    let arm = arm.trim_start();
                    let arm = arm.strip_prefix('(').unwrap_or(arm).trim_start();
                    if let Some(code) = literal(arm).filter(|c| is_code(c)) {
                        add(code, &file);
                    }
                }
            }
        }
        // 3. `code: "x"` fields, `"code": "x"` in JSON bodies, `StatusCode::X, "x"` tuples.
        for marker in ["code: \"", "\"code\": \"", "\"code\":\""] {
            for (i, _) in text.match_indices(marker) {
                let from = i + marker.len() - 1;
                if let Some(code) = literal(&text[from..]).filter(|c| is_code(c)) {
                    add(code, &file);
                }
            }
        }
        for (i, _) in text.match_indices("StatusCode::") {
            let rest = &text[i + "StatusCode::".len()..];
            let name_len = rest
                .find(|c: char| !(c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit()))
                .unwrap_or(0);
            let after = rest[name_len..].trim_start();
            if let Some(after) = after.strip_prefix(',') {
                if let Some(code) = literal(after.trim_start()).filter(|c| is_code(c)) {
                    add(code, &file);
                }
            }
        }
    }
    codes
}

fn documented_codes() -> BTreeSet<String> {
    document().root["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("components.schemas.ErrorCode.enum")
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect()
}

// ------------------------------------------------------------------------------------------

#[test]
fn every_route_in_the_source_is_documented_and_every_documented_operation_is_routed() {
    let routed = routed();
    let documented = documented();
    let missing: Vec<String> = routed
        .difference(&documented)
        .map(|(m, p)| format!("add paths.\"{p}\".{} to {DOC}", m.to_ascii_lowercase()))
        .collect();
    let stale: Vec<String> = documented
        .difference(&routed)
        .map(|(m, p)| format!("{m} {p} is documented but not routed: remove it from {DOC}"))
        .collect();
    assert!(
        routed.len() >= 20,
        "the route scan found too few routes: {routed:?}"
    );
    assert!(
        missing.is_empty() && stale.is_empty(),
        "{}",
        [missing, stale].concat().join("\n")
    );
}

#[test]
fn every_error_code_in_the_source_is_in_the_document_and_every_documented_code_is_in_the_source() {
    let found = codes_in_source();
    let documented = documented_codes();
    let mut problems = Vec::new();
    for (code, files) in &found {
        if !documented.contains(code) {
            problems.push(format!(
                "`{code}` (in {}) is not in components.schemas.ErrorCode.enum of {DOC}: add it there (sorted), and list its status in the operations that return it",
                files.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    for code in &documented {
        if !found.contains_key(code) {
            problems.push(format!(
                "`{code}` is in ErrorCode of {DOC} but nowhere in src/: remove it"
            ));
        }
    }
    assert!(
        found.len() >= 30,
        "the code scan found too few codes: {found:?}"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_error_code_enum_is_sorted_and_has_no_duplicates() {
    let listed: Vec<&str> = document().root["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let mut sorted = listed.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        listed, sorted,
        "keep ErrorCode.enum in {DOC} sorted and unique"
    );
}

#[test]
fn the_documented_scopes_are_exactly_the_scope_enum() {
    // `Scope::ALL` must list every variant: count them in the enum's source.
    let auth =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/auth.rs")).unwrap();
    let body = &auth[auth.find("pub enum Scope {").expect("enum Scope")..];
    let body = &body[..body.find('}').unwrap()];
    let variants = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//") && !l.starts_with("pub enum") && l.ends_with(','))
        .count();
    assert_eq!(
        variants,
        Scope::ALL.len(),
        "add the new Scope variant to Scope::ALL"
    );

    let doc = &document().root;
    let schemes = &doc["components"]["securitySchemes"];
    let declared: BTreeSet<&str> = schemes["serviceToken"]["x-scopes"]
        .as_object()
        .expect("securitySchemes.serviceToken.x-scopes")
        .keys()
        .map(String::as_str)
        .collect();
    let code: BTreeSet<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        declared, code,
        "securitySchemes.serviceToken.x-scopes in {DOC} must list exactly Scope::ALL"
    );
    // Every scope an operation asks for is declared, and every declared scope is used.
    let mut used = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for requirement in op["security"].as_array().unwrap_or_else(|| {
                panic!("paths.\"{path}\".{method} needs a `security` array (empty = no token)")
            }) {
                for (scheme, scopes) in requirement.as_object().unwrap() {
                    assert!(
                        schemes.get(scheme).is_some(),
                        "{path} {method}: unknown scheme {scheme}"
                    );
                    for s in scopes.as_array().unwrap() {
                        let s = s.as_str().unwrap();
                        assert!(
                            declared.contains(s),
                            "{path} {method}: undeclared scope {s}"
                        );
                        used.insert(s);
                    }
                }
            }
        }
    }
    let unused: BTreeSet<&str> = declared.difference(&used).copied().collect();
    assert!(
        unused.is_empty(),
        "declared scopes no operation uses: {unused:?}"
    );
}

#[test]
fn every_operation_documents_its_server_errors_and_an_error_schema_for_each_failure() {
    let doc = document();
    for (path, item) in doc.root["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            for status in ["500", "503"] {
                assert!(
                    responses.contains_key(status),
                    "paths.\"{path}\".{method} must list {status} (internal_error, storage_unavailable/shutting_down)"
                );
            }
            assert!(
                op["operationId"].is_string(),
                "{path} {method}: operationId"
            );
            for (status, response) in responses {
                if !status.starts_with('4') && !status.starts_with('5') {
                    continue;
                }
                let response = match response.get("$ref").and_then(Value::as_str) {
                    Some(r) => doc.resolve(r).unwrap(),
                    None => response,
                };
                // The console answers errors as HTML pages (with the same stable codes).
                let console = op["tags"][0] == "console";
                if console {
                    assert!(
                        response["content"]["text/html"].is_object(),
                        "{path} {method} {status}: a console error is a text/html page"
                    );
                    continue;
                }
                let schema = &response["content"]["application/json"]["schema"];
                let error = schema["$ref"].as_str().unwrap_or("");
                assert!(
                    error == "#/components/schemas/Error"
                        || error == "#/components/schemas/AlreadySubscribed",
                    "{path} {method} {status}: an error response's schema is Error"
                );
            }
        }
    }
}

#[test]
fn the_validator_rejects_what_the_schemas_do_not_allow() {
    let doc = document();
    let customer = json!({"$ref": "#/components/schemas/Customer"});
    let good = json!({"id": "cus_1", "object": "customer", "user_id": null, "email": "a@b.c",
        "deleted": false, "created": "2025-11-22T10:40:00Z", "link_conflicts": []});
    doc.validate(&customer, &good).unwrap();
    let bad = |patch: Value| {
        let mut v = good.clone();
        for (k, x) in patch.as_object().unwrap() {
            if x == "<absent>" {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = x.clone();
            }
        }
        doc.validate(&customer, &v).unwrap_err()
    };
    assert!(bad(json!({"deleted": "no"})).contains("not of type"));
    assert!(bad(json!({"created": "yesterday"})).contains("RFC 3339"));
    assert!(bad(json!({"object": "invoice"})).contains("constant"));
    assert!(bad(json!({"id": "<absent>"})).contains("required property `id`"));
    assert!(bad(json!({"surprise": 1})).contains("additionalProperties"));
    let error = json!({"$ref": "#/components/schemas/Error"});
    let e = doc
        .validate(
            &error,
            &json!({"error": {"code": "no_such_code", "message": "m"}}),
        )
        .unwrap_err();
    assert!(e.contains("ErrorCode") && e.contains("enum"), "{e}");
    let subscription = json!({"$ref": "#/components/schemas/Subscription"});
    let link = json!({"id": "sub_1", "object": "subscription", "user_id": "u", "status": null});
    doc.validate(&subscription, &link).unwrap();
    assert!(doc
        .validate(
            &subscription,
            &json!({"id": "sub_1", "object": "subscription", "user_id": "u", "status": 3})
        )
        .unwrap_err()
        .contains("oneOf"));
    let limit = json!({"type": "integer", "minimum": 1, "maximum": 100});
    assert!(doc.validate(&limit, &json!(101)).is_err() && doc.validate(&limit, &json!(0)).is_err());
    // Keywords outside the subset are refused when the document is loaded.
    let mut extended = document().root.clone();
    extended["components"]["schemas"]["Customer"]["pattern"] = json!("^cus_");
    let e = Document::load(&extended.to_string())
        .err()
        .expect("refused");
    assert!(e.contains("keyword `pattern`"), "{e}");
    extended["components"]["schemas"]["Customer"] = json!({"$ref": "#/components/schemas/Nope"});
    assert!(Document::load(&extended.to_string())
        .err()
        .unwrap()
        .contains("does not resolve"));
}

#[test]
fn a_response_outside_the_document_is_refused_with_what_to_add() {
    let err = r#"{"error":{"code":"internal_error","message":"m"}}"#;
    let json = Some("application/json");
    let e = check_response("GET", "/api/customers", 418, json, err).unwrap_err();
    assert!(
        e.contains("add a \"418\" response to paths.\"/api/customers\".get"),
        "{e}"
    );
    let e = check_response("GET", "/api/brand-new", 200, json, "{}").unwrap_err();
    assert!(e.contains("no path in docs/openapi.json matches"), "{e}");
    let e = check_response("DELETE", "/api/customers", 200, json, "{}").unwrap_err();
    assert!(e.contains("no `delete` operation"), "{e}");
    let e = check_response("GET", "/api/customers", 400, Some("text/plain"), "nope").unwrap_err();
    assert!(e.contains("content type"), "{e}");
    check_response(
        "GET",
        "/api/nope",
        404,
        json,
        r#"{"error":{"code":"route_not_found","message":"m"}}"#,
    )
    .unwrap();
    let e = check_response("GET", "/api/nope", 404, Some("text/plain"), "Not Found").unwrap_err();
    assert!(e.contains("not an Error"), "{e}");
}

// ------------------------------------------------------------------------------------------
// Live: the document served, and every documented operation probed.

#[tokio::test]
async fn the_document_is_served_byte_for_byte_to_any_service_token_and_to_nobody_else() {
    let app = TestApp::spawn().await;
    for token in [READ_TOKEN, AUDIT_TOKEN, METRICS_TOKEN] {
        let reply = app.get("/api/openapi.json", Some(token)).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.headers["content-type"], "application/json");
        assert_eq!(
            reply.text, DOCUMENT_TEXT,
            "the served document is docs/openapi.json"
        );
    }
    for token in [None, Some("not-a-configured-token-123")] {
        let reply = app.get("/api/openapi.json", token).await;
        assert_eq!((reply.status, reply.code()), (401, "unauthenticated"));
    }
    assert_eq!(document().root["openapi"], "3.1.0");
}

const USER_JWT_SECRET: &str = "jwt-secret-for-openapi-tests-0123456789";

async fn billing_app() -> TestApp {
    TestApp::builder()
        .env("JWT_SECRET", USER_JWT_SECRET)
        .env("STRIPE_SECRET_KEY", "sk_test_openapiprobe0123456789")
        .env("STRIPE_PUBLISHABLE_KEY", "pk_test_openapiprobe0123")
        // Nothing listens there: no probe below reaches Stripe.
        .env("STRIPE_API_BASE", "http://127.0.0.1:9")
        .env("STRIPE_PRICE_IDS_TIER1", "price_tier1")
        .env("CHECKOUT_SUCCESS_URL", "https://app.example.com/ok")
        .env("CHECKOUT_CANCEL_URL", "https://app.example.com/cancel")
        .env(
            "STRIPE_PORTAL_RETURN_URL",
            "https://app.example.com/account",
        )
        .spawn()
        .await
}

fn token_for(scope: &str) -> &'static str {
    match scope {
        "read" => READ_TOKEN,
        "audit" => AUDIT_TOKEN,
        "metrics" => METRICS_TOKEN,
        "operate" => OPERATE_TOKEN,
        other => panic!("no test token for scope {other}: add one to helpers.rs"),
    }
}

fn served(reply: &crate::helpers::Reply) -> bool {
    !(reply.status == 404 && reply.code() == "route_not_found") && reply.status != 405
}

#[tokio::test]
async fn every_documented_operation_is_served_and_guarded_as_documented() {
    let app = billing_app().await;
    let plain = TestApp::spawn().await;
    let user = stripe_ledger::jwt::JwtKey::new(USER_JWT_SECRET)
        .unwrap()
        .sign("user_probe", chrono::Utc::now().timestamp() + 3600);
    let mut probed = 0;
    for (method, template) in documented() {
        let path = template
            .split('/')
            .map(|s| if s.starts_with('{') { "probe_1" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let op = &document().root["paths"][&template][method.to_ascii_lowercase()];
        let security = op["security"].as_array().unwrap();
        let what = format!("{method} {template}");
        match security
            .first()
            .and_then(|r| r.as_object())
            .map(|r| r.iter().next().unwrap())
        {
            None => {
                let reply = app.request(&method, &path, None, b"{}").await;
                assert!(
                    served(&reply) && reply.status != 401,
                    "{what}: {}",
                    reply.text
                );
            }
            Some((scheme, scopes)) if scheme == "serviceToken" => {
                let reply = app.request(&method, &path, None, b"{}").await;
                assert_eq!(
                    (reply.status, reply.code()),
                    (401, "unauthenticated"),
                    "{what}"
                );
                let scopes: Vec<&str> = scopes
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap())
                    .collect();
                for scope in Scope::ALL.map(Scope::as_str) {
                    let reply = app
                        .request(&method, &path, Some(token_for(scope)), b"{}")
                        .await;
                    if scopes.is_empty() || scopes.contains(&scope) {
                        assert!(
                            served(&reply) && reply.status != 401 && reply.status != 403,
                            "{what} with {scope}: {}",
                            reply.text
                        );
                    } else {
                        assert_eq!(
                            (reply.status, reply.code()),
                            (403, "insufficient_scope"),
                            "{what} with {scope}"
                        );
                    }
                }
            }
            Some((scheme, _)) if scheme == "userToken" => {
                let reply = plain.request(&method, &path, Some(&user), b"{}").await;
                assert_eq!(
                    (reply.status, reply.code()),
                    (503, "billing_not_configured"),
                    "{what}"
                );
                let reply = app.request(&method, &path, Some(READ_TOKEN), b"{}").await;
                assert_eq!(
                    (reply.status, reply.code()),
                    (401, "token_malformed"),
                    "{what}"
                );
                let reply = app.request(&method, &path, None, b"{}").await;
                assert_eq!(
                    (reply.status, reply.code()),
                    (401, "token_missing"),
                    "{what}"
                );
                let reply = app.request(&method, &path, Some(&user), b"{}").await;
                assert!(
                    served(&reply) && reply.status != 401,
                    "{what}: {}",
                    reply.text
                );
            }
            Some((scheme, _)) if scheme == "consoleSession" => {
                // No session: a GET lands on the sign-in form (the client follows the 303), a
                // POST is refused before anything runs. Bearer tokens do not count on /ui.
                let reply = app.request(&method, &path, Some(AUDIT_TOKEN), b"{}").await;
                if method == "GET" {
                    assert!(
                        reply.status == 200 && reply.text.contains("name=\"token\""),
                        "{what}: {}",
                        reply.text
                    );
                } else {
                    assert_eq!(reply.status, 403, "{what}");
                }
            }
            Some((scheme, _)) => panic!("{what}: unknown security scheme {scheme}"),
        }
        probed += 1;
    }
    assert!(probed >= 20);
}
