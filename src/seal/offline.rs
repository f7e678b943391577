//! `stripe-ledger verify-proof BUNDLE --verifier-key KEY`: an auditor's check of one bundle,
//! with no database and no configuration at all.
//!
//! The one module of `seal` that does IO: it reads the bundle (and perhaps a key file) and
//! writes the report. Everything it decides is [`bundle::parse`] and [`bundle::verify`].

use std::io::{Read as _, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use super::bundle::{self, BundleError, VerifiedBundle};
use super::note::VerifierKey;
use crate::cli::OutputFormat;
use crate::terminal::escape;

/// The bundle verified.
pub const EXIT_VERIFIED: u8 = 0;
/// Usage error, unreadable file or unusable key: nothing was checked.
pub const EXIT_USAGE: u8 = 2;
/// The bundle does not verify: the report says why.
pub const EXIT_NOT_VERIFIED: u8 = 4;

/// Bundles are refused above this size before parsing (a payload is at most what the webhook
/// route accepts, far below it).
const MAX_BUNDLE_BYTES: u64 = 64 * 1024 * 1024;
/// A verifier key string is under 200 bytes; a key file bigger than this is not one.
const MAX_KEY_FILE_BYTES: u64 = 4096;

#[derive(Debug, Args)]
pub struct VerifyProofArgs {
    /// The bundle file written by `stripe-ledger events show EVT --proof`.
    pub bundle: PathBuf,
    /// The log's verifier key, `<name>+<key id>+<base64 key>`, or a file that holds it.
    #[arg(long)]
    pub verifier_key: String,
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// The report of `--format json`.
#[derive(Serialize)]
#[serde(untagged)]
enum Report<'a> {
    Verified {
        verified: bool,
        #[serde(flatten)]
        proof: &'a VerifiedBundle,
    },
    Failed {
        verified: bool,
        kind: &'static str,
        error: String,
    },
}

/// Runs the command: reads, verifies, reports on `out`; usage errors go to `err`.
pub fn run(args: &VerifyProofArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    let key = match load_key(&args.verifier_key) {
        Ok(key) => key,
        Err(message) => return usage(err, &message),
    };
    let file = match read_capped(&args.bundle, MAX_BUNDLE_BYTES) {
        Ok(file) => file,
        Err(e) => return usage(err, &format!("cannot read the bundle: {e}")),
    };
    let result = bundle::parse(&file).and_then(|b| bundle::verify(&b, &key));
    let written = match args.format {
        OutputFormat::Json => write_json(out, &result),
        OutputFormat::Text => write_text(out, &result, &key),
    };
    if let Err(e) = written {
        return usage(err, &format!("cannot write the report: {e}"));
    }
    ExitCode::from(match result {
        Ok(_) => EXIT_VERIFIED,
        Err(_) => EXIT_NOT_VERIFIED,
    })
}

fn usage(err: &mut dyn Write, message: &str) -> ExitCode {
    let _ = writeln!(err, "error: {}", escape(message));
    ExitCode::from(EXIT_USAGE)
}

/// A key string, or else the path of a file holding one (surrounding white space ignored).
fn load_key(arg: &str) -> Result<VerifierKey, String> {
    let parsed = VerifierKey::parse(arg);
    if parsed.is_ok() || !Path::new(arg).is_file() {
        return parsed.map_err(|e| format!("--verifier-key: {e}"));
    }
    let bytes = read_capped(Path::new(arg), MAX_KEY_FILE_BYTES)
        .map_err(|e| format!("cannot read the verifier key file: {e}"))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| "the key file is not UTF-8".to_owned())?;
    VerifierKey::parse(text.trim()).map_err(|e| format!("the verifier key file: {e}"))
}

fn read_capped(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::other(format!("larger than {max} bytes")));
    }
    Ok(bytes)
}

fn write_json(
    out: &mut dyn Write,
    result: &Result<VerifiedBundle, BundleError>,
) -> std::io::Result<()> {
    let report = match result {
        Ok(proof) => Report::Verified {
            verified: true,
            proof,
        },
        Err(e) => Report::Failed {
            verified: false,
            kind: e.kind(),
            error: e.to_string(),
        },
    };
    serde_json::to_writer_pretty(&mut *out, &report)?;
    writeln!(out)
}

fn write_text(
    out: &mut dyn Write,
    result: &Result<VerifiedBundle, BundleError>,
    key: &VerifierKey,
) -> std::io::Result<()> {
    match result {
        Ok(v) => {
            writeln!(out, "verified")?;
            writeln!(out, "  event:      {}", escape(&v.leaf.event_id))?;
            writeln!(
                out,
                "  position:   {} (leaf {})",
                v.leaf.position, v.leaf_index
            )?;
            writeln!(out, "  log:        {}", escape(&v.origin))?;
            writeln!(out, "  tree size:  {}", v.tree_size)?;
            writeln!(out, "  root:       {}", v.root)?;
            writeln!(out, "  signed by:  {}", escape(&key.to_string()))
        }
        Err(e) => writeln!(
            out,
            "NOT VERIFIED ({}): {}",
            e.kind(),
            escape(&e.to_string())
        ),
    }
}
