//! Statements and typed rows of the event log shared by both backends.

use chrono::{DateTime, Utc};

use super::Column;
use crate::event_log::{EventFilter, Order, PageRequest};
use crate::store::event_log::{Logged, LoggedBody, StoredEvent};

/// The columns of [`StoredEvent`] without the payload, as a literal so `concat!` can build
/// whole statements from it at compile time.
macro_rules! summary_columns {
    () => {
        "position, event_id, event_type, api_version, livemode, account, object_id, \
         object_type, stripe_created, received_at, source, payload_redacted, raw_body_sha256, \
         signature_header, signature_timestamp, verified_by_index, verified_by_fingerprint"
    };
}
pub(crate) use summary_columns;

/// The columns an append writes, in the order both backends bind them.
macro_rules! insert_columns {
    () => {
        "event_id, event_type, api_version, livemode, account, object_id, object_type, \
         stripe_created, received_at, source, payload, payload_redacted, raw_body_sha256, \
         signature_header, signature_timestamp, verified_by_index, verified_by_fingerprint"
    };
}
pub(crate) use insert_columns;

/// The columns of [`Logged`]; each backend selects them with its own `IN` / `= ANY`.
macro_rules! logged_columns {
    () => {
        "event_id, position, event_type, stripe_created, payload, raw_body_sha256"
    };
}
pub(crate) use logged_columns;

pub(crate) const COUNT: &str = "SELECT count(*) FROM event_log";

pub(crate) const LAST_POSITION: &str = "SELECT COALESCE(MAX(position), 0) FROM event_log";

pub(crate) const FIND: &str = "SELECT position, raw_body_sha256 FROM event_log WHERE event_id = $1";

pub(crate) const GET: &str = concat!(
    "SELECT ",
    summary_columns!(),
    ", payload FROM event_log WHERE event_id = $1"
);

/// A value bound to a `$n` placeholder of a [`ListQuery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
    Bool(bool),
    /// `received_at`: a `TIMESTAMPTZ` on PostgreSQL, fixed-width UTC text on SQLite.
    Time(DateTime<Utc>),
}

/// The SELECT for a page of the log (or a count of its matches), built once for both backends.
#[derive(Debug)]
pub(crate) struct ListQuery {
    pub sql: String,
    pub binds: Vec<Bind>,
}

/// A `count(*)` read back as a typed row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counted(pub i64);

impl<'r, R> sqlx::FromRow<'r, R> for Counted
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    i64: Column<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Counted(row.try_get("n")?))
    }
}

/// WHERE conditions and their values, numbered `$1...` in the order they are added.
#[derive(Default)]
struct Where {
    conditions: Vec<String>,
    binds: Vec<Bind>,
}

impl Where {
    /// `condition` has one `?`, for `bind`.
    fn push(&mut self, condition: &str, bind: Bind) {
        self.binds.push(bind);
        let n = self.binds.len();
        self.conditions
            .push(condition.replace('?', &format!("${n}")));
    }

    /// `column IN (...)`; an empty list matches nothing.
    fn push_in(&mut self, column: &str, values: &[String]) {
        let mut placeholders = Vec::new();
        for value in values {
            self.binds.push(Bind::Text(value.clone()));
            placeholders.push(format!("${}", self.binds.len()));
        }
        self.conditions.push(if placeholders.is_empty() {
            "1 = 0".to_owned()
        } else {
            format!("{column} IN ({})", placeholders.join(", "))
        });
    }
}

impl Where {
    /// Adds the conditions of `filter` (and of the page's position, if any); the WHERE
    /// clause. Called once per arm of a union, the placeholders keep counting.
    fn clause(&mut self, filter: &EventFilter, after: Option<(Order, i64)>) -> String {
        let first = self.conditions.len();
        if let Some(t) = &filter.event_type {
            self.push("event_type = ?", Bind::Text(t.clone()));
        }
        if let Some(types) = &filter.event_types {
            self.push_in("event_type", types);
        }
        if let Some(id) = &filter.object_id {
            self.push("object_id = ?", Bind::Text(id.clone()));
        }
        if let Some(gte) = filter.created_gte {
            self.push("stripe_created >= ?", Bind::Int(gte));
        }
        if let Some(lt) = filter.created_lt {
            self.push("stripe_created < ?", Bind::Int(lt));
        }
        if let Some(gte) = filter.received_gte {
            self.push("received_at >= ?", Bind::Time(gte));
        }
        if let Some(lt) = filter.received_lt {
            self.push("received_at < ?", Bind::Time(lt));
        }
        if let Some(source) = &filter.source {
            self.push("source = ?", Bind::Text(source.as_str().to_owned()));
        }
        if let Some(livemode) = filter.livemode {
            self.push("livemode = ?", Bind::Bool(livemode));
        }
        if let Some((order, after)) = after {
            let condition = match order {
                Order::Desc => "position < ?",
                Order::Asc => "position > ?",
            };
            self.push(condition, Bind::Int(after));
        }
        let added = &self.conditions[first..];
        if added.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", added.join(" AND "))
        }
    }
}

/// The WHERE clause of `filter` (and of the page's position, if any) with its values.
fn conditions(filter: &EventFilter, after: Option<(Order, i64)>) -> (String, Vec<Bind>) {
    let mut w = Where::default();
    let clause = w.clause(filter, after);
    (clause, w.binds)
}

/// The types a filter is limited to (one, or the several of `customer.*`), when it is; an
/// empty list is left to the plain statement (it matches nothing).
fn filter_types(filter: &EventFilter) -> Option<Vec<String>> {
    match (&filter.event_type, &filter.event_types) {
        (Some(t), None) => Some(vec![t.clone()]),
        (None, Some(types)) if !types.is_empty() => Some(types.clone()),
        _ => None,
    }
}

/// A filter on Stripe's `created` and nothing else: the `(stripe_created, position)` index
/// answers it without reading a row.
fn created_range_only(filter: &EventFilter) -> bool {
    (filter.created_gte.is_some() || filter.created_lt.is_some())
        && filter.event_type.is_none()
        && filter.event_types.is_none()
        && filter.object_id.is_none()
        && filter.received_gte.is_none()
        && filter.received_lt.is_none()
        && filter.source.is_none()
        && filter.livemode.is_none()
}

/// Positions the newest-first walk of the primary key reads before it gives up on a `created`
/// range and takes the range's index instead.
const CREATED_WINDOW: i64 = 10_000;

/// The newest `limit` positions in a `created` range (below `before`, if given), as a
/// `WITH` clause and the positions, in two parts so neither can read the whole log: `recent`,
/// the range's matches among the newest [`CREATED_WINDOW`] positions (a range scan of the
/// primary key: a range that reaches the head is answered here), and, only when those are
/// too few, the newest matches below the window, read from `(stripe_created, position)` and
/// sorted (`position + 0` keeps the primary key from serving that order): a cost in
/// proportion to the range's matches below the window.
fn created_positions(
    w: &mut Where,
    filter: &EventFilter,
    before: Option<i64>,
    limit: u64,
) -> (String, String) {
    // Binds are pushed in the order their placeholders first appear in the text. In the
    // window, `stripe_created + 0` keeps the range's index out: scanning it for the few
    // positions in the window would read the whole range.
    let recent = w
        .clause(filter, None)
        .replace("stripe_created", "stripe_created + 0");
    let ceiling = match before {
        Some(before) => {
            w.binds.push(Bind::Int(before));
            format!("${}", w.binds.len())
        }
        None => "(SELECT COALESCE(max(position), 0) + 1 FROM event_log)".to_owned(),
    };
    let floor = format!("{ceiling} - {CREATED_WINDOW}");
    let older = w.clause(filter, None);
    let with = format!(
        "WITH recent AS (SELECT position FROM event_log{recent} \
         AND position < {ceiling} AND position >= {floor} \
         ORDER BY position DESC LIMIT {limit}) "
    );
    let positions = format!(
        "SELECT position FROM recent UNION ALL \
         SELECT position FROM (SELECT position FROM event_log{older} \
         AND position < {floor} AND (SELECT count(*) FROM recent) < {limit} \
         ORDER BY position + 0 DESC LIMIT {limit}) AS older"
    );
    (with, positions)
}

/// Every distinct event type in the log, by walking the (event_type, position) index one type
/// at a time (a loose index scan: one probe per type, not a pass over the log).
pub(crate) const DISTINCT_TYPES: &str = "WITH RECURSIVE types(t) AS ( \
     SELECT min(event_type) FROM event_log \
     UNION ALL \
     SELECT (SELECT min(event_type) FROM event_log WHERE event_type > types.t) \
     FROM types WHERE types.t IS NOT NULL) \
     SELECT t AS event_type FROM types WHERE t IS NOT NULL";

impl ListQuery {
    /// One extra row beyond `page.limit` is selected, so the caller learns whether another page
    /// exists.
    pub(crate) fn build(filter: &EventFilter, page: &PageRequest) -> ListQuery {
        Self::select(filter, page, false)
    }

    /// As [`ListQuery::build`], with each entry's payload: for exports, in pages.
    pub(crate) fn build_with_payloads(filter: &EventFilter, page: &PageRequest) -> ListQuery {
        Self::select(filter, page, true)
    }

    /// Each filter is read through its own index, whatever plan PostgreSQL caches for the
    /// prepared statement (README, "Console speed"): a generic plan assumes the matches are
    /// spread evenly over the log and walks the primary key from the newest entry until enough
    /// turn up, which reads the whole log for a type or a time range that is all far from the
    /// head. So the positions are chosen first, from the filter's own index, and the rows
    /// fetched by position:
    /// - types: per type, the newest positions of `(event_type, position)` (index-only, in
    ///   the index's order), merged;
    /// - a Stripe `created` range (newest first): see [`created_positions`];
    /// - anything else: by position, the primary key's order.
    fn select(filter: &EventFilter, page: &PageRequest, payloads: bool) -> ListQuery {
        let after = page.after_position.map(|p| (page.order, p));
        let direction = match page.order {
            Order::Desc => "DESC",
            Order::Asc => "ASC",
        };
        let columns = format!(
            concat!("SELECT ", summary_columns!(), "{}"),
            if payloads { ", payload" } else { "" }
        );
        let limit = u64::from(page.limit) + 1;
        let mut w = Where::default();
        let mut with = String::new();
        let positions = if let Some(types) = filter_types(filter) {
            let arms: Vec<String> = types
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let one = EventFilter {
                        event_type: Some(t.clone()),
                        event_types: None,
                        ..filter.clone()
                    };
                    let where_clause = w.clause(&one, after);
                    format!(
                        "SELECT position FROM (SELECT position FROM event_log{where_clause} \
                         ORDER BY position {direction} LIMIT {limit}) AS arm{i}"
                    )
                })
                .collect();
            Some(arms.join(" UNION ALL "))
        } else if created_range_only(filter) && page.order == Order::Desc {
            let (clause, positions) = created_positions(&mut w, filter, page.after_position, limit);
            with = clause;
            Some(positions)
        } else {
            None
        };
        let sql = match positions {
            Some(positions) => format!(
                "{with}{columns} FROM event_log WHERE position IN ({positions}) \
                 ORDER BY position {direction} LIMIT {limit}"
            ),
            None => {
                let where_clause = w.clause(filter, after);
                format!(
                    "{columns} FROM event_log{where_clause} ORDER BY position {direction} \
                     LIMIT {limit}"
                )
            }
        };
        ListQuery {
            sql,
            binds: w.binds,
        }
    }

    /// The number of entries matching `filter`, counting at most `cap` of them: a count over a
    /// million rows for every page would cost more than the page.
    pub(crate) fn count(filter: &EventFilter, cap: i64) -> ListQuery {
        let (where_clause, binds) = conditions(filter, None);
        let sql = format!(
            "SELECT count(*) AS n FROM (SELECT 1 AS one FROM event_log{where_clause} LIMIT {}) AS capped",
            cap.max(0)
        );
        ListQuery { sql, binds }
    }

    /// The statement with its values bound, on either backend.
    pub(crate) fn query<'q, DB, O>(
        &'q self,
    ) -> sqlx::query::QueryAs<'q, DB, O, <DB as sqlx::Database>::Arguments<'q>>
    where
        DB: sqlx::Database,
        O: for<'r> sqlx::FromRow<'r, DB::Row>,
        &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        DateTime<Utc>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        let mut q = sqlx::query_as(&self.sql);
        for bind in &self.binds {
            q = match bind {
                Bind::Text(s) => q.bind(s.as_str()),
                Bind::Int(i) => q.bind(*i),
                Bind::Bool(b) => q.bind(*b),
                // SQLite stores `received_at` as fixed-width text (migrations/README.md) and
                // sqlx would bind another text form, so the comparison needs the stored one.
                Bind::Time(t) if DB::NAME == "SQLite" => {
                    q.bind(t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
                }
                Bind::Time(t) => q.bind(*t),
            };
        }
        q
    }
}

/// One decoder for both backends (a `source` that is not a `Source` is a decode error): the column types line up (SQLite stores `received_at` as
/// fixed-width UTC text, which sqlx decodes as a `DateTime<Utc>`). `payload` is read only when
/// the statement selected it.
impl<'r, R> sqlx::FromRow<'r, R> for StoredEvent
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: Column<'r, R::Database>,
    i64: Column<'r, R::Database>,
    i32: Column<'r, R::Database>,
    bool: Column<'r, R::Database>,
    DateTime<Utc>: Column<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        // NULL only where a statement selects it as such (the SQLite sealer's read, for an
        // entry whose payload's hash is stored): the column itself is NOT NULL.
        let payload = match row.try_get::<Option<String>, _>("payload") {
            Ok(payload) => payload,
            Err(sqlx::Error::ColumnNotFound(_)) => None,
            Err(e) => return Err(e),
        };
        Ok(StoredEvent {
            position: row.try_get("position")?,
            event_id: row.try_get("event_id")?,
            event_type: row.try_get("event_type")?,
            api_version: row.try_get("api_version")?,
            livemode: row.try_get("livemode")?,
            account: row.try_get("account")?,
            object_id: row.try_get("object_id")?,
            object_type: row.try_get("object_type")?,
            stripe_created: row.try_get("stripe_created")?,
            received_at: row.try_get("received_at")?,
            source: row
                .try_get::<String, _>("source")?
                .parse()
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            payload_redacted: row.try_get("payload_redacted")?,
            raw_body_sha256: row.try_get("raw_body_sha256")?,
            signature_header: row.try_get("signature_header")?,
            signature_timestamp: row.try_get("signature_timestamp")?,
            verified_by_index: row.try_get("verified_by_index")?,
            verified_by_fingerprint: row.try_get("verified_by_fingerprint")?,
            payload,
        })
    }
}

impl<'r, R> sqlx::FromRow<'r, R> for Logged
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: Column<'r, R::Database>,
    i64: Column<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Logged {
            event_id: row.try_get("event_id")?,
            position: row.try_get("position")?,
            event_type: row.try_get("event_type")?,
            stripe_created: row.try_get("stripe_created")?,
            payload: row.try_get("payload")?,
            raw_body_sha256: row.try_get("raw_body_sha256")?,
        })
    }
}

impl<'r, R> sqlx::FromRow<'r, R> for LoggedBody
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: Column<'r, R::Database>,
    i64: Column<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(LoggedBody {
            position: row.try_get("position")?,
            raw_body_sha256: row.try_get("raw_body_sha256")?,
        })
    }
}

/// The methods of `EventLogStore` that run the same statements the same way on both backends,
/// written once: each backend's impl expands them with its own read and write pools
/// (`pool, pool` on PostgreSQL, `read, write` on SQLite). Names resolve where it is expanded.
macro_rules! event_log_store_same_on_both {
    ($reader:ident, $writer:ident) => {
        async fn find_event(&self, event_id: &str) -> Result<Option<LoggedBody>, StorageError> {
            Ok(sqlx::query_as(sql::FIND)
                .bind(event_id)
                .fetch_optional(&self.$reader)
                .await?)
        }

        async fn get_event(&self, event_id: &str) -> Result<Option<StoredEvent>, StorageError> {
            Ok(sqlx::query_as(sql::GET)
                .bind(event_id)
                .fetch_optional(&self.$reader)
                .await?)
        }

        async fn list_events(
            &self,
            filter: &EventFilter,
            page: &PageRequest,
        ) -> Result<Vec<StoredEvent>, StorageError> {
            let query = ListQuery::build(filter, page);
            Ok(query.query().fetch_all(&self.$reader).await?)
        }

        async fn count_events(&self) -> Result<i64, StorageError> {
            Ok(sqlx::query_scalar(sql::COUNT)
                .fetch_one(&self.$reader)
                .await?)
        }

        async fn last_position(&self) -> Result<i64, StorageError> {
            Ok(sqlx::query_scalar(sql::LAST_POSITION)
                .fetch_one(&self.$reader)
                .await?)
        }
    };
}
pub(crate) use event_log_store_same_on_both;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_queries_number_their_placeholders_in_bind_order() {
        let q = ListQuery::build(
            &EventFilter {
                event_type: Some("invoice.paid".into()),
                created_gte: Some(10),
                ..Default::default()
            },
            &PageRequest {
                order: Order::Asc,
                after_position: Some(5),
                limit: 2,
            },
        );
        assert!(q.sql.ends_with(
            "WHERE event_type = $1 AND stripe_created >= $2 AND position > $3 \
             ORDER BY position ASC LIMIT 3) AS arm0) ORDER BY position ASC LIMIT 3"
        ));
        assert_eq!(
            q.binds,
            [
                Bind::Text("invoice.paid".into()),
                Bind::Int(10),
                Bind::Int(5)
            ]
        );
    }

    #[test]
    fn types_are_one_arm_each_read_from_the_type_index_and_merged_by_position() {
        let q = ListQuery::build(
            &EventFilter {
                event_types: Some(vec!["customer.created".into(), "customer.updated".into()]),
                livemode: Some(false),
                ..Default::default()
            },
            &PageRequest {
                order: Order::Desc,
                after_position: Some(9),
                limit: 1,
            },
        );
        assert!(q.sql.contains(
            "WHERE event_type = $1 AND livemode = $2 AND position < $3 \
             ORDER BY position DESC LIMIT 2) AS arm0 UNION ALL"
        ));
        assert!(q.sql.contains(
            "WHERE event_type = $4 AND livemode = $5 AND position < $6 \
             ORDER BY position DESC LIMIT 2) AS arm1) ORDER BY position DESC LIMIT 2"
        ));
        assert_eq!(q.binds.len(), 6);
    }

    #[test]
    fn a_created_range_reads_a_window_of_the_newest_positions_before_its_index() {
        let q = ListQuery::build(
            &EventFilter {
                created_gte: Some(10),
                created_lt: Some(20),
                ..Default::default()
            },
            &PageRequest {
                order: Order::Desc,
                after_position: Some(99),
                limit: 1,
            },
        );
        assert!(q.sql.starts_with(
            "WITH recent AS (SELECT position FROM event_log \
             WHERE stripe_created + 0 >= $1 AND stripe_created + 0 < $2 AND position < $3 \
             AND position >= $3 - 10000 ORDER BY position DESC LIMIT 2)"
        ));
        assert!(q.sql.contains(
            "WHERE stripe_created >= $4 AND stripe_created < $5 AND position < $3 - 10000 \
             AND (SELECT count(*) FROM recent) < 2 ORDER BY position + 0 DESC LIMIT 2) AS older"
        ));
        assert_eq!(
            q.binds,
            [
                Bind::Int(10),
                Bind::Int(20),
                Bind::Int(99),
                Bind::Int(10),
                Bind::Int(20)
            ]
        );
    }
}
