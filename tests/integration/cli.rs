//! The `stripe-ledger` binary and its subcommands, as an operator runs them.

use std::process::{Command, Stdio};
use std::time::Duration;

use stripe_ledger::cli::{self, EventsCommand, EventsListArgs, OrderArg, OutputFormat};
use stripe_ledger::trigger::{self, TriggerRequest};

use crate::helpers::{event, unique_id, TestApp};

const BIN: &str = env!("CARGO_BIN_EXE_stripe-ledger");

fn bare_command() -> Command {
    let mut command = Command::new(BIN);
    // Nothing from the developer's environment or .env may leak into these runs.
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    let dir = std::env::temp_dir().join(unique_id("stripe-ledger-cli"));
    std::fs::create_dir_all(&dir).unwrap();
    command.current_dir(dir);
    command
}

#[test]
fn serve_without_a_webhook_secret_refuses_to_start_and_names_the_variable() {
    let output = bare_command().arg("serve").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("STRIPE_WEBHOOK_SECRET"), "{stderr}");
}

#[test]
fn serve_with_a_malformed_variable_names_it_without_echoing_it() {
    let output = bare_command()
        .arg("serve")
        .env("STRIPE_WEBHOOK_SECRET", "whsec_ok")
        .env("STRIPE_SECRET_KEY", "pk_test_secretish_value")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("STRIPE_SECRET_KEY"), "{stderr}");
    assert!(!stderr.contains("secretish_value"), "{stderr}");
}

#[test]
fn a_worker_thread_count_out_of_range_stops_every_command_with_exit_code_2() {
    for (command, value) in [("serve", "0"), ("serve", "1025"), ("migrate", "many")] {
        let output = bare_command()
            .arg(command)
            .env("STRIPE_WEBHOOK_SECRET", "whsec_ok")
            .env("WORKER_THREADS", value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{command} {value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with("configuration error: WORKER_THREADS: must be"),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn the_binary_serves_on_the_embedded_default_and_trigger_posts_a_signed_fixture() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = bare_command();
    let dir = command.get_current_dir().unwrap().to_owned();
    let mut server = command
        .arg("serve")
        .env("STRIPE_WEBHOOK_SECRET", "whsec_cli_test")
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
        {
            ready = r.status().is_success();
            if ready {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the server did not become ready");
    // The default database is a file in the working directory, created on first run.
    assert!(dir.join("stripe-ledger.db").exists());

    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/events/customer.created.json");
    let url = format!("http://127.0.0.1:{port}/webhooks/stripe");
    let run_trigger = |extra: &[&str]| {
        let mut c = bare_command();
        c.args(["trigger", fixture.to_str().unwrap(), "--url", &url])
            .args(extra);
        c.env("STRIPE_WEBHOOK_SECRET", "whsec_cli_test")
            .output()
            .unwrap()
    };
    let first = run_trigger(&[]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("\"recorded\""));
    let again = run_trigger(&[]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("\"duplicate\""));
    let fresh = run_trigger(&["--fresh-id"]);
    assert!(String::from_utf8_lossy(&fresh.stdout).contains("\"recorded\""));
    let wrong = run_trigger(&["--secret", "whsec_wrong"]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stdout).contains("signature_mismatch"));

    let list = bare_command()
        .current_dir(&dir)
        .args(["events", "list", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 2);

    // SIGTERM: a graceful stop with exit code 0.
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    let status = server.wait().unwrap();
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn events_list_and_show_print_the_log_for_operators() {
    let app = TestApp::spawn().await;
    for i in 0..3 {
        assert_eq!(
            app.deliver(&event(&format!("evt_cli_{i}"), "invoice.paid"))
                .await
                .status,
            200
        );
    }
    let list_args = |format, cursor: Option<String>| EventsListArgs {
        event_type: Some("invoice.paid".into()),
        object_id: None,
        source: None,
        since: None,
        until: None,
        limit: 2,
        order: OrderArg::Asc,
        cursor,
        format,
    };
    let mut out = Vec::new();
    let code = cli::events(
        &app.db,
        EventsCommand::List(list_args(OutputFormat::Text, None)),
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("evt_cli_0") && text.contains("evt_cli_1") && !text.contains("evt_cli_2"),
        "{text}"
    );
    let cursor = text
        .lines()
        .last()
        .unwrap()
        .strip_prefix("more: --cursor ")
        .unwrap()
        .to_owned();
    let mut out = Vec::new();
    cli::events(
        &app.db,
        EventsCommand::List(list_args(OutputFormat::Json, Some(cursor))),
        &mut out,
    )
    .await
    .unwrap();
    let page: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(page["data"][0]["event_id"], "evt_cli_2");
    assert_eq!(page["next_cursor"], serde_json::Value::Null);

    let mut out = Vec::new();
    cli::events(
        &app.db,
        EventsCommand::Show {
            event_id: "evt_cli_1".into(),
            format: OutputFormat::Json,
            proof: false,
        },
        &mut out,
    )
    .await
    .unwrap();
    let shown: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(shown["payload"]["id"], "evt_cli_1");
    let mut out = Vec::new();
    let code = cli::events(
        &app.db,
        EventsCommand::Show {
            event_id: "evt_missing".into(),
            format: OutputFormat::Text,
            proof: false,
        },
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(code, std::process::ExitCode::FAILURE);
}

#[tokio::test]
async fn trigger_signs_exactly_as_stripe_does() {
    let app = TestApp::spawn().await;
    let client = trigger::http_client().unwrap();
    let payload = event("evt_trigger_lib", "customer.created");
    let response = trigger::send(
        &client,
        TriggerRequest {
            url: app.url("/webhooks/stripe"),
            secret: app.secret.clone(),
            payload,
            timestamp: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    let stored = app.audit("/api/audit/events/evt_trigger_lib").await;
    assert_eq!(stored.json["verification"]["secret_index"], 1);
}

#[test]
fn a_malformed_env_file_names_the_line_and_the_variable_but_never_the_secret() {
    let mut command = bare_command();
    let dir = command.get_current_dir().unwrap().to_owned();
    let secret = unique_id("jwt-secret-leakcheck");
    std::fs::write(
        dir.join(".env"),
        format!("# local settings\nLISTEN_ADDR=127.0.0.1:0\n\nJWT_SECRET=\"{secret}\nOTHER=1\n"),
    )
    .unwrap();
    let output = command.arg("migrate").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 4 (JWT_SECRET)"), "{stderr}");
    assert!(!stderr.contains(&secret), "{stderr}");
    assert!(!stderr.contains("leakcheck"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_whitespace_only_secret_stops_the_binary_naming_the_variable() {
    for variable in ["JWT_SECRET", "SMTP_URL", "STRIPE_SECRET_KEY", "API_TOKENS"] {
        let output = bare_command()
            .arg("serve")
            .env("STRIPE_WEBHOOK_SECRET", "whsec_ok")
            .env(variable, "   ")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{variable}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(variable) && stderr.contains("only whitespace"),
            "{stderr}"
        );
    }
    let output = bare_command()
        .args(["sync-events", "--since", "1d"])
        .env("STRIPE_SECRET_KEY", " \t ")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("STRIPE_SECRET_KEY: is only whitespace")
    );
}

#[test]
fn an_overflowing_or_overlong_since_is_refused_with_exit_code_2() {
    for since in [
        "213503982334602d",
        "9223372036854775807",
        "3651d",
        "-1",
        "1e3",
        "١٢",
    ] {
        let output = bare_command()
            .arg("sync-events")
            .arg(format!("--since={since}"))
            .env("STRIPE_SECRET_KEY", "sk_test_unused")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{since}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.starts_with("error: --since "), "{stderr}");
    }
}

fn list_args(pairs: &[(&str, &str)], limit: u32) -> EventsListArgs {
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    };
    EventsListArgs {
        event_type: get("type"),
        object_id: get("object_id"),
        source: get("source"),
        since: get("created_gte"),
        until: get("created_lt"),
        limit,
        order: OrderArg::Desc,
        cursor: get("cursor"),
        format: OutputFormat::Text,
    }
}

#[tokio::test]
async fn events_list_refuses_bad_filters_with_the_apis_code_and_message() {
    let app = TestApp::spawn().await;
    // Over the 255-byte id limit, under the 8 KiB URI limit (which the API answers with 414).
    let long = "x".repeat(3_000);
    let cases: Vec<(Vec<(&str, &str)>, u32)> = vec![
        (vec![("type", "")], 50),
        (vec![("object_id", long.as_str())], 50),
        (vec![("source", "")], 50),
        (vec![("created_gte", "yesterday")], 50),
        (vec![("created_lt", "213503982334602d")], 50),
        (vec![("cursor", "7")], 50),
        (vec![], 0),
        (vec![], 1000),
    ];
    for (pairs, limit) in cases {
        let refused = cli::list_request(&list_args(&pairs, limit)).unwrap_err();
        // Every value here is plain ASCII: no percent-encoding needed.
        let mut query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        query.push(format!("limit={limit}"));
        let api = app
            .audit(&format!("/api/audit/events?{}", query.join("&")))
            .await;
        assert_eq!(api.status, 400, "{pairs:?} {}", api.text);
        assert_eq!(
            api.json["error"]["code"],
            refused.code.as_str(),
            "{pairs:?}"
        );
        assert_eq!(api.json["error"]["message"], refused.message, "{pairs:?}");
        // The library command refuses it too, before any query, with exit code 2.
        let mut out = Vec::new();
        let code = cli::events(
            &app.db,
            EventsCommand::List(list_args(&pairs, limit)),
            &mut out,
        )
        .await
        .unwrap();
        assert_eq!(code, std::process::ExitCode::from(2), "{pairs:?}");
        assert!(out.is_empty());
    }
}

#[test]
fn the_binary_refuses_an_empty_type_and_a_zero_limit_with_exit_code_2() {
    for args in [
        &["events", "list", "--type", ""][..],
        &["events", "list", "--limit", "0"],
        &["events", "list", "--limit", "1000"],
        &["events", "list", "--since", "soon"],
    ] {
        let output = bare_command().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with("error: invalid_parameter: `"),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn hostile_text_in_the_log_is_escaped_and_cut_in_text_output() {
    let app = TestApp::spawn().await;
    // The webhook refuses control characters in ids; a row can still hold them (an older
    // version, another writer), so it is appended directly.
    let event_id = unique_id("evt_hostile");
    let object_id = format!(
        "sub_\u{1b}[2J\n{} forged-row\u{202e}{}",
        event_id,
        "y".repeat(500)
    );
    let body = serde_json::json!({
        "id": event_id, "object": "event", "type": "customer.subscription.updated\u{9b}31m",
        "created": 1_763_800_000, "livemode": false,
        "data": {"object": {"id": object_id, "object": "subscription", "note": "\u{7f}\u{2066}"}}
    })
    .to_string();
    let entry = stripe_ledger::event_log::NewEntry {
        envelope: ledger_projections::Envelope {
            id: event_id.clone(),
            event_type: "customer.subscription.updated\u{9b}31m".into(),
            api_version: None,
            livemode: false,
            account: None,
            created: 1_763_800_000,
            object: Some(ledger_projections::envelope::ObjectRef {
                id: Some(object_id.clone()),
                object_type: Some("subscription".into()),
            }),
        },
        source: stripe_ledger::event_log::Source::ApiBackfill,
        raw_body_sha256: {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(body.as_bytes()))
        },
        payload: body,
        payload_redacted: false,
        verification: None,
        received_at: chrono::Utc::now(),
    };
    stripe_ledger::event_log::append(&app.db, &entry)
        .await
        .unwrap();

    let mut out = Vec::new();
    cli::events(&app.db, EventsCommand::List(list_args(&[], 50)), &mut out)
        .await
        .unwrap();
    let list = String::from_utf8(out).unwrap();
    let mut out = Vec::new();
    cli::events(
        &app.db,
        EventsCommand::Show {
            event_id: event_id.clone(),
            format: OutputFormat::Text,
            proof: false,
        },
        &mut out,
    )
    .await
    .unwrap();
    let show = String::from_utf8(out).unwrap();
    for text in [&list, &show] {
        assert!(
            !text
                .chars()
                .any(|c| c != '\n' && stripe_ledger::terminal::needs_escape(c)),
            "{text:?}"
        );
        assert!(text.contains("sub_\\u{1b}[2J\\u{a}"), "{text}");
        assert!(text.contains("\\u{9b}31m"), "{text}");
    }
    // Fields are cut; the payload block of `show` is escaped but kept whole.
    let (header, payload) = show.split_once("\npayload\n").unwrap();
    for text in [list.as_str(), header] {
        assert!(
            !text.contains(&"y".repeat(100)),
            "a field was not cut: {text}"
        );
    }
    assert!(payload.contains(&"y".repeat(500)), "{payload}");
    // Header, one row, footer: the newline in the id forged no row.
    assert_eq!(list.lines().count(), 3, "{list}");
    assert!(show.contains("\\u{7f}\\u{2066}"), "{show}");
}
