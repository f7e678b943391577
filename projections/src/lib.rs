//! Pure core of stripe-ledger: decoding of Stripe events and the folds that turn the event log
//! into read models.
//!
//! Nothing in this crate performs IO or reads a clock; CI checks that it depends on no runtime,
//! database or HTTP crate, so every function here is deterministic and trivially testable.
//! Every read-model state is a join-semilattice (commutative, associative, idempotent joins),
//! which is what makes the folds independent of delivery order and duplication.

pub mod envelope;
pub mod model;
pub mod notification;
pub mod text;

pub use envelope::{parse_event, parse_event_str, Envelope, EnvelopeError, ObjectRef};
pub use model::decode::{
    decode, fold_all, Conflict, DecodeError, Fact, LoggedEvent, Origin, Projection, UserLinks,
    KINDS, OBJECT_SNAPSHOT, PROJECTED_TYPES,
};
pub use model::entitlement::{
    decide, entitlement, evaluate, rfc3339, Access, Entitlement, Evaluation, GraceStart, Reason,
    Rule,
};
pub use model::explain::{explain, Cited, Considered, Explanation, Input};
pub use model::history::{
    fields, fold_as_of, history, history_page, join_fact, replay, Change, Cut, Effect, LogEntry,
    Step,
};
pub use model::lattice::{Candidate, Link, Register};
pub use model::objects::{
    CustomerState, CustomerView, DerivedPastDue, Evidence, InvoiceState, InvoiceView, ItemView,
    OrderState, OrderView, PaymentState, Renewal, SubscriptionState, SubscriptionView,
    RENEWAL_REASONS,
};
pub use model::ordering;
pub use model::ordering::{Lifecycle, Version};
pub use notification::{notifications, Notification, NotificationDetails, NotificationKind};
