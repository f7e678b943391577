//! Costs of the sealed log's pure core, measured in one run on synthetic entries:
//! `cargo run --release --example seal_core_bench [ENTRIES] [PAYLOAD_BYTES]`
//! (default 1 000 000 entries of 3 000-byte payloads).
//!
//! Reported: sealing per entry (leaf encoding, leaf hash, frontier push), split from the part
//! any verifier pays anyway (SHA-256 of the payload); proof sizes and the time to build proofs
//! from stored nodes and to verify them; note signing and opening; bundle verification. Numbers
//! drift on a shared VM: compare the rows of one run, not runs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{TimeZone as _, Utc};
use stripe_ledger::event_log::{Source, StoredEvent};
use stripe_ledger::seal::bundle::{self, Bundle};
use stripe_ledger::seal::leaf;
use stripe_ledger::seal::merkle::{self, Frontier, Hash, NodeId};
use stripe_ledger::seal::note::{self, Checkpoint, SigningKey};

fn entry(position: i64, payload: &str) -> StoredEvent {
    StoredEvent {
        position,
        event_id: format!("evt_{position:024}"),
        event_type: "invoice.paid".into(),
        api_version: Some("2024-06-20".into()),
        livemode: true,
        account: None,
        object_id: Some(format!("in_{position:024}")),
        object_type: Some("invoice".into()),
        stripe_created: 1_700_000_000 + position,
        received_at: Utc.timestamp_opt(1_700_000_000 + position, 0).unwrap(),
        source: Source::Webhook,
        payload_redacted: false,
        raw_body_sha256: "0f".repeat(32),
        signature_header: Some("t=1700000000,v1=".to_owned() + &"ab".repeat(32)),
        signature_timestamp: Some(1_700_000_000),
        verified_by_index: Some(1),
        verified_by_fingerprint: Some("fp_0123456789abcdef".into()),
        payload: Some(payload.to_owned()),
    }
}

/// This process's CPU time (user + system) from /proc: on a shared VM, wall time also counts
/// the time other processes held the cores.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

fn per(d: Duration, n: u64) -> String {
    format!("{:.3} µs", d.as_secs_f64() * 1e6 / n as f64)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .map_or(1_000_000, |a| a.parse().expect("ENTRIES"));
    let payload_bytes: usize = args
        .next()
        .map_or(3_000, |a| a.parse().expect("PAYLOAD_BYTES"));
    let payload = format!(
        "{{\"data\":\"{}\"}}",
        "x".repeat(payload_bytes.saturating_sub(11))
    );
    let mut e = entry(1, &payload);

    // A: only the payload hash (what re-verifying the stored payloads costs anyway).
    let (t, c) = (Instant::now(), cpu());
    let mut sink = 0u8;
    for _ in 1..=n {
        sink ^= leaf::payload_hash(e.payload.as_deref().unwrap())[0];
    }
    let (hash_only, hash_only_cpu) = (t.elapsed(), cpu() - c);

    // B: the tree alone, nodes not kept (what `verify` recomputes from the leaves).
    let mut scratch = Frontier::empty();
    let (t, c) = (Instant::now(), cpu());
    for p in 1..=n {
        scratch.push(merkle::leaf_hash(&p.to_be_bytes()));
    }
    let (tree_only, tree_only_cpu) = (t.elapsed(), cpu() - c);

    // C: the whole seal of each entry, every completed node kept as a store would.
    let mut frontier = Frontier::empty();
    let mut nodes: HashMap<NodeId, Hash> = HashMap::with_capacity(2 * n as usize);
    let (t, c) = (Instant::now(), cpu());
    for p in 1..=n as i64 {
        e.position = p;
        let bytes = leaf::encode(&e).unwrap();
        nodes.extend(frontier.push(merkle::leaf_hash(&bytes)));
    }
    let (seal, seal_cpu) = (t.elapsed(), cpu() - c);
    let leaf_len = leaf::encode(&e).unwrap().len();
    println!(
        "entries {n}, payload {} bytes, leaf {leaf_len} bytes",
        payload.len()
    );
    println!("                          wall       CPU        CPU per entry");
    let row = |what: &str, wall: Duration, cpu: Duration| {
        println!("{what:<25} {wall:>9.2?}  {cpu:>9.2?}  {}", per(cpu, n));
    };
    row("payload SHA-256 only", hash_only, hash_only_cpu);
    row("tree only (hash+push)", tree_only, tree_only_cpu);
    row("seal, nodes kept", seal, seal_cpu);
    println!("stored nodes {} (≈ 2 per entry)", nodes.len());

    let root = frontier.root();
    let samples = 10_000u64.min(n);
    let t = Instant::now();
    let mut bytes = 0usize;
    let mut max_len = 0usize;
    for s in 0..samples {
        let i = s * (n / samples);
        let ids = merkle::inclusion_proof_ids(i, n).unwrap();
        let fetched: HashMap<_, _> = ids.iter().map(|id| (*id, nodes[id])).collect();
        let proof = merkle::inclusion_proof(i, n, &fetched).unwrap();
        bytes += 32 * proof.len();
        max_len = max_len.max(proof.len());
    }
    let build = t.elapsed();
    let i = n / 3;
    let proof = merkle::inclusion_proof(i, n, &nodes).unwrap();
    e.position = i as i64 + 1;
    let leaf_hash = merkle::leaf_hash(&leaf::encode(&e).unwrap());
    let t = Instant::now();
    for _ in 0..samples {
        merkle::verify_inclusion(i, n, &leaf_hash, &proof, &root).unwrap();
    }
    let verify = t.elapsed();
    let ceil_log2 = 64 - (n - 1).leading_zeros() as usize;
    println!(
        "inclusion proof: max {max_len} hashes = {} bytes (bound 32·⌈log₂ n⌉ = {}), mean {} bytes",
        32 * max_len,
        32 * ceil_log2,
        bytes / samples as usize
    );
    println!(
        "  ids + fetch + build {}  verify {}",
        per(build, samples),
        per(verify, samples)
    );
    let m = n / 2 + 1;
    let cproof = merkle::consistency_proof(m, n, &nodes).unwrap();
    let mut half = Frontier::empty();
    for p in 1..=m as i64 {
        e.position = p;
        half.push(merkle::leaf_hash(&leaf::encode(&e).unwrap()));
    }
    merkle::verify_consistency(m, n, &half.root(), &root, &cproof).unwrap();
    println!("consistency proof {m} → {n}: {} hashes", cproof.len());

    let key = SigningKey::from_seed("bench.example/acct_1/live", [5; 32]).unwrap();
    let cp = Checkpoint {
        origin: "bench.example/acct_1/live".into(),
        size: n,
        root,
    };
    let t = Instant::now();
    let mut signed = String::new();
    for _ in 0..1_000 {
        signed = key.sign(&cp);
    }
    let sign = t.elapsed();
    let verifier = key.verifier();
    let t = Instant::now();
    for _ in 0..1_000 {
        note::open(&signed, &verifier).unwrap();
    }
    let open = t.elapsed();
    println!("note: sign {}  open {}", per(sign, 1_000), per(open, 1_000));

    e.position = i as i64 + 1;
    let b = Bundle::new(&signed, &e, &merkle::inclusion_proof(i, n, &nodes).unwrap()).unwrap();
    let file = b.to_file_text();
    let t = Instant::now();
    for _ in 0..1_000 {
        bundle::verify(&bundle::parse(file.as_bytes()).unwrap(), &verifier).unwrap();
    }
    let check = t.elapsed();
    println!(
        "bundle: {} bytes, parse + verify {}",
        file.len(),
        per(check, 1_000)
    );
    std::hint::black_box(sink);
}
