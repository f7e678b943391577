//! History, as-of and explain (issue 13): the log entries that touched an object, folded by the
//! pure code of `ledger_projections::history` and `::explain`, for the read API and the CLI.
//!
//! Entries are found through `object_touches` (docs/adr/0019), read with their payloads, and
//! folded here in memory: the read models are never consulted for a state as of a cut, only to
//! find which objects belong to a user.

use chrono::{DateTime, SecondsFormat, Utc};
use ledger_projections::{
    explain as pure_explain, fold_as_of, history_page as pure_history_page, Change, Cut, Effect,
    Explanation, Fact, LogEntry, LoggedEvent, Projection,
};
use serde::Serialize;
use serde_json::Value;

use crate::event_log::{Source, StoredEvent};
use crate::projector::{origin_of, state_from_json};
use crate::query::cursor::{Binding, Endpoint};
use crate::query::{self, FilterError, Params};
use crate::read_models::{all_states, StatesBy};
use crate::store::event_log::EventLogStore as _;
use crate::store::history::{HistoryEntry, HistoryStore as _};
use crate::store::{Db, Kind, StorageError};

/// The kinds that have a history endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Customer,
    Subscription,
    Invoice,
    Order,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 4] = [
        ObjectKind::Customer,
        ObjectKind::Subscription,
        ObjectKind::Invoice,
        ObjectKind::Order,
    ];

    /// `customer` or `customers` (the path segment).
    pub fn parse(text: &str) -> Result<ObjectKind, HistoryError> {
        ObjectKind::ALL
            .into_iter()
            .find(|k| text == k.kind().as_str() || text == k.plural())
            .ok_or_else(|| HistoryError::UnknownKind(query::shown(text)))
    }

    pub fn kind(self) -> Kind {
        match self {
            ObjectKind::Customer => Kind::Customer,
            ObjectKind::Subscription => Kind::Subscription,
            ObjectKind::Invoice => Kind::Invoice,
            ObjectKind::Order => Kind::Order,
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            ObjectKind::Customer => "customers",
            ObjectKind::Subscription => "subscriptions",
            ObjectKind::Invoice => "invoices",
            ObjectKind::Order => "orders",
        }
    }

    /// The stable code of "no such object" (the same as the single-object GET's).
    pub fn not_found_code(self) -> &'static str {
        match self {
            ObjectKind::Customer => "customer_not_found",
            ObjectKind::Subscription => "subscription_not_found",
            ObjectKind::Invoice => "invoice_not_found",
            ObjectKind::Order => "order_not_found",
        }
    }
}

/// Why a history, as-of or explain request is refused; each has a stable code.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Query(#[from] FilterError),
    #[error(
        "`{0}` is not a kind with a history; expected customers, subscriptions, invoices or orders"
    )]
    UnknownKind(String),
    #[error("give at most one of `as_of_position`, `as_of` and `as_of_created`")]
    ContradictoryAsOf,
    #[error("`{0}` {1}")]
    InvalidAsOf(&'static str, &'static str),
    #[error("`as_of_position` {requested} is beyond the log, which ends at position {last}")]
    BeyondLog { requested: i64, last: i64 },
    #[error("no {} with that id", .0.kind())]
    NotFound(ObjectKind),
    #[error("the {} did not exist yet at that point of the log", .0.kind())]
    NotYetExisting(ObjectKind),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl HistoryError {
    /// The stable `code` of the error body (storage errors have their own).
    pub fn code(&self) -> &'static str {
        match self {
            HistoryError::Query(e) => e.code.as_str(),
            HistoryError::UnknownKind(_) => "unknown_kind",
            HistoryError::ContradictoryAsOf => "contradictory_as_of",
            HistoryError::InvalidAsOf(..) => "invalid_as_of",
            HistoryError::BeyondLog { .. } => "as_of_beyond_log",
            HistoryError::NotFound(k) => k.not_found_code(),
            HistoryError::NotYetExisting(_) => "not_yet_existing",
            HistoryError::Storage(_) => "storage_unavailable",
        }
    }
}

/// The as-of parameters every single-object GET, history and entitlement read accepts.
pub const AS_OF_PARAMS: [&str; 3] = ["as_of_position", "as_of", "as_of_created"];

/// Longest as-of value read: an RFC 3339 time with nanoseconds and an offset is 35 bytes.
const MAX_AS_OF_LEN: usize = 64;

/// The cut a request asked for, `None` for "now". Two at once are contradictory, whatever
/// their values.
pub fn parse_as_of(params: &Params) -> Result<Option<Cut>, HistoryError> {
    let given: Vec<&str> = AS_OF_PARAMS
        .into_iter()
        .filter(|p| params.contains_key(*p))
        .collect();
    let [name] = given[..] else {
        return if given.is_empty() {
            Ok(None)
        } else {
            Err(HistoryError::ContradictoryAsOf)
        };
    };
    let value = &params[name];
    if value.len() > MAX_AS_OF_LEN {
        return Err(HistoryError::InvalidAsOf(name, "is too long"));
    }
    Ok(Some(match name {
        "as_of_position" => Cut::Position(
            value
                .parse::<i64>()
                .ok()
                .filter(|p| *p >= 0 && value.bytes().all(|b| b.is_ascii_digit()))
                .ok_or(HistoryError::InvalidAsOf(
                    "as_of_position",
                    "must be a log position, a whole number from 0",
                ))?,
        ),
        _ => {
            let t = DateTime::parse_from_rfc3339(value)
                .map_err(|_| {
                    HistoryError::InvalidAsOf(
                        name,
                        "must be an RFC 3339 time, e.g. 2026-03-01T12:00:00Z",
                    )
                })?
                .with_timezone(&Utc);
            if name == "as_of" {
                Cut::ReceivedAt(t.timestamp_micros())
            } else {
                Cut::Created(t.timestamp())
            }
        }
    }))
}

/// A cut checked against the log: the largest position it can include, and the clock an
/// entitlement is evaluated at (unix seconds).
#[derive(Debug, Clone, Copy)]
pub struct Resolved {
    pub cut: Cut,
    pub upto: i64,
    pub clock: i64,
}

/// Checks `cut` against the log. A position beyond the log's end is refused (it names a future
/// the service cannot know); a position cut's clock is the receive time of the entry at or
/// just before it. The service's own clocks (position and receive time) are capped at `now`: a
/// cut in the future on them includes everything but is not a prediction. A creation-time cut
/// is not capped: it is a point on Stripe's timeline, and asking "as of that moment, from what
/// is logged" is how an operator sees when a grace period will end (`as_of_created` in the
/// future judges time-based rules at that moment; nothing not yet logged is assumed).
pub async fn resolve(db: &Db, cut: Cut, now: i64) -> Result<Resolved, HistoryError> {
    Ok(match cut {
        Cut::Position(p) => {
            let last = db.last_position().await?;
            if p > last {
                return Err(HistoryError::BeyondLog { requested: p, last });
            }
            let clock = db
                .received_before(p)
                .await?
                .map_or(0, |t| t.timestamp())
                .min(now);
            Resolved {
                cut,
                upto: p,
                clock,
            }
        }
        Cut::ReceivedAt(t) => Resolved {
            cut,
            upto: i64::MAX,
            clock: t.div_euclid(1_000_000).min(now),
        },
        Cut::Created(t) => Resolved {
            cut,
            upto: i64::MAX,
            clock: t,
        },
    })
}

/// The JSON `as_of` member naming the cut: `position` (the cut itself for a position cut,
/// else the latest entry folded), and the time asked for.
pub fn as_of_json(cut: &Cut, folded: Option<i64>) -> Value {
    match *cut {
        Cut::Position(p) => serde_json::json!({"position": p}),
        Cut::ReceivedAt(us) => serde_json::json!({
            "position": folded,
            "received_at": DateTime::<Utc>::from_timestamp_micros(us)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true)),
        }),
        Cut::Created(secs) => serde_json::json!({
            "position": folded,
            "created": crate::read_models::views::time(Some(secs)),
        }),
    }
}

/// Entries in the fold's form, borrowing the parsed payloads.
struct Loaded {
    entries: Vec<HistoryEntry>,
    payloads: Vec<Value>,
}

impl Loaded {
    fn new(entries: Vec<HistoryEntry>) -> Loaded {
        // The strict parser ingestion used; an entry it refuses is a dead letter, folded as
        // `null` (which decodes to an error, so it is skipped like the live fold skips it).
        let payloads = entries
            .iter()
            .map(|e| {
                ledger_projections::envelope::parse_strict(&e.payload)
                    .map(|(v, _)| v)
                    .unwrap_or(Value::Null)
            })
            .collect();
        Loaded { entries, payloads }
    }

    fn log(&self) -> Vec<LogEntry<'_>> {
        self.entries
            .iter()
            .zip(&self.payloads)
            .map(|(e, payload)| LogEntry {
                position: e.position,
                received_at: e.received_at.timestamp_micros(),
                event: LoggedEvent {
                    event_id: &e.event_id,
                    event_type: &e.event_type,
                    created: e.stripe_created,
                    payload,
                    origin: origin_of(e.source),
                },
            })
            .collect()
    }
}

async fn load(db: &Db, keys: &[(Kind, String)], upto: i64) -> Result<Loaded, StorageError> {
    Ok(Loaded::new(db.touching_entries(keys, upto).await?))
}

/// One object's state as of `cut` (`None`: now, from the log), with the greatest position
/// folded; for an order, also its payment's state at the same cut.
#[derive(Debug, Clone)]
pub struct AsOfState {
    pub fact: Fact,
    pub payment: Option<Fact>,
    pub folded: Option<i64>,
}

pub async fn state_as_of(
    db: &Db,
    kind: ObjectKind,
    id: &str,
    resolved: &Resolved,
) -> Result<AsOfState, HistoryError> {
    let loaded = load(db, &[(kind.kind(), id.to_owned())], resolved.upto).await?;
    if loaded.entries.is_empty() && !exists_now(db, kind, id).await? {
        return Err(HistoryError::NotFound(kind));
    }
    let (projection, folded) = fold_as_of(&loaded.log(), Some(&resolved.cut));
    let fact = take(&projection, kind.kind(), id).ok_or(HistoryError::NotYetExisting(kind))?;
    let payment = match &fact {
        Fact::Order(o) => match o.view().and_then(|v| v.payment_intent.clone()) {
            Some(pi) => {
                let loaded = load(db, &[(Kind::Payment, pi.clone())], resolved.upto).await?;
                let (p, _) = fold_as_of(&loaded.log(), Some(&resolved.cut));
                take(&p, Kind::Payment, &pi)
            }
            None => None,
        },
        _ => None,
    };
    Ok(AsOfState {
        fact,
        payment,
        folded,
    })
}

async fn exists_now(db: &Db, kind: ObjectKind, id: &str) -> Result<bool, StorageError> {
    Ok(crate::read_models::get(db, kind.kind(), id)
        .await?
        .is_some())
}

fn take(p: &Projection, kind: Kind, id: &str) -> Option<Fact> {
    match kind {
        Kind::Customer => p.customers.get(id).cloned().map(Fact::Customer),
        Kind::Subscription => p.subscriptions.get(id).cloned().map(Fact::Subscription),
        Kind::Invoice => p.invoices.get(id).cloned().map(Fact::Invoice),
        Kind::Order => p.orders.get(id).cloned().map(Fact::Order),
        Kind::Payment => p.payments.get(id).cloned().map(Fact::Payment),
    }
}

/// One entry of a history, as the API returns it.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryItem {
    pub position: i64,
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub source: Source,
    /// Stripe's `created`, RFC 3339.
    pub created: Value,
    /// RFC 3339 with microseconds.
    pub received_at: String,
    pub effect: Effect,
    /// The fields an `applied` entry changed (empty otherwise).
    pub changes: Vec<Change>,
}

/// A page of a history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryPage {
    pub data: Vec<HistoryItem>,
    pub next_cursor: Option<String>,
}

/// `limit`, `cursor` and the as-of parameters of a history.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub limit: u32,
    pub after: Option<i64>,
    pub cut: Option<Cut>,
    binding: Binding,
}

impl HistoryQuery {
    pub fn parse(kind: ObjectKind, id: &str, params: &Params) -> Result<Self, HistoryError> {
        let mut known = vec!["limit", "cursor"];
        known.extend(AS_OF_PARAMS);
        query::refuse_unknown(params, &known)?;
        let cut = parse_as_of(params)?;
        let cut_text = cut.map(|c| serde_json::to_string(&c).unwrap_or_default());
        let binding = Binding::new(
            Endpoint::History,
            &[
                ("kind", Some(kind.kind().as_str())),
                ("id", Some(id)),
                ("as_of", cut_text.as_deref()),
            ],
        );
        let after = params
            .get("cursor")
            .map(|c| binding.decode_position(c))
            .transpose()?;
        Ok(HistoryQuery {
            limit: query::limit_param(params)?,
            after,
            cut,
            binding,
        })
    }
}

/// One page of an object's history: every entry that touched it (up to the cut), folded from
/// the first, so each `effect` and diff is against the state just before it.
pub async fn history_page(
    db: &Db,
    kind: ObjectKind,
    id: &str,
    q: &HistoryQuery,
    now: i64,
) -> Result<HistoryPage, HistoryError> {
    let resolved = match q.cut {
        Some(cut) => Some(resolve(db, cut, now).await?),
        None => None,
    };
    let upto = resolved.map_or(i64::MAX, |r| r.upto);
    let loaded = load(db, &[(kind.kind(), id.to_owned())], upto).await?;
    if loaded.entries.is_empty() && !exists_now(db, kind, id).await? {
        return Err(HistoryError::NotFound(kind));
    }
    let log: Vec<LogEntry> = loaded
        .log()
        .into_iter()
        .filter(|e| resolved.is_none_or(|r| r.cut.includes(e)))
        .collect();
    if log.is_empty() && resolved.is_some() {
        return Err(HistoryError::NotYetExisting(kind));
    }
    // One step more than the page holds says whether there is a next page.
    let limit = q.limit as usize;
    let mut steps = pure_history_page(kind.kind().as_str(), id, &log, q.after, limit + 1);
    let more = steps.len() > limit;
    steps.truncate(limit);
    let mut data = Vec::with_capacity(steps.len());
    for step in steps {
        let e = &log[step.index];
        // Loaded in position order, positions unique.
        let stored = loaded
            .entries
            .binary_search_by_key(&e.position, |s| s.position)
            .map(|i| &loaded.entries[i])
            .expect("every folded entry was loaded");
        data.push(HistoryItem {
            position: e.position,
            event_id: stored.event_id.clone(),
            event_type: stored.event_type.clone(),
            source: stored.source,
            created: crate::read_models::views::time(Some(stored.stripe_created)),
            received_at: stored
                .received_at
                .to_rfc3339_opts(SecondsFormat::Micros, true),
            effect: step.effect,
            changes: step.changes,
        });
    }
    let next_cursor = if more {
        data.last()
            .map(|i| q.binding.encode(&i.position.to_string()))
    } else {
        None
    };
    Ok(HistoryPage { data, next_cursor })
}

/// What one log entry did to one object it touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryEffect {
    pub kind: Kind,
    pub object_id: String,
    pub effect: Effect,
}

/// What the projector did with `entry`, object by object: the objects its facts are about
/// (decoded from its payload, exactly as the projector decodes it when it records the entry's
/// `object_touches`), each with the effect the pure history fold gives the entry in that
/// object's history (the same rule, and so the same answer, as `history_page`). Each object's
/// entries are folded up to this one only (later entries cannot change its effect), and only
/// this entry's step renders the object's fields. An entry that does not decode (a dead
/// letter) touched nothing.
pub async fn entry_effects(db: &Db, entry: &StoredEvent) -> Result<Vec<EntryEffect>, StorageError> {
    let Some(payload) = entry.payload.as_deref() else {
        return Ok(Vec::new());
    };
    let Ok((payload, _)) = ledger_projections::envelope::parse_strict(payload) else {
        return Ok(Vec::new());
    };
    let event = LoggedEvent {
        event_id: &entry.event_id,
        event_type: &entry.event_type,
        created: entry.stripe_created,
        payload: &payload,
        origin: origin_of(entry.source),
    };
    let Ok(facts) = ledger_projections::decode(&event) else {
        return Ok(Vec::new());
    };
    let mut keys: Vec<(Kind, String)> = facts
        .iter()
        .map(|f| (Kind::of(f), f.id().to_owned()))
        .collect();
    keys.sort();
    keys.dedup();
    let mut effects = Vec::new();
    for (kind, object_id) in keys {
        let loaded = load(db, &[(kind, object_id.clone())], entry.position).await?;
        let log = loaded.log();
        let before = Some(entry.position - 1);
        let steps = pure_history_page(kind.as_str(), &object_id, &log, before, 1);
        let step = steps
            .first()
            .filter(|s| log[s.index].position == entry.position);
        if let Some(step) = step {
            effects.push(EntryEffect {
                kind,
                object_id,
                effect: step.effect,
            });
        }
    }
    Ok(effects)
}

/// The objects whose histories decide a user's entitlement: the customers linked to the user
/// now (links only grow: the earliest evidence wins), their subscriptions and their invoices.
async fn user_objects(db: &Db, user_id: &str) -> Result<Vec<(Kind, String)>, StorageError> {
    let mut keys = Vec::new();
    for json in all_states(db, Kind::Customer, StatesBy::UserId, user_id).await? {
        let customer = state_from_json(Kind::Customer, &json)?.id().to_owned();
        for kind in [Kind::Subscription, Kind::Invoice] {
            for json in all_states(db, kind, StatesBy::CustomerId, &customer).await? {
                keys.push((kind, state_from_json(kind, &json)?.id().to_owned()));
            }
        }
        keys.push((Kind::Customer, customer));
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// Explains `user_id`'s entitlement as of `cut` (`None`: now), evaluated at the cut's clock.
pub async fn explain(
    db: &Db,
    user_id: &str,
    cut: Option<Cut>,
    now: i64,
    grace_secs: i64,
) -> Result<(Explanation, Option<Resolved>), HistoryError> {
    let resolved = match cut {
        Some(cut) => Some(resolve(db, cut, now).await?),
        None => None,
    };
    let keys = user_objects(db, user_id).await?;
    let loaded = load(db, &keys, resolved.map_or(i64::MAX, |r| r.upto)).await?;
    let clock = resolved.map_or(now, |r| r.clock);
    let explanation = pure_explain(
        &loaded.log(),
        resolved.as_ref().map(|r| &r.cut),
        user_id,
        clock,
        grace_secs,
    );
    Ok((explanation, resolved))
}

/// A history as text: one line per entry, then its changes indented. Every value comes from
/// the log (Stripe's strings), so each is escaped and cut (`crate::terminal`).
pub fn render_history_text(kind: ObjectKind, id: &str, items: &[HistoryItem]) -> String {
    use crate::terminal::field;
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "{} {}: {} entries", kind.kind(), field(id), items.len());
    for i in items {
        let _ = writeln!(
            s,
            "{:>8}  {:<10}  {:<20}  {:<16}  {:<36}  {}",
            i.position,
            snake(&i.effect),
            i.created.as_str().unwrap_or(""),
            i.source.as_str(),
            field(&i.event_type),
            field(&i.event_id)
        );
        for c in &i.changes {
            let _ = writeln!(
                s,
                "          {}: {} -> {}",
                field(&c.field),
                field(&c.from.to_string()),
                field(&c.to.to_string())
            );
        }
    }
    s
}

/// An explanation as text: the decision, the rule's sentence, each input with its entry.
pub fn render_explain_text(e: &Explanation) -> String {
    use crate::terminal::field;
    use std::fmt::Write as _;
    let mut s = String::new();
    let until = e
        .entitlement
        .until
        .map(ledger_projections::rfc3339)
        .unwrap_or_else(|| "-".into());
    let _ = writeln!(
        s,
        "{}: {} ({}), until {}",
        field(&e.user_id),
        snake(&e.entitlement.access),
        e.entitlement.reason.as_str(),
        until
    );
    let _ = writeln!(s, "rule: {}", field(&e.sentence));
    let _ = writeln!(s, "evaluated at {}", ledger_projections::rfc3339(e.now));
    let cite = |s: &mut String, c: &ledger_projections::Cited| {
        let _ = writeln!(
            s,
            "    {:<18}  {} {}  set by {} at position {}",
            snake(&c.input),
            c.object_kind,
            field(&c.object_id),
            field(&c.event_id),
            c.position.map_or_else(|| "?".to_owned(), |p| p.to_string())
        );
    };
    let _ = writeln!(s, "inputs:");
    for c in &e.inputs {
        cite(&mut s, c);
    }
    let _ = writeln!(s, "subscriptions considered:");
    for c in &e.subscriptions {
        let _ = writeln!(
            s,
            "  {}  {}{}  {}",
            field(&c.id),
            field(&c.status),
            if c.derived { " (derived)" } else { "" },
            field(&c.rule.sentence())
        );
        for i in &c.inputs {
            cite(&mut s, i);
        }
    }
    s
}

/// A unit enum's serialised (snake_case) name.
fn snake(value: &impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
