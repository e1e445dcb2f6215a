#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use zeroize::Zeroizing;

use super::*;
use crate::data_key::KeyOwner;

fn key(owner: &str) -> DataKey {
    DataKey::from_secret(
        KeyOwner::Patient(owner.into()),
        KeyId::random().unwrap(),
        &Zeroizing::new([5u8; 32]),
    )
    .unwrap()
}

fn at(id: &str, version: u64) -> SealContext<'_> {
    SealContext {
        resource_type: "Patient",
        id,
        version,
    }
}

#[test]
fn sealed_bodies_round_trip_and_hide_the_plaintext() {
    let key = key("p1");
    let body = br#"{"resourceType":"Patient","name":[{"family":"Canary"}]}"#;
    let blob = seal(&key, at("p1", 1), body).unwrap();
    assert!(!blob.windows(6).any(|w| w == b"Canary"));
    assert_eq!(blob.len(), body.len() + HEADER_LEN + 16);
    assert_eq!(sealed_key_id(&blob).unwrap(), key.id());
    assert_eq!(open(&key, at("p1", 1), &blob).unwrap().expose(), body);
    let again = seal(&key, at("p1", 1), body).unwrap();
    assert_ne!(blob, again, "fresh nonce every time");
}

#[test]
fn a_blob_opens_only_where_it_was_sealed() {
    let key1 = key("p1");
    let blob = seal(&key1, at("p1", 2), b"body").unwrap();
    let integrity = |r: Result<Phi<Vec<u8>>, CryptoError>| {
        assert!(matches!(r, Err(CryptoError::Integrity { .. })), "{r:?}");
    };
    integrity(open(&key1, at("p1", 1), &blob));
    integrity(open(&key1, at("p2", 2), &blob));
    integrity(open(
        &key1,
        SealContext {
            resource_type: "Immunization",
            id: "p1",
            version: 2,
        },
        &blob,
    ));
    let mut flipped = blob.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x80;
    integrity(open(&key1, at("p1", 2), &flipped));
    let mut body_flip = blob.clone();
    body_flip[HEADER_LEN] ^= 1;
    integrity(open(&key1, at("p1", 2), &body_flip));
    assert!(matches!(
        open(&key("p1"), at("p1", 2), &blob),
        Err(CryptoError::KeyMismatch)
    ));
    let mut future = blob.clone();
    future[0] = 9;
    assert!(matches!(
        open(&key1, at("p1", 2), &future),
        Err(CryptoError::UnknownFormat(9))
    ));
    integrity(open(&key1, at("p1", 2), &blob[..20]));
    integrity(open(&key1, at("p1", 2), &[]));
}
