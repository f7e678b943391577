use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::*;
use crate::seal::merkle::{empty_root, leaf_hash};

// The example of golang.org/x/mod/sumdb/note (its package documentation and tests): a key,
// a text and the signed note the reference implementation produces. Ed25519 is
// deterministic, so signing the text with the key must give the same bytes.
const GO_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                       then you don't know what your problem is.\n";
const GO_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

fn key() -> SigningKey {
    SigningKey::from_seed("ledger.example/acct_1/live", [7u8; 32]).unwrap()
}

fn checkpoint() -> Checkpoint {
    Checkpoint {
        origin: "ledger.example/acct_1/live".into(),
        size: 12345,
        root: leaf_hash(b"root"),
    }
}

#[test]
fn keys_ids_and_signatures_match_the_go_reference_byte_for_byte() {
    let signer = SigningKey::parse_private_key(GO_SKEY).unwrap();
    assert_eq!(signer.name(), "PeterNeumann");
    assert_eq!(signer.verifier().key_id(), 0xc74f_20a3);
    assert_eq!(signer.verifier().to_string(), GO_VKEY);
    assert_eq!(signer.to_private_key_string(), GO_SKEY);
    assert_eq!(signer.signature_line(GO_TEXT.as_bytes()), GO_SIG);
    let verifier = VerifierKey::parse(GO_VKEY).unwrap();
    assert_eq!(verifier, signer.verifier());
    // The Go note's text is not a checkpoint, so it opens up to the checkpoint parse.
    let note = format!("{GO_TEXT}\n{GO_SIG}");
    assert_eq!(
        open(&note, &verifier),
        Err(NoteError::MalformedCheckpoint("fewer than three lines"))
    );
    let (text, lines) = split_note(&note).unwrap();
    assert_eq!(text, GO_TEXT);
    assert!(verifier.verifies(text.as_bytes(), &lines[0].signature));
    let tampered = GO_TEXT.replace("answer", "answers");
    assert!(!verifier.verifies(tampered.as_bytes(), &lines[0].signature));
}

#[test]
fn a_signed_checkpoint_opens_with_its_verifier_key() {
    let k = key();
    let cp = checkpoint();
    let note = k.sign(&cp);
    assert!(note.starts_with(&format!(
        "ledger.example/acct_1/live\n12345\n{}\n\n\u{2014} ledger.example/acct_1/live ",
        B64.encode(cp.root)
    )));
    assert_eq!(open(&note, &k.verifier()), Ok(cp.clone()));
    assert_eq!(parse_unverified(&note), Ok(cp));
    let again = VerifierKey::parse(&k.verifier().to_string()).unwrap();
    assert_eq!(again, k.verifier());
}

#[test]
fn the_empty_tree_and_the_largest_size_round_trip() {
    let k = key();
    for size in [0, 1, u64::MAX] {
        let cp = Checkpoint {
            size,
            root: empty_root(),
            ..checkpoint()
        };
        assert_eq!(open(&k.sign(&cp), &k.verifier()), Ok(cp));
    }
}

#[test]
fn a_note_fails_with_the_wrong_key() {
    let note = key().sign(&checkpoint());
    // Same name, other key: a different key id, so no signature by this key.
    let other = SigningKey::from_seed("ledger.example/acct_1/live", [8u8; 32]).unwrap();
    assert_eq!(
        open(&note, &other.verifier()),
        Err(NoteError::NotSignedByKey(
            "ledger.example/acct_1/live".into()
        ))
    );
    let renamed = SigningKey::from_seed("other", [7u8; 32]).unwrap();
    assert!(open(&note, &renamed.verifier()).is_err());
}

#[test]
fn a_second_signer_is_ignored_but_an_invalid_signature_by_the_key_is_not() {
    let k = key();
    let cp = checkpoint();
    let note = k.sign(&cp);
    let witness = SigningKey::from_seed("witness.example", [9u8; 32]).unwrap();
    let cosigned = format!("{note}{}", witness.signature_line(cp.body().as_bytes()));
    assert_eq!(open(&cosigned, &k.verifier()), Ok(cp.clone()));
    assert_eq!(open(&cosigned, &witness.verifier()), Ok(cp.clone()));
    // A foreign signature first, ours second.
    let reordered = format!(
        "{}\n{}{}",
        cp.body(),
        witness.signature_line(cp.body().as_bytes()),
        k.signature_line(cp.body().as_bytes())
    );
    assert_eq!(open(&reordered, &k.verifier()), Ok(cp.clone()));
    // A line claiming our name and key id with a bad signature fails the whole note.
    let mut forged = vec![0u8; 68];
    forged[..4].copy_from_slice(&k.verifier().key_id().to_be_bytes());
    let bad = format!("{note}\u{2014} {} {}\n", k.name(), B64.encode(&forged));
    assert_eq!(open(&bad, &k.verifier()), Err(NoteError::InvalidSignature));
}

#[test]
fn malformed_notes_are_refused() {
    let k = key();
    let v = k.verifier();
    let note = k.sign(&checkpoint());
    let cases: Vec<(&str, String)> = vec![
        (
            "missing final newline",
            note.trim_end_matches('\n').to_owned(),
        ),
        ("extra final newline", format!("{note}\n")),
        ("no blank line", note.replacen("\n\n", "\n", 1)),
        ("hyphen instead of em dash", note.replace('\u{2014}', "-")),
        (
            "en dash instead of em dash",
            note.replace('\u{2014}', "\u{2013}"),
        ),
        (
            "two spaces after the dash",
            note.replace("\u{2014} ", "\u{2014}  "),
        ),
        (
            "two spaces before the signature",
            note.replacen(" ", "  ", 1).replacen("live ", "live  ", 1),
        ),
        (
            "trailing space on the signature line",
            note.replace("=\n", "= \n"),
        ),
        (
            "trailing space on the size line",
            note.replace("12345\n", "12345 \n"),
        ),
        (
            "leading zero in the size",
            note.replace("12345\n", "012345\n"),
        ),
        ("plus sign in the size", note.replace("12345\n", "+12345\n")),
        ("carriage return", note.replace("12345\n", "12345\r\n")),
        ("tab in the origin", note.replacen("ledger", "\tledger", 1)),
        ("NUL", note.replacen("ledger", "\0ledger", 1)),
        (
            "extension line",
            note.replacen("\n\n", "\nextension\n\n", 1),
        ),
        ("empty signature block", checkpoint().body() + "\n"),
        ("unsigned", checkpoint().body()),
        ("empty", String::new()),
    ];
    for (what, bad) in &cases {
        assert!(open(bad, &v).is_err(), "{what} was accepted by open");
    }
    // The structural checks do not depend on the signature.
    for (what, bad) in &cases[..4] {
        assert!(
            parse_unverified(bad).is_err(),
            "{what} was accepted unverified"
        );
    }
    // Control characters are refused before any line is looked at.
    assert_eq!(
        parse_unverified(&note.replace("12345\n", "12345\r\n")),
        Err(NoteError::MalformedNote(
            "control characters other than newline"
        ))
    );
    let huge = format!("{}{note}", "x".repeat(MAX_NOTE_BYTES));
    assert_eq!(open(&huge, &v), Err(NoteError::TooLarge));
}

#[test]
fn roots_must_be_canonical_base64_of_32_bytes() {
    let k = key();
    let body = |root: &str| format!("o\n1\n{root}\n");
    for root in [
        B64.encode([0u8; 31]),
        B64.encode([0u8; 33]),
        B64.encode([0u8; 32]).trim_end_matches('=').to_owned(),
        // The last character carries two unused bits; a non-zero value is not canonical.
        format!("{}B=", &B64.encode([0u8; 32])[..42]),
    ] {
        let text = body(&root);
        let note = format!("{text}\n{}", k.signature_line(text.as_bytes()));
        assert!(parse_unverified(&note).is_err(), "{root}");
    }
}

#[test]
fn verifier_keys_are_parsed_strictly() {
    assert!(VerifierKey::parse(GO_VKEY).is_ok());
    // Every proper substring, and every single-byte change, is refused.
    let b = GO_VKEY.as_bytes();
    for i in 0..b.len() {
        for j in i + 1..=b.len() {
            if (i, j) != (0, b.len()) {
                let s = std::str::from_utf8(&b[i..j]).unwrap();
                assert!(VerifierKey::parse(s).is_err(), "{s}");
            }
        }
        let mut changed = b.to_vec();
        changed[i] += 1;
        let s = String::from_utf8(changed).unwrap();
        assert!(VerifierKey::parse(&s).is_err(), "{s}");
    }
    assert_eq!(
        VerifierKey::parse("PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
            .map(|_| ()),
        Err(NoteError::MalformedKey(
            "the key id is not 8 lowercase hex digits"
        ))
    );
}

#[test]
fn key_names_are_validated_and_secrets_never_printed() {
    for bad in ["", "a b", "a+b", "a\nb", "a\u{00a0}b"] {
        assert_eq!(
            SigningKey::from_seed(bad, [1; 32]).map(|_| ()),
            Err(NoteError::InvalidKeyName),
            "{bad:?}"
        );
    }
    let k = SigningKey::parse_private_key(GO_SKEY).unwrap();
    let debug = format!("{k:?}");
    assert!(debug.contains("PeterNeumann") && debug.contains("c74f20a3"));
    let seed_b64 = B64.encode(k.seed());
    assert!(!debug.contains(&seed_b64) && !debug.contains(&hex::encode(k.seed())));
    assert!(!debug.contains("AYEKFALVFGyNhPJEMzD1QIDr"));
}

#[test]
fn generated_keys_differ_and_round_trip_through_their_seed() {
    let a = SigningKey::generate("n").unwrap();
    let b = SigningKey::generate("n").unwrap();
    assert_ne!(a.seed(), b.seed());
    let again = SigningKey::from_seed("n", a.seed()).unwrap();
    assert_eq!(again.verifier(), a.verifier());
    let cp = checkpoint();
    assert_eq!(open(&a.sign(&cp), &again.verifier()), Ok(cp));
}

/// The example of `docs/seal-formats.md`, section 3: the root of the empty tree at size 0
/// would be dull, so the tree of the three leaves "a", "b", "c".
#[test]
fn the_documented_example_checkpoint_is_what_the_code_signs() {
    use crate::seal::merkle::Frontier;
    let mut tree = Frontier::empty();
    for leaf in [b"a", b"b", b"c"] {
        tree.push(leaf_hash(leaf));
    }
    let key = SigningKey::from_seed("ledger.example/acct_123/live", [7u8; 32]).unwrap();
    let note = key.sign(&Checkpoint {
        origin: "ledger.example/acct_123/live".into(),
        size: tree.size(),
        root: tree.root(),
    });
    let doc = include_str!("../../../docs/seal-formats.md");
    assert!(
        doc.contains(&note),
        "update docs/seal-formats.md section 3:\n{note}"
    );
    assert!(doc.contains(&key.verifier().to_string()));
}
