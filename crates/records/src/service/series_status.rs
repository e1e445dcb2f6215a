//! `$series-status`: a patient's immunization series from their current Immunizations.

use super::*;

impl Records {
    /// FHIR `$series-status` of a patient: per series and target disease, the doses that
    /// count, the doses required, whether it is complete, and the dose dates; from the
    /// patient's current Immunizations (entered-in-error and not-done doses do not count).
    pub async fn series_status(
        &self,
        patient_id: &str,
    ) -> Result<Vec<crate::series::SeriesStatus>, RecordsError> {
        self.audited(
            Action::Read,
            Some(ResourceType::PATIENT),
            Some(patient_id),
            async {
                // The patient must be readable (404, 410 as for a read).
                let patient = self
                    .read_unaudited(ResourceType::PATIENT, patient_id)
                    .await?;
                let mut immunizations = Vec::new();
                let mut after = None;
                loop {
                    let query = crate::index::SearchQuery {
                        resource_type: ResourceType::IMMUNIZATION,
                        clauses: vec![crate::index::Clause::Reference {
                            param: "patient",
                            any_of: vec![crate::index::ReferenceMatch {
                                target_type: Some("Patient".to_owned()),
                                target_id: patient_id.to_owned(),
                            }],
                        }],
                        order: crate::index::Order::default(),
                        after: after.take(),
                        limit: crate::search::MAX_COUNT,
                    };
                    let page = self.store.search(&query).await?;
                    let full = u64::try_from(page.len()).unwrap_or(0) == crate::search::MAX_COUNT;
                    after = page.last().map(|last| crate::index::Position {
                        value: None,
                        id: last.version.id.clone(),
                    });
                    for found in page {
                        let opened = self.open_version(found.version)?;
                        if let Ok(Resource::Immunization(immunization)) =
                            Resource::from_json(&opened.body)
                        {
                            immunizations.push(*immunization);
                        }
                    }
                    if !full {
                        break;
                    }
                }
                let mut entry = self.entry_about(
                    Action::Read,
                    ResourceType::PATIENT,
                    patient_id,
                    None,
                    Some(&patient.key_owner),
                );
                entry.operation = Some("$series-status".to_owned());
                entry.result_count = Some(u64::try_from(immunizations.len()).unwrap_or(u64::MAX));
                self.append_audit(&[entry]).await?;
                Ok(crate::series::series_status(&immunizations))
            },
        )
        .await
    }
}
