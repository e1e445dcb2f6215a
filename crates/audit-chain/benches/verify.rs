//! How fast the log can be checked and extended, with no database:
//! - `verify/<n>`: [`verify_log`] over n realistic entries (leaf, chain and root recomputed);
//!   throughput in entries/s is the figure for the ≥ 1,000,000/s target.
//! - `sequence/<n>`: the sequencer's own work per entry (leaf hash, chain, tree nodes), the
//!   ceiling of appends/s before storage.

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use audit_chain::{
    Action, AuditEntry, BlindParam, CHAIN_START, Checkpoint, CheckpointSigner, Ed25519Signer,
    Frontier, LogRecord, Outcome, chain_hash, leaf_hash, sign_checkpoint, verify_log,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use time::macros::datetime;

fn entry(n: u64) -> AuditEntry {
    let mut entry = AuditEntry::new(
        format!("0193a5f2-7c1e-7d3b-9f4e-{n:012x}"),
        datetime!(2026-11-22 10:00:00.123456 UTC),
        Action::Search,
        Outcome::Success,
    );
    entry.subject = Some("user:alice".into());
    entry.role = Some("clinician".into());
    entry.client = Some("Organization/1".into());
    entry.token_id = Some("5f0c2a9e8d7b6a5f4e3d2c1b0a998877".into());
    entry.purpose = Some("TREAT".into());
    entry.resource_type = Some("Patient".into());
    entry.result_count = Some(3);
    entry.query = vec![BlindParam {
        name: "family".into(),
        token: "3f9a1c2b7d4e5f60".into(),
    }];
    entry.request_id = Some("a1b2c3d4e5f60718293a4b5c6d7e8f90".into());
    entry
}

fn log(n: u64) -> (Vec<LogRecord>, Vec<String>, Ed25519Signer) {
    let signer = Ed25519Signer::from_seed("bench/audit", &[1; 32]).unwrap();
    let mut frontier = Frontier::new();
    let mut chain = CHAIN_START;
    let mut records = Vec::new();
    let mut notes = Vec::new();
    for index in 0..n {
        let entry = entry(index);
        let body = entry.canonical_bytes();
        let leaf = leaf_hash(&body);
        chain = chain_hash(&chain, &leaf);
        frontier.push(leaf, |_| {});
        records.push(LogRecord {
            index,
            id: entry.id.clone(),
            body,
            leaf_hash: leaf,
            chain_hash: chain,
            columns: None,
        });
        // A checkpoint every 10,000 entries, as a busy second would make.
        if (index + 1) % 10_000 == 0 {
            let checkpoint = Checkpoint {
                origin: "bench/audit".into(),
                size: index + 1,
                root: frontier.root(),
            };
            notes.push(sign_checkpoint(&checkpoint, &signer).unwrap());
        }
    }
    (records, notes, signer)
}

fn bench(c: &mut Criterion) {
    let n = 100_000;
    let (records, notes, signer) = log(n);
    let bytes: usize = records.iter().map(|r| r.body.len()).sum();
    eprintln!("average entry: {} bytes", bytes / records.len());
    let mut group = c.benchmark_group("audit");
    group.throughput(Throughput::Elements(n));
    group.sample_size(20);
    group.bench_function("verify/100000", |b| {
        b.iter(|| {
            let verified = verify_log(
                signer.verifier(),
                "bench/audit",
                &notes,
                black_box(&records),
            )
            .unwrap();
            assert_eq!(verified.entries, n);
        });
    });
    group.bench_function("sequence/100000", |b| {
        b.iter(|| {
            let mut frontier = Frontier::new();
            let mut chain = CHAIN_START;
            let mut nodes = 0usize;
            for record in &records {
                let leaf = leaf_hash(black_box(&record.body));
                chain = chain_hash(&chain, &leaf);
                frontier.push(leaf, |_| nodes += 1);
            }
            black_box((frontier.root(), chain, nodes))
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
