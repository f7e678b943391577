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
