//! The sealing key: from `LEDGER_SIGNING_KEY`, or generated beside the SQLite database on the
//! embedded default's first start.

use std::io::Write as _;
use std::path::Path;

use crate::config::SigningKeyConfig;
use crate::seal::note::SigningKey;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("could not create the signing key file {path}: {source}")]
    Create {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the signing key file {path} could not be read or does not hold a base64 32-byte seed"
    )]
    Read { path: String },
    #[error("the signing key is not usable: {0}")]
    Key(String),
}

/// The key named `origin`, or `None` when sealing is off. A generated key's verifier key is
/// logged once, when the file is created (the seed itself never is).
pub fn load(config: &SigningKeyConfig, origin: &str) -> Result<Option<SigningKey>, KeyError> {
    let seed = match config {
        SigningKeyConfig::Off => return Ok(None),
        SigningKeyConfig::Seed(seed) => *seed.expose(),
        SigningKeyConfig::Generate(path) => match read_seed(path)? {
            Some(seed) => seed,
            None => return generate(path, origin).map(Some),
        },
    };
    SigningKey::from_seed(origin, seed)
        .map(Some)
        .map_err(|e| KeyError::Key(e.to_string()))
}

fn read_seed(path: &Path) -> Result<Option<[u8; 32]>, KeyError> {
    use base64::Engine as _;
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(_) => {
            return Err(KeyError::Read {
                path: path.display().to_string(),
            })
        }
    };
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .map(Some)
        .ok_or_else(|| KeyError::Read {
            path: path.display().to_string(),
        })
}

/// Creates the key file (never overwriting one: `create_new`), readable by its owner only.
fn generate(path: &Path, origin: &str) -> Result<SigningKey, KeyError> {
    use base64::Engine as _;
    let key = SigningKey::generate(origin).map_err(|e| KeyError::Key(e.to_string()))?;
    let created = |source| KeyError::Create {
        path: path.display().to_string(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(created)?;
    let text = base64::engine::general_purpose::STANDARD.encode(key.seed());
    writeln!(file, "{text}").map_err(created)?;
    file.sync_all().map_err(created)?;
    let verifier = key.verifier().to_string();
    // `serve` logs (JSON lines when LOG_FORMAT=json); a command without logging prints it.
    if tracing::dispatcher::has_been_set() {
        tracing::warn!(
            key_file = %path.display(),
            verifier_key = %verifier,
            "generated a new checkpoint signing key; keep the file safe and give auditors the verifier key"
        );
    } else {
        eprintln!(
            "generated the checkpoint signing key {}; verifier key (give it to auditors): {verifier}",
            path.display()
        );
    }
    Ok(key)
}
