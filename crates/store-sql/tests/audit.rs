//! The audit log on real databases (SQLite and PostgreSQL): sequencing, group commit, the
//! append-only guard, and tampering done directly in the database, which the verifier must
//! catch and name.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use audit_chain::{
    Action, AuditEntry, AuditLog, AuditTrail, CheckpointSigner, Ed25519Signer, LogVerifier, NodeId,
    Outcome, Receipt, Sequencer, Tamper, Verified, VerifierKey, leaf_hash,
};
use sea_orm::Value;
use store_sql::testing::TestDatabase;
use store_sql::{GroupCommit, SqlStore};
use time::OffsetDateTime;
use time::macros::datetime;

const ORIGIN: &str = "cairn.test/audit";

fn signer() -> Arc<Ed25519Signer> {
    Arc::new(Ed25519Signer::from_seed(ORIGIN, &[7; 32]).unwrap())
}

fn key() -> VerifierKey {
    signer().verifier().clone()
}

fn entry(n: usize) -> AuditEntry {
    let mut entry = AuditEntry::new(
        uuid::Uuid::new_v4().to_string(),
        datetime!(2026-11-23 10:00 UTC) + time::Duration::milliseconds(n as i64),
        Action::Read,
        Outcome::Success,
    );
    entry.subject = Some("user:alice".into());
    entry.role = Some("clinician".into());
    entry.resource_type = Some("Patient".into());
    entry.resource_id = Some(format!("p-{n}"));
    entry.patient = Some(format!("Patient/p-{n}"));
    entry.version = Some(1);
    entry
}

async fn verify(log: &dyn AuditLog) -> Result<Verified, Tamper> {
    let notes: Vec<String> = log
        .checkpoints(0, u64::MAX, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.note)
        .collect();
    let mut verifier = LogVerifier::new(&key(), ORIGIN, &notes)?;
    for record in log.records(0, 100_000).await.unwrap() {
        verifier.push(&record)?;
    }
    verifier.finish()
}

/// The first column of the one row a catalog query on a PostgreSQL test database returns.
async fn postgres_value<T: sea_orm::TryGetable>(db: &TestDatabase, sql: &str) -> T {
    use sea_orm::ConnectionTrait;
    let conn = sea_orm::Database::connect(db.url()).await.unwrap();
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            sql,
        ))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no row for {sql}"));
    row.try_get_by_index(0).unwrap()
}

/// 24 entries in four rounds, each round signed: checkpoints at 6, 12, 18, 24.
async fn sequenced(db: &TestDatabase) -> (SqlStore, Vec<AuditEntry>) {
    let store = db.store().await;
    let sequencer = Sequencer::new(ORIGIN, signer());
    let entries: Vec<AuditEntry> = (0..24)
        .map(|n| {
            let mut e = entry(n);
            // Refusals and administrative acts concern no patient.
            if n % 6 == 5 {
                e.patient = None;
            }
            e
        })
        .collect();
    for batch in entries.chunks(6) {
        store.append(batch).await.unwrap();
        let round = sequencer
            .run_once(&store, OffsetDateTime::now_utc(), true)
            .await
            .unwrap();
        assert_eq!(round.sequenced, 6);
        assert!(round.checkpoint.is_some());
    }
    assert_eq!(verify(&store).await.unwrap().entries, 24);
    (store, entries)
}

#[tokio::test]
async fn the_sequencer_builds_one_verifiable_log_and_every_entry_has_a_receipt() {
    for db in TestDatabase::all().await {
        let (store, entries) = sequenced(&db).await;
        let verified = verify(&store).await.unwrap();
        assert_eq!((verified.checkpoints, verified.signed_size), (4, 24));
        for (index, entry) in entries.iter().enumerate() {
            let stored = store.entry(&entry.id).await.unwrap().unwrap();
            assert_eq!(stored.index, Some(index as u64));
            assert_eq!(stored.body, entry.canonical_bytes());
            let receipt = audit_chain::receipt(&store, &entry.id).await.unwrap();
            let text = receipt.to_text();
            Receipt::parse(&text)
                .unwrap()
                .verify(&stored.body, &key(), ORIGIN)
                .unwrap();
        }
        // Consecutive checkpoints are consistent through the stored nodes.
        let checkpoints = store.checkpoints(0, u64::MAX, 100).await.unwrap();
        for pair in checkpoints.windows(2) {
            let (old, new) = (&pair[0].checkpoint, &pair[1].checkpoint);
            let proof = audit_chain::consistency_proof(&store, old.size, new.size)
                .await
                .unwrap();
            assert!(audit_chain::verify_consistency(
                old.size, new.size, &old.root, &new.root, &proof
            ));
        }
        // Every perfect subtree is found, the same as the whole tree in memory: levels 1 to 3
        // computed from the leaves, the levels above read from `audit_node`, which holds
        // nothing below level 4; nodes beyond the log are absent.
        let mut tree = audit_chain::MemoryTree::new();
        for entry in &entries {
            tree.append(&entry.canonical_bytes());
        }
        let ids: Vec<NodeId> = (0..=5u8)
            .flat_map(|level| (0..=(24 >> level)).map(move |index| NodeId::new(level, index)))
            .collect();
        let found = store.nodes(&ids).await.unwrap();
        for id in &ids {
            assert_eq!(found.get(id).copied(), tree.node(*id), "{id:?}");
        }
        assert_eq!(found.len(), 24 + 12 + 6 + 3 + 1);
        assert_eq!(db.row_count("audit_node").await, 1);
        eprintln!("a verifiable log on {}", db.backend_name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_loses_nothing_and_sequencers_on_two_pools_make_one_log() {
    for db in TestDatabase::all().await {
        let first = db.store().await;
        let second = db.store().await;
        let log = GroupCommit::start(Arc::new(first.clone()), 2);
        let appends = (0..300).map(|n| {
            let log = log.clone();
            tokio::spawn(async move { log.append(&[entry(n)]).await })
        });
        // Two instances' sequencers race while the entries arrive.
        let sequencers = [first.clone(), second.clone()].map(|store| {
            tokio::spawn(async move {
                let sequencer = Sequencer::new(ORIGIN, signer());
                let mut skipped = 0;
                for _ in 0..40 {
                    let round = sequencer
                        .run_once(&store, OffsetDateTime::now_utc(), false)
                        .await
                        .unwrap();
                    skipped += usize::from(round.skipped);
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                skipped
            })
        });
        for append in futures::future::join_all(appends).await {
            append.unwrap().unwrap();
        }
        for sequencer in sequencers {
            sequencer.await.unwrap();
        }
        Sequencer::new(ORIGIN, signer())
            .run_once(&second, OffsetDateTime::now_utc(), true)
            .await
            .unwrap();
        assert_eq!(db.row_count("audit_entry").await, 300);
        let verified = verify(&first).await.unwrap();
        assert_eq!((verified.entries, verified.signed_size), (300, 300));
        eprintln!(
            "{}: 300 entries, {} checkpoints, one log",
            db.backend_name(),
            verified.checkpoints
        );
    }
}

#[tokio::test]
async fn the_server_role_cannot_rewrite_or_delete_audit_rows() {
    for db in TestDatabase::all().await {
        let (store, entries) = sequenced(&db).await;
        let id = || Value::from(entries[3].id.clone());
        let refused = [
            (
                "UPDATE audit_entry SET body = $1 WHERE id = $2",
                vec![Value::from(b"{}".to_vec()), id()],
            ),
            (
                "UPDATE audit_entry SET leaf_index = 99 WHERE leaf_index = 3",
                vec![],
            ),
            ("DELETE FROM audit_entry WHERE id = $1", vec![id()]),
            ("DELETE FROM audit_node", vec![]),
            ("UPDATE audit_checkpoint SET note = 'forged'", vec![]),
            ("DELETE FROM audit_checkpoint", vec![]),
        ];
        for (sql, values) in refused {
            let result = db.try_execute(sql, values).await;
            assert!(result.is_err(), "{}: {sql} was allowed", db.backend_name());
        }
        if db.backend_name() == "postgres" {
            for table in [
                "audit_entry",
                "audit_intake",
                "audit_node",
                "audit_checkpoint",
            ] {
                let truncate = format!("TRUNCATE {table}");
                assert!(
                    db.try_execute(&truncate, vec![]).await.is_err(),
                    "{truncate}"
                );
            }
        }
        // An entry waiting for the sequencer cannot be taken out of the intake, nor changed.
        let waiting = entry(99);
        store.append(std::slice::from_ref(&waiting)).await.unwrap();
        for sql in [
            "DELETE FROM audit_intake",
            "UPDATE audit_intake SET entries = '[]'",
        ] {
            assert!(
                db.try_execute(sql, vec![]).await.is_err(),
                "{}: {sql} was allowed",
                db.backend_name()
            );
        }
        assert_eq!(db.row_count("audit_entry").await, 24);
        assert_eq!(db.row_count("audit_intake").await, 1);
        // Once sequenced, it leaves the intake; on PostgreSQL only with the bytes it came with.
        if db.backend_name() == "postgres" {
            let mut copy = waiting.clone();
            copy.purpose = Some("forged".into());
            db.bypassing_audit_guard(&[(
                "INSERT INTO audit_entry (leaf_index, id, body, recorded_at, action, patient, \
                 leaf_hash, chain_hash) VALUES (24, $1, $2, now(), 'read', NULL, '', '')",
                vec![waiting.id.clone().into(), copy.canonical_bytes().into()],
            )])
            .await;
            // Whichever leaf the delete names as its round's first (none, the forged row's,
            // the log's first), the bytes differ and the batch stays.
            for start in ["", "24", "0"] {
                let delete = format!(
                    "WITH round AS (SELECT set_config('cairn.audit_round_start', '{start}', true)) \
                     DELETE FROM audit_intake WHERE EXISTS (SELECT 1 FROM round)"
                );
                assert!(
                    db.try_execute(&delete, vec![]).await.is_err(),
                    "an entry left the intake for a row with other bytes (start {start:?})"
                );
            }
            assert_eq!(db.row_count("audit_intake").await, 1);
        }
    }
}

#[tokio::test]
async fn a_writes_audit_entry_commits_with_it_and_a_failed_write_leaves_none() {
    use fhir_model::ResourceType;
    use records::{NewVersion, ResourceStore, StoreError};
    for db in TestDatabase::all().await {
        let store = db.store().await;
        let key = phi_crypto::KeyRecord {
            owner: phi_crypto::KeyOwner::System,
            key_id: phi_crypto::KeyId::from_bytes(&[3; 16]).unwrap(),
            created: datetime!(2026-11-23 10:00 UTC),
            state: phi_crypto::KeyState::Wrapped(phi_crypto::WrappedKey {
                kek_version: 1,
                bytes: vec![0; 61],
            }),
        };
        let version = |audit: AuditEntry| NewVersion {
            resource_type: ResourceType::PATIENT,
            id: "audited".into(),
            version: 1,
            last_updated: datetime!(2026-11-23 10:00 UTC),
            key_owner: phi_crypto::KeyOwner::System,
            key_id: key.key_id,
            new_key: Some(key.clone()),
            body: vec![1, 2, 3],
            index: records::index::IndexRows::default(),
            deleted: false,
            claim: None,
            audit: Some(audit),
        };
        let (won, lost) = (entry(1), entry(2));
        store.create(version(won.clone())).await.unwrap();
        let again = store.create(version(lost.clone())).await;
        assert!(matches!(again, Err(StoreError::AlreadyExists { .. })));
        // Recorded (in the intake, not yet sequenced).
        assert_eq!(store.entry(&won.id).await.unwrap().unwrap().index, None);
        assert!(store.entry(&lost.id).await.unwrap().is_none());
        assert_eq!(db.row_count("audit_intake").await, 1);
    }
}

/// Runs `tamper` on a fresh sequenced log of each backend and checks what the verifier says.
async fn detects(
    what: &str,
    tamper: impl Fn(&[AuditEntry]) -> Vec<(&'static str, Vec<Value>)>,
    expect: impl Fn(&Tamper, &[AuditEntry]) -> bool,
) {
    for db in TestDatabase::all().await {
        let (store, entries) = sequenced(&db).await;
        db.bypassing_audit_guard(&tamper(&entries)).await;
        let found = verify(&store)
            .await
            .expect_err(&format!("{what} on {} went unnoticed", db.backend_name()));
        assert!(
            expect(&found, &entries),
            "{what} on {}: unexpected finding {found}",
            db.backend_name()
        );
        eprintln!("{what} on {}: {found}", db.backend_name());
    }
}

#[tokio::test]
async fn an_altered_entry_is_named() {
    detects(
        "altering entry 5",
        |entries| {
            let mut forged = entries[5].clone();
            forged.purpose = Some("TREAT".into());
            vec![(
                "UPDATE audit_entry SET body = $1 WHERE id = $2",
                vec![
                    forged.canonical_bytes().into(),
                    entries[5].id.clone().into(),
                ],
            )]
        },
        |found, entries| matches!(found, Tamper::Altered { index: 5, id } if *id == entries[5].id),
    )
    .await;
}

#[tokio::test]
async fn an_altered_entry_with_a_recomputed_leaf_hash_breaks_the_chain_there() {
    detects(
        "altering entry 8 and its leaf hash",
        |entries| {
            let mut forged = entries[8].clone();
            forged.subject = Some("user:mallory".into());
            let bytes = forged.canonical_bytes();
            vec![
                (
                    "UPDATE audit_entry SET body = $1, leaf_hash = $2 WHERE id = $3",
                    vec![
                        bytes.clone().into(),
                        leaf_hash(&bytes).0.to_vec().into(),
                        entries[8].id.clone().into(),
                    ],
                ),
            ]
        },
        |found, entries| {
            matches!(found, Tamper::ChainBroken { index: 8, id } if *id == entries[8].id)
        },
    )
    .await;
}

#[tokio::test]
async fn a_deleted_entry_is_named_by_the_gap() {
    detects(
        "deleting entry 7",
        |entries| {
            vec![(
                "DELETE FROM audit_entry WHERE id = $1",
                vec![entries[7].id.clone().into()],
            )]
        },
        |found, entries| {
            matches!(found, Tamper::Missing { expected: 7, found: 8, id } if *id == entries[8].id)
        },
    )
    .await;
}

#[tokio::test]
async fn reordered_entries_are_named() {
    detects(
        "swapping entries 3 and 4",
        |entries| {
            let (a, b) = (entries[3].id.clone(), entries[4].id.clone());
            vec![
                (
                    "UPDATE audit_entry SET leaf_index = -1 WHERE id = $1",
                    vec![a.clone().into()],
                ),
                (
                    "UPDATE audit_entry SET leaf_index = 3 WHERE id = $1",
                    vec![b.into()],
                ),
                (
                    "UPDATE audit_entry SET leaf_index = 4 WHERE id = $1",
                    vec![a.into()],
                ),
            ]
        },
        // Index 3 now holds entry 4: its own leaf hash, but not the chain's next link.
        |found, entries| {
            matches!(found, Tamper::ChainBroken { index: 3, id } if *id == entries[4].id)
        },
    )
    .await;
}

#[tokio::test]
async fn an_inserted_entry_is_named() {
    detects(
        "inserting a forged entry at index 10",
        |entries| {
            let mut forged = entries[10].clone();
            forged.id = uuid::Uuid::new_v4().to_string();
            forged.resource_id = Some("p-forged".into());
            let bytes = forged.canonical_bytes();
            // Make room (in two steps: the index is unique), then insert at 10.
            vec![
                ("UPDATE audit_entry SET leaf_index = leaf_index + 1000000 WHERE leaf_index >= 10", vec![]),
                ("UPDATE audit_entry SET leaf_index = leaf_index - 999999 WHERE leaf_index >= 1000000", vec![]),
                (
                    "INSERT INTO audit_entry (leaf_index, id, body, recorded_at, action, patient, \
                     leaf_hash, chain_hash) VALUES (10, $1, $2, $3, 'read', 'Patient/p-forged', $4, $5)",
                    vec![
                        forged.id.clone().into(),
                        bytes.clone().into(),
                        forged.recorded.into(),
                        leaf_hash(&bytes).0.to_vec().into(),
                        vec![0u8; 32].into(),
                    ],
                ),
            ]
        },
        |found, entries| {
            matches!(found, Tamper::ChainBroken { index: 10, id } if *id != entries[10].id)
        },
    )
    .await;
}

#[tokio::test]
async fn a_truncated_log_and_a_forged_checkpoint_are_caught() {
    detects(
        "deleting the last six entries",
        |_| vec![("DELETE FROM audit_entry WHERE leaf_index >= 18", vec![])],
        |found, _| {
            matches!(
                found,
                Tamper::Truncated {
                    size: 24,
                    entries: 18
                }
            )
        },
    )
    .await;
    detects(
        "rewriting a checkpoint's note",
        |_| {
            vec![(
                "UPDATE audit_checkpoint SET note = replace(note, 'cairn.test/audit\n12\n', 'cairn.test/audit\n13\n') WHERE size = 12",
                vec![],
            )]
        },
        |found, _| matches!(found, Tamper::BadCheckpoint { .. }),
    )
    .await;
}

/// PostgreSQL keeps a dequeued row as a dead tuple until vacuumed, and the intake's scan walks
/// them: the sequencer vacuums the intake itself (every 5,000 batches), whatever the cluster's
/// autovacuum does. SQLite frees deleted rows at once.
#[tokio::test]
async fn the_sequencer_vacuums_the_postgres_intake() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let store = db.store().await;
    let entries: Vec<AuditEntry> = (0..21_000).map(entry).collect();
    // 5,250 batches of four.
    for chunk in entries.chunks(4) {
        store.append(chunk).await.unwrap();
    }
    let sequencer = Sequencer::new(ORIGIN, signer());
    let mut sequenced = 0;
    loop {
        let round = sequencer
            .run_once(&store, OffsetDateTime::now_utc(), true)
            .await
            .unwrap();
        if round.sequenced == 0 {
            break;
        }
        sequenced += round.sequenced;
    }
    assert_eq!(sequenced, 21_000);
    assert_eq!(db.row_count("audit_intake").await, 0);
    // The vacuum ran when the round that crossed 5,000 batches committed, before `run_once`
    // returned.
    let vacuums: i64 = postgres_value(
        &db,
        "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'audit_intake'",
    )
    .await;
    assert!(vacuums >= 1, "the intake was never vacuumed");
    assert_eq!(verify(&store).await.unwrap().entries, 21_000);
}

/// The accounting of disclosures' lookup: one patient's entries, newest first, paged by
/// position, with a time window. On PostgreSQL it runs on a hash index of `patient`
/// (migration 7), whose order says nothing about time or position.
#[tokio::test]
async fn a_patients_entries_are_found_newest_first_and_paged() {
    use audit_chain::EntryQuery;
    for db in TestDatabase::all().await {
        let store = db.store().await;
        // Three patients' entries interleaved: p-0, p-1, p-2, p-0, …
        let entries: Vec<AuditEntry> = (0..30)
            .map(|n| {
                let mut e = entry(n);
                e.patient = Some(format!("Patient/p-{}", n % 3));
                e
            })
            .collect();
        for e in &entries {
            store.append(std::slice::from_ref(e)).await.unwrap();
        }
        // Found once sequenced.
        assert!(
            store
                .find(&EntryQuery {
                    limit: 100,
                    ..EntryQuery::default()
                })
                .await
                .unwrap()
                .is_empty()
        );
        Sequencer::new(ORIGIN, signer())
            .catch_up(&store, OffsetDateTime::now_utc())
            .await
            .unwrap();
        let query = |after, since| EntryQuery {
            patient: Some("Patient/p-1".into()),
            since,
            before: None,
            actions: Vec::new(),
            after,
            limit: 4,
        };
        let mut ids = Vec::new();
        let mut after = None;
        loop {
            let page = store.find(&query(after, None)).await.unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 4, "{}", db.backend_name());
            after = page.last().map(|found| found.position);
            ids.extend(page.into_iter().map(|found| found.entry.id));
        }
        let expected: Vec<String> = entries
            .iter()
            .rev()
            .filter(|e| e.patient.as_deref() == Some("Patient/p-1"))
            .map(|e| e.id.clone())
            .collect();
        assert_eq!(ids, expected, "{}", db.backend_name());
        // Entry n is recorded n ms after 10:00: from 20 ms on, p-1 has 22, 25 and 28. (On
        // SQLite the time is fixed-width text: trimmed of trailing zeros, as it once was,
        // ".022Z" sorted before ".02Z" and this bound inside a second compared wrongly.)
        let since = datetime!(2026-11-23 10:00 UTC) + time::Duration::milliseconds(20);
        let recent = store.find(&query(None, Some(since))).await.unwrap();
        let recent: Vec<&str> = recent.iter().map(|f| f.entry.id.as_str()).collect();
        let want: Vec<&str> = [28, 25, 22]
            .iter()
            .map(|&n| entries[n].id.as_str())
            .collect();
        assert_eq!(recent, want, "{}", db.backend_name());
        if db.backend_name() == "postgres" {
            let definition: String = postgres_value(
                &db,
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'audit_entry_by_patient'",
            )
            .await;
            assert!(definition.contains("USING hash (patient)"), "{definition}");
        }
    }
}

/// Migration 8 moves a log kept the old way (every entry a row from the start, queued on
/// `audit_pending`, sequenced into `audit_leaf`) into the intake and the new `audit_entry`:
/// the sequenced part still verifies against its signed checkpoint, the queued entries are
/// sequenced after it, and the migration goes down and up again without losing either.
#[tokio::test]
async fn a_log_kept_the_old_way_migrates_whole() {
    use audit_chain::{Checkpoint, Frontier, chain_hash, sign_checkpoint};
    use migration::{Migrator, MigratorTrait};
    for db in TestDatabase::all().await {
        let conn = sea_orm::Database::connect(db.url()).await.unwrap();
        Migrator::up(&conn, Some(7)).await.unwrap();
        let entries: Vec<AuditEntry> = (0..10).map(entry).collect();
        for e in &entries {
            db.execute(
                "INSERT INTO audit_entry (id, body, recorded_at, action, patient) \
                 VALUES ($1, $2, $3, 'read', $4)",
                vec![
                    e.id.clone().into(),
                    e.canonical_bytes().into(),
                    e.recorded.into(),
                    e.patient.clone().into(),
                ],
            )
            .await;
        }
        // The old sequencer placed the first six and signed them.
        let (mut frontier, mut chain) = (Frontier::new(), audit_chain::CHAIN_START);
        for (index, e) in entries.iter().take(6).enumerate() {
            let leaf = leaf_hash(&e.canonical_bytes());
            chain = chain_hash(&chain, &leaf);
            let mut nodes = Vec::new();
            frontier.push(leaf, |node| nodes.push(node));
            db.execute(
                "INSERT INTO audit_leaf (leaf_index, seq, leaf_hash, chain_hash) \
                 SELECT $1, seq, $2, $3 FROM audit_entry WHERE id = $4",
                vec![
                    (index as i64).into(),
                    leaf.0.to_vec().into(),
                    chain.0.to_vec().into(),
                    e.id.clone().into(),
                ],
            )
            .await;
            for node in nodes.iter().filter(|n| n.id.level > 0) {
                db.execute(
                    "INSERT INTO audit_node (level, idx, hash) VALUES ($1, $2, $3)",
                    vec![
                        i16::from(node.id.level).into(),
                        (node.id.index as i64).into(),
                        node.hash.0.to_vec().into(),
                    ],
                )
                .await;
            }
        }
        db.execute(
            "DELETE FROM audit_pending WHERE seq IN (SELECT seq FROM audit_leaf)",
            vec![],
        )
        .await;
        let signed = Checkpoint {
            origin: ORIGIN.into(),
            size: 6,
            root: frontier.root(),
        };
        db.execute(
            "INSERT INTO audit_checkpoint (size, root, note, signed_at) VALUES (6, $1, $2, $3)",
            vec![
                signed.root.0.to_vec().into(),
                sign_checkpoint(&signed, signer().as_ref()).unwrap().into(),
                OffsetDateTime::now_utc().into(),
            ],
        )
        .await;

        // Up, down (the old shape, rows where they were), and up again.
        Migrator::up(&conn, None).await.unwrap();
        assert_eq!(
            (
                db.row_count("audit_entry").await,
                db.row_count("audit_intake").await
            ),
            (6, 4),
            "{}",
            db.backend_name()
        );
        // Back past migration 8 (and 9, which changed only its guard, and 10 and 11, which
        // touch no audit table).
        let since_8 = Migrator::migrations().len() - 7;
        Migrator::down(&conn, Some(u32::try_from(since_8).unwrap()))
            .await
            .unwrap();
        assert_eq!(
            (
                db.row_count("audit_entry").await,
                db.row_count("audit_leaf").await,
                db.row_count("audit_pending").await
            ),
            (10, 6, 4),
            "{}",
            db.backend_name()
        );
        Migrator::up(&conn, None).await.unwrap();
        conn.close().await.unwrap();

        let store = db.store().await;
        let verified = verify(&store).await.unwrap();
        assert_eq!((verified.entries, verified.signed_size), (6, 6));
        let waiting = store.entry(&entries[8].id).await.unwrap().unwrap();
        assert_eq!(
            (waiting.index, waiting.body),
            (None, entries[8].canonical_bytes())
        );
        Sequencer::new(ORIGIN, signer())
            .run_once(&store, OffsetDateTime::now_utc(), true)
            .await
            .unwrap();
        assert_eq!(verify(&store).await.unwrap().entries, 10);
        for (index, e) in entries.iter().enumerate() {
            let stored = store.entry(&e.id).await.unwrap().unwrap();
            assert_eq!(stored.index, Some(index as u64), "{}", db.backend_name());
            assert_eq!(stored.body, e.canonical_bytes());
        }
        // The old entries are found by patient, in log order.
        let found = store
            .find(&audit_chain::EntryQuery {
                patient: Some("Patient/p-3".into()),
                limit: 10,
                ..audit_chain::EntryQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].entry.id, entries[3].id);
    }
}
