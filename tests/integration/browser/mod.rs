//! The real-browser harness (ADR 0021): Debian's `chromedriver` and headless `chromium`, driven
//! over WebDriver by fantoccini on plain HTTP to 127.0.0.1 (no TLS crates in the build).
//!
//! [`Browser::launch`] spawns `chromedriver --port=<free>` (killed with its browser on drop) and
//! opens one session. It returns `None` when no driver is installed: the test then prints why and
//! passes, except under `CI=true`, where a missing driver is a failure (CI installs it, see
//! `.ci/run`). Tests check the DOM only; [`Browser::shot`] writes PNGs to `target/ui-shots/` for
//! people to look at, and [`Browser::assert_accessible`] runs the vendored axe-core
//! (`tests/fixtures/axe/`) and fails on any `serious` or `critical` violation.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// axe-core 4.14.1 from npm (MPL-2.0, licence beside it), compiled into the test binary.
const AXE: &str = include_str!("../../fixtures/axe/axe.min.js");

/// The chromedriver process; killed (with the browsers it started) when dropped, so a failing
/// test leaves nothing running.
struct Driver {
    child: Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The driver runs in its own process group (pgid = its pid): end the group, so the
        // browser it launched goes too, then reap it.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-TERM", "--", &group])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

pub struct Browser {
    pub client: Client,
    // Declared after `client`; dropped last.
    _driver: Driver,
}

fn driver_path() -> Option<PathBuf> {
    let path = std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"));
    path.is_file().then_some(path)
}

/// What a browser test does, given the driver found (if any) and whether it runs in CI.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    Run(PathBuf),
    /// No driver on a developer's machine: say so and pass.
    Skip(String),
    /// No driver under `CI=true`: CI installs one, so its absence is a broken setup.
    Fail(String),
}

pub fn gate(driver: Option<PathBuf>, ci: bool, test: &str) -> Gate {
    match driver {
        Some(path) => Gate::Run(path),
        None => {
            let message = format!(
                "{test}: skipped, no chromedriver (install `chromium chromium-driver` or set \
                 CHROMEDRIVER)"
            );
            if ci {
                Gate::Fail(format!(
                    "{message}; CI=true requires the browser tests to run"
                ))
            } else {
                Gate::Skip(message)
            }
        }
    }
}

fn chromium_path() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}

/// Polls chromedriver's `/status` until it says it is ready.
async fn wait_ready(port: u16, driver: &mut Driver) {
    let url = format!("http://127.0.0.1:{port}/status");
    stripe_ledger::install_crypto_provider();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = driver.child.try_wait() {
            panic!("chromedriver exited before it was ready: {status}");
        }
        if let Ok(reply) = http.get(&url).send().await {
            if let Ok(body) = reply.text().await {
                let body: Value = serde_json::from_str(&body).unwrap_or_default();
                if body["value"]["ready"] == true {
                    return;
                }
            }
        }
        assert!(Instant::now() < deadline, "chromedriver not ready in 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Browser {
    /// A headless Chromium session, or `None` (with a message) when no chromedriver is
    /// installed. Under `CI=true` a missing driver panics instead: CI must run these tests.
    pub async fn launch(test: &str) -> Option<Browser> {
        let ci = std::env::var("CI").as_deref() == Ok("true");
        let path = match gate(driver_path(), ci, test) {
            Gate::Run(path) => path,
            Gate::Skip(message) => {
                eprintln!("{message}");
                return None;
            }
            Gate::Fail(message) => panic!("{message}"),
        };
        let port = free_port();
        let child = {
            use std::os::unix::process::CommandExt as _;
            Command::new(path)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("spawn chromedriver")
        };
        let mut driver = Driver { child };
        wait_ready(port, &mut driver).await;
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": chromium_path(),
                "args": ["--headless", "--no-sandbox", "--disable-dev-shm-usage",
                         "--window-size=1280,900"],
            }
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal")
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("open a WebDriver session");
        Some(Browser {
            client,
            _driver: driver,
        })
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The path and query of the current page, e.g. `/ui/events?type=invoice.paid`.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("current url");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("element text")
    }

    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element `{css}`: {e}"))
    }

    pub async fn find_all(&self, css: &str) -> Vec<fantoccini::elements::Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .expect("find elements")
    }

    /// Writes a PNG of the viewport to `target/ui-shots/<name>.png` for people to look at
    /// (never compared: Debian moves Chromium across majors).
    pub async fn shot(&self, name: &str) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ui-shots");
        std::fs::create_dir_all(&dir).expect("create target/ui-shots");
        let png = self.client.screenshot().await.expect("screenshot");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }

    /// Runs axe-core on the current page and fails on any `serious` or `critical` violation,
    /// naming the rule and the offending elements.
    pub async fn assert_accessible(&self, view: &str) {
        let blocking = self.blocking_violations().await;
        assert!(
            blocking.is_empty(),
            "{view}: axe-core reports serious/critical violations: {}",
            serde_json::to_string_pretty(&blocking).unwrap()
        );
    }

    /// axe-core's `serious` and `critical` violations on the current page.
    pub async fn blocking_violations(&self) -> Vec<Value> {
        // WebDriver scripts run outside the page's CSP, so the strict CSP needs no exception.
        let defined = self
            .client
            .execute(
                &format!("{AXE}\n;return typeof window.axe === 'object';"),
                vec![],
            )
            .await
            .expect("inject axe-core");
        assert_eq!(defined, json!(true), "axe-core did not load");
        let result = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 window.axe.run(document, {resultTypes: ['violations']})
                   .then(r => done(r.violations.map(v => ({
                       id: v.id, impact: v.impact, help: v.help,
                       nodes: v.nodes.map(n => n.target.join(' ')) }))))
                   .catch(e => done({error: String(e)}));",
                vec![],
            )
            .await
            .expect("run axe-core");
        assert!(result.get("error").is_none(), "axe-core failed: {result}");
        result
            .as_array()
            .expect("a list of violations")
            .iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .cloned()
            .collect()
    }

    /// Waits (up to 10 s) until the current page's path and query start with `prefix`, and
    /// returns them: a click that submits a form returns before the next page has loaded.
    pub async fn wait_for_path(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let path = self.path().await;
            let ready = self
                .client
                .execute("return document.readyState;", vec![])
                .await
                .ok();
            if path.starts_with(prefix) && ready == Some(json!("complete")) {
                return path;
            }
            assert!(
                Instant::now() < deadline,
                "still on {path}, expected {prefix}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Presses and releases one key, sent to whatever has focus (as a person typing would).
    pub async fn press(&self, key: char) {
        use fantoccini::actions::{InputSource as _, KeyAction, KeyActions};
        let keys = KeyActions::new("keyboard".to_owned())
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
        self.client
            .perform_actions(keys)
            .await
            .unwrap_or_else(|e| panic!("press {key:?}: {e}"));
    }

    /// Fills the sign-in form with `token` and submits it; returns the page it lands on.
    pub async fn sign_in(&self, base_url: &str, token: &str) -> String {
        self.goto(&format!("{base_url}/ui/login")).await;
        self.find("input[name=token]")
            .await
            .send_keys(token)
            .await
            .expect("type the token");
        // The answer may be the sign-in page again: mark this document, and wait for another.
        self.client
            .execute("window.slOldPage = true;", vec![])
            .await
            .expect("mark the page");
        self.find("form[action='/ui/login'] button[type=submit]")
            .await
            .click()
            .await
            .expect("submit the sign-in form");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let fresh = self
                .client
                .execute(
                    "return window.slOldPage === undefined && document.readyState === 'complete';",
                    vec![],
                )
                .await
                .ok();
            if fresh == Some(json!(true)) {
                break;
            }
            assert!(Instant::now() < deadline, "the sign-in form did not answer");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.path().await
    }

    /// Ends the WebDriver session (the browser quits); the driver goes on drop.
    pub async fn close(self) {
        let Browser { client, _driver } = self;
        let _ = client.close().await;
    }
}
