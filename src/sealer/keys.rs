//! The sealing key: from `LEDGER_SIGNING_KEY`, or generated beside the SQLite database on the
//! embedded default's first `serve`. One reader ([`parse_key_file`]) for every key file, the
//! generated one and the operator's, so a key moves between them without conversion.

use std::io::Write as _;
use std::path::Path;

use crate::config::SigningKeyConfig;
use crate::seal::note::SigningKey;
use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("could not create the signing key file {path}: {source}")]
    Create {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the signing key file {path} could not be read or does not hold a key (base64 of a \
         32-byte seed, a PRIVATE+KEY string, or the 32 raw bytes)"
    )]
    Read { path: String },
    /// Only `serve` creates the key: a command that found none says so instead of signing or
    /// verifying with a key nobody else has.
    #[error(
        "LEDGER_SIGNING_KEY is not set and there is no key file {path} (`serve` creates it on \
         its first start)"
    )]
    Missing { path: String },
    /// The key file is gone but checkpoints signed by some key are stored: a new key would sign
    /// a second history, and make every earlier checkpoint look forged.
    #[error(
        "there is no key file {path}, but the database holds signed checkpoints: restore the key \
         file (or set LEDGER_SIGNING_KEY to that key); a new key is made only for a database \
         without checkpoints"
    )]
    Lost { path: String },
    #[error(
        "the key in {path} is named for another origin than {origin:?}: a PRIVATE+KEY name must \
         be the checkpoint origin (CHECKPOINT_ORIGIN)"
    )]
    OtherOrigin { path: String, origin: String },
    #[error("the signing key is not usable: {0}")]
    Key(String),
}

/// Whether a missing key file beside the database may be created (`serve` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Generate,
    Refuse,
}

/// Key material as written: the seed, and the key name when it was a `PRIVATE+KEY` string.
pub struct KeyText {
    pub seed: Secret<[u8; 32]>,
    pub name: Option<String>,
}

/// The value of `LEDGER_SIGNING_KEY` or a key file's text: base64 of the 32-byte seed, or Go's
/// `PRIVATE+KEY+<name>+<key id>+<base64>` (key id checked). `None` otherwise; the caller
/// names the variable or file, never the text.
pub fn parse_key_text(text: &str) -> Option<KeyText> {
    use base64::Engine as _;
    let text = text.trim();
    if text.starts_with("PRIVATE+KEY+") {
        let key = SigningKey::parse_private_key(text).ok()?;
        return Some(KeyText {
            seed: Secret::new(key.seed()),
            name: Some(key.name().to_owned()),
        });
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    Some(KeyText {
        seed: Secret::new(<[u8; 32]>::try_from(bytes).ok()?),
        name: None,
    })
}

/// A key file's content: what [`parse_key_text`] reads, or exactly 32 raw bytes. Thirty-two
/// bytes that are all printable text (a hex string or a password saved without a newline) are
/// read as text, and so refused, rather than taken as a seed: random seed bytes are all
/// printable about once in 10^14.
pub fn parse_key_file(content: &[u8]) -> Option<KeyText> {
    let text_like = content.iter().all(|b| b.is_ascii_graphic());
    if let (Ok(raw), false) = (<[u8; 32]>::try_from(content), text_like) {
        return Some(KeyText {
            seed: Secret::new(raw),
            name: None,
        });
    }
    std::str::from_utf8(content).ok().and_then(parse_key_text)
}

/// The key named `origin`, or `None` when sealing is off. A generated key's verifier key is
/// logged once, when the file is created (the seed itself never is).
pub fn load(
    config: &SigningKeyConfig,
    origin: &str,
    missing: Missing,
) -> Result<Option<SigningKey>, KeyError> {
    let seed = match config {
        SigningKeyConfig::Off => return Ok(None),
        SigningKeyConfig::Seed(seed) => *seed.expose(),
        SigningKeyConfig::Generate(path) => match (read_seed(path, origin)?, missing) {
            (Some(seed), _) => seed,
            (None, Missing::Generate) => return generate(path, origin).map(Some),
            (None, Missing::Refuse) => {
                return Err(KeyError::Missing {
                    path: path.display().to_string(),
                })
            }
        },
    };
    SigningKey::from_seed(origin, seed)
        .map(Some)
        .map_err(|e| KeyError::Key(e.to_string()))
}

fn read_seed(path: &Path, origin: &str) -> Result<Option<[u8; 32]>, KeyError> {
    let shown = || path.display().to_string();
    let content = match std::fs::read(path) {
        Ok(content) => content,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(_) => return Err(KeyError::Read { path: shown() }),
    };
    let key = parse_key_file(&content).ok_or_else(|| KeyError::Read { path: shown() })?;
    if key.name.as_deref().is_some_and(|name| name != origin) {
        return Err(KeyError::OtherOrigin {
            path: shown(),
            origin: origin.to_owned(),
        });
    }
    Ok(Some(*key.seed.expose()))
}

/// Creates the key file, readable by its owner only, never overwriting one and never leaving
/// half of one: the key is written to a temporary file beside it, synced, then hard-linked into
/// place (which fails if the name exists). If another process created the file meanwhile (two
/// `serve`s started together), its key is the one used. Where the file system has no hard
/// links, the file is created in place (still never over an existing one). Temporary files a
/// crash left behind are removed first.
fn generate(path: &Path, origin: &str) -> Result<SigningKey, KeyError> {
    use base64::Engine as _;
    let key = SigningKey::generate(origin).map_err(|e| KeyError::Key(e.to_string()))?;
    let created = |source| KeyError::Create {
        path: path.display().to_string(),
        source,
    };
    let text = base64::engine::general_purpose::STANDARD.encode(key.seed());
    remove_stale_temporaries(path);
    let temp = path.with_extension(format!("{}.tmp", uuid::Uuid::new_v4().simple()));
    let written =
        write_private(&temp, &text).and_then(|()| match std::fs::hard_link(&temp, path) {
            // A file system without hard links (some network and FUSE mounts): create the file in
            // place instead, still never over an existing one. A crash mid-write there leaves a
            // partial file, which is then refused as unreadable (fail closed), not taken for a key.
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                tracing::debug!(error = %e, "no hard link for the key file; writing it in place");
                write_private(path, &text)
            }
            linked => linked,
        });
    let _ = std::fs::remove_file(&temp);
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let seed = read_seed(path, origin)?.ok_or_else(|| KeyError::Read {
                path: path.display().to_string(),
            })?;
            return SigningKey::from_seed(origin, seed).map_err(|e| KeyError::Key(e.to_string()));
        }
        Err(e) => return Err(created(e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The new name is durable once its directory is synced.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(created)?;
    }
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

/// Removes temporary key files a crash left beside `path` (`<stem>.<32 hex digits>.tmp`): each
/// holds a seed that was never used, and nothing else would ever delete it.
fn remove_stale_temporaries(path: &Path) {
    let (Some(dir), Some(stem)) = (path.parent(), path.file_stem().and_then(|s| s.to_str())) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_ours = name
            .strip_prefix(stem)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .is_some_and(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()));
        if is_ours {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Writes `text` and a newline to a new file at `path`, mode 0600, synced.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    writeln!(file, "{text}")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_two_printable_bytes_are_not_taken_for_a_raw_seed() {
        assert!(parse_key_file(b"0123456789abcdef0123456789abcdef").is_none());
        assert!(parse_key_file(b"correct-horse-battery-staple-123").is_none());
        let mut raw = [0u8; 32];
        raw[0] = 0x80;
        assert!(
            parse_key_file(&raw).is_some(),
            "binary bytes are a raw seed"
        );
    }

    #[test]
    fn a_key_file_made_by_another_process_first_is_used_and_no_temporary_file_is_left() {
        let path = temp_file("db.signing-key");
        let theirs = generate(&path, "o").unwrap();
        // This process lost the race: its own key goes nowhere, the file's key is used.
        let ours = generate(&path, "o").unwrap();
        assert_eq!(ours.verifier().to_string(), theirs.verifier().to_string());
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("db.signing-key")]);
    }

    #[test]
    fn temporary_key_files_a_crash_left_are_removed_and_other_files_are_not() {
        let path = temp_file("db.signing-key");
        let dir = path.parent().unwrap().to_owned();
        let stale = dir.join(format!("db.{}.tmp", uuid::Uuid::new_v4().simple()));
        std::fs::write(&stale, "a seed nobody uses").unwrap();
        for other in [
            "db.notes.tmp",
            "other.0123456789abcdef0123456789abcdef.tmp",
            "db.sqlite",
        ] {
            std::fs::write(dir.join(other), "keep").unwrap();
        }
        generate(&path, "o").unwrap();
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "db.notes.tmp",
                "db.signing-key",
                "db.sqlite",
                "other.0123456789abcdef0123456789abcdef.tmp"
            ]
        );
    }

    fn temp_file(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ledger-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn a_generated_key_file_and_an_operator_key_file_are_read_by_the_same_reader() {
        let path = temp_file("db.signing-key");
        let config = SigningKeyConfig::Generate(path.clone());
        let made = load(&config, "o", Missing::Generate).unwrap().unwrap();
        let generated = std::fs::read(&path).unwrap();
        assert_eq!(
            parse_key_file(&generated).map(|k| *k.seed.expose()),
            Some(made.seed())
        );
        // The same key in the other formats, in the same file: the same signer.
        for content in [
            made.to_private_key_string().into_bytes(),
            made.seed().to_vec(),
        ] {
            std::fs::write(&path, content).unwrap();
            let read = load(&config, "o", Missing::Refuse).unwrap().unwrap();
            assert_eq!(read.verifier().to_string(), made.verifier().to_string());
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_missing_key_file_is_created_only_when_asked_and_a_foreign_name_is_refused() {
        let path = temp_file("db.signing-key");
        let config = SigningKeyConfig::Generate(path.clone());
        let e = load(&config, "o", Missing::Refuse).unwrap_err();
        assert!(matches!(e, KeyError::Missing { .. }), "{e}");
        assert!(e.to_string().contains("LEDGER_SIGNING_KEY"), "{e}");
        assert!(!path.exists(), "no key file was created");
        let other = SigningKey::from_seed("another-origin", [3; 32]).unwrap();
        let text = other.to_private_key_string();
        std::fs::write(&path, &text).unwrap();
        let e = load(&config, "o", Missing::Generate).unwrap_err();
        assert!(matches!(e, KeyError::OtherOrigin { .. }), "{e}");
        std::fs::write(&path, "not a key").unwrap();
        let e = load(&config, "o", Missing::Generate).unwrap_err();
        assert!(matches!(e, KeyError::Read { .. }), "{e}");
        assert!(!e.to_string().contains("not a key") && !e.to_string().contains(&text));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
