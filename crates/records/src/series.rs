//! Immunization series status: per series and target disease, which doses count and whether
//! the series is complete. Computed from the patient's current Immunizations on every request,
//! so it changes as soon as they do.

use std::collections::BTreeMap;

use fhir_model::{Coding, Immunization};

/// One series of one patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesStatus {
    /// `protocolApplied.series`, if the doses name one.
    pub series: Option<String>,
    /// The target diseases, as (system, code).
    pub target_diseases: Vec<(Option<String>, String)>,
    /// Doses that count: status `completed` (not `not-done`, not `entered-in-error`).
    pub doses_given: u32,
    /// The largest `seriesDoses` any counted dose states.
    pub doses_required: Option<u32>,
    pub complete: bool,
    /// The dates of the doses that count, oldest first.
    pub dose_dates: Vec<String>,
}

/// The status of every series found in `immunizations` (of one patient).
pub fn series_status(immunizations: &[Immunization]) -> Vec<SeriesStatus> {
    type Key = (Option<String>, Vec<(Option<String>, String)>);
    let mut groups: BTreeMap<Key, SeriesStatus> = BTreeMap::new();
    for immunization in immunizations {
        let counts = immunization.status.as_ref().map(|s| s.as_str()) == Some("completed");
        for applied in &immunization.protocol_applied {
            let mut diseases: Vec<(Option<String>, String)> = applied
                .target_disease
                .iter()
                .flat_map(|concept| concept.coding.iter())
                .filter_map(|coding: &Coding| {
                    coding
                        .code
                        .as_ref()
                        .map(|code| (coding.system.as_ref().map(|s| s.0.clone()), code.0.clone()))
                })
                .collect();
            diseases.sort();
            diseases.dedup();
            let key = (applied.series.clone(), diseases.clone());
            let entry = groups.entry(key).or_insert_with(|| SeriesStatus {
                series: applied.series.clone(),
                target_diseases: diseases,
                doses_given: 0,
                doses_required: None,
                complete: false,
                dose_dates: Vec::new(),
            });
            if !counts {
                continue;
            }
            entry.doses_given += 1;
            let required = applied
                .series_doses_positive_int
                .map(|d| d.0)
                .or_else(|| applied.series_doses_string.as_deref()?.trim().parse().ok());
            entry.doses_required = entry.doses_required.max(required);
            if let Some(date) = &immunization.occurrence_date_time {
                entry.dose_dates.push(date.0.clone());
            }
        }
    }
    groups
        .into_values()
        .map(|mut status| {
            status.dose_dates.sort();
            status.complete = status
                .doses_required
                .is_some_and(|required| status.doses_given >= required);
            status
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use fhir_model::Resource;
    use serde_json::json;

    use super::*;

    fn dose(status: &str, date: &str, series: &str, dose: u32, of: u32) -> Immunization {
        let json = json!({"resourceType": "Immunization", "status": status,
            "vaccineCode": {"coding": [{"code": "208"}]}, "patient": {"reference": "Patient/p"},
            "occurrenceDateTime": date,
            "protocolApplied": [{"series": series, "doseNumberPositiveInt": dose,
                "seriesDosesPositiveInt": of,
                "targetDisease": [{"coding": [{"system": "http://snomed.info/sct", "code": "840539006"}]}]}]});
        match Resource::from_json(&serde_json::to_vec(&json).unwrap()).unwrap() {
            Resource::Immunization(i) => *i,
            _ => panic!("an Immunization"),
        }
    }

    #[test]
    fn only_completed_doses_count_and_the_series_completes_at_its_dose_count() {
        let doses = vec![
            dose("completed", "2021-05-01", "primary", 2, 2),
            dose("completed", "2021-04-01", "primary", 1, 2),
            dose("entered-in-error", "2021-04-02", "primary", 1, 2),
            dose("not-done", "2021-06-01", "booster", 1, 1),
        ];
        let status = series_status(&doses);
        assert_eq!(status.len(), 2);
        let booster = &status[0];
        assert_eq!((booster.doses_given, booster.complete), (0, false));
        let primary = &status[1];
        assert_eq!(primary.series.as_deref(), Some("primary"));
        assert_eq!(
            (
                primary.doses_given,
                primary.doses_required,
                primary.complete
            ),
            (2, Some(2), true)
        );
        assert_eq!(primary.dose_dates, ["2021-04-01", "2021-05-01"]);
        let one = series_status(&doses[1..2]);
        assert!(!one[0].complete);
        assert!(series_status(&[]).is_empty());
    }
}
