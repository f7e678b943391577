//! The console at HTTP level: sign-in and sessions, cookie flags, the CSRF checks, the
//! security headers, escaping of hostile data, and the event views' filters and exports. The
//! browser tests drive the same pages in Chromium; these need no browser and run everywhere.

use std::collections::BTreeMap;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::redirect::Policy;
use serde_json::{json, Value};

use crate::helpers::{TestApp, TestAppBuilder, AUDIT_TOKEN, METRICS_TOKEN, READ_TOKEN};

/// A token with `audit` and `operate`.
pub const OPERATOR_TOKEN: &str = "operator-token-for-tests-0123456789";

/// `API_TOKENS` for console tests: the usual three, and an operator.
pub fn console_tokens() -> String {
    format!(
        "audit:{AUDIT_TOKEN},read:{READ_TOKEN},metrics:{METRICS_TOKEN},\
         audit:{OPERATOR_TOKEN},operate:{OPERATOR_TOKEN}"
    )
}

pub fn console_app() -> TestAppBuilder {
    TestApp::builder().env("API_TOKENS", &console_tokens())
}

/// A response read in full (HTML is not checked against the OpenAPI document's JSON schemas).
pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Page {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The stable code an error page shows.
    pub fn code(&self) -> &str {
        let Some(start) = self.text.find("<code data-code>") else {
            return "";
        };
        let rest = &self.text[start + "<code data-code>".len()..];
        &rest[..rest.find('<').unwrap_or(0)]
    }

    /// `name=value` of the `Set-Cookie` this response sends for the cookie `name`, if any.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.split_once('=').is_some_and(|(n, _)| n == name))
            .map(str::to_owned)
    }

    /// The session cookie this response sets (either name), as the whole header.
    pub fn session_cookie(&self) -> Option<String> {
        self.set_cookie("sl_ui")
            .or_else(|| self.set_cookie("__Host-sl_ui"))
    }

    /// The value of the hidden `csrf` field of the page's forms.
    pub fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.text.find(marker).expect("a form with a csrf field") + marker.len();
        let rest = &self.text[start..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
}

/// A browser, by hand: the session cookie and the sign-in form's nonce cookie, redirects not
/// followed, Fetch-Metadata as a browser sends it for a same-origin form unless told otherwise.
pub struct Browser {
    pub base: String,
    pub client: reqwest::Client,
    /// `name=value` of the session cookie.
    pub cookie: Option<String>,
    /// `name=value` of the sign-in form's nonce cookie, once a form was opened.
    pub login_cookie: Option<String>,
}

impl Browser {
    pub fn new(app: &TestApp) -> Browser {
        Browser {
            base: app.base_url.clone(),
            client: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            cookie: None,
            login_cookie: None,
        }
    }

    /// The `Cookie` header: whichever of the two cookies this browser holds.
    fn cookies(&self) -> Option<String> {
        let held: Vec<&str> = [&self.cookie, &self.login_cookie]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        (!held.is_empty()).then(|| held.join("; "))
    }

    async fn read(response: reqwest::Response) -> Page {
        Page {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            text: response.text().await.unwrap(),
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(c) = self.cookies() {
            request = request.header("cookie", c);
        }
        Self::read(request.send().await.unwrap()).await
    }

    /// A form POST with exactly `headers` added (and the cookie, if any).
    pub async fn post_with(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", stripe_ledger::ui::urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(c) = self.cookies() {
            request = request.header("cookie", c);
        }
        for (k, v) in headers {
            request = request.header(*k, HeaderValue::from_str(v).unwrap());
        }
        Self::read(request.send().await.unwrap()).await
    }

    /// A form POST as a browser sends it from one of the console's own pages.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.post_with(path, fields, &[("sec-fetch-site", "same-origin")])
            .await
    }

    /// Opens the sign-in form as a browser does: keeps the nonce cookie it sets and returns
    /// the form's `csrf` field.
    pub async fn open_sign_in(&mut self) -> String {
        let form = self.get("/ui/login").await;
        assert_eq!(form.status, 200, "the sign-in form: {}", form.text);
        let set = form
            .set_cookie("sl_ui_login")
            .or_else(|| form.set_cookie("__Host-sl_ui_login"))
            .expect("the sign-in form sets its nonce cookie");
        self.login_cookie = Some(set.split(';').next().unwrap().to_owned());
        form.csrf()
    }

    /// Opens the sign-in form and submits it with `token`; keeps the session cookie when it
    /// is set.
    pub async fn sign_in(&mut self, token: &str) -> Page {
        let csrf = self.open_sign_in().await;
        let fields = [
            ("token", token),
            ("next", "/ui/events"),
            ("csrf", csrf.as_str()),
        ];
        let page = self.post("/ui/login", &fields).await;
        if let Some(set) = page.session_cookie() {
            self.cookie = Some(set.split(';').next().unwrap().to_owned());
        }
        page
    }

    /// A browser signed in with `token`.
    pub async fn signed_in(app: &TestApp, token: &str) -> Browser {
        let mut browser = Browser::new(app);
        let page = browser.sign_in(token).await;
        assert_eq!(page.status, 303, "sign-in: {}", page.text);
        browser
    }
}

fn event_with(id: &str, event_type: &str, object: Value, created: i64, livemode: bool) -> Vec<u8> {
    json!({
        "id": id, "object": "event", "api_version": "2025-03-31.basil", "created": created,
        "livemode": livemode, "type": event_type, "pending_webhooks": 1, "request": null,
        "data": {"object": object}
    })
    .to_string()
    .into_bytes()
}

fn customer(id: &str) -> Value {
    json!({"id": id, "object": "customer", "livemode": false, "metadata": {}})
}

fn invoice(id: &str, customer: &str) -> Value {
    json!({"id": id, "object": "invoice", "customer": customer, "status": "paid",
           "amount_due": 1500, "currency": "usd", "livemode": false})
}

/// Five events: two customers, two invoices of cus_u1, one customer update.
async fn seeded() -> TestApp {
    let app = console_app().spawn().await;
    let events = [
        event_with(
            "evt_u1",
            "customer.created",
            customer("cus_u1"),
            1_700_000_000,
            false,
        ),
        event_with(
            "evt_u2",
            "customer.created",
            customer("cus_u2"),
            1_700_000_100,
            false,
        ),
        event_with(
            "evt_u3",
            "invoice.paid",
            invoice("in_u1", "cus_u1"),
            1_700_000_200,
            false,
        ),
        event_with(
            "evt_u4",
            "customer.updated",
            customer("cus_u1"),
            1_700_000_300,
            false,
        ),
        event_with(
            "evt_u5",
            "invoice.paid",
            invoice("in_u2", "cus_u1"),
            1_700_000_400,
            false,
        ),
    ];
    for body in &events {
        let reply = app.deliver(body).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    app
}

/// Event ids in the order the list shows them.
fn listed_ids(page: &Page) -> Vec<String> {
    let mut ids = Vec::new();
    let marker = "data-open><code>";
    for (i, _) in page.text.match_indices(marker) {
        let rest = &page.text[i + marker.len()..];
        ids.push(rest[..rest.find('<').unwrap()].to_owned());
    }
    ids
}

// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn ui_redirects_to_the_login_and_the_login_form_has_a_token_field() {
    let app = console_app().spawn().await;
    let browser = Browser::new(&app);
    let root = browser.get("/ui").await;
    assert_eq!((root.status, root.header("location")), (303, "/ui/login"));
    let events = browser.get("/ui/events?type=invoice.paid").await;
    assert_eq!(events.status, 303);
    assert_eq!(
        events.header("location"),
        "/ui/login?next=%2Fui%2Fevents%3Ftype%3Dinvoice.paid"
    );
    let login = browser.get("/ui/login?next=%2Fui%2Fevents").await;
    assert_eq!(login.status, 200);
    assert!(
        login.text.contains(r#"name="token" type="password""#),
        "{}",
        login.text
    );
    assert!(login.header("content-type").starts_with("text/html"));
}

/// The security headers every `/ui` response carries, whatever it is.
fn assert_security_headers(what: &str, page: &Page) {
    let csp = page.header("content-security-policy");
    assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("style-src 'self'"),
        "{what}: {csp}"
    );
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{what}: {csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert_eq!(page.header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(page.header("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(page.header("x-frame-options"), "DENY", "{what}");
    assert_eq!(
        page.header("cross-origin-opener-policy"),
        "same-origin",
        "{what}"
    );
}

/// What a strict CSP would block, so no page may hold it: a `<script` that is not an external
/// script of `/ui/static/`, any `<style` element, any `style=` attribute, and any `on...=`
/// event-handler attribute.
fn inline_script_or_style(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    for (i, _) in lower.match_indices("<script") {
        let tag = &lower[i..i + lower[i..].find('>').unwrap_or(lower.len() - i)];
        if !tag.contains(" src=\"/ui/static/") {
            return Some(tag.to_owned());
        }
        // An external script has no body.
        if !lower[i + tag.len()..].starts_with("></script>") {
            return Some(format!("{tag} with a body"));
        }
    }
    if lower.contains("<style") {
        return Some("<style".to_owned());
    }
    let bytes = lower.as_bytes();
    for (i, _) in lower.match_indices("on") {
        let before = i.checked_sub(1).map(|b| bytes[b]);
        let separated = before.is_some_and(|b| b.is_ascii_whitespace() || b"/\"'".contains(&b));
        let name_len = bytes[i + 2..]
            .iter()
            .take_while(|b| b.is_ascii_lowercase())
            .count();
        if separated && name_len > 0 && bytes.get(i + 2 + name_len) == Some(&b'=') {
            return Some(lower[i..i + 3 + name_len].to_owned());
        }
    }
    for (i, _) in lower.match_indices("style=") {
        let before = i.checked_sub(1).map(|b| bytes[b]);
        if before.is_some_and(|b| b.is_ascii_whitespace() || b"/\"'".contains(&b)) {
            return Some("style=".to_owned());
        }
    }
    None
}

#[test]
fn the_inline_scan_catches_every_kind_of_inline_script_and_style() {
    let version = stripe_ledger::ui::assets::version();
    let external = format!("<script src=\"/ui/static/{version}/ui.js\" defer></script>");
    assert_eq!(inline_script_or_style(&external), None);
    assert_eq!(
        inline_script_or_style("<p>based on x = y, onward</p>"),
        None
    );
    for bad in [
        "<script>alert(1)</script>",
        "<SCRIPT type=\"module\">x</SCRIPT>",
        "<script src=\"https://evil.example/x.js\"></script>",
        "<script src=\"/ui/static/v/ui.js\">alert(1)</script>",
        "<style>p{}</style>",
        "<p style=\"color:red\">",
        "<img src=x onerror=alert(1)>",
        "<img/onerror=alert(1)>",
        "<body onload=\"x()\">",
        "<a href=x\n onclick='y'>",
    ] {
        assert!(inline_script_or_style(bad).is_some(), "{bad}");
    }
}

/// Every page kind of the console, signed in or not: the headers, and nothing inline.
fn assert_safe_page(what: &str, page: &Page) {
    assert_security_headers(what, page);
    assert_eq!(page.header("cache-control"), "no-store", "{what}");
    if let Some(found) = inline_script_or_style(&page.text) {
        panic!("{what} holds {found}");
    }
}

#[tokio::test]
async fn every_ui_response_carries_the_security_headers() {
    // An empty log: the sign-in form, the empty state, an error page signed out.
    let empty = console_app().spawn().await;
    let anonymous = Browser::new(&empty);
    let mut pages = vec![
        ("login", anonymous.get("/ui/login").await),
        ("error, signed out", anonymous.get("/ui/no-such-page").await),
        (
            "error, a POST",
            anonymous.post("/ui/login", &[("token", "x")]).await,
        ),
    ];
    let reader = Browser::signed_in(&empty, AUDIT_TOKEN).await;
    let events = reader.get("/ui/events").await;
    assert!(
        events.text.contains("stripe-ledger trigger"),
        "the empty state"
    );
    pages.push(("events, empty", events));

    // The seed's scenarios (every object kind, a user's entitlement) and a dead letter. The
    // longest ingest budget: a loaded machine must not turn a delivery into a 503 here.
    let app = console_app()
        .env("INGEST_TIMEOUT_MS", "25000")
        .spawn()
        .await;
    let mut scenario = crate::ui_browser::scenario("happy_path_checkout");
    scenario.extend(crate::ui_browser::scenario("one_time_purchase"));
    crate::scenarios::log_what_checkout_created(&app, &scenario).await;
    for e in &scenario {
        assert_eq!(app.deliver(e).await.status, 200);
    }
    let dead = crate::ui_browser::dead_letter(&app, "hdr1").await;
    let invoice = object_of_kind(&scenario, "invoice");
    let operator = Browser::signed_in(&app, OPERATOR_TOKEN).await;
    for (what, path) in [
        ("events, with rows", "/ui/events".to_owned()),
        ("an event", format!("/ui/events/{dead}")),
        ("raw", format!("/ui/events/{dead}/raw")),
        ("integrity", "/ui/integrity".to_owned()),
        ("operations", "/ui/operations".to_owned()),
        (
            "the retry-all confirmation",
            "/ui/operations/dead-letters/retry-all".to_owned(),
        ),
        ("customer", "/ui/customers/cus_happy1".to_owned()),
        ("subscription", "/ui/subscriptions/sub_happy1".to_owned()),
        ("invoice", format!("/ui/invoices/{invoice}")),
        ("order", "/ui/orders/cs_test_once1".to_owned()),
        ("entitlement", "/ui/entitlements/user_happy_1".to_owned()),
        ("error, not found", "/ui/events/evt_nope".to_owned()),
        ("error, no such page", "/ui/no-such-page".to_owned()),
    ] {
        pages.push((what, operator.get(&path).await));
    }
    for (what, page) in &pages {
        assert_safe_page(what, page);
    }
    let page = |name: &str| &pages.iter().find(|(w, _)| *w == name).unwrap().1;
    // Each page is the kind it is named for, not a redirect or an error in its place.
    for (what, page) in &pages {
        let expected = if what.starts_with("error") { 400 } else { 200 };
        assert!(
            (expected..expected + 100).contains(&page.status),
            "{what}: {} {}",
            page.status,
            page.text
        );
    }
    assert!(
        page("operations").text.contains(&dead),
        "the dead letter is listed"
    );
    assert!(page("the retry-all confirmation")
        .text
        .contains("data-plan-count=\"1\""));
    assert!(page("raw")
        .header("content-disposition")
        .starts_with("attachment"));
    let missing = page("error, not found");
    assert_eq!((missing.status, missing.code()), (404, "event_not_found"));
    let unknown = page("error, no such page");
    assert_eq!((unknown.status, unknown.code()), (404, "route_not_found"));

    let version = stripe_ledger::ui::assets::version();
    for asset in ["app.css", "ui.js"] {
        let page = operator.get(&format!("/ui/static/{version}/{asset}")).await;
        assert_security_headers(asset, &page);
        assert_eq!(page.status, 200);
        assert!(page.header("cache-control").contains("immutable"));
    }
}

/// The id of the first object of `kind` (`invoice`, ...) in a scenario's events.
fn object_of_kind(events: &[Vec<u8>], kind: &str) -> String {
    events
        .iter()
        .map(|e| serde_json::from_slice::<Value>(e).unwrap())
        .find_map(|v| {
            let o = &v["data"]["object"];
            (o["object"] == kind).then(|| o["id"].as_str().unwrap().to_owned())
        })
        .unwrap_or_else(|| panic!("the scenario has no {kind}"))
}

#[tokio::test]
async fn error_pages_show_the_mode_banner_and_escape_what_they_echo() {
    let app = console_app().spawn().await;
    let anonymous = Browser::new(&app);
    let reader = Browser::signed_in(&app, AUDIT_TOKEN).await;
    let hostile = "/ui/events?%3Cscript%3Ealert(1)%3C%2Fscript%3E=1";
    let pages = [
        anonymous.get("/ui/no-such-page").await,
        anonymous.post("/ui/login", &[("token", "x")]).await,
        reader.get("/ui/events/evt_nope").await,
        reader.get(hostile).await,
        reader.post("/ui/logout", &[("csrf", "wrong")]).await,
    ];
    let codes: Vec<&str> = pages.iter().map(Page::code).collect();
    assert_eq!(
        codes,
        [
            "route_not_found",
            "csrf_token_invalid",
            "event_not_found",
            "unknown_parameter",
            "csrf_token_invalid"
        ]
    );
    for page in &pages {
        assert!(page.header("content-type").starts_with("text/html"));
        assert!(
            page.text.contains("<strong>TEST</strong> mode"),
            "{}",
            page.text
        );
    }
    let echoed = &pages[3].text;
    assert!(!echoed.contains("<script>alert"), "{echoed}");
    assert!(
        echoed.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{echoed}"
    );

    let live = console_app()
        .env("STRIPE_SECRET_KEY", "sk_live_0123456789abcdef")
        .spawn()
        .await;
    let page = Browser::new(&live).get("/ui/no-such-page").await;
    assert_eq!(page.code(), "route_not_found");
    assert!(
        page.text.contains("<strong>LIVE</strong> mode"),
        "{}",
        page.text
    );
}

#[tokio::test]
async fn signing_in_sets_an_http_only_strict_cookie_and_signing_out_ends_the_session() {
    let app = seeded().await;
    let mut browser = Browser::new(&app);
    let page = browser.sign_in(AUDIT_TOKEN).await;
    assert_eq!((page.status, page.header("location")), (303, "/ui/events"));
    let cookie = page.session_cookie().expect("a session cookie");
    // Plain http on 127.0.0.1: no `Secure`, so no `__Host-` prefix (it requires Secure).
    assert!(cookie.starts_with("sl_ui="), "{cookie}");
    for flag in ["Path=/", "HttpOnly", "SameSite=Strict", "Max-Age=28800"] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert!(
        !cookie.contains(AUDIT_TOKEN),
        "the token is never in the cookie"
    );
    let list = browser.get("/ui/events").await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert!(list.text.contains("TEST</strong> mode"));

    let csrf = list.csrf();
    let out = browser.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!((out.status, out.header("location")), (303, "/ui/login"));
    assert!(out.session_cookie().unwrap().contains("Max-Age=0"));
    // The old cookie is worth nothing now: the row is gone.
    let after = browser.get("/ui/events").await;
    assert_eq!(after.status, 303);
}

#[tokio::test]
async fn behind_https_the_cookie_is_host_prefixed_and_secure() {
    let app = console_app()
        .env("PUBLIC_URL", "https://ledger.example.com")
        .spawn()
        .await;
    let mut browser = Browser::new(&app);
    let csrf = browser.open_sign_in().await;
    let nonce = browser.login_cookie.clone().unwrap();
    assert!(nonce.starts_with("__Host-sl_ui_login="), "{nonce}");
    let fields = [("token", AUDIT_TOKEN), ("csrf", csrf.as_str())];
    let page = browser
        .post_with(
            "/ui/login",
            &fields,
            &[("origin", "https://ledger.example.com")],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.text);
    let cookie = page.session_cookie().expect("a session cookie");
    assert!(cookie.starts_with("__Host-sl_ui="), "{cookie}");
    assert!(
        cookie.contains("; Secure") && cookie.contains("Path=/"),
        "{cookie}"
    );
    let cleared = page.set_cookie("__Host-sl_ui_login").unwrap();
    assert!(
        cleared.contains("Max-Age=0") && cleared.contains("; Secure"),
        "{cleared}"
    );
    // An Origin other than PUBLIC_URL's is refused, even our own loopback address.
    let own = app.base_url.clone();
    let page = browser
        .post_with("/ui/login", &fields, &[("origin", &own)])
        .await;
    assert_eq!((page.status, page.code()), (403, "cross_origin_request"));
}

#[tokio::test]
async fn a_read_only_token_cannot_sign_in_and_a_wrong_token_is_refused() {
    let app = console_app().spawn().await;
    let mut browser = Browser::new(&app);
    let page = browser.sign_in(READ_TOKEN).await;
    assert_eq!(page.status, 403);
    assert!(page.text.contains("lacks the audit scope"), "{}", page.text);
    assert!(page.session_cookie().is_none(), "no session");
    let page = browser.sign_in("not-a-configured-token-0123").await;
    assert_eq!(page.status, 401);
    assert!(page.text.contains("not a configured service token"));
    assert!(page.session_cookie().is_none(), "no session");
    let page = browser.sign_in(METRICS_TOKEN).await;
    assert_eq!(page.status, 403);
    assert_eq!(browser.get("/ui/events").await.status, 303);
}

#[tokio::test]
async fn failed_sign_ins_are_rate_limited() {
    let app = console_app().spawn().await;
    let mut browser = Browser::new(&app);
    for _ in 0..stripe_ledger::ui::session::LOGIN_FAILURES_PER_WINDOW {
        assert_eq!(browser.sign_in("wrong-token-wrong-token").await.status, 401);
    }
    let page = browser.sign_in(AUDIT_TOKEN).await;
    assert_eq!(
        page.status, 429,
        "a correct token waits too: the limit comes first"
    );
    assert!(page.session_cookie().is_none(), "no session");
}

/// How many sign-ins the operator-action log holds: each session starts with one.
async fn sign_ins(app: &TestApp) -> usize {
    use stripe_ledger::store::ui::{ActionKind, UiStore as _};
    let actions = app.db.operator_actions_list(None, 100).await.unwrap();
    actions
        .iter()
        .filter(|a| a.action == ActionKind::SignIn)
        .count()
}

#[tokio::test]
async fn a_sign_in_without_its_forms_token_or_with_a_wrong_or_foreign_one_is_refused_and_starts_no_session(
) {
    let app = console_app().spawn().await;
    // Another browser's form: a token that is valid, but for another nonce.
    let foreign = Browser::new(&app).open_sign_in().await;
    let mut browser = Browser::new(&app);
    let own = browser.open_sign_in().await;
    assert_ne!(own, foreign);
    for csrf in [None, Some(""), Some("AAAA"), Some(foreign.as_str())] {
        let mut fields = vec![("token", AUDIT_TOKEN)];
        fields.extend(csrf.map(|c| ("csrf", c)));
        let page = browser.post("/ui/login", &fields).await;
        assert_eq!(
            (page.status, page.code()),
            (403, "csrf_token_invalid"),
            "{csrf:?}"
        );
        assert!(page.session_cookie().is_none(), "{csrf:?}");
    }
    // The right field without the nonce cookie it was made for (a forger's page cannot set
    // it): refused too.
    let cookieless = Browser::new(&app);
    let page = cookieless
        .post("/ui/login", &[("token", AUDIT_TOKEN), ("csrf", &own)])
        .await;
    assert_eq!((page.status, page.code()), (403, "csrf_token_invalid"));
    assert_eq!(sign_ins(&app).await, 0, "no session was started");
    assert_eq!(browser.get("/ui/events").await.status, 303);

    // With its own token the same form signs in, and the nonce cookie is cleared.
    let page = browser
        .post("/ui/login", &[("token", AUDIT_TOKEN), ("csrf", &own)])
        .await;
    assert_eq!(page.status, 303, "{}", page.text);
    assert!(page.session_cookie().is_some());
    let cleared = page.set_cookie("sl_ui_login").unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(sign_ins(&app).await, 1);
}

#[tokio::test]
async fn the_sign_in_form_sets_a_short_lived_strict_nonce_cookie_and_its_token_field() {
    let app = console_app().spawn().await;
    let form = Browser::new(&app).get("/ui/login").await;
    let cookie = form.set_cookie("sl_ui_login").expect("a nonce cookie");
    for flag in ["Path=/", "HttpOnly", "SameSite=Strict", "Max-Age=900"] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(form
        .text
        .contains(r#"<input type="hidden" name="csrf" value=""#));
    // A refused attempt shows the form again with the same nonce (renewed) and its token, which work.
    let mut browser = Browser::new(&app);
    let refused = browser.sign_in("not-a-configured-token-0123").await;
    assert_eq!(refused.status, 401);
    let again = refused.set_cookie("sl_ui_login").expect("a fresh nonce");
    browser.login_cookie = Some(again.split(';').next().unwrap().to_owned());
    let csrf = refused.csrf();
    let fields = [("token", AUDIT_TOKEN), ("csrf", csrf.as_str())];
    let page = browser.post("/ui/login", &fields).await;
    assert_eq!(page.status, 303, "{}", page.text);
}

#[tokio::test]
async fn a_forged_post_without_the_csrf_token_or_from_another_origin_is_refused() {
    let app = seeded().await;
    let browser = Browser::signed_in(&app, AUDIT_TOKEN).await;
    let csrf = browser.get("/ui/events").await.csrf();

    let forged = [
        // A cross-site form with the right token (a token leak alone is not enough).
        (
            vec![("csrf", csrf.as_str())],
            vec![("sec-fetch-site", "cross-site")],
            "cross_origin_request",
        ),
        (
            vec![("csrf", csrf.as_str())],
            vec![("sec-fetch-site", "same-site")],
            "cross_origin_request",
        ),
        // No Fetch-Metadata: Origin decides.
        (
            vec![("csrf", csrf.as_str())],
            vec![("origin", "https://evil.example")],
            "cross_origin_request",
        ),
        (
            vec![("csrf", csrf.as_str())],
            vec![],
            "cross_origin_request",
        ),
        // Same origin, but no token or someone else's.
        (
            vec![],
            vec![("sec-fetch-site", "same-origin")],
            "csrf_token_invalid",
        ),
        (
            vec![("csrf", "AAAA")],
            vec![("sec-fetch-site", "same-origin")],
            "csrf_token_invalid",
        ),
    ];
    for (fields, headers, code) in forged {
        let page = browser.post_with("/ui/logout", &fields, &headers).await;
        assert_eq!(
            (page.status, page.code()),
            (403, code),
            "{fields:?} {headers:?}"
        );
    }
    // Still signed in: none of them logged us out.
    assert_eq!(browser.get("/ui/events").await.status, 200);
    // A same-origin POST by Origin (no Fetch-Metadata) with the token works.
    let host = app.base_url.clone();
    let page = browser
        .post_with("/ui/logout", &[("csrf", &csrf)], &[("origin", &host)])
        .await;
    assert_eq!(page.status, 303, "{}", page.text);
}

#[tokio::test]
async fn ui_takes_only_its_cookie_and_api_only_bearer_tokens() {
    let app = seeded().await;
    let browser = Browser::signed_in(&app, AUDIT_TOKEN).await;
    // A bearer token on /ui is not a session.
    let page = browser
        .client
        .get(format!("{}/ui/events", app.base_url))
        .bearer_auth(AUDIT_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303);
    // The session cookie on /api is not a token.
    let reply = browser
        .client
        .get(format!("{}/api/audit/events", app.base_url))
        .header("cookie", browser.cookie.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 401);
    // A POST without a session is refused, not redirected.
    let page = Browser::new(&app)
        .post("/ui/logout", &[("csrf", "x")])
        .await;
    assert_eq!((page.status, page.code()), (403, "session_required"));
}

#[tokio::test]
async fn a_session_ends_after_its_idle_timeout() {
    // Session times are whole seconds: an idle timeout of 3 s ends a session after 2 to 3 s.
    let app = console_app().env("UI_SESSION_IDLE", "3s").spawn().await;
    let browser = Browser::signed_in(&app, AUDIT_TOKEN).await;
    for _ in 0..3 {
        // Used within the timeout: still on, and each use moves its idle clock.
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
        assert_eq!(browser.get("/ui/events").await.status, 200);
    }
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let page = browser.get("/ui/events").await;
    assert_eq!(page.status, 303, "idle for longer than UI_SESSION_IDLE");
}

#[tokio::test]
async fn removing_a_token_from_the_configuration_ends_its_sessions() {
    let app = console_app().spawn().await;
    let mut browser = Browser::signed_in(&app, OPERATOR_TOKEN).await;
    assert_eq!(browser.get("/ui/events").await.status, 200);
    // The same database, restarted without the operator's token.
    let restarted = TestApp::builder()
        .database(app.database.clone())
        .spawn()
        .await;
    browser.base = restarted.base_url.clone();
    assert_eq!(browser.get("/ui/events").await.status, 303);
    // And on the original instance the row is gone too.
    browser.base = app.base_url.clone();
    assert_eq!(browser.get("/ui/events").await.status, 303);
}

#[tokio::test]
async fn the_event_list_filters_by_type_prefix_object_source_mode_and_time() {
    let app = seeded().await;
    let browser = Browser::signed_in(&app, AUDIT_TOKEN).await;
    let cases: &[(&str, &[&str])] = &[
        ("", &["evt_u5", "evt_u4", "evt_u3", "evt_u2", "evt_u1"]),
        ("type=invoice.paid", &["evt_u5", "evt_u3"]),
        ("type=customer.*", &["evt_u4", "evt_u2", "evt_u1"]),
        ("type=customer.*&object_id=cus_u1", &["evt_u4", "evt_u1"]),
        ("object_id=in_u1", &["evt_u3"]),
        (
            "source=webhook&livemode=false",
            &["evt_u5", "evt_u4", "evt_u3", "evt_u2", "evt_u1"],
        ),
        ("livemode=true", &[]),
        ("source=api_backfill", &[]),
        (
            "created_gte=1700000100&created_lt=1700000300",
            &["evt_u3", "evt_u2"],
        ),
        (
            "created_gte=2023-11-14T22%3A15&created_lt=",
            &["evt_u5", "evt_u4", "evt_u3", "evt_u2"],
        ),
        (
            "received_gte=2000-01-01T00%3A00&type=&object_id=&source=",
            &["evt_u5", "evt_u4", "evt_u3", "evt_u2", "evt_u1"],
        ),
        ("received_lt=2000-01-01T00%3A00", &[]),
    ];
    for (query, expected) in cases {
        let page = browser.get(&format!("/ui/events?{query}")).await;
        assert_eq!(page.status, 200, "{query}: {}", page.text);
        assert_eq!(listed_ids(&page), *expected, "{query}");
        let count = format!("<strong data-count>{}</strong>", expected.len());
        assert!(page.text.contains(&count), "{query}: count {count}");
    }
    let bad = browser.get("/ui/events?livemode=maybe").await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_parameter"));
    let bad = browser.get("/ui/events?typo=1").await;
    assert_eq!((bad.status, bad.code()), (400, "unknown_parameter"));
}

#[tokio::test]
async fn the_event_list_pages_with_stable_cursors() {
    let app = seeded().await;
    let browser = Browser::signed_in(&app, AUDIT_TOKEN).await;
    let first = browser.get("/ui/events?limit=2").await;
    assert_eq!(listed_ids(&first), ["evt_u5", "evt_u4"]);
    let next = next_href(&first).expect("an Older link");
    // A new event arrives between pages: the next page does not shift.
    let late = event_with(
        "evt_u6",
        "customer.created",
        customer("cus_u6"),
        1_700_000_500,
        false,
    );
    assert_eq!(app.deliver(&late).await.status, 200);
    let second = browser.get(&next.replace("&#38;", "&")).await;
    assert_eq!(listed_ids(&second), ["evt_u3", "evt_u2"], "{next}");
    let third = browser
        .get(&next_href(&second).unwrap().replace("&#38;", "&"))
        .await;
    assert_eq!(listed_ids(&third), ["evt_u1"]);
    assert!(next_href(&third).is_none());
}

fn next_href(page: &Page) -> Option<String> {
    let marker = "<a href=\"";
    page.text.match_indices(marker).find_map(|(i, _)| {
        let rest = &page.text[i + marker.len()..];
        let end = rest.find('"')?;
        rest[end..]
            .starts_with("\" rel=\"next\"")
            .then(|| rest[..end].to_owned())
    })
}

#[tokio::test]
async fn the_jump_box_goes_to_the_event_or_lists_the_object() {
    let app = seeded().await;
    let browser = Browser::signed_in(&app, AUDIT_TOKEN).await;
    // Literal paths: removing an object page (or its entry in `OBJECT_PAGES`) fails here.
    let expect: BTreeMap<&str, &str> = BTreeMap::from([
        ("evt_u3", "/ui/events/evt_u3"),
        ("cus_u1", "/ui/customers/cus_u1"),
        ("sub_9", "/ui/subscriptions/sub_9"),
        ("in_u1", "/ui/invoices/in_u1"),
        ("cs_9", "/ui/orders/cs_9"),
        ("pi_9", "/ui/events?object_id=pi_9"),
        ("  evt_u1 ", "/ui/events/evt_u1"),
    ]);
    for (q, location) in expect {
        let page = browser
            .get(&format!("/ui/jump?q={}", stripe_ledger::ui::urlencode(q)))
            .await;
        assert_eq!(
            (page.status, page.header("location")),
            (303, location),
            "{q}"
        );
    }
    let page = browser.get("/ui/jump?q=%00").await;
    assert_eq!((page.status, page.code()), (400, "invalid_parameter"));
}

#[tokio::test]
async fn hostile_ids_and_payload_strings_are_escaped_everywhere() {
    let app = console_app().spawn().await;
    let hostile = r#"<script>alert(1)</script>"><img src=x onerror=alert(2)>"#;
    // Ids may not hold whitespace, so the hostile id uses `/` between attributes.
    let id = r#"evt_"><img/src=x/onerror=alert(3)>"#;
    let object = json!({
        "id": "cus_<b>bold</b>", "object": "customer", "livemode": false,
        "name": hostile, "metadata": {"note": hostile, "</pre><script>": "x"}
    });
    let body = event_with(id, "customer.created", object, 1_700_000_000, false);
    let reply = app.deliver(&body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let browser = Browser::signed_in(&app, AUDIT_TOKEN).await;
    let list = browser.get("/ui/events").await;
    let detail = browser
        .get(&format!("/ui/events/{}", stripe_ledger::ui::urlencode(id)))
        .await;
    assert_eq!(detail.status, 200, "{}", detail.text);
    for page in [&list, &detail] {
        for raw in [
            "<script>alert",
            "<img src=x",
            "<img/src",
            "<b>bold",
            "</pre><script>",
        ] {
            assert!(!page.text.contains(raw), "unescaped {raw}");
        }
    }
    assert!(
        list.text
            .contains("evt_&#34;&#62;&#60;img/src=x/onerror=alert(3)&#62;"),
        "{}",
        list.text
    );
    // The link to the event is percent-encoded, not only escaped.
    assert!(list
        .text
        .contains("/ui/events/evt_%22%3E%3Cimg%2Fsrc%3Dx%2Fonerror%3Dalert%283%29%3E"));
    assert!(detail
        .text
        .contains("&#60;script&#62;alert(1)&#60;/script&#62;"));
    // The download is the stored bytes, as an attachment.
    let raw = browser
        .get(&format!(
            "/ui/events/{}/raw",
            stripe_ledger::ui::urlencode(id)
        ))
        .await;
    assert_eq!(raw.status, 200);
    assert!(raw.header("content-disposition").starts_with("attachment"));
    assert_eq!(raw.header("content-type"), "application/octet-stream");
    let stored = stripe_ledger::event_log::get(&app.db, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw.text, stored.payload.unwrap());
}

#[tokio::test]
async fn an_event_page_shows_its_verification_and_projection() {
    let app = seeded().await;
    let browser = Browser::signed_in(&app, AUDIT_TOKEN).await;
    let page = browser.get("/ui/events/evt_u3").await;
    assert_eq!(page.status, 200);
    let stored = stripe_ledger::event_log::get(&app.db, "evt_u3")
        .await
        .unwrap()
        .unwrap();
    assert!(page.text.contains(&format!(
        "<code class=\"wrap\" data-sha256>{}</code>",
        stored.raw_body_sha256
    )));
    assert!(
        page.text.contains("secret #1 (fingerprint"),
        "{}",
        page.text
    );
    assert!(page
        .text
        .contains("<strong data-outcome>projected</strong>"));
    assert!(page.text.contains("<details open>") && page.text.contains("&#34;invoice.paid&#34;"));
}

#[tokio::test]
async fn an_empty_log_says_how_to_send_a_first_event() {
    let app = console_app().spawn().await;
    let browser = Browser::signed_in(&app, AUDIT_TOKEN).await;
    let page = browser.get("/ui/events").await;
    assert!(page
        .text
        .contains("stripe-ledger trigger checkout.session.completed"));
    // And that command is one `trigger` really takes.
    assert!(
        stripe_ledger::trigger::catalog::TriggerType::from_name("checkout.session.completed")
            .is_some()
    );
}

#[tokio::test]
async fn exports_stream_the_filtered_log_as_jsonl_and_csv_and_are_logged() {
    let app = seeded().await;
    // A customer whose id a spreadsheet would run as a formula.
    let formula = event_with(
        "evt_u7",
        "customer.created",
        customer("=2+3,\"x\""),
        1_700_000_600,
        false,
    );
    assert_eq!(app.deliver(&formula).await.status, 200);
    let browser = Browser::signed_in(&app, AUDIT_TOKEN).await;

    let jsonl = browser
        .get("/ui/events/export.jsonl?type=invoice.paid&object_id=")
        .await;
    assert_eq!(jsonl.status, 200, "{}", jsonl.text);
    assert_eq!(jsonl.header("content-type"), "application/x-ndjson");
    assert!(jsonl
        .header("content-disposition")
        .starts_with("attachment; filename=\"events-upto-"));
    assert_eq!(
        jsonl.header("transfer-encoding"),
        "chunked",
        "streamed, not buffered"
    );
    let lines: Vec<Value> = jsonl
        .text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = lines
        .iter()
        .map(|l| l["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["evt_u5", "evt_u3"]);
    assert_eq!(lines[0]["payload"]["data"]["object"]["id"], "in_u2");
    assert_eq!(lines[0]["verification"]["secret_index"], 1);

    let csv = browser.get("/ui/events/export.csv?type=customer.*").await;
    assert_eq!(csv.status, 200);
    assert_eq!(csv.header("content-type"), "text/csv; charset=utf-8");
    let rows: Vec<&str> = csv.text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(rows[0].starts_with("position,event_id,type,created,received_at,livemode"));
    let ids: Vec<&str> = rows[1..]
        .iter()
        .map(|r| r.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(ids, ["evt_u7", "evt_u4", "evt_u2", "evt_u1"]);
    assert!(
        rows[1].contains(",\"'=2+3,\"\"x\"\"\",customer,"),
        "{}",
        rows[1]
    );

    // Each export is in the operator-action log, with who, what and the filter.
    use stripe_ledger::store::ui::{ActionKind, UiStore as _};
    let actions = app.db.operator_actions_list(None, 10).await.unwrap();
    let exports: Vec<_> = actions
        .iter()
        .filter(|a| a.action == ActionKind::EventsExport)
        .collect();
    assert_eq!(exports.len(), 2);
    assert_eq!(exports[0].target, "type=customer.%2A");
    assert!(exports[0].detail.starts_with("csv up to position "));
    assert_eq!(exports[1].target, "type=invoice.paid");
    assert!(exports[0].token_fingerprint.starts_with("tok_"));
    assert!(!exports[0].token_fingerprint.contains(AUDIT_TOKEN));
}

#[tokio::test]
async fn an_export_pages_through_more_entries_than_one_read_holds() {
    use stripe_ledger::store::rebuild::RebuildStore as _;
    let app = console_app().spawn().await;
    let entries: Vec<_> = (0..1_234)
        .map(|i| {
            let id = format!("evt_bulk{i:05}");
            crate::helpers::backfill_entry(&event_with(
                &id,
                "invoice.paid",
                invoice(&format!("in_b{i}"), "cus_b"),
                1_700_000_000 + i,
                false,
            ))
        })
        .collect();
    let refs: Vec<_> = entries.iter().collect();
    app.db.bench_bulk_append(&refs).await.unwrap();
    let browser = Browser::signed_in(&app, AUDIT_TOKEN).await;
    let jsonl = browser
        .get("/ui/events/export.jsonl?source=api_backfill")
        .await;
    let ids: Vec<String> = jsonl
        .text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let expected: Vec<String> = (0..1_234)
        .rev()
        .map(|i| format!("evt_bulk{i:05}"))
        .collect();
    assert_eq!(
        ids, expected,
        "every entry once, newest first, across pages"
    );
    let csv = browser
        .get("/ui/events/export.csv?created_gte=1700000100")
        .await;
    assert_eq!(
        csv.text.split("\r\n").filter(|l| !l.is_empty()).count(),
        1 + 1_134
    );
}

#[tokio::test]
async fn the_integrity_page_shows_the_log_range_and_the_guards_from_the_catalog() {
    let app = seeded().await;
    let browser = Browser::signed_in(&app, AUDIT_TOKEN).await;
    let page = browser.get("/ui/integrity").await;
    assert_eq!(page.status, 200);
    assert!(
        page.text.contains("<dd data-log-count>5</dd>"),
        "{}",
        page.text
    );
    let last = stripe_ledger::event_log::last_position(&app.db)
        .await
        .unwrap();
    assert!(page.text.contains(&format!(" to {last}</a>")));
    let guards = page.text.matches("<td data-guard>present</td>").count();
    assert_eq!(
        guards, 2,
        "both immutability triggers are found in the catalog"
    );
    assert!(!page.text.contains("MISSING"));
}

#[tokio::test]
async fn sealed_entries_show_their_checkpoint_and_download_a_bundle_that_verifies() {
    let app = seeded().await;
    let browser = Browser::signed_in(&app, AUDIT_TOKEN).await;
    // Before sealing: the event page says why there is no proof, and integrity has no form.
    let page = browser.get("/ui/events/evt_u3").await;
    assert!(page.text.contains("Not provable yet"), "{}", page.text);
    let none = browser.get("/ui/integrity/bundle?event_id=evt_u3").await;
    assert_eq!((none.status, none.code()), (404, "no_checkpoint"));

    let sealing = app.sealing.as_ref().expect("test apps seal");
    stripe_ledger::sealer::seal_all(&app.db).await.unwrap();
    let signed = stripe_ledger::sealer::checkpoint(&app.db, sealing, 1_764_000_000)
        .await
        .unwrap()
        .unwrap();
    let integrity = browser.get("/ui/integrity").await;
    assert!(
        integrity
            .text
            .contains("<strong data-sealed-size>5</strong>"),
        "{}",
        integrity.text
    );
    assert!(integrity.text.contains(&hex::encode(signed.root)));
    assert!(integrity.text.contains("action=\"/ui/integrity/bundle\""));
    let page = browser.get("/ui/events/evt_u3").await;
    assert!(
        page.text
            .contains("data-sealed>Sealed: leaf 2 of the tree of size 5"),
        "{}",
        page.text
    );

    let bundle = browser.get("/ui/integrity/bundle?event_id=evt_u3").await;
    assert_eq!(bundle.status, 200, "{}", bundle.text);
    assert!(bundle
        .header("content-disposition")
        .starts_with("attachment"));
    // The downloaded file verifies offline against the log's key, as an auditor would check it.
    let dir = tempfile_dir();
    let path = dir.join("bundle.json");
    std::fs::write(&path, &bundle.text).unwrap();
    let args = stripe_ledger::seal::offline::VerifyProofArgs {
        bundle: path,
        verifier_key: sealing.key.verifier().to_string(),
        format: stripe_ledger::cli::OutputFormat::Text,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = stripe_ledger::seal::offline::run(&args, &mut out, &mut err);
    assert_eq!(
        code,
        std::process::ExitCode::SUCCESS,
        "{}",
        String::from_utf8_lossy(&err)
    );
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ui-http-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn sign_in_forms_opened_in_several_tabs_all_work_because_the_nonce_is_kept() {
    let app = console_app().spawn().await;
    let mut browser = Browser::new(&app);
    // Two tabs sent to the sign-in form one after the other, with the same cookie jar.
    let first_tab = browser.open_sign_in().await;
    let nonce = browser.login_cookie.clone();
    let second_tab = browser.open_sign_in().await;
    assert_eq!(
        browser.login_cookie, nonce,
        "the second form keeps the nonce"
    );
    assert_eq!(first_tab, second_tab);
    // The first tab's form, submitted last, still signs in.
    let fields = [
        ("token", AUDIT_TOKEN),
        ("next", "/ui/events"),
        ("csrf", first_tab.as_str()),
    ];
    let page = browser.post("/ui/login", &fields).await;
    assert_eq!(page.status, 303, "{}", page.text);
    assert!(page.session_cookie().is_some());
    // A browser without the nonce gets a fresh one, and another's token is no use to it.
    let mut other = Browser::new(&app);
    let own = other.open_sign_in().await;
    assert_ne!(other.login_cookie, nonce);
    assert_ne!(own, first_tab);
}
