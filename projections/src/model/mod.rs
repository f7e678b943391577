//! Read models as join-semilattices: see `lattice` for the ordering rule.

pub mod decode;
pub mod entitlement;
pub mod lattice;
pub mod objects;

#[cfg(test)]
mod tests;
