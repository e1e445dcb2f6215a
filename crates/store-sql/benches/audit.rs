//! The audit log on real databases: how fast entries are appended (group commit, 32 concurrent
//! recorders), sequenced (leaf index, chain, tree nodes, checkpoint), and verified end to end
//! (read back from the database and checked). `cargo bench -p store-sql --bench audit`; set
//! `CAIRN_TEST_POSTGRES_URL` for the PostgreSQL half. Figures go to `docs/performance.md`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::Instant;

use audit_chain::{
    Action, AuditEntry, AuditLog, AuditTrail, CheckpointSigner, Ed25519Signer, LogVerifier,
    Outcome, Sequencer,
};
use store_sql::GroupCommit;
use store_sql::testing::TestDatabase;
use time::OffsetDateTime;

const ENTRIES: usize = 100_000;
const RECORDERS: usize = 32;
const ORIGIN: &str = "bench.cairn/audit";

/// A read entry as the server writes one (about 400 bytes).
fn entry(n: usize) -> AuditEntry {
    let mut entry = AuditEntry::new(
        uuid::Uuid::now_v7().to_string(),
        OffsetDateTime::now_utc(),
        Action::Read,
        Outcome::Success,
    );
    entry.subject = Some("service:iis-feed".into());
    entry.role = Some("system".into());
    entry.client = Some("Organization/registry".into());
    entry.token_id = Some("9f2c4e1a7b3d5f60".repeat(4));
    entry.purpose = Some("TREAT".into());
    entry.resource_type = Some("Patient".into());
    entry.resource_id = Some(uuid::Uuid::new_v4().to_string());
    entry.version = Some(1);
    entry.patient = Some(format!("Patient/{}", uuid::Uuid::new_v4()));
    entry.request_id = Some(format!("{:032x}", n));
    entry
}

async fn run(db: &TestDatabase) {
    let store = db.store().await;
    // As `cairn serve` does: SQLite has one writer at a time.
    let writers = if db.backend_name() == "sqlite" { 1 } else { 2 };
    let log = GroupCommit::start(Arc::new(store.clone()), writers);
    let started = Instant::now();
    let recorders: Vec<_> = (0..RECORDERS)
        .map(|r| {
            let log = log.clone();
            tokio::spawn(async move {
                for n in (r..ENTRIES).step_by(RECORDERS) {
                    log.append(&[entry(n)]).await.unwrap();
                }
            })
        })
        .collect();
    for recorder in recorders {
        recorder.await.unwrap();
    }
    let appended = started.elapsed();

    let signer = Arc::new(Ed25519Signer::from_seed(ORIGIN, &[9; 32]).unwrap());
    let key = signer.verifier().clone();
    let sequencer = Sequencer::new(ORIGIN, signer);
    let started = Instant::now();
    let mut sequenced = 0;
    while sequenced < ENTRIES {
        let round = sequencer
            .run_once(&store, OffsetDateTime::now_utc(), true)
            .await
            .unwrap();
        sequenced += round.sequenced;
    }
    let sequencing = started.elapsed();

    let started = Instant::now();
    let notes: Vec<String> = store
        .checkpoints(0, u64::MAX, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.note)
        .collect();
    let mut verifier = LogVerifier::new(&key, ORIGIN, &notes).unwrap();
    let mut next = 0;
    loop {
        let page = store.records(next, 10_000).await.unwrap();
        for record in &page {
            verifier.push(record).unwrap();
        }
        match page.last() {
            Some(last) if page.len() == 10_000 => next = last.index + 1,
            _ => break,
        }
    }
    let verified = verifier.finish().unwrap();
    let verifying = started.elapsed();
    assert_eq!(verified.entries, ENTRIES as u64);

    let rate = |d: std::time::Duration| ENTRIES as f64 / d.as_secs_f64();
    println!(
        "| {} | {:.0} | {:.0} | {:.0} |",
        db.backend_name(),
        rate(appended),
        rate(sequencing),
        rate(verifying)
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!(
            "\n{ENTRIES} entries, {RECORDERS} concurrent recorders\n\n| database | appended/s (group commit) | sequenced/s | verified/s (from the database) |\n|---|---:|---:|---:|"
        );
        for db in TestDatabase::all().await {
            run(&db).await;
        }
    });
}
