//! Sealing, opening, data-key unwrapping and blind-index costs. `cargo bench -p phi-crypto`;
//! figures in docs/performance.md.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_executor::block_on;
use phi_crypto::fakes::MemoryKeyStore;
use phi_crypto::{
    BlindIndex, FixedKeyring, KeyOwner, Keyring, Phi, SealContext, Vault, open, seal,
};
use time::OffsetDateTime;

const CONTEXT: SealContext<'static> = SealContext {
    resource_type: "Patient",
    id: "0b6e3f4c-8f1e-4b8e-9a57-2a8b3f6c9d10",
    version: 3,
};

fn sealing(c: &mut Criterion) {
    let keyring = Arc::new(Keyring::generate(OffsetDateTime::now_utc()).unwrap());
    let vault = Vault::new(
        Arc::new(MemoryKeyStore::default()),
        Arc::new(FixedKeyring(keyring)),
    );
    let owner = KeyOwner::Patient("p1".into());
    let key = block_on(vault.key_for_writing(&owner, OffsetDateTime::now_utc())).unwrap();
    let mut group = c.benchmark_group("seal");
    for size in [1024usize, 16 * 1024] {
        let body = vec![b'x'; size];
        let blob = seal(&key, CONTEXT, &body).unwrap();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("seal", size), &body, |b, body| {
            b.iter(|| seal(&key, CONTEXT, black_box(body)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("open", size), &blob, |b, blob| {
            b.iter(|| open(&key, CONTEXT, black_box(blob)).unwrap())
        });
    }
    group.finish();
    // What every read pays before opening: find the wrapped key (in memory here) and unwrap it.
    c.bench_function("data key: find + unwrap", |b| {
        b.iter(|| block_on(vault.key_for_reading(black_box(&owner))).unwrap())
    });
}

fn blind_indexes(c: &mut Criterion) {
    let keyring = Keyring::generate(OffsetDateTime::now_utc()).unwrap();
    let index = BlindIndex::new(&keyring);
    let mut group = c.benchmark_group("blind index");
    group.bench_function("derive purpose key", |b| {
        b.iter(|| index.key(black_box("Patient.name")))
    });
    let key = index.key("Patient.name");
    group.bench_function("query term (one value)", |b| {
        b.iter(|| key.string_query(black_box("Christopher")).unwrap())
    });
    let name = Phi::new(String::from("Christopher"));
    group.bench_function("string terms (11-letter name: exact + 9 prefixes)", |b| {
        b.iter(|| key.string_terms(black_box(&name), true))
    });
    let identifier = Phi::new(String::from("MRN-000123456"));
    group.bench_function("token terms (identifier)", |b| {
        b.iter(|| {
            key.token_terms(
                Some("urn:oid:2.16.840.1.113883.4.1"),
                black_box(&identifier),
            )
        })
    });
    let birth = Phi::new(String::from("1970-03-14"));
    group.bench_function("date terms (3 buckets)", |b| {
        b.iter(|| key.date_terms(black_box(&birth)))
    });
    group.finish();
}

criterion_group!(benches, sealing, blind_indexes);
criterion_main!(benches);
