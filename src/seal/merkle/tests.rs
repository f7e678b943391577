use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

/// RFC 9162 §2.1.1 written as literally as possible, to check the incremental code against.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split_point(n as u64) as usize;
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// RFC 9162 §2.1.3.1 PATH(m, D[n]), literally.
fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split_point(n as u64) as usize;
    if m < k {
        let mut p = path(m, &leaves[..k]);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = path(m - k, &leaves[k..]);
        p.push(mth(&leaves[..k]));
        p
    }
}

/// RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b), literally.
fn subproof(m: usize, leaves: &[Hash], b: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if b { Vec::new() } else { vec![mth(leaves)] };
    }
    let k = split_point(n as u64) as usize;
    if m <= k {
        let mut p = subproof(m, &leaves[..k], b);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = subproof(m - k, &leaves[k..], false);
        p.push(mth(&leaves[..k]));
        p
    }
}

fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

/// Builds a tree through the frontier, keeping every node it reports, as a store would.
fn build(n: u64) -> (Frontier, HashMap<NodeId, Hash>, Vec<Hash>) {
    let mut frontier = Frontier::empty();
    let mut nodes = HashMap::new();
    let mut roots = vec![frontier.root()];
    for leaf in leaves(n) {
        nodes.extend(frontier.push(leaf));
        roots.push(frontier.root());
    }
    (frontier, nodes, roots)
}

/// Only the nodes `ids` names, so a proof that reads anything else fails with MissingNode.
fn only(ids: &[NodeId], nodes: &HashMap<NodeId, Hash>) -> HashMap<NodeId, Hash> {
    ids.iter().map(|id| (*id, nodes[id])).collect()
}

#[test]
fn the_empty_tree_hashes_to_sha256_of_nothing() {
    assert_eq!(
        hex::encode(empty_root()),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(Frontier::empty().root(), empty_root());
}

#[test]
fn leaf_and_node_hashes_are_domain_separated() {
    // RFC 6962 test vector: the hash of the empty leaf.
    assert_eq!(
        hex::encode(leaf_hash(b"")),
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    );
    let a = leaf_hash(b"a");
    let mut both = a.to_vec();
    both.extend_from_slice(&a);
    assert_ne!(node_hash(&a, &a), leaf_hash(&both));
}

#[test]
fn the_frontier_agrees_with_the_rfc_definition_for_every_size_up_to_130() {
    let all = leaves(130);
    let (_, nodes, roots) = build(130);
    for n in 0..=130usize {
        assert_eq!(roots[n], mth(&all[..n]), "root of size {n}");
        assert_eq!(
            root(n as u64, &only(&root_ids(n as u64), &nodes)).unwrap(),
            roots[n],
            "root of size {n} from stored nodes"
        );
    }
    // Every reported node is the hash of exactly the leaves its id names.
    for (id, hash) in &nodes {
        let range = &all[id.start() as usize..id.end() as usize];
        assert_eq!(*hash, mth(range), "{id:?}");
    }
    // And every complete subtree of the final tree was reported.
    let complete: usize = (0..8).map(|level| 130usize >> level).sum();
    assert_eq!(nodes.len(), complete);
}

#[test]
fn push_reports_the_leaf_first_and_every_completed_subtree() {
    let mut f = Frontier::empty();
    let l = leaves(4);
    assert_eq!(f.push(l[0]).len(), 1);
    let two = f.push(l[1]);
    assert_eq!(
        two.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [NodeId { level: 0, index: 1 }, NodeId { level: 1, index: 0 }]
    );
    assert_eq!(f.push(l[2]).len(), 1);
    let four = f.push(l[3]);
    assert_eq!(
        four.last().unwrap(),
        &(NodeId { level: 2, index: 0 }, f.root())
    );
    assert_eq!(four.len(), 3);
}

#[test]
fn a_frontier_restored_from_its_nodes_continues_the_same_tree() {
    let (mut f, _, _) = build(11);
    let saved = f.nodes();
    assert_eq!(
        saved.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        frontier_ids(11)
    );
    let mut restored =
        Frontier::from_nodes(11, saved.into_iter().map(|(_, h)| h).collect()).unwrap();
    let next = leaf_hash(b"next");
    assert_eq!(restored.push(next), f.push(next));
    assert_eq!(restored.root(), f.root());
    assert_eq!(
        Frontier::from_nodes(11, vec![empty_root(); 2]),
        Err(ProofError::FrontierShape {
            size: 11,
            got: 2,
            want: 3
        })
    );
}

#[test]
fn proofs_equal_the_rfc_definition_for_every_index_and_size_up_to_70() {
    let all = leaves(70);
    let (_, nodes, roots) = build(70);
    for n in 1..=70u64 {
        for i in 0..n {
            let ids = inclusion_proof_ids(i, n).unwrap();
            let proof = inclusion_proof(i, n, &only(&ids, &nodes)).unwrap();
            assert_eq!(
                proof,
                path(i as usize, &all[..n as usize]),
                "PATH({i}, {n})"
            );
            verify_inclusion(i, n, &all[i as usize], &proof, &roots[n as usize]).unwrap();
        }
        for m in 1..=n {
            let ids = consistency_proof_ids(m, n).unwrap();
            let proof = consistency_proof(m, n, &only(&ids, &nodes)).unwrap();
            let want = subproof(m as usize, &all[..n as usize], true);
            assert_eq!(proof, want, "PROOF({m}, {n})");
            verify_consistency(m, n, &roots[m as usize], &roots[n as usize], &proof).unwrap();
        }
    }
}

#[test]
fn proof_ids_are_logarithmic() {
    // A proof reads at most two stored nodes per level: the sibling, or the tiling of a right
    // edge sibling, whose pieces are one per set bit of its size.
    for n in [2u64, 3, 1_000, 1 << 20, (1 << 20) + 1, 1_000_003, u64::MAX] {
        let levels = 64 - (n - 1).leading_zeros() as usize;
        for i in [0, 1, n / 3, n / 2, n - 2, n - 1] {
            let ids = inclusion_proof_ids(i, n).unwrap();
            assert!(ids.len() <= 2 * levels, "{} ids for {i} of {n}", ids.len());
            if i > 0 {
                let ids = consistency_proof_ids(i, n).unwrap();
                assert!(
                    ids.len() <= 2 * levels + 1,
                    "{} ids for {i} to {n}",
                    ids.len()
                );
            }
        }
    }
}

#[test]
fn bad_sizes_and_missing_nodes_are_errors_not_panics() {
    assert_eq!(
        inclusion_proof_ids(5, 5),
        Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
    );
    assert_eq!(
        consistency_proof_ids(6, 5),
        Err(ProofError::SizesOutOfOrder {
            first: 6,
            second: 5
        })
    );
    assert_eq!(consistency_proof_ids(0, 5), Err(ProofError::EmptyFirstTree));
    assert_eq!(consistency_proof_ids(5, 5), Ok(Vec::new()));
    assert!(matches!(
        inclusion_proof(2, 5, &HashMap::new()),
        Err(ProofError::MissingNode(_))
    ));
    let r = empty_root();
    assert!(verify_inclusion(0, 0, &r, &[], &r).is_err());
    assert!(verify_inclusion(u64::MAX, u64::MAX, &r, &[], &r).is_err());
    assert!(verify_consistency(u64::MAX - 1, u64::MAX, &r, &r, &[r; 64]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_proof_from_persisted_nodes_verifies_and_any_flipped_bit_fails(
        n in 1u64..1500,
        i_seed in any::<u64>(),
        m_seed in any::<u64>(),
        bit in 0usize..256,
        pick in any::<usize>(),
    ) {
        let (frontier, nodes, roots) = build(n);
        let all = leaves(n);
        let i = i_seed % n;
        let root_n = frontier.root();
        prop_assert_eq!(root_n, roots[n as usize]);

        let proof = inclusion_proof(i, n, &only(&inclusion_proof_ids(i, n).unwrap(), &nodes)).unwrap();
        prop_assert!(proof.len() <= 64 - (n - 1).leading_zeros() as usize);
        prop_assert!(verify_inclusion(i, n, &all[i as usize], &proof, &root_n).is_ok());
        let wrong_index = (i + 1 + m_seed % (n.max(2) - 1)) % n;
        if wrong_index != i {
            prop_assert!(verify_inclusion(wrong_index, n, &all[i as usize], &proof, &root_n).is_err());
        }
        let mut leaf = all[i as usize];
        leaf[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(verify_inclusion(i, n, &leaf, &proof, &root_n).is_err());
        if !proof.is_empty() {
            let mut bad = proof.clone();
            bad[pick % proof.len()][bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_inclusion(i, n, &all[i as usize], &bad, &root_n).is_err());
        }

        let m = 1 + m_seed % n;
        let root_m = roots[m as usize];
        let proof = consistency_proof(m, n, &only(&consistency_proof_ids(m, n).unwrap(), &nodes)).unwrap();
        prop_assert!(verify_consistency(m, n, &root_m, &root_n, &proof).is_ok());
        if m < n {
            prop_assert!(verify_consistency(m + 1, n, &roots[m as usize + 1], &root_n, &proof).is_err());
            prop_assert!(verify_consistency(m, n, &roots[m as usize + 1], &root_n, &proof).is_err());
            let mut bad = proof.clone();
            bad[pick % proof.len()][bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_consistency(m, n, &root_m, &root_n, &bad).is_err());
        }
        let mut bad_root = root_n;
        bad_root[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(verify_consistency(m, n, &root_m, &bad_root, &proof).is_err());
    }
}
