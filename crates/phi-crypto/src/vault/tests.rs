#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use futures_executor::block_on;
use time::macros::datetime;
use zeroize::Zeroizing;

use super::*;
use crate::fakes::MemoryKeyStore;
use crate::seal::{SealContext, open, seal};

const NOW: OffsetDateTime = datetime!(2026-11-22 10:00 UTC);

/// A keyring source another process can rotate, like the keyring file.
struct SharedKeyring {
    seen: Mutex<Arc<Keyring>>,
    latest: Mutex<Arc<Keyring>>,
}

impl SharedKeyring {
    fn new(keyring: Keyring) -> Arc<Self> {
        let keyring = Arc::new(keyring);
        Arc::new(Self {
            seen: Mutex::new(keyring.clone()),
            latest: Mutex::new(keyring),
        })
    }

    /// What `cairn keys rotate` does to the file; this process has not reloaded yet.
    fn publish(&self, keyring: Keyring) {
        *self.latest.lock().unwrap() = Arc::new(keyring);
    }
}

impl MasterKeys for SharedKeyring {
    fn keyring(&self) -> Arc<Keyring> {
        self.seen.lock().unwrap().clone()
    }

    fn reload(&self) -> Result<Arc<Keyring>, CryptoError> {
        let latest = self.latest.lock().unwrap().clone();
        *self.seen.lock().unwrap() = latest.clone();
        Ok(latest)
    }
}

fn vault() -> (Vault, Arc<MemoryKeyStore>, Arc<SharedKeyring>) {
    let store = Arc::new(MemoryKeyStore::default());
    let master = SharedKeyring::new(Keyring::generate(NOW).unwrap());
    (Vault::new(store.clone(), master.clone()), store, master)
}

fn patient(id: &str) -> KeyOwner {
    KeyOwner::Patient(id.into())
}

const CTX: SealContext<'static> = SealContext {
    resource_type: "Patient",
    id: "p1",
    version: 1,
};

#[test]
fn one_key_per_owner_created_on_first_write() {
    block_on(async {
        let (vault, store, _) = vault();
        assert!(
            vault
                .key_for_reading(&patient("p1"))
                .await
                .unwrap()
                .is_none()
        );
        let first = vault.key_for_writing(&patient("p1"), NOW).await.unwrap();
        let second = vault.key_for_writing(&patient("p1"), NOW).await.unwrap();
        assert_eq!(first.id(), second.id());
        let other = vault.key_for_writing(&patient("p2"), NOW).await.unwrap();
        assert_ne!(first.id(), other.id());
        let blob = seal(&first, CTX, b"secret").unwrap();
        let reader = vault
            .key_for_reading(&patient("p1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(open(&reader, CTX, &blob).unwrap().expose(), b"secret");
        assert_eq!(
            store.usage().await.unwrap(),
            vec![KekUsage {
                kek_version: 1,
                data_keys: 2
            }]
        );
    });
}

#[test]
fn a_writer_that_loses_the_creation_race_uses_the_winners_key() {
    block_on(async {
        let (vault, store, master) = vault();
        // The winner's key is already stored when the loser's insert arrives.
        let winner_id = KeyId::random().unwrap();
        let winner_secret = Zeroizing::new([4u8; 32]);
        let wrapped = master
            .keyring()
            .wrap(&patient("p1"), &winner_id, &winner_secret)
            .unwrap();
        let kept = store
            .insert_if_absent(KeyRecord {
                owner: patient("p1"),
                key_id: winner_id,
                created: NOW,
                state: KeyState::Wrapped(wrapped),
            })
            .await
            .unwrap();
        assert_eq!(kept.key_id, winner_id);
        let key = vault.key_for_writing(&patient("p1"), NOW).await.unwrap();
        assert_eq!(key.id(), winner_id);
    });
}

#[test]
fn rotation_rewraps_every_key_without_changing_it() {
    block_on(async {
        let (vault, store, master) = vault();
        let mut blobs = Vec::new();
        for n in 0..25 {
            let key = vault
                .key_for_writing(&patient(&format!("p{n}")), NOW)
                .await
                .unwrap();
            blobs.push((n, seal(&key, CTX, format!("body {n}").as_bytes()).unwrap()));
        }
        master.publish(master.keyring().rotated(NOW).unwrap());
        let report = vault.rewrap_all(7).await.unwrap();
        assert_eq!(report.rewrapped, 25);
        assert_eq!(
            store.usage().await.unwrap(),
            vec![KekUsage {
                kek_version: 2,
                data_keys: 25
            }]
        );
        for (n, blob) in blobs {
            let key = vault
                .key_for_reading(&patient(&format!("p{n}")))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                open(&key, CTX, &blob).unwrap().expose(),
                format!("body {n}").as_bytes()
            );
        }
        assert_eq!(vault.rewrap_all(7).await.unwrap(), RewrapReport::default());
        vault.check_retirable(1).await.unwrap();
        assert!(vault.check_retirable(2).await.is_err());
    });
}

#[test]
fn a_process_that_has_not_reloaded_still_reads_keys_rewrapped_by_another() {
    block_on(async {
        let (vault, store, master) = vault();
        vault.key_for_writing(&patient("p1"), NOW).await.unwrap();
        // Another process rotates and rewraps; this one still holds version 1 only.
        let other_master = SharedKeyring::new(master.keyring().rotated(NOW).unwrap());
        Vault::new(store.clone(), other_master.clone())
            .rewrap_all(10)
            .await
            .unwrap();
        assert!(!master.keyring().has_version(2));
        master.publish(other_master.keyring().rotated(NOW).unwrap());
        assert!(
            vault
                .key_for_reading(&patient("p1"))
                .await
                .unwrap()
                .is_some()
        );
        assert!(master.keyring().has_version(2), "reloaded on demand");
    });
}

#[test]
fn retiring_a_version_that_still_wraps_keys_is_refused() {
    block_on(async {
        let (vault, _, master) = vault();
        vault.key_for_writing(&patient("p1"), NOW).await.unwrap();
        master.publish(master.keyring().rotated(NOW).unwrap());
        let err = vault.check_retirable(1).await.unwrap_err();
        assert!(err.to_string().contains("still wraps 1 data key"), "{err}");
        assert!(matches!(
            vault.check_retirable(7).await,
            Err(CryptoError::UnknownMasterKey(7))
        ));
    });
}

#[test]
fn a_destroyed_key_cannot_be_used_or_recreated() {
    block_on(async {
        let (vault, _, _) = vault();
        let key = vault.key_for_writing(&patient("p1"), NOW).await.unwrap();
        let blob = seal(&key, CTX, b"secret").unwrap();
        drop(key);
        vault.destroy(&patient("p1"), NOW).await.unwrap();
        assert!(matches!(
            vault.key_for_reading(&patient("p1")).await,
            Err(CryptoError::Erased)
        ));
        assert!(matches!(
            vault.key_for_writing(&patient("p1"), NOW).await,
            Err(CryptoError::Erased)
        ));
        assert_eq!(blob.len(), 6 + 45);
        // Erasing someone who never had a key still leaves a tombstone.
        vault.destroy(&patient("p9"), NOW).await.unwrap();
        assert!(matches!(
            vault.key_for_writing(&patient("p9"), NOW).await,
            Err(CryptoError::Erased)
        ));
    });
}

#[test]
fn keys_prepared_together_are_each_owners_own() {
    block_on(async {
        let (vault, _, _) = vault();
        let stored = vault.key_for_writing(&patient("p1"), NOW).await.unwrap();
        vault.destroy(&patient("gone"), NOW).await.unwrap();
        let owners = [
            patient("p1"),
            patient("new"),
            patient("gone"),
            patient("p1"),
        ];
        let prepared = vault.prepare_keys(&owners, NOW).await.unwrap();
        assert_eq!(prepared.len(), 4);
        let [p1, new, gone, again] = prepared.try_into().map_err(|_| ()).unwrap();
        let (p1, p1_record) = p1.unwrap();
        assert_eq!(p1.id(), stored.id());
        assert!(p1_record.is_none(), "a stored key is not stored again");
        let (new, new_record) = new.unwrap();
        let new_record = new_record.expect("a new owner's key comes with its record");
        assert_eq!(new_record.owner, patient("new"));
        assert_eq!(new_record.key_id, new.id());
        assert!(matches!(gone, Err(CryptoError::Erased)));
        assert_eq!(again.unwrap().0.id(), stored.id());
        assert!(vault.prepare_keys(&[], NOW).await.unwrap().is_empty());
    });
}
