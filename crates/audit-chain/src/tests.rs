#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use proptest::prelude::*;
use time::macros::datetime;

use super::*;

/// The eight leaves of the RFC 6962 / transparency-dev reference tree.
fn reference_leaves() -> Vec<Vec<u8>> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|hex| {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    })
    .collect()
}

fn reference_tree() -> MemoryTree {
    let mut tree = MemoryTree::new();
    for leaf in reference_leaves() {
        tree.append(&leaf);
    }
    tree
}

fn b64(text: &str) -> Hash {
    Hash::from_base64(text).unwrap()
}

fn hashes(texts: &[&str]) -> Vec<Hash> {
    texts.iter().map(|t| b64(t)).collect()
}

// Roots and proofs from transparency-dev/merkle's testdata (happy paths).
const ROOT_1: &str = "bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=";
const ROOT_2: &str = "+sVCA+fMaWzw38tCySodnbr3CtnmIfS9jZhmLwDjwSU=";
const ROOT_3: &str = "rra8/idLcKFPsGel5VeCZNsPqbUa9eC6FZFY8yngbnc=";
const ROOT_5: &str = "Tju7H3tHjc/nH7YxYxUZo7yhLJrvyhYSv85ME6hiZNQ=";
const ROOT_6: &str = "duZ9rbzfHhDht03cYIq9L5jfsW+851J3tSMqEn8gh+8=";
const ROOT_7: &str = "3bib5AOAnjJXUNPSY814kpwpQreUKjS3fhIslZSnTIw=";
const ROOT_8: &str = "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=";

#[test]
fn roots_match_the_reference_vectors() {
    let tree = reference_tree();
    for (size, root) in [
        (1, ROOT_1),
        (2, ROOT_2),
        (3, ROOT_3),
        (5, ROOT_5),
        (6, ROOT_6),
        (7, ROOT_7),
        (8, ROOT_8),
    ] {
        assert_eq!(tree.root_at(size), Some(b64(root)), "size {size}");
        let leaves: Vec<Hash> = reference_leaves()[..size as usize]
            .iter()
            .map(|l| leaf_hash(l))
            .collect();
        assert_eq!(merkle::root_of(&leaves), b64(root));
    }
    assert_eq!(
        Hash::empty().to_hex(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn inclusion_proofs_match_the_reference_vectors() {
    let tree = reference_tree();
    let cases: [(u64, u64, &str, &[&str]); 4] = [
        (
            0,
            8,
            ROOT_8,
            &[
                "lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=",
                "Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=",
                "a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ=",
            ],
        ),
        (
            5,
            8,
            ROOT_8,
            &[
                "vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms=",
                "yoVOoSjtBQtBs1/8G4e46yveRh6eO1WW7Oa51ZdaCuA=",
                "037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc=",
            ],
        ),
        (
            2,
            3,
            ROOT_3,
            &["+sVCA+fMaWzw38tCySodnbr3CtnmIfS9jZhmLwDjwSU="],
        ),
        (
            1,
            5,
            ROOT_5,
            &[
                "bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=",
                "Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=",
                "vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms=",
            ],
        ),
    ];
    let leaves = reference_leaves();
    for (index, size, root, proof) in cases {
        let proof = hashes(proof);
        assert_eq!(tree.inclusion_proof(index, size), Some(proof.clone()));
        let leaf = leaf_hash(&leaves[index as usize]);
        assert!(verify_inclusion(index, size, &leaf, &proof, &b64(root)));
        // The reference's invalid variants: wrong index, size, leaf, root, or proof.
        assert!(!verify_inclusion(
            index ^ 1,
            size,
            &leaf,
            &proof,
            &b64(root)
        ));
        assert!(!verify_inclusion(
            index,
            size * 2,
            &leaf,
            &proof,
            &b64(root)
        ));
        assert!(!verify_inclusion(
            index,
            size,
            &Hash::empty(),
            &proof,
            &b64(root)
        ));
        assert!(!verify_inclusion(
            index,
            size,
            &leaf,
            &proof,
            &Hash::empty()
        ));
        assert!(!verify_inclusion(
            index,
            size,
            &leaf,
            &proof[1..],
            &b64(root)
        ));
        let mut longer = proof.clone();
        longer.push(b64(root));
        assert!(!verify_inclusion(index, size, &leaf, &longer, &b64(root)));
    }
}

#[test]
fn consistency_proofs_match_the_reference_vectors() {
    let tree = reference_tree();
    let cases: [(u64, u64, &str, &str, &[&str]); 4] = [
        (
            1,
            8,
            ROOT_1,
            ROOT_8,
            &[
                "lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=",
                "Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=",
                "a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ=",
            ],
        ),
        (
            6,
            8,
            ROOT_6,
            ROOT_8,
            &[
                "DrxdNDf74tsVi58Sah0RjjCBgQMdCpSfje3t68VY72o=",
                "yoVOoSjtBQtBs1/8G4e46yveRh6eO1WW7Oa51ZdaCuA=",
                "037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc=",
            ],
        ),
        (
            2,
            5,
            ROOT_2,
            ROOT_5,
            &[
                "Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=",
                "vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms=",
            ],
        ),
        (
            6,
            7,
            ROOT_6,
            ROOT_7,
            &[
                "DrxdNDf74tsVi58Sah0RjjCBgQMdCpSfje3t68VY72o=",
                "sIaT7C5yFZcTBkHoIR5+7cy0wmQTlj7ubB4u0W/7Gl8=",
                "037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc=",
            ],
        ),
    ];
    for (old, new, old_root, new_root, proof) in cases {
        let proof = hashes(proof);
        assert_eq!(tree.consistency_proof(old, new), Some(proof.clone()));
        let (a, b) = (b64(old_root), b64(new_root));
        assert!(verify_consistency(old, new, &a, &b, &proof));
        assert!(
            !verify_consistency(old, new, &b, &a, &proof),
            "swapped roots"
        );
        assert!(!verify_consistency(old + 1, new, &a, &b, &proof));
        assert!(!verify_consistency(
            old,
            new,
            &a,
            &b,
            &proof[..proof.len() - 1]
        ));
        assert!(!verify_consistency(old, new, &a, &b, &[]));
    }
    assert!(verify_consistency(8, 8, &b64(ROOT_8), &b64(ROOT_8), &[]));
    assert!(!verify_consistency(8, 8, &b64(ROOT_8), &b64(ROOT_7), &[]));
    assert!(verify_consistency(0, 8, &Hash::empty(), &b64(ROOT_8), &[]));
    assert!(!verify_consistency(8, 7, &b64(ROOT_8), &b64(ROOT_7), &[]));
}

fn tree_of(size: u64) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for i in 0..size {
        tree.append(&i.to_be_bytes());
    }
    tree
}

fn flip(hashes: &[Hash], which: usize, bit: u8) -> Vec<Hash> {
    let mut out = hashes.to_vec();
    let n = out.len();
    out[which % n].0[usize::from(bit / 8) % 32] ^= 1 << (bit % 8);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_inclusion_proof_verifies_and_no_tampered_one_does(
        size in 1u64..300, index_seed in any::<u64>(), which in any::<usize>(), bit in any::<u8>(),
    ) {
        let tree = tree_of(size);
        let index = index_seed % size;
        let proof = tree.inclusion_proof(index, size).unwrap();
        let leaf = leaf_hash(&index.to_be_bytes());
        let root = tree.root_at(size).unwrap();
        prop_assert!(verify_inclusion(index, size, &leaf, &proof, &root));
        prop_assert_eq!(root, merkle::root_of(
            &(0..size).map(|i| leaf_hash(&i.to_be_bytes())).collect::<Vec<_>>()));
        if !proof.is_empty() {
            prop_assert!(!verify_inclusion(index, size, &leaf, &flip(&proof, which, bit), &root));
        }
        let other = (index + 1 + which as u64 % size.max(2)) % size;
        if other != index {
            prop_assert!(!verify_inclusion(other, size, &leaf, &proof, &root));
        }
        // (The size is bound by the signed checkpoint, not by the path: index 0 of 17 and of 18
        // take the same steps. A root of another size never matches.)
        if size > 1 {
            let smaller = tree.root_at(size - 1).unwrap();
            prop_assert!(!verify_inclusion(index, size, &leaf, &proof, &smaller));
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_no_tampered_one_does(
        new in 1u64..300, old_seed in any::<u64>(), which in any::<usize>(), bit in any::<u8>(),
    ) {
        let tree = tree_of(new);
        let old = old_seed % (new + 1);
        let proof = tree.consistency_proof(old, new).unwrap();
        let (a, b) = (tree.root_at(old).unwrap(), tree.root_at(new).unwrap());
        prop_assert!(verify_consistency(old, new, &a, &b, &proof));
        if !proof.is_empty() {
            prop_assert!(!verify_consistency(old, new, &a, &b, &flip(&proof, which, bit)));
        }
        if old > 0 && old < new {
            // A different history of the same size is not consistent.
            let mut forked = tree_of(old - 1);
            forked.append(b"forged");
            prop_assert!(!verify_consistency(old, new, &forked.root(), &b, &proof));
        }
    }

    #[test]
    fn a_frontier_rebuilt_from_stored_nodes_continues_the_same_tree(size in 0u64..200, more in 1u64..50) {
        let tree = tree_of(size);
        let nodes = Frontier::ids(size).into_iter().map(|id| tree.node(id).unwrap()).collect();
        let mut frontier = Frontier::from_nodes(size, nodes).unwrap();
        prop_assert_eq!(frontier.root(), tree.root());
        let whole = tree_of(size + more);
        for i in size..size + more {
            frontier.append(&i.to_be_bytes());
        }
        prop_assert_eq!(frontier.root(), whole.root());
    }
}

fn signer() -> Arc<Ed25519Signer> {
    Arc::new(Ed25519Signer::from_seed("cairn.test/audit", &[7; 32]).unwrap())
}

#[test]
fn checkpoints_are_signed_notes_that_open_only_with_their_key() {
    let signer = signer();
    let checkpoint = Checkpoint {
        origin: "cairn.test/audit".into(),
        size: 8,
        root: b64(ROOT_8),
    };
    let note = sign_checkpoint(&checkpoint, signer.as_ref()).unwrap();
    assert!(note.starts_with(&format!(
        "cairn.test/audit\n8\n{ROOT_8}\n\n\u{2014} cairn.test/audit "
    )));
    let key = VerifierKey::parse(&signer.verifier().to_vkey()).unwrap();
    assert_eq!(&key, signer.verifier());
    assert_eq!(
        key.open_checkpoint(&note, "cairn.test/audit").unwrap(),
        checkpoint
    );
    assert!(matches!(
        key.open_checkpoint(&note, "elsewhere"),
        Err(NoteError::WrongOrigin { .. })
    ));
    // Changing the size or the root breaks the signature.
    let forged = note.replacen("\n8\n", "\n9\n", 1);
    assert!(matches!(key.open(&forged), Err(NoteError::BadSignature(_))));
    // Another key, even under the same name, does not open it.
    let stranger = Ed25519Signer::from_seed("cairn.test/audit", &[8; 32]).unwrap();
    assert!(matches!(
        stranger.verifier().open(&note),
        Err(NoteError::Unsigned(_))
    ));
    // vkey: the key id must match.
    let vkey = key.to_vkey();
    let mut parts: Vec<&str> = vkey.split('+').collect();
    parts[1] = "00000000";
    assert!(VerifierKey::parse(&parts.join("+")).is_err());
    assert!(VerifierKey::new("has space", [0; 32]).is_err());
}

fn entry(n: u32) -> AuditEntry {
    let mut entry = AuditEntry::new(
        format!("entry-{n}"),
        datetime!(2026-11-22 10:00:00.123456789 UTC),
        Action::Read,
        Outcome::Success,
    );
    entry.subject = Some("user:alice".into());
    entry.role = Some("clinician".into());
    entry.purpose = Some("TREAT".into());
    entry.resource_type = Some("Patient".into());
    entry.resource_id = Some(format!("p{n}"));
    entry.version = Some(1);
    entry.patient = Some(format!("Patient/p{n}"));
    entry
}

#[test]
fn entries_have_one_canonical_form() {
    let mut e = entry(1);
    e.query = vec![BlindParam {
        name: "family".into(),
        token: "b1f2".into(),
    }];
    let bytes = e.canonical_bytes();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.starts_with(r#"{"id":"entry-1","recorded":"2026-11-22T10:00:00.123456Z","action":"read","outcome":"success","subject":"user:alice""#), "{text}");
    assert!(!text.contains("clientId") && !text.contains("null"));
    let back = AuditEntry::from_canonical_bytes(&bytes).unwrap();
    assert_eq!(back.canonical_bytes(), bytes);
    // Same content, other spelling: refused, so an entry has exactly one leaf hash.
    let spaced = text.replacen(",", ", ", 1);
    assert!(matches!(
        AuditEntry::from_canonical_bytes(spaced.as_bytes()),
        Err(EntryError::NotCanonical)
    ));
    assert!(AuditEntry::from_canonical_bytes(b"{\"id\":1}").is_err());
    // The same instant in another offset, or with nanoseconds, has the same canonical bytes.
    let mut elsewhere = e.clone();
    elsewhere.recorded = canonical_time(e.recorded).to_offset(time::macros::offset!(+02:00));
    assert_eq!(elsewhere.canonical_bytes(), bytes);
    let mut finer = e.clone();
    finer.recorded = canonical_time(e.recorded) + time::Duration::nanoseconds(999);
    assert_eq!(finer.canonical_bytes(), bytes);
    let mut batch = b"[".to_vec();
    e.write_canonical(&mut batch);
    assert_eq!(&batch[1..], &bytes[..]);
    for action in Action::ALL {
        assert_eq!(Action::parse(action.as_str()), Some(action));
    }
}

async fn sequenced_log(entries: u32, sequencer: &Sequencer) -> fakes::MemoryAuditLog {
    let log = fakes::MemoryAuditLog::new();
    let now = datetime!(2026-11-22 10:00:00 UTC);
    for chunk in (0..entries).collect::<Vec<_>>().chunks(7) {
        let batch: Vec<AuditEntry> = chunk.iter().map(|n| entry(*n)).collect();
        log.append(&batch).await.unwrap();
        sequencer.run_once(&log, now, true).await.unwrap();
    }
    log
}

/// A log of `entries` entries sequenced in rounds of 7, with its records, checkpoint notes
/// and signer.
async fn sequenced(
    entries: u32,
) -> (
    fakes::MemoryAuditLog,
    Vec<LogRecord>,
    Vec<String>,
    Arc<Ed25519Signer>,
) {
    let signer = signer();
    let sequencer = Sequencer::new("cairn.test/audit", signer.clone());
    let log = sequenced_log(entries, &sequencer).await;
    let records = log.records(0, 1000).await.unwrap();
    let notes = log
        .checkpoints(0, u64::MAX, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.note)
        .collect();
    (log, records, notes, signer)
}

/// The fake log never waits, so a plain executor runs these tests.
fn run<F: std::future::Future>(future: F) -> F::Output {
    futures_executor::block_on(future)
}

#[test]
fn the_sequencer_builds_a_log_that_verifies_and_receipts_that_check_offline() {
    run(async {
        let (log, records, notes, signer) = sequenced(50).await;
        assert_eq!(records.len(), 50);
        assert_eq!(notes.len(), 8, "one checkpoint per round of 7");
        let verified = verify_log(signer.verifier(), "cairn.test/audit", &notes, &records).unwrap();
        assert_eq!(verified.entries, 50);
        assert_eq!(verified.signed_size, 50);

        // A receipt for every entry, checked with nothing but the bytes and the vkey.
        let key = VerifierKey::parse(&signer.verifier().to_vkey()).unwrap();
        for record in &records {
            let text = receipt(&log, &record.id).await.unwrap().to_text();
            let parsed = Receipt::parse(&text).unwrap();
            let checkpoint = parsed
                .verify(&record.body, &key, "cairn.test/audit")
                .unwrap();
            assert_eq!(checkpoint.size, 50);
            assert!(matches!(
                parsed.verify(b"other bytes", &key, "cairn.test/audit"),
                Err(ReceiptError::NotIncluded)
            ));
        }
        // Consistency between consecutive checkpoints, from stored nodes.
        let checkpoints = log.checkpoints(0, u64::MAX, 1000).await.unwrap();
        for pair in checkpoints.windows(2) {
            let (a, b) = (&pair[0].checkpoint, &pair[1].checkpoint);
            let proof = consistency_proof(&log, a.size, b.size).await.unwrap();
            assert!(verify_consistency(a.size, b.size, &a.root, &b.root, &proof));
        }
        assert!(matches!(
            receipt(&log, "nope").await,
            Err(ReceiptUnavailable::Unknown)
        ));
    });
}

#[test]
fn a_checkpoint_waits_for_its_interval_unless_forced() {
    run(async {
        let sequencer = Sequencer::new("cairn.test/audit", signer());
        let log = fakes::MemoryAuditLog::new();
        let t0 = datetime!(2026-11-22 10:00:00 UTC);
        log.append(&[entry(1)]).await.unwrap();
        let first = sequencer.run_once(&log, t0, false).await.unwrap();
        assert_eq!(first.sequenced, 1);
        assert_eq!(first.checkpoint.map(|c| c.size), Some(1));
        log.append(&[entry(2)]).await.unwrap();
        let soon = sequencer
            .run_once(&log, t0 + time::Duration::milliseconds(300), false)
            .await
            .unwrap();
        assert_eq!((soon.sequenced, soon.checkpoint), (1, None));
        let later = sequencer
            .run_once(&log, t0 + time::Duration::seconds(1), false)
            .await
            .unwrap();
        assert_eq!(later.checkpoint.map(|c| c.size), Some(2));
        // Nothing new: no checkpoint however late.
        let idle = sequencer
            .run_once(&log, t0 + time::Duration::seconds(9), false)
            .await
            .unwrap();
        assert_eq!((idle.sequenced, idle.checkpoint), (0, None));
        // A second sequencer waits its turn.
        let held = log.sequencer().await.unwrap().unwrap();
        assert!(sequencer.run_once(&log, t0, true).await.unwrap().skipped);
        drop(held);
        assert!(!sequencer.run_once(&log, t0, true).await.unwrap().skipped);
    });
}

#[test]
fn the_verifier_names_the_first_altered_missing_reordered_or_inserted_entry() {
    run(async {
        let (_log, records, notes, signer) = sequenced(30).await;
        let key = signer.verifier();
        let check = |records: &[LogRecord]| verify_log(key, "cairn.test/audit", &notes, records);
        check(&records).unwrap();

        // Altered bytes.
        let mut altered = records.clone();
        altered[12].body = entry(99).canonical_bytes();
        assert_eq!(
            check(&altered),
            Err(Tamper::Altered {
                index: 12,
                id: "entry-12".into()
            })
        );
        // Altered bytes with a recomputed leaf hash: the chain catches it.
        altered[12].leaf_hash = leaf_hash(&altered[12].body);
        assert_eq!(
            check(&altered),
            Err(Tamper::ChainBroken {
                index: 12,
                id: "entry-12".into()
            })
        );
        // Bytes, leaf and every later chain link recomputed (and the id column made to
        // agree): the signed roots catch it.
        altered[12].id = "entry-99".into();
        let mut chain = records[11].chain_hash;
        for record in &mut altered[12..] {
            chain = chain_hash(&chain, &record.leaf_hash);
            record.chain_hash = chain;
        }
        assert_eq!(check(&altered), Err(Tamper::RootMismatch { size: 14 }));
        // Deleted.
        let mut deleted = records.clone();
        deleted.remove(5);
        assert_eq!(
            check(&deleted),
            Err(Tamper::Missing {
                expected: 5,
                found: 6,
                id: "entry-6".into()
            })
        );
        // Deleted from the end, below the last checkpoint.
        assert_eq!(
            check(&records[..29]),
            Err(Tamper::Truncated {
                size: 30,
                entries: 29
            })
        );
        // Reordered: two entries swap places (indexes kept in order, bytes swapped).
        let mut swapped = records.clone();
        let (a, b) = (swapped[3].body.clone(), swapped[4].body.clone());
        swapped[3].body = b;
        swapped[4].body = a;
        assert!(matches!(
            check(&swapped),
            Err(Tamper::Altered { index: 3, .. })
        ));
        // Reordered: rows swapped, indexes and all.
        let mut reordered = records.clone();
        reordered.swap(8, 9);
        assert!(matches!(
            check(&reordered),
            Err(Tamper::Missing { expected: 8, .. })
        ));
        // Inserted: a copy of entry 10 squeezed in before it.
        let mut inserted = records.clone();
        inserted.insert(10, records[10].clone());
        assert!(matches!(
            check(&inserted),
            Err(Tamper::OutOfOrder { found: 10, .. })
        ));
        // A forged checkpoint.
        let mut bad_notes = notes.clone();
        bad_notes[2] = bad_notes[2].replacen("\n21\n", "\n22\n", 1);
        assert!(matches!(
            verify_log(key, "cairn.test/audit", &bad_notes, &records),
            Err(Tamper::BadCheckpoint { position: 2, .. })
        ));
    });
}

#[test]
fn an_unavailable_log_fails_closed() {
    run(async {
        let log = fakes::MemoryAuditLog::new();
        log.unavailable
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(log.append(&[entry(1)]).await.is_err());
        let sequencer = Sequencer::new("cairn.test/audit", signer());
        assert!(
            sequencer
                .run_once(&log, datetime!(2026-11-22 10:00 UTC), true)
                .await
                .is_err()
        );
    });
}

#[test]
fn a_vkey_whose_base64_key_holds_plus_signs_parses() {
    // Base64 uses '+': only the first two separate fields.
    let with_plus = (0u8..=255)
        .map(|n| Ed25519Signer::from_seed("log.example/audit", &[n; 32]).unwrap())
        .map(|signer| signer.verifier().clone())
        .find(|key| key.to_vkey().matches('+').count() > 2)
        .expect("some key's base64 has a '+'");
    assert_eq!(VerifierKey::parse(&with_plus.to_vkey()).unwrap(), with_plus);
}

#[test]
fn the_verifier_derives_every_searched_column_and_tree_node_again() {
    run(async {
        let (_log, records, notes, signer) = sequenced(40).await;
        let key = signer.verifier();
        let with_columns: Vec<LogRecord> = records
            .iter()
            .map(|record| {
                let entry = AuditEntry::from_canonical_bytes(&record.body).unwrap();
                LogRecord {
                    columns: Some(EntryColumns {
                        recorded_at: Some(canonical_time(entry.recorded)),
                        action: entry.action.as_str().to_owned(),
                        patient: entry.patient.clone(),
                    }),
                    ..record.clone()
                }
            })
            .collect();
        let check = |records: &[LogRecord]| verify_log(key, "cairn.test/audit", &notes, records);
        check(&with_columns).unwrap();

        let altered = |change: fn(&mut LogRecord)| {
            let mut records = with_columns.clone();
            change(&mut records[17]);
            check(&records)
        };
        let mismatch = |column| {
            Err(Tamper::ColumnMismatch {
                index: 17,
                id: "entry-17".into(),
                column,
            })
        };
        assert_eq!(altered(|r| r.id = "entry-1".into()), mismatch("id"));
        assert_eq!(
            altered(|r| r.columns.as_mut().unwrap().patient = Some("Patient/other".into())),
            mismatch("patient")
        );
        assert_eq!(
            altered(|r| r.columns.as_mut().unwrap().patient = None),
            mismatch("patient")
        );
        assert_eq!(
            altered(|r| r.columns.as_mut().unwrap().action = "login".into()),
            mismatch("action")
        );
        assert_eq!(
            altered(|r| r.columns.as_mut().unwrap().recorded_at = None),
            mismatch("recorded_at")
        );

        // Stored nodes: each completed node is compared; a changed or missing one is named.
        let mut verifier = LogVerifier::new(key, "cairn.test/audit", &notes).unwrap();
        let mut tree = MemoryTree::default();
        for record in &with_columns[..32] {
            verifier.push(record).unwrap();
            tree.append_hash(record.leaf_hash);
        }
        let ids = verifier.take_completed_nodes();
        assert_eq!(ids.len(), 31, "16 + 8 + 4 + 2 + 1 nodes above 32 leaves");
        let stored: std::collections::HashMap<NodeId, Hash> = ids
            .iter()
            .map(|id| (*id, tree.node(*id).unwrap()))
            .collect();
        let mut changed = stored.clone();
        changed.insert(NodeId::new(4, 1), Hash::empty());
        assert_eq!(
            verifier.clone().check_nodes(&changed),
            Err(Tamper::NodeMismatch { level: 4, index: 1 })
        );
        let mut missing = stored.clone();
        missing.remove(&NodeId::new(5, 0));
        assert_eq!(
            verifier.clone().check_nodes(&missing),
            Err(Tamper::NodeMissing { level: 5, index: 0 })
        );
        verifier.check_nodes(&stored).unwrap();
        assert!(verifier.take_completed_nodes().is_empty());
    });
}
