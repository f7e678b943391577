//! Batches folded from the writer's memory instead of a read (docs/adr/0024): a right guess
//! saves the read, a wrong one is refused whole and the batch lands as if it had read.

use std::sync::Arc;

use stripe_ledger::event_log::AppendOutcome;
use stripe_ledger::ingest::{write_batch, write_batch_knowing, KnownStates, WriteError};
use stripe_ledger::store::ingest::IngestSession;
use stripe_ledger::store::read_models::Key;
use stripe_ledger::store::{Db, DbTarget, Kind, PoolSettings};

use crate::helpers::{event_json, TestDatabase};
use crate::hot_path::{metered, unprojectable, webhook_entry, Meter};

const MEMORY: usize = 1 << 20;

/// `customer.updated` (or `.created`) event `id` about customer `customer`, `n` seconds after
/// the first, with `n` in its metadata so that every event changes the state.
fn about(id: &str, event_type: &str, customer: &str, n: i64) -> Vec<u8> {
    let mut e = event_json(id, event_type, false);
    e["created"] = serde_json::json!(1_763_800_000 + n);
    e["data"]["object"]["id"] = serde_json::json!(customer);
    e["data"]["object"]["metadata"] = serde_json::json!({ "n": n.to_string() });
    e.to_string().into_bytes()
}

/// `evt_{tag}_1` creates `customer`, `evt_{tag}_2` and `evt_{tag}_3` update it.
fn created_then_updated(tag: &str, customer: &str) -> [Vec<u8>; 3] {
    [1, 2, 3].map(|n| {
        let kind = if n == 1 {
            "customer.created"
        } else {
            "customer.updated"
        };
        about(&format!("evt_{tag}_{n}"), kind, customer, n)
    })
}

/// A fresh database where a guessing writer has created `customer` (`evt_{tag}_1` of
/// [`created_then_updated`], whose bodies come back too). Keep the database: dropping it
/// removes it.
async fn after_creating(
    tag: &str,
    customer: &str,
) -> (Arc<TestDatabase>, Db, KnownStates, [Vec<u8>; 3]) {
    let database = TestDatabase::create().await;
    let db = connect(&database).await;
    let mut known = KnownStates::new(MEMORY);
    let bodies = created_then_updated(tag, customer);
    assert!(appended(&knowing(&db, &mut known, &bodies[0]).await));
    (database, db, known, bodies)
}

/// [`after_creating`] through the meter (`hot_path::metered`: one connection).
async fn metered_after_creating(
    tag: &str,
    customer: &str,
) -> (Arc<TestDatabase>, Db, Meter, KnownStates, [Vec<u8>; 3]) {
    let database = TestDatabase::create().await;
    let (db, meter) = metered(&database).await;
    let mut known = KnownStates::new(MEMORY);
    let bodies = created_then_updated(tag, customer);
    assert!(appended(&knowing(&db, &mut known, &bodies[0]).await));
    (database, db, meter, known, bodies)
}

async fn connect(database: &TestDatabase) -> Db {
    let db = Db::connect(
        &DbTarget::parse(&database.url).unwrap(),
        &PoolSettings::default(),
    )
    .await
    .unwrap();
    db.migrate().await.unwrap();
    db
}

/// Writes one body as one batch, folding from `known`.
async fn knowing(
    db: &Db,
    known: &mut KnownStates,
    body: &[u8],
) -> Result<AppendOutcome, WriteError> {
    write_batch_knowing(db, known, vec![webhook_entry(body)])
        .await
        .remove(0)
}

/// Writes one body as one batch that reads first, as another writer would.
async fn elsewhere(db: &Db, body: &[u8]) -> Result<AppendOutcome, WriteError> {
    write_batch(db, vec![webhook_entry(body)]).await.remove(0)
}

/// The stored version of `key` in the active generation (0: no row).
async fn version(db: &Db, key: &Key) -> i64 {
    let mut session = IngestSession::open(db).await.unwrap();
    let read = session.read(&[], std::slice::from_ref(key)).await.unwrap();
    read.states.get(key).map_or(0, |v| v.version)
}

/// Asserts that `customer`'s state is the one a single writer that reads first leaves after
/// writing `bodies` one batch each, on a database of its own: what every guessing writer must
/// end with.
async fn assert_ends_as_one_writer(db: &Db, customer: &str, bodies: &[Vec<u8>]) {
    assert_all_end_as_one_writer(db, &[customer], bodies).await;
}

/// [`assert_ends_as_one_writer`] for several customers at once.
async fn assert_all_end_as_one_writer(db: &Db, customers: &[&str], bodies: &[Vec<u8>]) {
    let database = TestDatabase::create().await;
    let single = connect(&database).await;
    for body in bodies {
        assert!(elsewhere(&single, body).await.is_ok());
    }
    for customer in customers {
        let state = |db: Db| async move {
            stripe_ledger::read_models::get(&db, Kind::Customer, customer)
                .await
                .unwrap()
        };
        let expected = state(single.clone()).await;
        assert!(expected.is_some(), "{customer}");
        assert_eq!(state(db.clone()).await, expected, "{customer}");
    }
}

fn assert_duplicate(outcome: Result<AppendOutcome, WriteError>, same_body: bool) {
    assert!(
        matches!(outcome, Ok(AppendOutcome::Duplicate { same_body: s, .. }) if s == same_body),
        "{outcome:?}"
    );
}

/// The meter once the pool has settled (its check of a returned connection comes after the
/// reply), so that a reading counts only the traffic before it.
async fn settled(meter: &Meter) -> u64 {
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    meter.now().await
}

fn appended(outcome: &Result<AppendOutcome, WriteError>) -> bool {
    matches!(outcome, Ok(AppendOutcome::Appended { .. }))
}

#[tokio::test]
async fn a_batch_about_an_object_the_writer_just_wrote_skips_its_read() {
    // The first batch knows nothing yet, so it reads.
    let (_database, db, meter, mut known, bodies) =
        metered_after_creating("skip", "cus_skip").await;
    for body in &bodies[1..] {
        let before = settled(&meter).await;
        assert!(appended(&knowing(&db, &mut known, body).await));
        // The write, and the pool's check when the connection comes back: no read.
        let cost = settled(&meter).await - before;
        if matches!(meter, Meter::Wire(_)) {
            assert_eq!(cost, 2, "a guessed batch made {cost} round trips");
        }
    }
    assert!(known.used_bytes() > 0);
    assert_eq!(
        known.guesses(),
        (2, 0),
        "both updates were guessed, rightly"
    );
    let key = (Kind::Customer, "cus_skip".to_owned());
    assert_eq!(version(&db, &key).await, 3);
    assert_ends_as_one_writer(&db, "cus_skip", &bodies).await;
}

#[tokio::test]
async fn a_guess_about_a_state_another_writer_moved_is_refused_whole_and_the_batch_lands_from_a_read(
) {
    let (_database, db, mut known, bodies) = after_creating("moved", "cus_moved").await;
    // Another instance moves the customer to version 2; this writer still knows version 1.
    assert!(appended(&elsewhere(&db, &bodies[1]).await));
    assert!(appended(&knowing(&db, &mut known, &bodies[2]).await));
    assert_eq!(known.guesses(), (0, 1));
    let key = (Kind::Customer, "cus_moved".to_owned());
    assert_eq!(
        version(&db, &key).await,
        3,
        "the refused write left nothing"
    );
    assert_eq!(stripe_ledger::event_log::count(&db).await.unwrap(), 3);
    assert_ends_as_one_writer(&db, "cus_moved", &bodies).await;
}

#[tokio::test]
async fn a_refused_guess_is_read_and_written_again_on_the_same_connection() {
    let (_database, db, meter, mut known, bodies) =
        metered_after_creating("kept", "cus_kept").await;
    assert!(appended(&elsewhere(&db, &bodies[1]).await));
    let before = settled(&meter).await;
    assert!(appended(&knowing(&db, &mut known, &bodies[2]).await));
    let after = settled(&meter).await;
    assert_eq!(known.guesses(), (0, 1), "the guess was refused");
    match meter {
        // The pool's check when the batch took the connection, the refused write, the read and
        // the write: a second connection from the pool would have been checked too.
        Meter::Wire(_) => assert_eq!(after - before, 4, "round trips"),
        // The writer connection kept its prepared statements and added the unread write's and
        // the `ROLLBACK`'s: a new connection (the refused one closed) would hold only the
        // read's and the write's.
        Meter::Writer(_) => assert_eq!(after, before + 2, "prepared statements on the writer"),
    }
    assert_ends_as_one_writer(&db, "cus_kept", &bodies).await;
}

#[tokio::test]
async fn a_guess_that_an_object_it_never_saw_is_new_is_refused_when_the_object_exists() {
    let database = TestDatabase::create().await;
    let db = connect(&database).await;
    let bodies = [
        about("evt_cold_1", "customer.created", "cus_cold", 1),
        about("evt_cold_2", "customer.created", "cus_other", 2),
        about("evt_cold_3", "customer.updated", "cus_cold", 3),
    ];
    // Written before this writer started (another instance, or before a restart).
    assert!(appended(&elsewhere(&db, &bodies[0]).await));
    let mut known = KnownStates::new(MEMORY);
    // A batch about another object teaches the writer the generation, not cus_cold.
    assert!(appended(&knowing(&db, &mut known, &bodies[1]).await));
    // So it takes cus_cold for new (version 0); the write finds version 1 and refuses.
    assert!(appended(&knowing(&db, &mut known, &bodies[2]).await));
    assert_eq!(known.guesses(), (0, 1));
    let key = (Kind::Customer, "cus_cold".to_owned());
    assert_eq!(version(&db, &key).await, 2);
    assert_ends_as_one_writer(&db, "cus_cold", &[bodies[0].clone(), bodies[2].clone()]).await;
}

#[tokio::test]
async fn a_redelivery_the_writer_took_for_new_is_answered_as_the_duplicate_it_is() {
    let database = TestDatabase::create().await;
    let db = connect(&database).await;
    let mut known = KnownStates::new(MEMORY);
    let first = about("evt_again_1", "customer.created", "cus_again", 1);
    let logged = about("evt_again_2", "customer.updated", "cus_again", 2);
    for body in [&first, &logged] {
        assert!(appended(&knowing(&db, &mut known, body).await));
    }
    assert_eq!(known.guesses(), (1, 0));
    // The writer's memory of the customer is right: only the id is logged already (a
    // redelivery that missed the seen-id cache), so it is the append's check that refuses.
    assert_duplicate(knowing(&db, &mut known, &logged).await, true);
    assert_eq!(known.guesses(), (1, 1));
    // A batch about another customer sits out the pause the refusal started.
    let unrelated = about("evt_again_3", "customer.created", "cus_unrelated", 3);
    assert!(appended(&knowing(&db, &mut known, &unrelated).await));
    assert_eq!(known.guesses(), (1, 1));
    // Another body under the logged id: the same refusal, then a duplicate whose logged body
    // is what counts.
    let other = about("evt_again_2", "customer.updated", "cus_again", 9);
    assert_duplicate(knowing(&db, &mut known, &other).await, false);
    assert_eq!(known.guesses(), (1, 2));
    assert_eq!(stripe_ledger::event_log::count(&db).await.unwrap(), 3);
    assert_ends_as_one_writer(&db, "cus_again", &[first, logged]).await;
}

#[tokio::test]
async fn a_guess_from_before_a_rebuild_switched_generations_is_refused_and_lands_in_the_new_one() {
    let (_database, db, mut known, bodies) = after_creating("gen", "cus_gen").await;
    let report = crate::helpers::rebuild(&db, 100).await;
    assert!(report.switched, "{report:?}");
    // The writer still knows the old generation and version 1 there.
    assert!(appended(&knowing(&db, &mut known, &bodies[1]).await));
    assert_eq!(known.guesses(), (0, 1));
    let key = (Kind::Customer, "cus_gen".to_owned());
    assert_eq!(version(&db, &key).await, 2);
    assert_ends_as_one_writer(&db, "cus_gen", &bodies[..2]).await;
}

#[tokio::test]
async fn an_event_that_cannot_be_projected_in_a_batch_written_without_a_read_is_dead_lettered_beside_its_landed_neighbour(
) {
    let (_database, db, mut known, bodies) = after_creating("dead", "cus_dead").await;
    // One batch, guessed: the customer's update and a subscription that cannot be projected.
    let outcomes = write_batch_knowing(
        &db,
        &mut known,
        vec![
            webhook_entry(&bodies[1]),
            webhook_entry(&unprojectable("evt_dead_x")),
        ],
    )
    .await;
    assert_eq!(known.guesses(), (1, 0));
    let Ok(AppendOutcome::Appended { position }) = outcomes[0] else {
        panic!("{outcomes:?}");
    };
    assert!(
        matches!(&outcomes[1], Err(WriteError::Projection(_))),
        "{outcomes:?}"
    );
    // Logged all the same, after its neighbour (appends go in id order), and dead-lettered at
    // its own position.
    assert_eq!(stripe_ledger::event_log::count(&db).await.unwrap(), 3);
    let dead = stripe_ledger::projector::store::dead_letters(&db)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        (dead[0].event_id.as_str(), dead[0].position),
        ("evt_dead_x", position + 1)
    );
    assert_ends_as_one_writer(&db, "cus_dead", &bodies[..2]).await;
}

/// A small deterministic generator (xorshift64), so a failing interleaving can be replayed.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }
}

#[tokio::test]
async fn two_guessing_writers_and_one_reading_end_like_one_writer_whatever_the_interleaving() {
    let customers = ["cus_mix_0", "cus_mix_1", "cus_mix_2"];
    for seed in [3_u64, 17, 2026] {
        let mut dice = Dice(seed);
        let database = TestDatabase::create().await;
        let db = connect(&database).await;
        let mut writers = [KnownStates::new(MEMORY), KnownStates::new(MEMORY)];
        let mut bodies: Vec<Vec<u8>> = customers
            .iter()
            .enumerate()
            .map(|(i, c)| about(&format!("evt_mix{seed}_c{i}"), "customer.created", c, 0))
            .collect();
        for n in 1..=30 {
            let customer = customers[dice.roll(3) as usize];
            bodies.push(about(
                &format!("evt_mix{seed}_{n}"),
                "customer.updated",
                customer,
                n,
            ));
        }
        // Delivered in a shuffled order, with redeliveries, each to one of three instances:
        // two that guess and one that always reads.
        let mut order: Vec<usize> = (0..bodies.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, dice.roll(i as u64 + 1) as usize);
        }
        let redeliveries: Vec<usize> = (0..8)
            .map(|_| dice.roll(bodies.len() as u64) as usize)
            .collect();
        for i in order.into_iter().chain(redeliveries) {
            let body = &bodies[i];
            let outcome = match dice.roll(3) {
                2 => elsewhere(&db, body).await,
                w => knowing(&db, &mut writers[w as usize], body).await,
            };
            assert!(outcome.is_ok(), "seed {seed}, body {i}: {outcome:?}");
        }
        assert_eq!(
            stripe_ledger::event_log::count(&db).await.unwrap(),
            bodies.len() as i64,
            "seed {seed}"
        );
        // The interleaving made guesses go right and wrong (else this would test nothing new).
        let (written, refused) = writers
            .iter()
            .map(KnownStates::guesses)
            .fold((0, 0), |(w, r), (w1, r1)| (w + w1, r + r1));
        assert!(
            written > 0 && refused > 0,
            "seed {seed}: {written} guesses written, {refused} refused"
        );
        assert_all_end_as_one_writer(&db, &customers, &bodies).await;
    }
}
