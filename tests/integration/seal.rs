//! The sealed log against the database: the tamper suite, the proof API, two instances on one
//! database, a kill -9 while sealing, and the scheduled re-verification. Both backends.
//!
//! Tampering is done as the database owner with the immutability triggers out of the way
//! (PostgreSQL: `session_replication_role = replica`; SQLite: the triggers dropped), as an
//! attacker who owns the database would; `verify` is the real binary.

use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use sqlx::Connection as _;
use stripe_ledger::seal::merkle;
use stripe_ledger::seal::note::{self, SigningKey};
use stripe_ledger::sealer::{self, Sealing};
use stripe_ledger::store::seal::SealStore as _;
use stripe_ledger::store::Backend;

use crate::helpers::{backend, event, unique_id, TestApp, TEST_SIGNING_SEED};

const BIN: &str = env!("CARGO_BIN_EXE_stripe-ledger");

fn b64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}

pub(crate) fn sealing(app: &TestApp) -> &Sealing {
    app.sealing.as_ref().expect("test apps seal")
}

fn verifier(app: &TestApp) -> String {
    sealing(app).key.verifier().to_string()
}

/// Delivers `n` events, returning their ids in log order.
pub(crate) async fn deliver(app: &TestApp, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let id = unique_id("evt");
        let reply = app.deliver(&event(&id, "customer.created")).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        ids.push(id);
    }
    ids
}

/// Seals what is logged and signs a checkpoint with the app's key: the note.
pub(crate) async fn seal(app: &TestApp) -> String {
    sealer::seal_all(&app.db).await.expect("seal");
    sealer::checkpoint(&app.db, sealing(app), 1_764_000_000)
        .await
        .expect("checkpoint")
        .expect("a non-empty tree")
        .note
}

/// A test app with `n` sealed entries and a checkpoint of them, exported to a file.
async fn sealed_app(n: usize) -> (TestApp, std::path::PathBuf) {
    let app = TestApp::spawn().await;
    deliver(&app, n).await;
    let note = seal(&app).await;
    let file = std::env::temp_dir().join(format!("{}.note", unique_id("checkpoint")));
    std::fs::write(&file, note).unwrap();
    (app, file)
}

/// Runs `statements` as the database owner with the immutability triggers disabled.
pub(crate) async fn as_owner(app: &TestApp, statements: &[&str]) {
    match backend() {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&app.database.url)
                .await
                .unwrap();
            sqlx::raw_sql("SET session_replication_role = replica")
                .execute(&mut conn)
                .await
                .unwrap();
            for s in statements {
                sqlx::raw_sql(s).execute(&mut conn).await.unwrap();
            }
        }
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.database.url)
                .await
                .unwrap();
            let triggers: Vec<String> =
                sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'trigger'")
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
            for t in triggers {
                sqlx::raw_sql(&format!("DROP TRIGGER {t}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            for s in statements {
                sqlx::raw_sql(s).execute(&mut conn).await.unwrap();
            }
        }
    }
}

/// The attacker's way to hide a rewrite: forget the tree and the checkpoints (the state back
/// to the empty tree, whose root is SHA-256 of nothing).
fn forget_the_tree() -> [&'static str; 3] {
    [
        "DELETE FROM seal_nodes",
        "DELETE FROM checkpoints",
        match backend() {
            Backend::Postgres => "UPDATE seal_state SET size = 0, root = sha256(''::bytea)",
            Backend::Sqlite => {
                "UPDATE seal_state SET size = 0, root = \
                X'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'"
            }
        },
    ]
}

fn bare_command(app: &TestApp) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &app.database.url)
        .env("LEDGER_SIGNING_KEY", TEST_SIGNING_SEED);
    command
}

/// `stripe-ledger verify --format json ARGS`: the exit code and the report.
async fn verify(app: &TestApp, args: &[&str]) -> (i32, Value) {
    let mut command = bare_command(app);
    command.args(["verify", "--format", "json"]).args(args);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let report = serde_json::from_str(&stdout).unwrap_or_else(|_| {
        panic!(
            "verify printed no report: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), report)
}

fn kinds(report: &Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_untouched_log_verifies_against_its_tree_and_an_exported_checkpoint() {
    let (app, file) = sealed_app(9).await;
    let (code, report) = verify(&app, &["--checkpoint", file.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["entries"], 9);
    assert_eq!(report["sealed_size"], 9);
    assert_eq!(report["external_checkpoints"], 1);
    // Entries not sealed yet are recomputed too, and still verify.
    deliver(&app, 2).await;
    let (code, report) = verify(&app, &[]).await;
    assert_eq!(
        (code, report["tree_size"].as_u64()),
        (0, Some(11)),
        "{report:#}"
    );
}

#[tokio::test]
async fn an_edited_payload_is_named_edited_at_its_position() {
    let (app, _) = sealed_app(8).await;
    as_owner(
        &app,
        &["UPDATE event_log SET payload = replace(payload, 'cus_', 'cux_') WHERE position = 3"],
    )
    .await;
    let (code, report) = verify(&app, &[]).await;
    assert_eq!(code, 4, "{report:#}");
    assert_eq!(report["first"]["kind"], "edited");
    assert_eq!(report["first"]["position"], 3);
}

#[tokio::test]
async fn an_edited_verification_column_is_named_edited() {
    let (app, _) = sealed_app(8).await;
    as_owner(
        &app,
        &["UPDATE event_log SET verified_by_fingerprint = 'forged' WHERE position = 4"],
    )
    .await;
    let (code, report) = verify(&app, &[]).await;
    assert_eq!(code, 4, "{report:#}");
    assert_eq!(report["first"]["kind"], "edited");
    assert_eq!(report["first"]["position"], 4);
}

#[tokio::test]
async fn a_deleted_middle_row_is_named_missing() {
    let (app, _) = sealed_app(8).await;
    as_owner(&app, &["DELETE FROM event_log WHERE position = 5"]).await;
    let (code, report) = verify(&app, &[]).await;
    assert_eq!(code, 4, "{report:#}");
    assert_eq!(report["first"]["kind"], "missing");
    assert_eq!(report["first"]["position"], 5);
}

#[tokio::test]
async fn a_cut_off_tail_is_named_truncated_even_with_the_tree_forgotten_and_resealed() {
    let (app, file) = sealed_app(10).await;
    // The plain cut: the stored tree still has the leaves.
    as_owner(&app, &["DELETE FROM event_log WHERE position > 7"]).await;
    let (code, report) = verify(&app, &[]).await;
    assert_eq!(code, 4, "{report:#}");
    assert_eq!(report["first"]["kind"], "truncated");
    assert_eq!(report["first"]["position"], 8);

    // The careful cut: tree and checkpoints gone, the service reseals and signs the short log.
    // Only the checkpoint kept outside the database remembers.
    as_owner(&app, &forget_the_tree()).await;
    seal(&app).await;
    let (code, _) = verify(&app, &[]).await;
    assert_eq!(code, 0, "inside the database, nothing is left to notice");
    let (code, report) = verify(&app, &["--checkpoint", file.to_str().unwrap()]).await;
    assert_eq!(code, 4, "{report:#}");
    assert_eq!(report["first"]["kind"], "truncated");
    assert_eq!(report["first"]["position"], 8);
}

#[tokio::test]
async fn a_rewrite_with_a_recomputed_tree_and_another_key_is_caught_with_the_real_key() {
    let (app, file) = sealed_app(10).await;
    let real = verifier(&app);
    as_owner(
        &app,
        &["UPDATE event_log SET payload = replace(payload, 'cus_', 'cux_') WHERE position = 2"],
    )
    .await;
    as_owner(&app, &forget_the_tree()).await;
    let forger = Sealing {
        key: std::sync::Arc::new(SigningKey::from_seed(&sealing(&app).origin, [9; 32]).unwrap()),
        ..sealing(&app).clone()
    };
    sealer::seal_all(&app.db).await.unwrap();
    sealer::checkpoint(&app.db, &forger, 1_764_000_100)
        .await
        .unwrap()
        .unwrap();

    // With the forger's key, the database is consistent with itself.
    let forged = forger.key.verifier().to_string();
    let (code, _) = verify(&app, &["--verifier-key", &forged]).await;
    assert_eq!(code, 0);
    // With the real key, the stored checkpoint is not the service's.
    let (code, report) = verify(&app, &["--verifier-key", &real]).await;
    assert_eq!(code, 4, "{report:#}");
    assert_eq!(kinds(&report), ["bad_signature"]);
    // With the exported checkpoint, the root of the same size differs: a fork.
    let (code, report) = verify(
        &app,
        &[
            "--verifier-key",
            &real,
            "--checkpoint",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 4, "{report:#}");
    let found = kinds(&report);
    assert!(found.contains(&"inconsistent".to_owned()), "{report:#}");
    let fork = &report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "inconsistent")
        .unwrap();
    assert_eq!(fork["position"], 10);
}

#[tokio::test]
async fn two_rows_with_swapped_positions_are_named_edited() {
    let (app, _) = sealed_app(8).await;
    let unlock = match backend() {
        // An identity column is only written with its default; the owner can change that.
        Backend::Postgres => "ALTER TABLE event_log ALTER COLUMN position SET GENERATED BY DEFAULT",
        Backend::Sqlite => "SELECT 1",
    };
    as_owner(
        &app,
        &[
            unlock,
            "UPDATE event_log SET position = 1000 WHERE position = 6",
            "UPDATE event_log SET position = 6 WHERE position = 7",
            "UPDATE event_log SET position = 7 WHERE position = 1000",
        ],
    )
    .await;
    let (code, report) = verify(&app, &[]).await;
    assert_eq!(code, 4, "{report:#}");
    assert_eq!(report["first"]["kind"], "edited");
    assert_eq!(report["first"]["position"], 6);
    let edited: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "edited")
        .map(|f| &f["position"])
        .collect();
    assert_eq!(edited, [6, 7], "{report:#}");
}

#[tokio::test]
async fn a_changed_stored_node_is_named_inconsistent() {
    let (app, _) = sealed_app(8).await;
    as_owner(
        &app,
        &["UPDATE seal_nodes SET hash = (SELECT n.hash FROM seal_nodes n WHERE n.level = 0 AND n.idx = 0) \
           WHERE level = 1 AND idx = 1"],
    )
    .await;
    let (code, report) = verify(&app, &[]).await;
    assert_eq!(code, 4, "{report:#}");
    assert_eq!(report["first"]["kind"], "inconsistent");
}

#[tokio::test]
async fn verify_refuses_to_run_without_a_key_or_with_an_unreadable_checkpoint() {
    let (app, _) = sealed_app(2).await;
    let mut command = bare_command(&app);
    command.env("LEDGER_SIGNING_KEY", "off").arg("verify");
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let mut command = bare_command(&app);
    command.args(["verify", "--checkpoint", "/nonexistent/1.note"]);
    assert_eq!(command.output().unwrap().status.code(), Some(2));
    let mut command = bare_command(&app);
    command.args(["verify", "--verifier-key", "not-a-key"]);
    assert_eq!(command.output().unwrap().status.code(), Some(2));
}

#[tokio::test]
async fn the_checkpoint_command_signs_when_the_tree_grew_and_prints_the_verifier_key() {
    let app = TestApp::spawn().await;
    deliver(&app, 3).await;
    let mut command = bare_command(&app);
    let output = command.arg("checkpoint").output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let key = sealing(&app).key.verifier();
    let signed = note::open(&text, &key).expect("a note signed by the key");
    assert_eq!(signed.size, 3);
    assert_eq!(signed.origin, "stripe-ledger/test");
    let mut command = bare_command(&app);
    let output = command
        .args(["checkpoint", "--verifier-key"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        key.to_string()
    );
    assert!(!String::from_utf8_lossy(&output.stderr).contains(TEST_SIGNING_SEED));
}

#[tokio::test]
async fn the_proof_api_serves_the_checkpoint_and_proofs_that_verify() {
    let app = TestApp::spawn().await;
    let ids = deliver(&app, 3).await;
    let first_note = seal(&app).await;
    let more = deliver(&app, 4).await;
    let note_text = seal(&app).await;
    let key = sealing(&app).key.verifier();

    let reply = app.audit("/api/audit/checkpoint").await;
    assert_eq!(reply.status, 200);
    assert!(reply.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(reply.text, note_text);
    let latest = note::open(&reply.text, &key).unwrap();
    assert_eq!(latest.size, 7);

    for (i, id) in ids.iter().chain(&more).enumerate() {
        let reply = app.audit(&format!("/api/audit/events/{id}/proof")).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let p = &reply.json;
        assert_eq!(p["leaf_index"], i as u64);
        assert_eq!(p["checkpoint"], note_text);
        let leaf = b64(p["leaf"].as_str().unwrap());
        assert_eq!(
            stripe_ledger::seal::leaf::decode(&leaf).unwrap().event_id,
            *id
        );
        let hashes: Vec<merkle::Hash> = p["hashes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| b64(h.as_str().unwrap()).try_into().unwrap())
            .collect();
        let leaf_hash = merkle::leaf_hash(&leaf);
        merkle::verify_inclusion(i as u64, 7, &leaf_hash, &hashes, &latest.root)
            .expect("the proof verifies");
        let mut flipped = leaf_hash;
        flipped[0] ^= 1;
        assert!(merkle::verify_inclusion(i as u64, 7, &flipped, &hashes, &latest.root).is_err());
    }
    // An older size, with its own checkpoint.
    let reply = app
        .audit(&format!("/api/audit/events/{}/proof?tree_size=3", ids[1]))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["checkpoint"], first_note);
    // A sealed size without a checkpoint: the proof, and no note.
    let reply = app
        .audit(&format!("/api/audit/events/{}/proof?tree_size=5", ids[1]))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(reply.json["checkpoint"].is_null());

    let reply = app.audit("/api/audit/consistency?from=3&to=7").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let old = note::open(reply.json["from_checkpoint"].as_str().unwrap(), &key).unwrap();
    let hashes: Vec<merkle::Hash> = reply.json["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| b64(h.as_str().unwrap()).try_into().unwrap())
        .collect();
    merkle::verify_consistency(3, 7, &old.root, &latest.root, &hashes).expect("consistent");
}

#[tokio::test]
async fn the_proof_api_refuses_bad_requests_with_stable_codes() {
    let app = TestApp::spawn().await;
    let ids = deliver(&app, 2).await;
    let proof = format!("/api/audit/events/{}/proof", ids[0]);
    assert_eq!(
        app.audit("/api/audit/checkpoint").await.code(),
        "no_checkpoint"
    );
    assert_eq!(app.audit(&proof).await.code(), "no_checkpoint");
    seal(&app).await;
    deliver(&app, 1).await;
    let cases: &[(&str, u16, &str)] = &[
        (
            "/api/audit/events/evt_unknown/proof",
            404,
            "event_not_found",
        ),
        ("?tree_size=abc", 400, "invalid_parameter"),
        ("?tree_size=0", 400, "invalid_parameter"),
        ("?tree_size=-1", 400, "invalid_parameter"),
        ("?tree_size=%2B1", 400, "invalid_parameter"),
        ("?tree_size=99999999999999999999", 400, "invalid_parameter"),
        ("?tree_size=3", 409, "not_yet_sealed"),
        ("?tree_size=1&tree_size=2", 400, "invalid_parameter"),
        ("?size=1", 400, "unknown_parameter"),
        (
            "/api/audit/consistency?from=2&to=1",
            400,
            "invalid_tree_size",
        ),
        ("/api/audit/consistency?from=1", 400, "invalid_parameter"),
        ("/api/audit/consistency?from=1&to=3", 409, "not_yet_sealed"),
        (
            "/api/audit/consistency?from=1&to=2&x=1",
            400,
            "unknown_parameter",
        ),
    ];
    for (path, status, code) in cases {
        let path = if path.starts_with('?') {
            format!("{proof}{path}")
        } else {
            path.to_string()
        };
        let reply = app.audit(&path).await;
        assert_eq!(
            (reply.status, reply.code()),
            (*status, *code),
            "{path}: {}",
            reply.text
        );
    }
    // The second entry is at position 2: not in a tree of size 1.
    let reply = app
        .audit(&format!("/api/audit/events/{}/proof?tree_size=1", ids[1]))
        .await;
    assert_eq!((reply.status, reply.code()), (409, "not_yet_sealed"));
    let reply = app.get("/api/audit/checkpoint", None).await;
    assert_eq!(reply.status, 401);
    let reply = app
        .get("/api/audit/checkpoint", Some(crate::helpers::READ_TOKEN))
        .await;
    assert_eq!(reply.status, 403);
}

#[tokio::test]
async fn two_instances_sealing_one_database_build_one_tree_and_both_checkpoints_verify() {
    let a = TestApp::spawn().await;
    let b = TestApp::builder()
        .database(a.database.clone())
        .spawn()
        .await;
    let mut tasks = Vec::new();
    for app in [&a, &b] {
        let db = app.db.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..30 {
                sealer::seal_once(&db, 3).await.expect("seal");
                tokio::task::yield_now().await;
            }
        }));
    }
    let (x, y) = tokio::join!(deliver(&a, 25), deliver(&b, 25));
    assert_eq!(x.len() + y.len(), 50);
    for t in tasks {
        t.await.unwrap();
    }
    let note_a = seal(&a).await;
    deliver(&b, 3).await;
    let note_b = seal(&b).await;
    let dir = std::env::temp_dir().join(unique_id("two-instances"));
    std::fs::create_dir_all(&dir).unwrap();
    let (fa, fb) = (dir.join("a.note"), dir.join("b.note"));
    std::fs::write(&fa, &note_a).unwrap();
    std::fs::write(&fb, &note_b).unwrap();
    let (code, report) = verify(
        &a,
        &[
            "--checkpoint",
            fa.to_str().unwrap(),
            "--checkpoint",
            fb.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["sealed_size"], a.event_count().await);
}

/// Posts signed events to `base` until told to stop; returns how many were acknowledged.
async fn post_until(
    base: String,
    secret: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> usize {
    let client = reqwest::Client::new();
    let mut acknowledged = 0;
    while !*stop.borrow() {
        let body = event(&unique_id("evt"), "customer.created");
        let signature =
            stripe_ledger::stripe::signature::sign(&body, &secret, chrono::Utc::now().timestamp());
        match client
            .post(format!("{base}/webhooks/stripe"))
            .header("stripe-signature", signature)
            .body(body)
            .send()
            .await
        {
            Ok(r) if r.status() == 200 => acknowledged += 1,
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    acknowledged
}

#[tokio::test]
async fn a_kill_9_while_sealing_loses_nothing_and_the_log_verifies_after_restart() {
    let app = TestApp::spawn().await;
    let dir = std::env::temp_dir().join(unique_id("checkpoints"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let secret = "whsec_kill_nine_test".to_owned();
    let spawn = || {
        let mut command = bare_command(&app);
        command
            .arg("serve")
            .env("STRIPE_WEBHOOK_SECRET", &secret)
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("CHECKPOINT_INTERVAL", "1s")
            .env("CHECKPOINT_DIR", &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command.spawn().unwrap()
    };
    let base = format!("http://127.0.0.1:{port}");
    for round in 0..3u64 {
        let mut server = spawn();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let poster = tokio::spawn(post_until(base.clone(), secret.clone(), stopped));
        // Sealing runs every second; the kill lands anywhere in or between passes.
        tokio::time::sleep(Duration::from_millis(1_700 + 450 * round)).await;
        server.kill().unwrap(); // SIGKILL
        server.wait().unwrap();
        stop.send(true).unwrap();
        assert!(
            poster.await.unwrap() > 0,
            "round {round}: nothing was acknowledged"
        );
    }
    let mut server = spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let sealed = app.db.seal_state().await.unwrap().size;
        let last = stripe_ledger::event_log::count(&app.db).await.unwrap();
        if sealed as i64 >= last
            && app
                .db
                .latest_checkpoint()
                .await
                .unwrap()
                .is_some_and(|c| c.size == sealed)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sealing did not catch up after restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let mut args = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "note") {
            args.push("--checkpoint".to_owned());
            args.push(path.to_str().unwrap().to_owned());
        }
    }
    assert!(
        args.len() >= 4,
        "checkpoints were written to CHECKPOINT_DIR"
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, report) = verify(&app, &args).await;
    assert_eq!(code, 0, "{report:#}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_scheduled_check_counts_a_failure_and_logs_an_error_when_a_sealed_entry_changes() {
    let (app, _) = sealed_app(5).await;
    let sealing = Sealing {
        checkpoint_interval: Duration::from_secs(1),
        ..sealing(&app).clone()
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let job = sealer::spawn(app.db.clone(), sealing, app.state.metrics.clone(), stopped);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let failures = |m: &std::collections::BTreeMap<String, f64>| {
        m.get("stripe_ledger_seal_verify_failures_total").copied()
    };
    assert_eq!(failures(&app.metrics().await), Some(0.0));
    as_owner(
        &app,
        &["UPDATE event_log SET livemode = NOT livemode WHERE position = 5"],
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while failures(&app.metrics().await) == Some(0.0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failure was counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(crate::helpers::captured_logs().contains("sealed log verification failed"));
    stop.send(true).unwrap();
    job.await.unwrap();
}

#[tokio::test]
async fn a_skipped_position_is_sealed_as_a_hole_and_a_row_put_there_later_is_edited() {
    let app = TestApp::spawn().await;
    deliver(&app, 2).await;
    // Consume position 3 without a row, as a conflicting or rolled-back append does.
    let skip = match backend() {
        Backend::Postgres => "SELECT nextval(pg_get_serial_sequence('event_log', 'position'))",
        Backend::Sqlite => "UPDATE sqlite_sequence SET seq = seq + 1 WHERE name = 'event_log'",
    };
    as_owner(&app, &[skip]).await;
    let ids = deliver(&app, 2).await;
    seal(&app).await;
    let state = app.db.seal_state().await.unwrap();
    assert_eq!(
        state.size, 5,
        "the hole is a leaf: positions and leaf indexes stay equal"
    );
    let hole = app
        .db
        .fetch_nodes(&[merkle::NodeId { level: 0, index: 2 }])
        .await
        .unwrap();
    let expected = merkle::leaf_hash(&sealer::hole_leaf(3));
    assert_eq!(hole.values().next(), Some(&expected));
    let reply = app
        .audit(&format!("/api/audit/events/{}/proof", ids[0]))
        .await;
    assert_eq!(reply.json["leaf_index"], 3, "{}", reply.text);
    let (code, report) = verify(&app, &[]).await;
    assert_eq!(code, 0, "{report:#}");

    // A row slipped into the hole afterwards does not match the sealed hole.
    as_owner(
        &app,
        &[&format!(
            "INSERT INTO event_log (position, event_id, event_type, livemode, stripe_created, \
             received_at, source, payload, payload_redacted, raw_body_sha256) {} \
             SELECT 3, 'evt_slipped_in', event_type, livemode, stripe_created, received_at, \
             'api_backfill', payload, payload_redacted, raw_body_sha256 \
             FROM event_log WHERE position = 4",
            match backend() {
                Backend::Postgres => "OVERRIDING SYSTEM VALUE",
                Backend::Sqlite => "",
            }
        )],
    )
    .await;
    let (code, report) = verify(&app, &[]).await;
    assert_eq!(code, 4, "{report:#}");
    assert_eq!(report["first"]["kind"], "edited");
    assert_eq!(report["first"]["position"], 3);
}

#[tokio::test]
async fn an_exported_bundle_verifies_offline_with_no_database_and_fails_when_changed() {
    let app = TestApp::spawn().await;
    let ids = deliver(&app, 5).await;
    seal(&app).await;
    let mut command = bare_command(&app);
    let output = command
        .args(["events", "show", &ids[2], "--proof"])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dir = std::env::temp_dir().join(unique_id("bundle"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bundle.json");
    std::fs::write(&file, &output.stdout).unwrap();
    let key = verifier(&app);
    let offline = |path: &std::path::Path| {
        // No DATABASE_URL, no signing key, nothing but the file and the verifier key.
        Command::new(BIN)
            .env_clear()
            .current_dir(&dir)
            .args([
                "verify-proof",
                path.to_str().unwrap(),
                "--verifier-key",
                &key,
            ])
            .output()
            .unwrap()
    };
    let verified = offline(&file);
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    // One changed character of the payload (an id inside it) fails the bundle.
    let text = String::from_utf8(output.stdout).unwrap();
    let at = text.rfind("cus_").expect("the payload names the customer");
    let mut changed = text.into_bytes();
    changed[at + 4] ^= 0x01;
    let bad = dir.join("changed.json");
    std::fs::write(&bad, &changed).unwrap();
    assert_eq!(offline(&bad).status.code(), Some(4));
    // An event not yet under a checkpoint has no bundle.
    let later = deliver(&app, 1).await;
    let mut command = bare_command(&app);
    let output = command
        .args(["events", "show", &later[0], "--proof"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("beyond tree size"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_embedded_default_generates_a_private_key_file_once_and_postgres_needs_a_key() {
    let dir = std::env::temp_dir().join(unique_id("embedded-key"));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&str], extra: &[(&str, &str)]| {
        let mut command = Command::new(BIN);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .current_dir(&dir)
            .args(args);
        for (k, v) in extra {
            command.env(k, v);
        }
        command.output().unwrap()
    };
    let first = run(&["checkpoint", "--verifier-key"], &[]);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let key = String::from_utf8(first.stdout).unwrap();
    assert!(key.starts_with("stripe-ledger/test+"), "{key}");
    assert!(String::from_utf8_lossy(&first.stderr).contains(key.trim()));
    let file = dir.join("stripe-ledger.db.signing-key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let seed = std::fs::read_to_string(&file).unwrap();
    let again = run(&["checkpoint", "--verifier-key"], &[]);
    assert_eq!(
        String::from_utf8(again.stdout).unwrap(),
        key,
        "the same key on every start"
    );
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.is_empty(), "printed once, on creation: {stderr}");
    assert!(!stderr.contains(seed.trim()));

    let refused = run(
        &["serve"],
        &[
            ("STRIPE_WEBHOOK_SECRET", "whsec_x"),
            ("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none"),
        ],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("LEDGER_SIGNING_KEY"));
    let _ = std::fs::remove_dir_all(&dir);
}
