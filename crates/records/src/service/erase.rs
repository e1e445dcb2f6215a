//! Erasure: crypto-shredding a patient's compartment.

use super::*;

impl Records {
    /// GDPR erasure of a patient: destroys their compartment's data key (every version of every
    /// resource sealed under it becomes unreadable, also straight from the database), their
    /// index rows, and leaves a tombstone. Answers [`RecordsError::Erased`] if already done.
    pub async fn erase_patient(&self, id: &str) -> Result<Erasure, RecordsError> {
        self.audited(
            Action::Erase,
            Some(ResourceType::PATIENT),
            Some(id),
            async {
                let resource_type = ResourceType::PATIENT;
                let not_found = || RecordsError::NotFound {
                    resource_type,
                    id: id.to_owned(),
                };
                if !fhir_model::is_valid_id(id) {
                    return Err(not_found());
                }
                self.store
                    .read_current(resource_type, id)
                    .await?
                    .ok_or_else(not_found)?;
                let owner = KeyOwner::Patient(id.to_owned());
                if let Err(CryptoError::Erased) = self.vault.key_for_reading(&owner).await {
                    return Err(RecordsError::Erased {
                        resource_type,
                        id: id.to_owned(),
                    });
                }
                let mut entry =
                    self.entry_about(Action::Erase, resource_type, id, None, Some(&owner));
                entry.operation = Some("$erase".to_owned());
                let erasure = self.store.erase(&owner, self.clock.now(), &entry).await?;
                Ok(erasure)
            },
        )
        .await
    }
}
