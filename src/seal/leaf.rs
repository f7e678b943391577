//! The canonical leaf encoding of a log entry: what the Merkle tree commits to.
//!
//! Every column of `event_log` is in it (the payload through its SHA-256), so editing any
//! column of any row changes that row's leaf. Version 1, byte for byte (`docs/seal-formats.md`
//! has the table):
//!
//! ```text
//! 0x01                      version
//! i64                       position
//! str                       event_id
//! str                       event_type
//! opt str                   api_version
//! bool                      livemode
//! opt str                   account
//! opt str                   object_id
//! opt str                   object_type
//! i64                       stripe_created (unix seconds)
//! i64                       received_at (unix microseconds)
//! str                       source
//! bool                      payload_redacted
//! [32]                      SHA-256 of the raw body as received
//! [32]                      SHA-256 of the stored payload text
//! opt str                   signature_header
//! opt i64                   signature_timestamp
//! opt i32                   verified_by_index
//! opt str                   verified_by_fingerprint
//! ```
//!
//! Integers are big-endian two's complement; `str` is a u32 big-endian byte length then UTF-8;
//! `bool` is one byte 0 or 1; `opt` is one byte 0 (absent) or 1 then the value. Every field
//! is either fixed-size or length-prefixed, so one byte string decodes to one entry; the
//! decoder refuses anything else (unknown version, bad tags, trailing bytes).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::event_log::Source;
use crate::store::event_log::StoredEvent;

/// The only version so far. A new version is a new leading byte, never a changed layout.
pub const VERSION: u8 = 0x01;

/// Why an entry could not be encoded or leaf bytes could not be decoded. A closed set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeafError {
    #[error("the entry was read without its payload")]
    MissingPayload,
    #[error("raw_body_sha256 is not 64 lowercase hex digits")]
    BadRawBodyHash,
    #[error("a field is longer than 4 GiB")]
    FieldTooLong,
    #[error("unknown leaf version {0}")]
    UnknownVersion(u8),
    #[error("the leaf ends inside a field")]
    Truncated,
    #[error("{0} bytes after the last field")]
    TrailingBytes(usize),
    #[error("a boolean or presence byte is neither 0 nor 1")]
    BadTag,
    #[error("a text field is not UTF-8")]
    InvalidUtf8,
    #[error("unknown source {0:?}")]
    UnknownSource(String),
    #[error("received_at is outside the representable range")]
    TimeOutOfRange,
}

/// The decoded fields of a leaf, as a report shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeafFields {
    pub version: u8,
    pub position: i64,
    pub event_id: String,
    pub event_type: String,
    pub api_version: Option<String>,
    pub livemode: bool,
    pub account: Option<String>,
    pub object_id: Option<String>,
    pub object_type: Option<String>,
    pub stripe_created: i64,
    /// Unix microseconds: the precision both backends store.
    pub received_at_micros: i64,
    pub source: Source,
    pub payload_redacted: bool,
    /// Lowercase hex.
    pub raw_body_sha256: String,
    /// SHA-256 of the stored payload text, lowercase hex.
    pub payload_sha256: String,
    pub signature_header: Option<String>,
    pub signature_timestamp: Option<i64>,
    pub verified_by_index: Option<i32>,
    pub verified_by_fingerprint: Option<String>,
}

impl LeafFields {
    /// `received_at` as a time (always representable: decoding checked it).
    pub fn received_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.received_at_micros).unwrap_or_default()
    }
}

/// SHA-256 of a stored payload, as the leaf commits to it.
pub fn payload_hash(payload: &str) -> [u8; 32] {
    Sha256::digest(payload.as_bytes()).into()
}

/// The leaf bytes of a stored entry. `received_at` is taken at microsecond precision (both
/// backends store microseconds, truncating), so an entry encodes the same before and after a
/// round trip through either database.
pub fn encode(entry: &StoredEvent) -> Result<Vec<u8>, LeafError> {
    let payload = entry.payload.as_deref().ok_or(LeafError::MissingPayload)?;
    encode_with_payload_hash(entry, &payload_hash(payload))
}

/// [`encode`] from the payload's SHA-256 instead of the payload (`entry.payload` is not read):
/// the leaf commits to that hash, so whoever computed it over the stored bytes may supply it.
pub fn encode_with_payload_hash(
    entry: &StoredEvent,
    payload_sha256: &[u8; 32],
) -> Result<Vec<u8>, LeafError> {
    let raw_body = parse_lower_hex(&entry.raw_body_sha256).ok_or(LeafError::BadRawBodyHash)?;
    let mut w = Writer(Vec::with_capacity(256 + entry.event_id.len()));
    w.0.push(VERSION);
    w.i64(entry.position);
    w.str(&entry.event_id)?;
    w.str(&entry.event_type)?;
    w.opt_str(entry.api_version.as_deref())?;
    w.bool(entry.livemode);
    w.opt_str(entry.account.as_deref())?;
    w.opt_str(entry.object_id.as_deref())?;
    w.opt_str(entry.object_type.as_deref())?;
    w.i64(entry.stripe_created);
    w.i64(entry.received_at.timestamp_micros());
    w.str(entry.source.as_str())?;
    w.bool(entry.payload_redacted);
    w.0.extend_from_slice(&raw_body);
    w.0.extend_from_slice(payload_sha256);
    w.opt_str(entry.signature_header.as_deref())?;
    w.opt(entry.signature_timestamp, |w, v| w.i64(v));
    w.opt(entry.verified_by_index, |w, v| {
        w.0.extend_from_slice(&v.to_be_bytes())
    });
    w.opt_str(entry.verified_by_fingerprint.as_deref())?;
    Ok(w.0)
}

/// Decodes leaf bytes, refusing anything [`encode`] could not have produced.
pub fn decode(bytes: &[u8]) -> Result<LeafFields, LeafError> {
    let mut r = Reader(bytes);
    let version = r.u8()?;
    if version != VERSION {
        return Err(LeafError::UnknownVersion(version));
    }
    let fields = LeafFields {
        version,
        position: r.i64()?,
        event_id: r.str()?,
        event_type: r.str()?,
        api_version: r.opt(Reader::str)?,
        livemode: r.bool()?,
        account: r.opt(Reader::str)?,
        object_id: r.opt(Reader::str)?,
        object_type: r.opt(Reader::str)?,
        stripe_created: r.i64()?,
        received_at_micros: r.i64()?,
        source: {
            let s = r.str()?;
            s.parse().map_err(|_| LeafError::UnknownSource(s))?
        },
        payload_redacted: r.bool()?,
        raw_body_sha256: hex::encode(r.take(32)?),
        payload_sha256: hex::encode(r.take(32)?),
        signature_header: r.opt(Reader::str)?,
        signature_timestamp: r.opt(Reader::i64)?,
        verified_by_index: r.opt(|r| Ok(i32::from_be_bytes(r.array()?)))?,
        verified_by_fingerprint: r.opt(Reader::str)?,
    };
    if !r.0.is_empty() {
        return Err(LeafError::TrailingBytes(r.0.len()));
    }
    if DateTime::from_timestamp_micros(fields.received_at_micros).is_none() {
        return Err(LeafError::TimeOutOfRange);
    }
    Ok(fields)
}

fn parse_lower_hex(s: &str) -> Option<[u8; 32]> {
    let lower = s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let mut out = [0u8; 32];
    (lower && hex::decode_to_slice(s, &mut out).is_ok()).then_some(out)
}

struct Writer(Vec<u8>);

impl Writer {
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }

    fn str(&mut self, s: &str) -> Result<(), LeafError> {
        let len = u32::try_from(s.len()).map_err(|_| LeafError::FieldTooLong)?;
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }

    fn opt<T>(&mut self, v: Option<T>, write: impl FnOnce(&mut Self, T)) {
        match v {
            None => self.0.push(0),
            Some(v) => {
                self.0.push(1);
                write(self, v);
            }
        }
    }

    fn opt_str(&mut self, v: Option<&str>) -> Result<(), LeafError> {
        match v {
            None => {
                self.0.push(0);
                Ok(())
            }
            Some(s) => {
                self.0.push(1);
                self.str(s)
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], LeafError> {
        if self.0.len() < n {
            return Err(LeafError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], LeafError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, LeafError> {
        Ok(self.take(1)?[0])
    }

    fn i64(&mut self) -> Result<i64, LeafError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn bool(&mut self) -> Result<bool, LeafError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(LeafError::BadTag),
        }
    }

    fn str(&mut self) -> Result<String, LeafError> {
        let len = u32::from_be_bytes(self.array()?) as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| LeafError::InvalidUtf8)
    }

    fn opt<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, LeafError>,
    ) -> Result<Option<T>, LeafError> {
        if self.bool()? {
            read(self).map(Some)
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
