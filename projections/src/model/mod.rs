//! Read models as join-semilattices; `ordering` holds the rule that picks a snapshot winner.

pub mod decode;
pub mod entitlement;
pub mod explain;
pub mod history;
pub mod lattice;
pub mod objects;
pub mod ordering;

#[cfg(test)]
mod decode_tests;
#[cfg(test)]
mod history_tests;
#[cfg(test)]
mod tests;
