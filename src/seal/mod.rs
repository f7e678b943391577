//! The sealed log's pure core: the RFC 9162 Merkle tree over the log, the C2SP signed-note
//! checkpoints that commit to it, the canonical leaf encoding of an entry, and the offline
//! evidence bundle.
//!
//! Nothing here does IO, reads a clock or touches the database: the store persists what
//! [`merkle::Frontier`] hands it and fetches the nodes the `*_ids` functions name, and the
//! sealer and CLI around it decide when and where. The one exception is [`offline`], the
//! `verify-proof` command, which reads a bundle file and prints a report. `docs/seal-formats.md` describes every
//! format byte for byte.

pub mod bundle;
pub mod leaf;
pub mod merkle;
pub mod note;
pub mod offline;
