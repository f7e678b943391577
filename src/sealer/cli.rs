//! `stripe-ledger checkpoint` and `stripe-ledger verify`: library functions the binary and the
//! tests call. Exit codes: 0 good, 4 tampering found, 2 usage or configuration, 1 could not run.

use std::io::Write;
use std::process::ExitCode;

use super::keys::KeyError;
use super::verify::{self, ExternalCheckpoint, VerifyReport};
use super::Sealing;
use crate::config::{ConfigError, DatabaseConfig, Lookup, SealConfig};
use crate::seal::note::VerifierKey;
use crate::store::Db;

/// Exit code of `verify` when tampering is found.
pub const TAMPERED: u8 = 4;

/// The sealing settings as `serve` would read them (the mode, for the default origin, from
/// `STRIPE_SECRET_KEY`).
pub fn seal_config(
    env: &impl Lookup,
    database: &DatabaseConfig,
) -> Result<SealConfig, ConfigError> {
    let mode = env
        .get("STRIPE_SECRET_KEY")
        .and_then(|k| crate::stripe::keys::SecretKey::parse(k.trim()).ok())
        .map_or(crate::stripe::keys::Mode::Test, |k| k.mode());
    SealConfig::from_lookup(env, database, mode)
}

/// `stripe-ledger checkpoint [--verifier-key]`.
pub async fn checkpoint(
    db: &Db,
    config: &SealConfig,
    verifier_only: bool,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    let sealing = match Sealing::existing(config) {
        Ok(Some(s)) => s,
        Ok(None) => {
            eprintln!("configuration error: LEDGER_SIGNING_KEY: is `off`: sealing is off, there is no sealed log to checkpoint");
            return Ok(ExitCode::from(2));
        }
        Err(e @ KeyError::Missing { .. }) => {
            eprintln!("configuration error: {e}; set LEDGER_SIGNING_KEY to the log's key");
            return Ok(ExitCode::from(2));
        }
        Err(e) => {
            eprintln!("configuration error: LEDGER_SIGNING_KEY: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if verifier_only {
        writeln!(out, "{}", sealing.key.verifier())?;
        return Ok(ExitCode::SUCCESS);
    }
    db.migrate().await?;
    super::seal_all(db).await?;
    match super::checkpoint(db, &sealing, chrono::Utc::now().timestamp()).await? {
        Some(c) => {
            write!(out, "{}", c.note)?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("the log is empty: nothing to checkpoint yet");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `stripe-ledger verify`: `key` from `--verifier-key`, else the configured signing key's.
pub async fn verify(
    db: &Db,
    config: Option<&SealConfig>,
    verifier_key: Option<&str>,
    checkpoint_files: &[std::path::PathBuf],
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    let key = match verifier_key {
        Some(text) => match VerifierKey::parse(text.trim()) {
            Ok(k) => k,
            Err(e) => {
                eprintln!("error: --verifier-key: {e}");
                return Ok(ExitCode::from(2));
            }
        },
        None => match config
            .map(Sealing::existing)
            .transpose()
            .map(Option::flatten)
        {
            Ok(Some(s)) => s.key.verifier(),
            Ok(None) => {
                eprintln!("error: sealing is off (LEDGER_SIGNING_KEY=off): give the log's verifier key with --verifier-key");
                return Ok(ExitCode::from(2));
            }
            Err(e @ KeyError::Missing { .. }) => {
                eprintln!("error: {e}: give the log's verifier key with --verifier-key, or set LEDGER_SIGNING_KEY");
                return Ok(ExitCode::from(2));
            }
            Err(e) => {
                eprintln!("configuration error: LEDGER_SIGNING_KEY: {e}");
                return Ok(ExitCode::from(2));
            }
        },
    };
    let mut external = Vec::new();
    for path in checkpoint_files {
        match std::fs::read_to_string(path) {
            Ok(note) => external.push(ExternalCheckpoint {
                source: format!("checkpoint file {}", path.display()),
                note,
            }),
            Err(e) => {
                let shown = crate::terminal::field(&path.display().to_string());
                eprintln!("error: --checkpoint {shown}: {e}");
                return Ok(ExitCode::from(2));
            }
        }
    }
    let report = verify::verify(db, &key, &external).await?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{}", render_text(&report))?;
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(TAMPERED)
    })
}

pub fn render_text(report: &VerifyReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} entries, tree size {} (sealed {}), {} stored and {} external checkpoints",
        report.entries,
        report.tree_size,
        report.sealed_size,
        report.stored_checkpoints,
        report.external_checkpoints
    );
    match &report.first {
        None => {
            let _ = writeln!(s, "OK: the log matches its tree and every checkpoint");
        }
        Some(first) => {
            let _ = writeln!(
                s,
                "TAMPERED: {} finding(s); first: {} at position {}",
                report.findings_total, first.kind, first.position
            );
            for f in &report.findings {
                let detail = crate::terminal::escape(&f.detail);
                let _ = writeln!(
                    s,
                    "  {:<13} {:>10}  {detail}",
                    f.kind.to_string(),
                    f.position
                );
            }
        }
    }
    s
}
