//! Statements and typed rows of the outbox concern shared by both backends. Filled by the outbox helper: src/outbox/mod.rs.
