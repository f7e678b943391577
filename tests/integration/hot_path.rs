//! The ingestion hot path: what one batch costs the database (docs/adr/0016).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use stripe_ledger::event_log::{AppendOutcome, NewEntry};
use stripe_ledger::ingest::WriteError;
use stripe_ledger::store::{Backend, Db, DbTarget, PoolSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{backend, event, TestDatabase};

/// A TCP proxy in front of PostgreSQL that counts round trips: every `Sync` and every simple
/// `Query` the client sends ends a sequence it then waits on (`ReadyForQuery`). Counting at the
/// wire measures what is really sent, whatever the driver does (prepares, pool checks).
pub(crate) struct RoundTrips {
    addr: std::net::SocketAddr,
    count: Arc<AtomicU64>,
}

impl RoundTrips {
    async fn start(upstream: String) -> RoundTrips {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicU64::new(0));
        let counter = count.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
                tokio::spawn(relay(client, server, counter.clone()));
            }
        });
        RoundTrips { addr, count }
    }

    fn now(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }
}

async fn relay(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    count: Arc<AtomicU64>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    });
    let mut pending: Vec<u8> = Vec::new();
    let mut started = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client_read.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        // Frontend messages: the startup message is `len:i32 body`, every later one is
        // `type:u8 len:i32 body` (len counts itself, not the type byte).
        loop {
            let header = if started { 5 } else { 4 };
            if pending.len() < header {
                break;
            }
            let at = header - 4;
            let len = i32::from_be_bytes(pending[at..at + 4].try_into().unwrap()) as usize;
            let total = at + len;
            if pending.len() < total {
                break;
            }
            if started && matches!(pending[0], b'S' | b'Q') {
                count.fetch_add(1, Ordering::SeqCst);
            }
            started = true;
            if server_write.write_all(&pending[..total]).await.is_err() {
                return;
            }
            pending.drain(..total);
        }
    }
}

/// A webhook entry as ingestion makes it, with its one parse.
pub(crate) fn webhook_entry(body: &[u8]) -> (NewEntry, Option<serde_json::Value>) {
    let prepared = stripe_ledger::event_log::redaction::prepare(body).expect("a valid event");
    let mut entry = crate::helpers::backfill_entry(body);
    entry.payload = prepared.payload;
    (entry, Some(prepared.value))
}

/// A subscription whose `status` is not a string: logged, but it cannot be projected.
pub(crate) fn unprojectable(id: &str) -> Vec<u8> {
    let mut e = crate::helpers::event_json(id, "customer.subscription.updated", false);
    e["data"]["object"]["status"] = serde_json::json!(42);
    e.to_string().into_bytes()
}

/// What a batch costs, measured outside the service: PostgreSQL's round trips at the wire, and
/// SQLite's prepared statements on the writer connection (a statement whose text depends on
/// the batch size is prepared again for every new size).
pub(crate) enum Meter {
    Wire(RoundTrips),
    Writer(stripe_ledger::store::SqliteStore),
}

impl Meter {
    pub(crate) async fn now(&self) -> u64 {
        match self {
            Meter::Wire(proxy) => proxy.now(),
            Meter::Writer(store) => {
                use sqlx::Connection as _;
                let conn = store.write.acquire().await.unwrap();
                conn.cached_statements_size() as u64
            }
        }
    }
}

/// The database, through the meter. One connection, so every statement is prepared on it by
/// the warm-up batch.
pub(crate) async fn metered(database: &TestDatabase) -> (Db, Meter) {
    let settings = PoolSettings {
        max_connections: 1,
        ..Default::default()
    };
    let connect = |url: String| async move {
        let db = Db::connect(&DbTarget::parse(&url).unwrap(), &settings)
            .await
            .unwrap();
        db.migrate().await.unwrap();
        db
    };
    if backend() == Backend::Sqlite {
        let db = connect(database.url.clone()).await;
        let Db::Sqlite(store) = &db else {
            unreachable!()
        };
        let meter = Meter::Writer(store.clone());
        return (db, meter);
    }
    // postgres://user@host:port/name
    let (scheme_user, rest) = database.url.split_once('@').expect("a user in the URL");
    let (host_port, name) = rest.split_once('/').expect("a database in the URL");
    let proxy = RoundTrips::start(host_port.to_owned()).await;
    let via_proxy = format!(
        "{scheme_user}@127.0.0.1:{}/{name}?sslmode=disable",
        proxy.addr.port()
    );
    (connect(via_proxy).await, Meter::Wire(proxy))
}

#[tokio::test]
async fn a_batch_makes_at_most_three_round_trips_and_reuses_its_statements_whatever_its_size() {
    let database = TestDatabase::create().await;
    let (db, meter) = metered(&database).await;
    let batch = |tag: &str, n: usize| -> Vec<(NewEntry, Option<serde_json::Value>)> {
        (0..n)
            .map(|i| {
                let kind = [
                    "customer.created",
                    "customer.subscription.created",
                    "invoice.paid",
                ][i % 3];
                webhook_entry(&event(&format!("evt_rt_{tag}_{i}"), kind))
            })
            .collect()
    };
    // The warm-up holds every kind of entry the batches below hold: a repeated id and one that
    // cannot be projected (a duplicate of a logged event needs no statement of its own).
    let mut warm = batch("warm", 3);
    warm.push(warm[0].clone());
    warm.push(webhook_entry(&unprojectable("evt_rt_bad_warm")));
    let warm = stripe_ledger::ingest::write_batch(&db, warm).await;
    assert!(warm[..4].iter().all(Result::is_ok), "{warm:?}");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    for n in [1, 2, 10, 125] {
        let mut entries = batch(&format!("n{n}"), n);
        // Every kind of entry a batch may hold: a duplicate of a logged event, the same id
        // twice, and one that cannot be projected.
        entries.push(webhook_entry(&event("evt_rt_warm_0", "customer.created")));
        entries.push(entries[0].clone());
        entries.push(webhook_entry(&unprojectable(&format!("evt_rt_bad_{n}"))));
        let before = meter.now().await;
        let outcomes = stripe_ledger::ingest::write_batch(&db, entries).await;
        // The pool checks the connection when it comes back, after the batch's reply: wait
        // for that round trip too, so each batch is charged its own.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let cost = meter.now().await - before;
        match &meter {
            Meter::Wire(_) => assert!(
                cost <= 3,
                "a batch of {} made {cost} round trips",
                outcomes.len()
            ),
            Meter::Writer(_) => assert_eq!(
                cost,
                0,
                "a batch of {} prepared {cost} new statements",
                outcomes.len()
            ),
        }
        assert!(
            outcomes[..n]
                .iter()
                .all(|o| matches!(o, Ok(AppendOutcome::Appended { .. }))),
            "{outcomes:?}"
        );
        assert!(matches!(
            outcomes[n],
            Ok(AppendOutcome::Duplicate {
                same_body: true,
                ..
            })
        ));
        assert!(matches!(
            outcomes[n + 1],
            Ok(AppendOutcome::Duplicate { .. })
        ));
        assert!(
            matches!(&outcomes[n + 2], Err(WriteError::Projection(_))),
            "{:?}",
            outcomes[n + 2]
        );
    }
    // What the batches wrote is all there: the entries, their read models, the dead letters.
    assert_eq!(
        stripe_ledger::event_log::count(&db).await.unwrap(),
        4 + 138 + 4
    );
    let dead = stripe_ledger::projector::store::dead_letters(&db)
        .await
        .unwrap();
    assert_eq!(dead.len(), 5, "{dead:?}");
    let state = stripe_ledger::read_models::get(
        &db,
        stripe_ledger::store::Kind::Customer,
        "cus_evt_rt_n125_123",
    )
    .await;
    assert!(matches!(state, Ok(Some(_))), "{state:?}");
}

#[tokio::test]
async fn a_write_folded_from_a_version_that_moved_is_refused_whole_and_the_next_batch_lands() {
    use stripe_ledger::store::ingest::{BatchWrite, IngestSession, VersionedRow};
    use stripe_ledger::store::read_models::Row;
    use stripe_ledger::store::Kind;

    let database = TestDatabase::create().await;
    // One connection, so the next batch runs on the connection the refused one used.
    let settings = PoolSettings {
        max_connections: 1,
        ..Default::default()
    };
    let db = Db::connect(&DbTarget::parse(&database.url).unwrap(), &settings)
        .await
        .unwrap();
    db.migrate().await.unwrap();
    let created = stripe_ledger::ingest::write_batch(
        &db,
        vec![webhook_entry(&event("evt_moved_1", "customer.created"))],
    )
    .await;
    assert!(matches!(created[0], Ok(AppendOutcome::Appended { .. })));
    let key = (Kind::Customer, "cus_evt_moved_1".to_owned());
    let before = stripe_ledger::read_models::get(&db, key.0, &key.1)
        .await
        .unwrap()
        .expect("the customer was projected");

    // A batch that read the customer before the write above (version 0: absent) and appends
    // an event with it.
    let (fresh, _) = webhook_entry(&event("evt_moved_2", "customer.updated"));
    let mut session = IngestSession::open(&db).await.unwrap();
    let read = session
        .read(&["evt_moved_2"], std::slice::from_ref(&key))
        .await
        .unwrap();
    assert_eq!(read.states[&key].version, 1);
    let stale = BatchWrite {
        generation: read.generation,
        rows: vec![VersionedRow {
            row: Row {
                kind: key.0,
                id: key.1.clone(),
                customer_id: Some(key.1.clone()),
                user_id: None,
                status: None,
                state: "{}".to_owned(),
            },
            expected: 0,
        }],
        fresh: vec![&fresh],
        projected_ids: vec!["evt_moved_2"],
        ..Default::default()
    };
    let refused = session.write(&stale).await;
    assert!(matches!(&refused, Err(e) if e.is_conflict()), "{refused:?}");
    drop(session);

    // Nothing of the refused write stayed: not the append, not the read model.
    assert_eq!(stripe_ledger::event_log::count(&db).await.unwrap(), 1);
    let after = stripe_ledger::read_models::get(&db, key.0, &key.1)
        .await
        .unwrap();
    assert_eq!(after, Some(before));
    // The next batch lands, on a connection that holds no transaction of the refused one.
    let next = stripe_ledger::ingest::write_batch(
        &db,
        vec![webhook_entry(&event("evt_moved_2", "customer.updated"))],
    )
    .await;
    assert!(
        matches!(next[0], Ok(AppendOutcome::Appended { .. })),
        "{next:?}"
    );
    assert_eq!(stripe_ledger::event_log::count(&db).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_writers_get_their_turn_while_webhooks_arrive_without_a_pause() {
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    let database = TestDatabase::create().await;
    let settings = PoolSettings {
        max_connections: 2,
        // A writer that never gave its connection back would time this out.
        acquire_timeout: Duration::from_secs(1),
    };
    let db = Db::connect(&DbTarget::parse(&database.url).unwrap(), &settings)
        .await
        .unwrap();
    db.migrate().await.unwrap();
    let writer = stripe_ledger::ingest::Writer::start(
        db.clone(),
        0,
        stripe_ledger::ingest::KnownStates::new(stripe_ledger::ingest::DEFAULT_KNOWN_STATES_BYTES),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for task in 0..16 {
        let (writer, stop, sent) = (writer.clone(), stop.clone(), sent.clone());
        senders.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let (entry, parsed) =
                    webhook_entry(&event(&format!("evt_busy_{task}_{n}"), "customer.created"));
                let outcome = writer.append_parsed(entry, parsed.unwrap()).await;
                assert!(outcome.is_ok(), "{outcome:?}");
                sent.fetch_add(1, Ordering::SeqCst);
                n += 1;
            }
        }));
    }
    while sent.load(Ordering::SeqCst) < 100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The sealer writes through the same single writer connection on SQLite.
    let mut sealed = 0;
    for _ in 0..5 {
        sealed += stripe_ledger::sealer::seal_once(&db, 10_000)
            .await
            .expect("the sealer got the writer connection");
    }
    let during = sent.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    for sender in senders {
        sender.await.unwrap();
    }
    assert!(sealed >= 100, "sealed {sealed}");
    assert!(
        sent.load(Ordering::SeqCst) > during,
        "webhooks kept arriving while the sealer ran"
    );
}

#[tokio::test]
async fn every_entry_of_a_batch_is_stored_with_its_own_payload_and_every_object_with_its_own_state_whatever_its_place(
) {
    let database = TestDatabase::create().await;
    let (db, _) = metered(&database).await;
    // SQLite binds the first entry's payload and the first object's state on their own and
    // the rest in arrays (store::sqlite::ingest): batches of one and of several, and a first
    // entry that writes no object, cover both sides and their seam.
    for n in [1, 2, 4] {
        let mut entries = vec![webhook_entry(&unprojectable(&format!("evt_own_bad_{n}")))];
        entries
            .extend((0..n).map(|i| webhook_entry(&awkward_customer(&format!("evt_own_{n}_{i}")))));
        let bodies: Vec<(String, String)> = entries
            .iter()
            .map(|(e, _)| (e.envelope.id.clone(), e.payload.clone()))
            .collect();
        let outcomes = stripe_ledger::ingest::write_batch(&db, entries).await;
        assert!(outcomes[1..].iter().all(Result::is_ok), "{outcomes:?}");
        for (id, payload) in &bodies {
            let stored = stripe_ledger::event_log::get(&db, id)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(stored.payload.as_deref(), Some(payload.as_str()), "{id}");
        }
        for i in 0..n {
            let customer = format!("cus_evt_own_{n}_{i}");
            let state = stripe_ledger::read_models::get(
                &db,
                stripe_ledger::store::Kind::Customer,
                &customer,
            )
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{customer} was not projected"));
            let state: serde_json::Value = serde_json::from_str(&state).unwrap();
            assert_eq!(state["id"], customer.as_str(), "{state}");
        }
    }
}

/// A customer event whose text is everything JSON escaping touches, and large: pretty-printed
/// (newlines, indentation), with quotes, backslashes, a tab, ESC, U+2028 and an emoji in its
/// name, and a 20 kB description. Bound on its own or carried in an array, it must be stored
/// byte for byte.
fn awkward_customer(id: &str) -> Vec<u8> {
    let mut body = crate::helpers::event_json(id, "customer.created", false);
    body["data"]["object"]["name"] =
        serde_json::json!("\"quoted\" back\\slash \t tab \u{1b}[31m \u{2028} 🎉");
    body["data"]["object"]["description"] = serde_json::json!("x\"y\\".repeat(5_000));
    serde_json::to_string_pretty(&body).unwrap().into_bytes()
}
