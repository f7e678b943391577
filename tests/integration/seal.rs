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
use stripe_ledger::sealer::{self, publish, Sealing};
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
async fn the_payload_hash_the_sealer_reads_is_the_hash_of_the_stored_bytes_even_for_unusual_text() {
    let app = TestApp::spawn().await;
    // Multi-byte UTF-8, a line separator, control characters, escapes and a body redacted
    // before it is stored:
    // the database's hash of the stored text must be the hash of the text every reader gets.
    let names = [
        "Zoë Ünïcødé 日本語 🎉",
        "line\u{2028}separator and \u{202e}override",
        "quote \" back\\slash \t tab",
        "ESC \u{1b}[31m and DEL \u{7f}",
    ];
    for (i, name) in names.iter().enumerate() {
        let id = unique_id("evt");
        let mut body = crate::helpers::event_json(&id, "customer.created", false);
        body["data"]["object"]["name"] = Value::from(*name);
        if i == 3 {
            // A cardholder's name: the stored payload is the redacted re-serialisation.
            body["data"]["object"]["card"] =
                serde_json::json!({"name": "Jane Holder", "last4": "4242"});
        }
        let pretty = serde_json::to_string_pretty(&body).unwrap();
        let reply = app.deliver(pretty.as_bytes()).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    // Stored with the entry: by PostgreSQL's trigger, by SQLite's writer (docs/adr/0032), the
    // redacted one included.
    for (hash, payload) in stored_payload_hashes(&app).await {
        assert_eq!(
            hash,
            Some(stripe_ledger::seal::leaf::payload_hash(&payload).to_vec()),
            "{payload}"
        );
    }
    let sealable = app.db.sealable_after(0, 100).await.unwrap();
    let entries = app.db.entries_between(0, i64::MAX).await.unwrap();
    assert_eq!(sealable.len(), names.len());
    for (s, e) in sealable.iter().zip(&entries) {
        assert_eq!(s.entry.position, e.position);
        assert!(
            s.entry.payload.is_none(),
            "the sealer's read leaves the payload behind"
        );
        let payload = e.payload.as_deref().unwrap();
        assert_eq!(
            s.payload_sha256,
            stripe_ledger::seal::leaf::payload_hash(payload),
            "{payload}"
        );
        assert_eq!(
            stripe_ledger::seal::leaf::encode_with_payload_hash(&s.entry, &s.payload_sha256)
                .unwrap(),
            stripe_ledger::seal::leaf::encode(e).unwrap()
        );
    }
    // And the tree the sealer builds from those hashes is the one `verify` recomputes from
    // the payloads themselves.
    seal(&app).await;
    let (code, report) = verify(&app, &[]).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["sealed_size"], names.len());
}

/// Seals what is logged, and `verify` agrees with the tree of `size` leaves.
async fn seals_and_verifies(app: &TestApp, size: u64) {
    seal(app).await;
    let (code, report) = verify(app, &[]).await;
    assert_eq!(
        (code, report["sealed_size"].as_u64()),
        (0, Some(size)),
        "{report:#}"
    );
}

/// Each entry's stored `payload_sha256` with its payload, in log order.
async fn stored_payload_hashes(app: &TestApp) -> Vec<(Option<Vec<u8>>, String)> {
    const SQL: &str = "SELECT payload_sha256, payload FROM event_log ORDER BY position";
    match backend() {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&app.database.url)
                .await
                .unwrap();
            sqlx::query_as(SQL).fetch_all(&mut conn).await.unwrap()
        }
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.database.url)
                .await
                .unwrap();
            sqlx::query_as(SQL).fetch_all(&mut conn).await.unwrap()
        }
    }
}

/// An insert of a copy of the entry at position 1 under `id`; with `claimed_hash`, the
/// insert also sets `payload_sha256` to that SQL value.
fn copy_of_the_first_entry(id: &str, claimed_hash: Option<&str>) -> String {
    const COLUMNS: &str = "event_type, api_version, livemode, account, object_id, object_type, \
         stripe_created, received_at, source, payload, payload_redacted, raw_body_sha256, \
         signature_header, signature_timestamp, verified_by_index, verified_by_fingerprint";
    let (column, value) = match claimed_hash {
        Some(hash) => (", payload_sha256", format!(", {hash}")),
        None => ("", String::new()),
    };
    format!(
        "INSERT INTO event_log (event_id, {COLUMNS}{column}) \
         SELECT '{id}', {COLUMNS}{value} FROM event_log WHERE position = 1"
    )
}

/// 32 zero bytes in the backend's SQL.
fn zero_hash() -> &'static str {
    match backend() {
        Backend::Postgres => {
            "'\\x0000000000000000000000000000000000000000000000000000000000000000'::bytea"
        }
        Backend::Sqlite => "zeroblob(32)",
    }
}

#[tokio::test]
async fn a_payload_hash_an_insert_claims_is_overwritten_on_postgres_and_named_edited_by_verify_on_sqlite(
) {
    let app = TestApp::spawn().await;
    deliver(&app, 3).await;
    // A client with plain rights (the triggers run) that names a hash of its own.
    let insert = copy_of_the_first_entry(&unique_id("evt"), Some(zero_hash()));
    match backend() {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&app.database.url)
                .await
                .unwrap();
            sqlx::raw_sql(&insert).execute(&mut conn).await.unwrap();
        }
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.database.url)
                .await
                .unwrap();
            sqlx::raw_sql(&insert).execute(&mut conn).await.unwrap();
        }
    }
    let stored = stored_payload_hashes(&app).await;
    assert_eq!(stored.len(), 4);
    for (i, (hash, payload)) in stored.iter().enumerate() {
        let expected = match backend() {
            // The database's trigger computed it from the payload, overwriting the claim.
            Backend::Postgres => Some(stripe_ledger::seal::leaf::payload_hash(payload).to_vec()),
            // The service stored the real hash of what it appended (docs/adr/0032). SQLite
            // cannot check a client's claim (no SHA-256 function), so it stays where it was put.
            Backend::Sqlite if i < 3 => {
                Some(stripe_ledger::seal::leaf::payload_hash(payload).to_vec())
            }
            Backend::Sqlite => Some(vec![0u8; 32]),
        };
        assert_eq!(hash, &expected, "entry {i}");
    }
    seal(&app).await;
    let (code, report) = verify(&app, &[]).await;
    match backend() {
        Backend::Postgres => assert_eq!(
            (code, report["sealed_size"].as_u64()),
            (0, Some(4)),
            "{report:#}"
        ),
        // Sealed as claimed, the entry's bytes disagree with its leaf, and `verify`, which
        // hashes every payload it checks, says so.
        Backend::Sqlite => {
            assert_eq!(code, 4, "{report:#}");
            assert_eq!(report["first"]["kind"], "edited");
            assert_eq!(report["first"]["position"], 4);
        }
    }
}

#[tokio::test]
async fn an_entry_logged_before_payload_hashes_were_stored_is_sealed_from_its_payload() {
    // As the owner with triggers off, the row arrives as one logged before migration 0017 did:
    // on PostgreSQL without the hash, since the trigger that computes it does not run.
    a_copy_is_sealed_from_its_payload(None, None).await;
}

#[tokio::test]
async fn a_stored_payload_hash_that_is_not_32_bytes_is_ignored_and_the_payload_sealed() {
    // Planted by the owner with triggers off: on PostgreSQL the trigger that computes the hash
    // does not run, and SQLite takes any value. One such row does not stop sealing.
    let short = match backend() {
        Backend::Postgres => "'\\x0102'::bytea",
        Backend::Sqlite => "X'0102'",
    };
    a_copy_is_sealed_from_its_payload(Some(short), Some(vec![1, 2])).await;
}

/// Two entries delivered, then a copy of the first planted as the owner with `stored` (SQL) as
/// its `payload_sha256`, which must read back as `expected`. The sealer takes the copy's hash
/// from its payload, and the sealed tree verifies.
async fn a_copy_is_sealed_from_its_payload(stored: Option<&str>, expected: Option<Vec<u8>>) {
    let app = TestApp::spawn().await;
    deliver(&app, 2).await;
    let insert = copy_of_the_first_entry(&unique_id("evt"), stored);
    as_owner(&app, &[&insert]).await;
    let hashes = stored_payload_hashes(&app).await;
    assert_eq!(hashes.len(), 3);
    assert_eq!(hashes[2].0, expected, "the copy's stored hash");
    let sealable = app.db.sealable_after(0, 100).await.unwrap();
    assert_eq!(sealable.len(), 3);
    assert_eq!(
        sealable[2].payload_sha256,
        stripe_ledger::seal::leaf::payload_hash(&hashes[2].1)
    );
    seals_and_verifies(&app, 3).await;
}

#[tokio::test]
async fn a_payload_edited_before_it_was_sealed_is_caught_from_the_hash_stored_at_append() {
    let app = TestApp::spawn().await;
    deliver(&app, 4).await;
    // Rewritten by the owner between the append and the first sealing pass.
    as_owner(
        &app,
        &["UPDATE event_log SET payload = replace(payload, 'cus_', 'cux_') WHERE position = 2"],
    )
    .await;
    seal(&app).await;
    let (code, report) = verify(&app, &[]).await;
    // The leaf was sealed from the hash stored at append (PostgreSQL's trigger, SQLite's
    // writer), so the rewritten bytes disagree with the tree.
    assert_eq!(code, 4, "{report:#}");
    assert_eq!(report["first"]["kind"], "edited");
    assert_eq!(report["first"]["position"], 2);
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
    // A careful forger also clears the payload's hash stored at append (PostgreSQL), so that
    // the resealed tree is consistent with the rewritten bytes.
    as_owner(
        &app,
        &[
            "UPDATE event_log SET payload = replace(payload, 'cus_', 'cux_'), \
           payload_sha256 = NULL WHERE position = 2",
        ],
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
    // No key configured (PostgreSQL: a configuration error; SQLite: no key file beside this
    // database): both ways out are named, and no key is made up.
    let mut command = bare_command(&app);
    command.env_remove("LEDGER_SIGNING_KEY").arg("verify");
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("LEDGER_SIGNING_KEY") && stderr.contains("--verifier-key"),
        "{stderr}"
    );
    if let Some(path) = app.database.url.strip_prefix("sqlite://") {
        assert!(!std::path::Path::new(&format!("{path}.signing-key")).exists());
    }
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

/// One pass of each instance's sealer, started together so that they overlap (both read the
/// same sealed size; at most one extension per size can win). `first_a` picks which is polled
/// first. Returns the leaves each added.
async fn overlapping_passes(a: &TestApp, b: &TestApp, first_a: bool) -> (u64, u64) {
    let pass = |app: &TestApp| {
        let db = app.db.clone();
        async move { sealer::seal_once(&db, 3).await.expect("seal") }
    };
    if first_a {
        tokio::join!(pass(a), pass(b))
    } else {
        let (y, x) = tokio::join!(pass(b), pass(a));
        (x, y)
    }
}

#[tokio::test]
async fn two_instances_sealing_one_database_build_one_tree_and_both_checkpoints_verify() {
    let a = TestApp::spawn().await;
    let b = TestApp::builder()
        .database(a.database.clone())
        .spawn()
        .await;
    let (mut by_a, mut by_b) = (0, 0);
    for round in 0..12 {
        let app = if round % 2 == 0 { &a } else { &b };
        deliver(app, 4).await;
        let before = a.db.seal_state().await.unwrap().size;
        // Most rounds overlap; every third lets one instance seal alone, in turn, so both
        // are seen to extend the tree whichever wins the races.
        let (x, y) = match round % 3 {
            2 if round % 2 == 0 => (sealer::seal_once(&a.db, 3).await.unwrap(), 0),
            2 => (0, sealer::seal_once(&b.db, 3).await.unwrap()),
            _ => overlapping_passes(&a, &b, round % 2 == 0).await,
        };
        let after = a.db.seal_state().await.unwrap().size;
        assert_eq!(
            after - before,
            x + y,
            "round {round}: a leaf was counted twice"
        );
        (by_a, by_b) = (by_a + x, by_b + y);
    }
    assert!(
        by_a > 0 && by_b > 0,
        "both extended the tree: {by_a} and {by_b}"
    );
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
    assert_eq!(report["sealed_size"], 51);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Holds a transaction that blocks inserts into `checkpoints` (PostgreSQL: an EXCLUSIVE table
/// lock, which plain reads pass; SQLite: the write lock, which WAL readers pass) until
/// released.
async fn block_checkpoint_inserts(app: &TestApp) -> crate::event_log::WriteLock {
    crate::event_log::hold_lock(app, "LOCK TABLE checkpoints IN EXCLUSIVE MODE").await
}

/// Until `n` inserts wait for the lock on `checkpoints` (PostgreSQL's `pg_locks`). SQLite
/// shows no waiters: there, a short window lets both passes reach their insert.
async fn until_checkpoint_inserts_wait(app: &TestApp, n: i64) {
    if backend() != Backend::Postgres {
        tokio::time::sleep(Duration::from_millis(300)).await;
        return;
    }
    let count = "SELECT count(*) FROM pg_locks \
                 WHERE relation = 'checkpoints'::regclass AND NOT granted";
    crate::helpers::until_lock_waiters(app, count, n, || false, "the checkpoint inserts").await;
}

#[tokio::test]
async fn two_instances_signing_the_same_size_store_one_checkpoint_and_return_the_same_note() {
    let a = TestApp::spawn().await;
    let b = TestApp::builder()
        .database(a.database.clone())
        .spawn()
        .await;
    deliver(&a, 5).await;
    sealer::seal_all(&a.db).await.unwrap();
    // Both read "no checkpoint of size 5 yet", then both insert: one wins, the other meets the
    // conflict and must return the winner's checkpoint, not its own.
    let held = block_checkpoint_inserts(&a).await;
    let sign = |app: &TestApp, at: i64| {
        let (db, sealing) = (app.db.clone(), sealing(app).clone());
        tokio::spawn(async move { sealer::checkpoint(&db, &sealing, at).await })
    };
    let (by_a, by_b) = (sign(&a, 1_764_000_100), sign(&b, 1_764_000_200));
    until_checkpoint_inserts_wait(&a, 2).await;
    held.release().await;
    let by_a = by_a.await.unwrap().unwrap().expect("a checkpoint");
    let by_b = by_b.await.unwrap().unwrap().expect("a checkpoint");
    let stored = a.db.checkpoints().await.unwrap();
    assert_eq!(stored.len(), 1, "one checkpoint of size 5");
    assert_eq!(by_a, stored[0]);
    assert_eq!(
        by_b, stored[0],
        "the loser returns the checkpoint of record"
    );
    let key = sealing(&a).key.verifier();
    let (na, nb) = (
        note::open(&by_a.note, &key).unwrap(),
        note::open(&by_b.note, &key).unwrap(),
    );
    assert_eq!((na.size, na.root), (nb.size, nb.root));
    assert_eq!(na.size, 5);
    assert_eq!(na.root, a.db.seal_state().await.unwrap().root);
}

/// Posts one signed event to `base`: its id if acknowledged with a 2xx.
async fn post_one(client: &reqwest::Client, base: &str, secret: &str) -> Option<String> {
    let id = unique_id("evt");
    let body = event(&id, "customer.created");
    let signature =
        stripe_ledger::stripe::signature::sign(&body, secret, chrono::Utc::now().timestamp());
    let reply = client
        .post(format!("{base}/webhooks/stripe"))
        .header("stripe-signature", signature)
        .body(body)
        .send()
        .await;
    reply.ok().filter(|r| r.status().is_success()).map(|_| id)
}

/// Posts signed events to `base` until told to stop; returns the ids acknowledged with a 2xx.
async fn post_until(
    base: String,
    secret: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<String> {
    let client = reqwest::Client::new();
    let mut acknowledged = Vec::new();
    while !*stop.borrow() {
        match post_one(&client, &base, &secret).await {
            Some(id) => acknowledged.push(id),
            // Refused or not listening (killed, or starting): a pause, not a busy loop.
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    acknowledged
}

/// Until the service has sealed every logged entry and signed a checkpoint of that size at
/// or after `since` (unix seconds): that checkpoint. Polls, as the sealer is another process.
async fn until_checkpointed_since(
    app: &TestApp,
    since: i64,
) -> stripe_ledger::store::seal::StoredCheckpoint {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let sealed = app.db.seal_state().await.unwrap().size;
        let last = stripe_ledger::event_log::count(&app.db).await.unwrap();
        let latest = app.db.latest_checkpoint().await.unwrap();
        if let Some(c) = latest.filter(|c| c.size == sealed && c.signed_at >= since) {
            if sealed as i64 >= last {
                return c;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sealing did not catch up after restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every id is in the log, and its inclusion proof verifies against `checkpoint`.
async fn assert_proven(app: &TestApp, ids: &[String], checkpoint: &str) {
    let signed = note::open(checkpoint, &sealing(app).key.verifier()).expect("our note");
    for id in ids {
        assert!(
            stripe_ledger::event_log::get(&app.db, id)
                .await
                .unwrap()
                .is_some(),
            "{id} was acknowledged and then lost"
        );
        let p = sealer::proofs::inclusion(&app.db, id, None).await.unwrap();
        assert_eq!(p.checkpoint.as_deref(), Some(checkpoint), "{id}");
        let leaf = b64(&p.leaf);
        assert_eq!(
            stripe_ledger::seal::leaf::decode(&leaf).unwrap().event_id,
            *id
        );
        let hashes: Vec<merkle::Hash> = p
            .hashes
            .iter()
            .map(|h| b64(h).try_into().unwrap())
            .collect();
        merkle::verify_inclusion(
            p.leaf_index,
            signed.size,
            &merkle::leaf_hash(&leaf),
            &hashes,
            &signed.root,
        )
        .unwrap_or_else(|e| panic!("{id}: the proof does not verify: {e:?}"));
    }
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
    let mut acknowledged = Vec::new();
    // Sealing runs every 200 ms and signing every second from start; kill points 260 ms apart
    // walk across them, into and between passes, under steady ingestion.
    for round in 0..5u64 {
        let mut server = spawn();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let poster = tokio::spawn(post_until(base.clone(), secret.clone(), stopped));
        tokio::time::sleep(Duration::from_millis(1_050 + 260 * round)).await;
        server.kill().unwrap(); // SIGKILL
        server.wait().unwrap();
        stop.send(true).unwrap();
        let acked = poster.await.unwrap();
        assert!(!acked.is_empty(), "round {round}: nothing was acknowledged");
        acknowledged.extend(acked);
    }
    let restarted = chrono::Utc::now().timestamp();
    let mut server = spawn();
    // More entries after the restart, so the tree grows and a checkpoint is signed by it.
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut after = 0;
    while after < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restarted service acknowledged nothing"
        );
        match post_one(&client, &base, &secret).await {
            Some(id) => {
                acknowledged.push(id);
                after += 1;
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let latest = until_checkpointed_since(&app, restarted).await;
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(latest.size >= acknowledged.len() as u64);
    assert_proven(&app, &acknowledged, &latest.note).await;

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

/// Consumes the next position without a row, as a conflicting or rolled-back append does.
fn skip_a_position() -> &'static str {
    match backend() {
        Backend::Postgres => "SELECT nextval(pg_get_serial_sequence('event_log', 'position'))",
        Backend::Sqlite => "UPDATE sqlite_sequence SET seq = seq + 1 WHERE name = 'event_log'",
    }
}

/// Appends `n` new entries in batches, as ingestion writes them.
async fn append(app: &TestApp, n: usize) {
    let entries: Vec<_> = (0..n)
        .map(|_| crate::hot_path::webhook_entry(&event(&unique_id("evt"), "customer.created")))
        .collect();
    for batch in entries.chunks(50) {
        for result in stripe_ledger::ingest::write_batch(&app.db, batch.to_vec()).await {
            result.unwrap();
        }
    }
}

#[tokio::test]
async fn a_pass_reads_in_pages_and_seals_holes_across_a_page_boundary_as_verify_recomputes() {
    let app = TestApp::spawn().await;
    append(&app, 126).await;
    // Positions 127 to 130 consumed without rows: the first page of the pass (128 entries)
    // ends inside the holes.
    let skip = skip_a_position();
    as_owner(&app, &[skip, skip, skip, skip]).await;
    append(&app, 140).await;

    // A pass stops at its chunk in the middle of a page, and the next one goes on from there.
    assert_eq!(sealer::seal_once(&app.db, 200).await.unwrap(), 200);
    assert_eq!(app.db.seal_state().await.unwrap().size, 200);
    assert_eq!(sealer::seal_all(&app.db).await.unwrap(), 270);
    let holes: Vec<merkle::NodeId> = (126..130)
        .map(|index| merkle::NodeId { level: 0, index })
        .collect();
    let stored = app.db.fetch_nodes(&holes).await.unwrap();
    for id in &holes {
        assert_eq!(
            stored[id],
            merkle::leaf_hash(&sealer::hole_leaf(id.index + 1)),
            "{id:?}"
        );
    }
    let (code, report) = verify(&app, &[]).await;
    assert_eq!(
        (code, report["sealed_size"].as_u64()),
        (0, Some(270)),
        "{report:#}"
    );
}

#[tokio::test]
async fn a_skipped_position_is_sealed_as_a_hole_and_a_row_put_there_later_is_edited() {
    let app = TestApp::spawn().await;
    deliver(&app, 2).await;
    // Consume position 3 without a row, as a conflicting or rolled-back append does.
    let skip = skip_a_position();
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

/// A `serve` child process, once it has logged that it listens (JSON logs, read on a thread
/// so the pipe never fills): the listening address, and its log so far.
struct Served {
    child: std::process::Child,
    addr: String,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Served {
    fn start(mut command: Command) -> Served {
        use std::io::BufRead as _;
        command
            .arg("serve")
            .env("LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (listening, is_listening) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["fields"]["message"] == "stripe-ledger listening" {
                        let _ = listening.send(v["fields"].clone());
                    }
                }
            }
        });
        let Ok(fields) = is_listening.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!("serve did not start: {}", log.lock().unwrap());
        };
        Served {
            child,
            addr: fields["addr"].as_str().unwrap().to_owned(),
            log,
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// A test that fails before `kill` leaves no `serve` running on its database and port.
impl Drop for Served {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The binary in `dir` with nothing but PATH and `extra` set (the embedded default database,
/// `stripe-ledger.db` there, when `extra` has no DATABASE_URL).
fn command_in(dir: &std::path::Path, args: &[&str], extra: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(dir)
        .args(args);
    for (k, v) in extra {
        command.env(k, v);
    }
    command
}

#[test]
fn the_embedded_default_generates_a_private_key_file_once_on_serve_and_postgres_needs_a_key() {
    let dir = std::env::temp_dir().join(unique_id("embedded-key"));
    std::fs::create_dir_all(&dir).unwrap();
    let run =
        |args: &[&str], extra: &[(&str, &str)]| command_in(&dir, args, extra).output().unwrap();
    let file = dir.join("stripe-ledger.db.signing-key");
    let served = Served::start(command_in(
        &dir,
        &[],
        &[
            ("STRIPE_WEBHOOK_SECRET", "whsec_x"),
            ("LISTEN_ADDR", "127.0.0.1:0"),
        ],
    ));
    let log = served.log();
    served.kill();
    let first = run(&["checkpoint", "--verifier-key"], &[]);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let key = String::from_utf8(first.stdout).unwrap();
    assert!(key.starts_with("stripe-ledger/test+"), "{key}");
    assert!(
        log.contains(key.trim()),
        "serve logged the new verifier key: {log}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let seed = std::fs::read_to_string(&file).unwrap();
    assert!(!log.contains(seed.trim()));
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(stderr.is_empty(), "printed once, on creation: {stderr}");
    let again = Served::start(command_in(
        &dir,
        &[],
        &[
            ("STRIPE_WEBHOOK_SECRET", "whsec_x"),
            ("LISTEN_ADDR", "127.0.0.1:0"),
        ],
    ));
    let log = again.log();
    again.kill();
    assert!(
        !log.contains(key.trim()),
        "the same key on every start: {log}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), seed);

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

#[test]
fn verify_and_checkpoint_on_a_database_without_its_key_exit_2_and_create_no_key() {
    // A copy of the embedded database without its key file: migrated, nothing else.
    let dir = std::env::temp_dir().join(unique_id("keyless-copy"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("stripe-ledger.db.signing-key");
    let migrated = command_in(&dir, &["migrate"], &[]).output().unwrap();
    assert_eq!(migrated.status.code(), Some(0), "{migrated:?}");
    assert!(!file.exists(), "migrate creates no key");
    for args in [
        &["verify"][..],
        &["verify", "--format", "json"],
        &["checkpoint"],
        &["checkpoint", "--verifier-key"],
    ] {
        let output = command_in(&dir, args, &[]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("LEDGER_SIGNING_KEY"), "{args:?}: {stderr}");
        if args[0] == "verify" {
            assert!(stderr.contains("--verifier-key"), "{args:?}: {stderr}");
        }
        assert!(output.stdout.is_empty(), "{args:?}: no report");
        assert!(!file.exists(), "{args:?} created a key file");
    }
    // With the verifier key given, verify runs (and still creates nothing).
    let key = SigningKey::from_seed("stripe-ledger/test", [5; 32])
        .unwrap()
        .verifier()
        .to_string();
    let output = command_in(&dir, &["verify", "--verifier-key", &key], &[])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("OK"));
    assert!(!file.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Posts one signed event to a `serve` child; the status.
async fn post_event(addr: &str, secret: &str, id: &str) -> u16 {
    let body = event(id, "customer.created");
    let signature =
        stripe_ledger::stripe::signature::sign(&body, secret, chrono::Utc::now().timestamp());
    reqwest::Client::new()
        .post(format!("http://{addr}/webhooks/stripe"))
        .header("stripe-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn with_sealing_off_serve_ingests_signs_nothing_and_the_api_and_verify_say_sealing_is_off() {
    let app = TestApp::builder()
        .env("LEDGER_SIGNING_KEY", "off")
        .spawn()
        .await;
    assert!(app.sealing.is_none());
    let ids = deliver(&app, 2).await;
    let event_id = &ids[0];
    for path in [
        "/api/audit/checkpoint".to_owned(),
        format!("/api/audit/events/{event_id}/proof"),
        "/api/audit/consistency?from=1&to=2".to_owned(),
    ] {
        let reply = app.audit(&path).await;
        assert_eq!(
            (reply.status, reply.code()),
            (404, "sealing_off"),
            "{path}: {}",
            reply.text
        );
    }

    // The real service on the same database, with the shortest interval: no sealer runs.
    let secret = "whsec_sealing_off_test";
    let mut command = bare_command(&app);
    command
        .env("LEDGER_SIGNING_KEY", "off")
        .env("STRIPE_WEBHOOK_SECRET", secret)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("CHECKPOINT_INTERVAL", "1s");
    let served = Served::start(command);
    assert!(
        served.log().contains(r#""sealed_log":"off""#),
        "{}",
        served.log()
    );
    for _ in 0..3 {
        assert_eq!(
            post_event(&served.addr, secret, &unique_id("evt")).await,
            200
        );
    }
    assert_eq!(app.event_count().await, 5);
    // Two seal ticks and two checkpoint intervals of a sealing service: an absence, observed
    // over a window (there is no event to wait for when nothing happens).
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    served.kill();
    assert_eq!(app.db.seal_state().await.unwrap().size, 0);
    assert!(app.db.checkpoints().await.unwrap().is_empty());
    let leaves: Vec<merkle::NodeId> = (0..5)
        .map(|index| merkle::NodeId { level: 0, index })
        .collect();
    assert!(
        app.db.fetch_nodes(&leaves).await.unwrap().is_empty(),
        "no seal nodes"
    );

    let mut command = bare_command(&app);
    let output = command
        .env("LEDGER_SIGNING_KEY", "off")
        .arg("verify")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("sealing is off"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn the_text_report_of_verify_says_ok_on_a_clean_log_and_names_the_first_bad_position_and_kind(
) {
    let (app, _) = sealed_app(6).await;
    let text = |app: &TestApp| {
        let output = bare_command(app).arg("verify").output().unwrap();
        (
            output.status.code(),
            String::from_utf8(output.stdout).unwrap(),
        )
    };
    let (code, report) = text(&app);
    assert_eq!(code, Some(0), "{report}");
    assert!(
        report.starts_with("6 entries, tree size 6 (sealed 6)"),
        "{report}"
    );
    assert!(
        report.contains("OK: the log matches its tree and every checkpoint"),
        "{report}"
    );
    assert!(!report.contains("TAMPERED"), "{report}");
    as_owner(
        &app,
        &["UPDATE event_log SET payload = replace(payload, 'cus_', 'cux_') WHERE position = 4"],
    )
    .await;
    let (code, report) = text(&app);
    assert_eq!(code, Some(4), "{report}");
    assert!(report.contains("TAMPERED: "), "{report}");
    assert!(report.contains("first: edited at position 4"), "{report}");
    assert!(!report.contains("OK:"), "{report}");
}

#[tokio::test]
async fn checkpoint_run_twice_without_growth_prints_the_same_checkpoint_and_signs_no_new_one() {
    let app = TestApp::spawn().await;
    deliver(&app, 3).await;
    let run = || {
        let output = bare_command(&app).arg("checkpoint").output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let first = run();
    let stored = app.db.checkpoints().await.unwrap();
    assert_eq!(stored.len(), 1);
    let second = run();
    assert_eq!(first, second);
    assert_eq!(
        app.db.checkpoints().await.unwrap(),
        stored,
        "no new checkpoint"
    );
    assert_eq!(
        note::open(&second, &sealing(&app).key.verifier())
            .unwrap()
            .size,
        3
    );
}

/// Until a webhook append of `app` waits for the append lock behind another transaction
/// (PostgreSQL: an advisory lock not granted), or `done` says it finished anyway (which the
/// test then catches). SQLite has no such view; its single writer is the lock.
async fn until_an_append_waits(app: &TestApp, done: impl Fn() -> bool) {
    if backend() != Backend::Postgres {
        return;
    }
    let count = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
    crate::helpers::until_lock_waiters(app, count, 1, done, "the append").await;
}

#[tokio::test]
async fn the_sealer_stops_before_an_uncommitted_append_and_seals_it_as_an_entry_once_committed() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    deliver(&app, 2).await;
    sealer::seal_all(&app.db).await.unwrap();
    // Position 3 is taken by an append that has not committed (another instance's, slow).
    let (commit, committed) = tokio::sync::oneshot::channel();
    let (inserted, is_inserted) = tokio::sync::oneshot::channel();
    let slow = tokio::spawn(crate::event_log::slow_append(
        app.database.url.clone(),
        "evt_seal_in_flight",
        None,
        committed,
        inserted,
    ));
    is_inserted.await.unwrap();
    // A webhook arrives meanwhile: its append must wait, not commit position 4 first (which
    // the sealer would take as proof that 3 never existed, and seal as a hole).
    let later = unique_id("evt");
    let fast = {
        let (app, body) = (app.clone(), event(&later, "customer.created"));
        tokio::spawn(async move { app.deliver(&body).await })
    };
    until_an_append_waits(&app, || fast.is_finished()).await;
    assert_eq!(sealer::seal_once(&app.db, 100).await.unwrap(), 0);
    assert_eq!(
        app.db.seal_state().await.unwrap().size,
        2,
        "sealed past position 3"
    );

    commit.send(()).unwrap();
    slow.await.unwrap();
    assert_eq!(fast.await.unwrap().status, 200);
    assert_eq!(sealer::seal_all(&app.db).await.unwrap(), 4);
    let leaves: Vec<merkle::NodeId> = (0..4)
        .map(|index| merkle::NodeId { level: 0, index })
        .collect();
    let stored = app.db.fetch_nodes(&leaves).await.unwrap();
    for position in 1..=4u64 {
        let hole = merkle::leaf_hash(&sealer::hole_leaf(position));
        let leaf = stored[&merkle::NodeId {
            level: 0,
            index: position - 1,
        }];
        assert_ne!(leaf, hole, "position {position} was sealed as a hole");
    }
    let entry = stripe_ledger::event_log::get(&app.db, "evt_seal_in_flight")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.position, 3);
    assert_eq!(
        stored[&merkle::NodeId { level: 0, index: 2 }],
        sealer::entry_leaf_hash(&entry).unwrap()
    );
    seal(&app).await;
    let (code, report) = verify(&app, &[]).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["sealed_size"], 4);
}

#[tokio::test]
async fn a_checkpoint_that_could_not_be_written_to_checkpoint_dir_is_written_at_the_next_interval()
{
    let app = TestApp::spawn().await;
    let dir = std::env::temp_dir().join(unique_id("checkpoints"));
    // A file where the directory should be: the first write fails.
    std::fs::write(&dir, b"not a directory").unwrap();
    let publishing = Sealing {
        checkpoint_dir: Some(dir.clone()),
        ..sealing(&app).clone()
    };
    deliver(&app, 3).await;
    sealer::seal_all(&app.db).await.unwrap();
    let signed = sealer::checkpoint(&app.db, &publishing, 1_764_000_000)
        .await
        .unwrap()
        .expect("a checkpoint");
    assert_eq!(signed.size, 3);
    assert!(dir.is_file(), "the failed write left the file alone");

    // The directory can be made now; the tree has not grown, so nothing new is signed, but the
    // stored checkpoint is published.
    std::fs::remove_file(&dir).unwrap();
    let again = sealer::checkpoint(&app.db, &publishing, 1_764_000_060)
        .await
        .unwrap();
    assert_eq!(again.as_ref(), Some(&signed), "no new checkpoint");
    assert_eq!(
        std::fs::read_to_string(dir.join("3.note")).unwrap(),
        signed.note
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("latest.note")).unwrap(),
        signed.note
    );
    assert_eq!(app.db.checkpoints().await.unwrap().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_older_checkpoint_written_late_by_another_instance_never_moves_latest_note_back() {
    let app = TestApp::spawn().await;
    let dir = std::env::temp_dir().join(unique_id("checkpoints"));
    let publishing = Sealing {
        checkpoint_dir: Some(dir.clone()),
        ..sealing(&app).clone()
    };
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let mut signed = Vec::new();
    for (entries, at) in [(3, 1_764_000_000), (2, 1_764_000_060)] {
        deliver(&app, entries).await;
        sealer::seal_all(&app.db).await.unwrap();
        let checkpoint = sealer::checkpoint(&app.db, &publishing, at).await.unwrap();
        signed.push(checkpoint.unwrap());
    }
    let (older, newer) = (&signed[0], &signed[1]);
    assert_eq!((older.size, newer.size), (3, 5));
    assert_eq!(read("latest.note"), newer.note);

    // The instance that signed size 3 gets to its write only now, alone and racing another
    // write of size 5: its own file is written, `latest.note` stays the newest.
    publish::write_note(&dir, older, &app.db).await.unwrap();
    assert_eq!(read("latest.note"), newer.note);
    std::fs::remove_file(dir.join("latest.note")).unwrap();
    let (a, b) = tokio::join!(
        publish::write_note(&dir, older, &app.db),
        publish::write_note(&dir, newer, &app.db)
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(read("latest.note"), newer.note);
    assert_eq!(read("3.note"), older.note);
    assert_eq!(read("5.note"), newer.note);
    assert!(publish::is_written(&dir, newer));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn serve_refuses_to_make_a_new_key_for_a_database_whose_checkpoints_another_key_signed() {
    let app = TestApp::spawn().await;
    deliver(&app, 2).await;
    seal(&app).await;
    let embedded = app.database.url.strip_prefix("sqlite://").map(|path| {
        let key_file = std::path::PathBuf::from(format!("{path}.signing-key"));
        assert!(!key_file.exists(), "the test app's key is not on disk");
        key_file
    });
    // The embedded default with its key file gone (a restore or copy without it); PostgreSQL
    // never makes a key, so there it is the plain "a key is required" refusal.
    let mut command = bare_command(&app);
    command
        .env_remove("LEDGER_SIGNING_KEY")
        .args(["serve"])
        .env("STRIPE_WEBHOOK_SECRET", "whsec_lost_key_test")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("serve started with a new key beside checkpoints signed by another");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("LEDGER_SIGNING_KEY"), "{stderr}");
    if let Some(key_file) = embedded {
        assert!(stderr.contains("holds signed checkpoints"), "{stderr}");
        assert!(!key_file.exists(), "no key file was made");
    }
    assert_eq!(app.db.checkpoints().await.unwrap().len(), 1);
}

#[tokio::test]
async fn with_sealing_switched_off_after_it_ran_the_old_checkpoint_and_its_proofs_are_still_served()
{
    let sealed = TestApp::spawn().await;
    let ids = deliver(&sealed, 2).await;
    let note = seal(&sealed).await;
    let off = TestApp::builder()
        .database(sealed.database.clone())
        .env("LEDGER_SIGNING_KEY", "off")
        .spawn()
        .await;
    let latest = off.audit("/api/audit/checkpoint").await;
    assert_eq!((latest.status, latest.text.as_str()), (200, note.as_str()));
    let proof = off
        .audit(&format!("/api/audit/events/{}/proof", ids[1]))
        .await;
    assert_eq!(proof.status, 200, "{}", proof.text);
    assert_eq!(proof.json["checkpoint"], note.as_str());
    // An entry logged after sealing stopped will never be sealed.
    let later = deliver(&off, 1).await;
    let unsealed = off
        .audit(&format!("/api/audit/events/{}/proof", later[0]))
        .await;
    assert_eq!(
        (unsealed.status, unsealed.code()),
        (404, "sealing_off"),
        "{}",
        unsealed.text
    );
}

#[tokio::test]
async fn a_larger_sealing_pass_prepares_nothing_new_and_sends_no_more_round_trips_than_a_smaller_one(
) {
    use crate::hot_path::{metered, webhook_entry, Meter};
    let database = crate::helpers::TestDatabase::create().await;
    let (db, meter) = metered(&database).await;
    let mut costs = Vec::new();
    // Pass sizes that write from a handful to some hundreds of nodes, each within one read
    // page, the first pass preparing what every later one reuses.
    for (pass, size) in [3, 5, 60, 110].into_iter().enumerate() {
        let entries = (0..size)
            .map(|i| webhook_entry(&event(&format!("evt_pass_{pass}_{i}"), "customer.created")))
            .collect();
        let written = stripe_ledger::ingest::write_batch(&db, entries).await;
        assert!(written.iter().all(Result::is_ok), "{written:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = meter.now().await;
        assert_eq!(sealer::seal_once(&db, 1_000).await.unwrap(), size);
        tokio::time::sleep(Duration::from_millis(100)).await;
        costs.push(meter.now().await - before);
    }
    match meter {
        // Round trips at the wire, the pool's checks included: a larger pass never costs more
        // than a smaller one (the nodes go in one statement, whatever their number).
        Meter::Wire(_) => assert!(costs[1..].windows(2).all(|w| w[1] <= w[0]), "{costs:?}"),
        // Statements prepared on ingestion's writer: none after the first pass.
        Meter::Writer(_) => assert_eq!(&costs[1..], &[0, 0, 0], "{costs:?}"),
    }
}
