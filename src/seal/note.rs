//! Checkpoints as C2SP signed notes (`tlog-checkpoint` in a `signed-note`), Ed25519 only.
//!
//! A note is its text, a blank line, and signature lines `— <name> <base64(key id ‖ sig)>`.
//! The text of a checkpoint is exactly three lines: origin, tree size in decimal, base64 root.
//! Parsing is strict: anything the C2SP rules do not allow is an error, and so are checkpoint
//! extension lines, which this log never writes (a note that carries one did not come from
//! it). The key name is the origin by convention, but nothing here requires that.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _};
use sha2::{Digest as _, Sha256};

use super::merkle::Hash;

/// The signature type byte of Ed25519 in key ids and verifier keys (C2SP signed-note).
const ALG_ED25519: u8 = 0x01;
/// "— ": EM DASH (U+2014) then a space, the start of every signature line.
const SIG_PREFIX: &str = "\u{2014} ";
/// Larger notes are refused before any parsing: a checkpoint with a hundred cosignatures is
/// still under 16 KiB.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// Go's reference implementation stops at 100 signature lines; so do we.
const MAX_SIGNATURES: usize = 100;
/// The Go private key format (`golang.org/x/mod/sumdb/note`), so keys move between tools.
const PRIVATE_KEY_PREFIX: &str = "PRIVATE+KEY+";

/// Why a key, checkpoint or note was refused. A closed set; no variant carries secret
/// material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("a key name must be non-empty and contain no spaces, control characters or '+'")]
    InvalidKeyName,
    #[error(
        "the origin must be a non-empty line without control characters or surrounding spaces"
    )]
    InvalidOrigin,
    #[error("malformed key: {0}")]
    MalformedKey(&'static str),
    #[error("the key id does not match the key name and public key")]
    KeyIdMismatch,
    #[error("the note is larger than {MAX_NOTE_BYTES} bytes")]
    TooLarge,
    #[error("malformed note: {0}")]
    MalformedNote(&'static str),
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
    #[error("a signature by the verifier key is invalid")]
    InvalidSignature,
    #[error("the note has no signature by key {0:?}")]
    NotSignedByKey(String),
    #[error("the operating system's random number generator failed")]
    Randomness,
}

/// A signed tree head: the log `origin` had `size` entries and this root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The note text that is signed: `origin\nsize\nbase64(root)\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses a checkpoint body (the note text, final newline included), strictly.
    pub fn parse_body(text: &str) -> Result<Self, NoteError> {
        let lines = text
            .strip_suffix('\n')
            .ok_or(NoteError::MalformedCheckpoint(
                "the text does not end in a newline",
            ))?;
        let mut lines = lines.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(NoteError::MalformedCheckpoint("fewer than three lines"));
        };
        if lines.next().is_some() {
            return Err(NoteError::MalformedCheckpoint(
                "extension lines are not accepted",
            ));
        }
        validate_origin(origin).map_err(|_| NoteError::MalformedCheckpoint("bad origin line"))?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size: parse_size(size)?,
            root: parse_root(root)?,
        })
    }
}

/// Checks an origin line: non-empty, no control characters, no leading or trailing white
/// space (which would make two different-looking origins print the same).
pub fn validate_origin(origin: &str) -> Result<(), NoteError> {
    let ok = !origin.is_empty() && !origin.chars().any(char::is_control) && origin.trim() == origin;
    ok.then_some(()).ok_or(NoteError::InvalidOrigin)
}

/// Decimal, no sign, no leading zeros (so one size has one spelling), fits in u64.
fn parse_size(line: &str) -> Result<u64, NoteError> {
    let canonical = !line.is_empty()
        && line.bytes().all(|b| b.is_ascii_digit())
        && (line == "0" || !line.starts_with('0'));
    if !canonical {
        return Err(NoteError::MalformedCheckpoint(
            "the size is not a canonical decimal",
        ));
    }
    line.parse()
        .map_err(|_| NoteError::MalformedCheckpoint("the size does not fit in 64 bits"))
}

fn parse_root(line: &str) -> Result<Hash, NoteError> {
    B64.decode(line)
        .ok()
        .and_then(|bytes| Hash::try_from(bytes).ok())
        .ok_or(NoteError::MalformedCheckpoint(
            "the root is not base64 of 32 bytes",
        ))
}

/// C2SP key names: non-empty, no Unicode white space, no '+'. Control characters are refused
/// too (a note may not contain them anyway).
fn validate_name(name: &str) -> Result<(), NoteError> {
    let ok = !name.is_empty()
        && !name.contains('+')
        && !name.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then_some(()).ok_or(NoteError::InvalidKeyName)
}

/// The first four bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key), big-endian.
fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(public);
    let digest = h.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// The checkpoint signing key: a key name and an Ed25519 secret. `Debug` shows the name and
/// key id only; the secret is zeroed when dropped.
#[derive(Clone)]
pub struct SigningKey {
    name: String,
    key_id: u32,
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

impl SigningKey {
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        validate_name(name)?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        Ok(SigningKey {
            name: name.to_owned(),
            key_id: key_id(name, key.verifying_key().as_bytes()),
            key,
        })
    }

    /// A new key from the operating system's randomness.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|_| NoteError::Randomness)?;
        let key = Self::from_seed(name, seed);
        seed.fill(0);
        key
    }

    /// The 32-byte Ed25519 seed, to write the key file. Handle as a secret.
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// The full signed note: the checkpoint body, a blank line and one signature line. The
    /// origin must pass [`validate_origin`] (check it once at start-up); a note with a bad
    /// origin would not open.
    pub fn sign(&self, checkpoint: &Checkpoint) -> String {
        debug_assert!(validate_origin(&checkpoint.origin).is_ok());
        let text = checkpoint.body();
        let line = self.signature_line(text.as_bytes());
        format!("{text}\n{line}")
    }

    /// `— <name> <base64(key id ‖ signature over text)>\n`.
    fn signature_line(&self, text: &[u8]) -> String {
        let signature = self.key.sign(text);
        let mut blob = Vec::with_capacity(4 + 64);
        blob.extend_from_slice(&self.key_id.to_be_bytes());
        blob.extend_from_slice(&signature.to_bytes());
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(blob))
    }

    /// The Go private key string `PRIVATE+KEY+<name>+<key id>+<base64(0x01 ‖ seed)>`. A secret.
    pub fn to_private_key_string(&self) -> String {
        let mut blob = vec![ALG_ED25519];
        blob.extend_from_slice(&self.key.to_bytes());
        format!(
            "{PRIVATE_KEY_PREFIX}{}+{:08x}+{}",
            self.name,
            self.key_id,
            B64.encode(&blob)
        )
    }

    /// Parses the Go private key string; errors never echo the input.
    pub fn parse_private_key(s: &str) -> Result<Self, NoteError> {
        let rest = s
            .strip_prefix(PRIVATE_KEY_PREFIX)
            .ok_or(NoteError::MalformedKey("not a PRIVATE+KEY string"))?;
        let (name, id, material) = split_key(rest)?;
        let seed: [u8; 32] = material
            .try_into()
            .map_err(|_| NoteError::MalformedKey("an Ed25519 seed is 32 bytes"))?;
        let key = Self::from_seed(name, seed)?;
        if key.key_id != id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(key)
    }
}

/// Splits `<name>+<8 hex digits>+<base64(0x01 ‖ 32 bytes)>` and checks the algorithm byte.
fn split_key(s: &str) -> Result<(&str, u32, Vec<u8>), NoteError> {
    let (name, rest) = s.split_once('+').ok_or(NoteError::MalformedKey("no '+'"))?;
    validate_name(name)?;
    let (id, material) = rest
        .split_once('+')
        .ok_or(NoteError::MalformedKey("no key id"))?;
    let id_ok = id.len() == 8 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !id_ok {
        return Err(NoteError::MalformedKey(
            "the key id is not 8 lowercase hex digits",
        ));
    }
    let id = u32::from_str_radix(id, 16).map_err(|_| NoteError::MalformedKey("bad key id"))?;
    let mut bytes = B64
        .decode(material)
        .map_err(|_| NoteError::MalformedKey("the key is not base64"))?;
    if bytes.first() != Some(&ALG_ED25519) {
        return Err(NoteError::MalformedKey(
            "not an Ed25519 key (type byte 0x01)",
        ));
    }
    bytes.remove(0);
    Ok((name, id, bytes))
}

/// A checkpoint verifier: key name, key id and Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_id: u32,
    key: ed25519_dalek::VerifyingKey,
}

impl VerifierKey {
    /// Parses `<name>+<hex key id>+<base64(0x01 ‖ public key)>`, checking the key id.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let (name, id, material) = split_key(s)?;
        let public: [u8; 32] = material
            .try_into()
            .map_err(|_| NoteError::MalformedKey("an Ed25519 public key is 32 bytes"))?;
        if key_id(name, &public) != id {
            return Err(NoteError::KeyIdMismatch);
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public)
            .map_err(|_| NoteError::MalformedKey("not a valid Ed25519 public key"))?;
        Ok(VerifierKey {
            name: name.to_owned(),
            key_id: id,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Strict verification: refuses non-canonical signatures and small-order keys, so one
    /// checkpoint has exactly one valid signature per key.
    fn verifies(&self, text: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = Signature::from_slice(signature) else {
            return false;
        };
        self.key.verify_strict(text, &signature).is_ok()
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut blob = vec![ALG_ED25519];
        blob.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.key_id, B64.encode(&blob))
    }
}

/// A signature line, split but not verified.
struct SignatureLine<'a> {
    name: &'a str,
    key_id: u32,
    signature: Vec<u8>,
}

/// Splits a note into its text (final newline included) and signature lines, applying the
/// C2SP rules: UTF-8 (given), no control characters but newline, text then a blank line then
/// at least one signature line, each newline-terminated.
fn split_note(note: &str) -> Result<(&str, Vec<SignatureLine<'_>>), NoteError> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(NoteError::TooLarge);
    }
    if note.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::MalformedNote(
            "control characters other than newline",
        ));
    }
    let split = note.rfind("\n\n").ok_or(NoteError::MalformedNote(
        "no blank line before the signatures",
    ))?;
    let (text, sigs) = (&note[..=split], &note[split + 2..]);
    let sigs = sigs.strip_suffix('\n').ok_or(NoteError::MalformedNote(
        "the note does not end in a newline",
    ))?;
    let lines: Vec<&str> = sigs.split('\n').collect();
    if lines.len() > MAX_SIGNATURES {
        return Err(NoteError::MalformedNote("more than 100 signature lines"));
    }
    let lines = lines
        .into_iter()
        .map(parse_signature_line)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((text, lines))
}

fn parse_signature_line(line: &str) -> Result<SignatureLine<'_>, NoteError> {
    let rest = line
        .strip_prefix(SIG_PREFIX)
        .ok_or(NoteError::MalformedNote(
            "a signature line must start with an em dash and a space",
        ))?;
    let (name, b64) = rest.split_once(' ').ok_or(NoteError::MalformedNote(
        "a signature line needs a name and a signature",
    ))?;
    validate_name(name).map_err(|_| NoteError::MalformedNote("bad key name in a signature"))?;
    let blob = B64
        .decode(b64)
        .map_err(|_| NoteError::MalformedNote("a signature is not base64"))?;
    if blob.len() < 5 {
        return Err(NoteError::MalformedNote(
            "a signature is shorter than 5 bytes",
        ));
    }
    Ok(SignatureLine {
        name,
        key_id: u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]),
        signature: blob[4..].to_vec(),
    })
}

/// Parses a signed note and checks a signature by `key`; other signers' lines are ignored,
/// but a note with no valid signature by `key` fails, and so does one with an invalid one.
pub fn open(note: &str, key: &VerifierKey) -> Result<Checkpoint, NoteError> {
    let (text, lines) = split_note(note)?;
    let mut signed = false;
    for line in lines {
        if line.name != key.name || line.key_id != key.key_id {
            continue;
        }
        if !key.verifies(text.as_bytes(), &line.signature) {
            return Err(NoteError::InvalidSignature);
        }
        signed = true;
    }
    if !signed {
        return Err(NoteError::NotSignedByKey(key.name.clone()));
    }
    Checkpoint::parse_body(text)
}

/// Parses without verifying (for reports), e.g. to read size/root of a foreign-key note. The
/// structure is checked as strictly as by [`open`].
pub fn parse_unverified(note: &str) -> Result<Checkpoint, NoteError> {
    let (text, _) = split_note(note)?;
    Checkpoint::parse_body(text)
}

#[cfg(test)]
mod tests;
