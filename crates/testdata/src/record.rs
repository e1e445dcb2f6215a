//! One made-up patient's record, in Synthea's shape.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::random::Random;

/// A patient's record: resources in the order a Synthea Bundle lists them (the Patient first).
#[derive(Debug, Clone)]
pub struct PatientRecord {
    /// `(resourceType, id, resource)`; the resource has no `id`, and its references are
    /// `urn:uuid:{id}`.
    entries: Vec<(&'static str, String, Value)>,
}

impl PatientRecord {
    /// The Patient's id.
    pub fn patient_id(&self) -> &str {
        &self.entries[0].1
    }

    /// How many resources the record has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many resources of each type.
    pub fn counts(&self) -> HashMap<&'static str, usize> {
        let mut counts = HashMap::new();
        for (resource_type, _, _) in &self.entries {
            *counts.entry(*resource_type).or_default() += 1;
        }
        counts
    }

    /// A transaction Bundle, as Synthea writes one per patient: POST entries whose fullUrls
    /// (`urn:uuid:…`) the references use.
    pub fn transaction(&self) -> Value {
        let entries: Vec<Value> = self
            .entries
            .iter()
            .map(|(resource_type, id, resource)| {
                json!({
                    "fullUrl": format!("urn:uuid:{id}"),
                    "resource": resource,
                    "request": {"method": "POST", "url": resource_type},
                })
            })
            .collect();
        json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    }

    /// The resources with their ids and relative references (`Patient/{id}`), as a Bulk Data
    /// export writes them to NDJSON.
    pub fn resources(&self) -> Vec<Value> {
        let types: HashMap<&str, &str> = self
            .entries
            .iter()
            .map(|(resource_type, id, _)| (id.as_str(), *resource_type))
            .collect();
        self.entries
            .iter()
            .map(|(_, id, resource)| {
                let mut resource = resource.clone();
                relative_references(&mut resource, &types);
                if let Value::Object(members) = &mut resource {
                    members.shift_insert(1, "id".to_owned(), json!(id));
                }
                resource
            })
            .collect()
    }
}

fn relative_references(value: &mut Value, types: &HashMap<&str, &str>) {
    match value {
        Value::Object(members) => {
            for (name, member) in members.iter_mut() {
                if name == "reference"
                    && let Value::String(reference) = member
                    && let Some(id) = reference.strip_prefix("urn:uuid:")
                    && let Some(resource_type) = types.get(id)
                {
                    *reference = format!("{resource_type}/{id}");
                } else {
                    relative_references(member, types);
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| relative_references(item, types)),
        _ => {}
    }
}

const FAMILIES: &[&str] = &[
    "Okafor",
    "Lindqvist",
    "Nakamura",
    "Moreau",
    "Kowalski",
    "Haddad",
    "Oyelaran",
    "Brennan",
    "Castellanos",
    "Petrov",
    "Achterberg",
    "Mbeki",
    "Sørensen",
    "Quispe",
    "Tanaka",
    "Ferreira",
];
const GIVEN: &[&str] = &[
    "Ada", "Bram", "Chiara", "Dawit", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kemi",
    "Luca", "Mira", "Nuno", "Olga", "Priya", "Quentin", "Rosa", "Sami", "Tove",
];
const CITIES: &[(&str, &str, &str)] = &[
    ("Springfield", "MA", "01101"),
    ("Fairview", "OR", "97024"),
    ("Riverton", "WY", "82501"),
    ("Lakeside", "CA", "92040"),
    ("Georgetown", "TX", "78626"),
];

/// (SNOMED code, display, encounter class): what a visit was for.
const VISITS: &[(&str, &str, &str)] = &[
    ("185349003", "Encounter for check up", "AMB"),
    ("410620009", "Well child visit", "AMB"),
    ("185345009", "Encounter for symptom", "AMB"),
    ("50849002", "Emergency room admission", "EMER"),
    ("32485007", "Hospital admission", "IMP"),
];

/// (LOINC code, display, unit, low, high): vital signs and labs.
const OBSERVATIONS: &[(&str, &str, &str, u64, u64)] = &[
    ("8302-2", "Body Height", "cm", 50, 200),
    ("29463-7", "Body Weight", "kg", 3, 140),
    ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 14, 40),
    ("8867-4", "Heart rate", "/min", 50, 120),
    ("8480-6", "Systolic blood pressure", "mm[Hg]", 95, 170),
    ("8462-4", "Diastolic blood pressure", "mm[Hg]", 55, 105),
    ("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 65, 180),
    ("9279-1", "Respiratory rate", "/min", 10, 24),
];

const CONDITIONS: &[(&str, &str)] = &[
    ("444814009", "Viral sinusitis (disorder)"),
    ("195662009", "Acute viral pharyngitis (disorder)"),
    ("10509002", "Acute bronchitis (disorder)"),
    ("38341003", "Hypertension"),
    ("44054006", "Diabetes mellitus type 2"),
    ("40055000", "Chronic sinusitis (disorder)"),
];

const PROCEDURES: &[(&str, &str)] = &[
    ("430193006", "Medication Reconciliation (procedure)"),
    ("117015009", "Throat culture (procedure)"),
    ("76601001", "Intramuscular injection"),
    (
        "710824005",
        "Assessment of health and social care needs (procedure)",
    ),
];

const MEDICATIONS: &[(&str, &str)] = &[
    ("313782", "Acetaminophen 325 MG Oral Tablet"),
    ("308182", "Amoxicillin 250 MG Oral Capsule"),
    ("314076", "lisinopril 10 MG Oral Tablet"),
    (
        "860975",
        "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet",
    ),
];

/// (CVX code, display, series, doses in the series, target disease SNOMED code).
const VACCINES: &[(&str, &str, &str, u64, &str)] = &[
    (
        "08",
        "Hep B, adolescent or pediatric",
        "Hep B 3-dose",
        3,
        "66071002",
    ),
    ("20", "DTaP", "DTaP 5-dose", 5, "397430003"),
    ("10", "IPV", "Polio 4-dose", 4, "398102009"),
    ("03", "MMR", "MMR 2-dose", 2, "14189004"),
    ("21", "varicella", "Varicella 2-dose", 2, "38907003"),
    (
        "140",
        "Influenza, seasonal, injectable, preservative free",
        "Influenza annual",
        1,
        "6142004",
    ),
    (
        "113",
        "Td (adult) preservative free",
        "Td booster",
        1,
        "76902006",
    ),
    (
        "208",
        "SARS-COV-2 (COVID-19) vaccine, mRNA, 30 mcg/0.3mL",
        "COVID-19 Pfizer 2-dose",
        2,
        "840539006",
    ),
];

/// Patient `number` of the data set made with `seed`.
pub fn patient_record(seed: u64, number: u64) -> PatientRecord {
    let mut random = Random::for_item(seed, number);
    let mut record = Builder {
        entries: Vec::new(),
        random: Random::for_item(seed, number ^ 0x5EED),
    };
    let patient_id = random.uuid();
    let birth_year = random.between(1935, 2022);
    let (city, state, zip) = *random.pick(CITIES);
    let gender = *random.pick(&["female", "male"]);
    let patient = json!({
        "resourceType": "Patient",
        "identifier": [
            {"system": "https://cairn.example/synthetic/mrn", "value": format!("MRN-{seed}-{number:08}")},
            {"system": "http://hl7.org/fhir/sid/us-ssn",
             "value": format!("999-{:02}-{:04}", random.between(10, 99), random.between(1000, 9999))},
        ],
        "name": [{"use": "official", "family": random.pick(FAMILIES),
                  "given": [random.pick(GIVEN), random.pick(GIVEN)]}],
        "telecom": [{"system": "phone", "value": format!("555-{:03}-{:04}", random.between(100, 999), random.between(0, 9999)), "use": "home"}],
        "gender": gender,
        "birthDate": format!("{birth_year}-{:02}-{:02}", random.between(1, 12), random.between(1, 28)),
        "address": [{"line": [format!("{} Synthetic Way", random.between(1, 999))],
                     "city": city, "state": state, "postalCode": zip, "country": "US"}],
    });
    record.add("Patient", patient_id.clone(), patient);
    let patient_ref = format!("urn:uuid:{patient_id}");
    let visits = random.between(3, 40);
    let mut doses: HashMap<&str, u64> = HashMap::new();
    for visit in 0..visits {
        let year = (birth_year + visit * (2026 - birth_year) / visits).min(2026);
        let date = format!(
            "{year}-{:02}-{:02}",
            random.between(1, 12),
            random.between(1, 28)
        );
        let (code, display, class) = *random.pick(VISITS);
        let encounter_id = record.random.uuid();
        record.add(
            "Encounter",
            encounter_id.clone(),
            json!({
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": class},
                "type": [{"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}]}],
                "subject": {"reference": patient_ref},
                "period": {"start": format!("{date}T09:00:00Z"), "end": format!("{date}T09:30:00Z")},
            }),
        );
        let context = Context {
            patient: &patient_ref,
            encounter: format!("urn:uuid:{encounter_id}"),
            date: &date,
        };
        for _ in 0..random.between(2, 8) {
            record.observation(&context);
        }
        if random.chance(30) {
            record.condition(&context);
        }
        if random.chance(25) {
            record.procedure(&context);
        }
        if random.chance(30) {
            record.medication_request(&context);
        }
        if class == "AMB" {
            for _ in 0..random.between(0, 3) {
                let vaccine = random.pick(VACCINES);
                let given = doses.entry(vaccine.0).or_default();
                if *given < vaccine.3 || vaccine.3 == 1 {
                    *given += 1;
                    let dose = *given;
                    record.immunization(&context, vaccine, dose);
                }
            }
        }
    }
    PatientRecord {
        entries: record.entries,
    }
}

struct Context<'a> {
    patient: &'a str,
    encounter: String,
    date: &'a str,
}

struct Builder {
    entries: Vec<(&'static str, String, Value)>,
    random: Random,
}

impl Builder {
    fn add(&mut self, resource_type: &'static str, id: String, resource: Value) {
        self.entries.push((resource_type, id, resource));
    }

    fn observation(&mut self, at: &Context<'_>) {
        let (code, display, unit, low, high) = *self.random.pick(OBSERVATIONS);
        let value = self.random.between(low * 10, high * 10);
        let id = self.random.uuid();
        self.add(
            "Observation",
            id,
            json!({
                "resourceType": "Observation",
                "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
                "subject": {"reference": at.patient},
                "encounter": {"reference": at.encounter},
                "effectiveDateTime": format!("{}T09:10:00Z", at.date),
                "valueQuantity": {"value": value as f64 / 10.0, "unit": unit,
                                  "system": "http://unitsofmeasure.org", "code": unit},
            }),
        );
    }

    fn condition(&mut self, at: &Context<'_>) {
        let (code, display) = *self.random.pick(CONDITIONS);
        let id = self.random.uuid();
        self.add(
            "Condition",
            id,
            json!({
                "resourceType": "Condition",
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}]},
                "subject": {"reference": at.patient},
                "encounter": {"reference": at.encounter},
                "onsetDateTime": format!("{}T09:15:00Z", at.date),
            }),
        );
    }

    fn procedure(&mut self, at: &Context<'_>) {
        let (code, display) = *self.random.pick(PROCEDURES);
        let id = self.random.uuid();
        self.add(
            "Procedure",
            id,
            json!({
                "resourceType": "Procedure",
                "status": "completed",
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}]},
                "subject": {"reference": at.patient},
                "encounter": {"reference": at.encounter},
                "performedPeriod": {"start": format!("{}T09:12:00Z", at.date), "end": format!("{}T09:20:00Z", at.date)},
            }),
        );
    }

    fn medication_request(&mut self, at: &Context<'_>) {
        let (code, display) = *self.random.pick(MEDICATIONS);
        let id = self.random.uuid();
        self.add(
            "MedicationRequest",
            id,
            json!({
                "resourceType": "MedicationRequest",
                "status": "completed",
                "intent": "order",
                "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": code, "display": display}]},
                "subject": {"reference": at.patient},
                "encounter": {"reference": at.encounter},
                "authoredOn": format!("{}T09:25:00Z", at.date),
            }),
        );
    }

    fn immunization(
        &mut self,
        at: &Context<'_>,
        (code, display, series, doses, disease): &(&str, &str, &str, u64, &str),
        dose: u64,
    ) {
        let id = self.random.uuid();
        let lot = self.random.between(10_000, 99_999);
        self.add(
            "Immunization",
            id,
            json!({
                "resourceType": "Immunization",
                "status": "completed",
                "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": code, "display": display}]},
                "patient": {"reference": at.patient},
                "encounter": {"reference": at.encounter},
                "occurrenceDateTime": format!("{}T09:20:00Z", at.date),
                "primarySource": true,
                "lotNumber": format!("LOT{lot}"),
                "protocolApplied": [{
                    "series": series,
                    "targetDisease": [{"coding": [{"system": "http://snomed.info/sct", "code": disease}]}],
                    "doseNumberPositiveInt": dose,
                    "seriesDosesPositiveInt": doses,
                }],
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn a_record_is_the_same_for_the_same_seed_and_number() {
        assert_eq!(
            patient_record(42, 7).transaction(),
            patient_record(42, 7).transaction()
        );
        assert_ne!(
            patient_record(42, 7).patient_id(),
            patient_record(42, 8).patient_id()
        );
    }

    #[test]
    fn records_have_synthea_proportions() {
        let sizes: Vec<usize> = (0..50).map(|n| patient_record(1, n).len()).collect();
        let mean = sizes.iter().sum::<usize>() / sizes.len();
        assert!((20..=300).contains(&mean), "mean {mean}");
        let mut types = HashMap::new();
        for n in 0..50 {
            for (t, c) in patient_record(1, n).counts() {
                *types.entry(t).or_insert(0) += c;
            }
        }
        for t in [
            "Patient",
            "Encounter",
            "Observation",
            "Condition",
            "Procedure",
            "MedicationRequest",
            "Immunization",
        ] {
            assert!(types.get(t).copied().unwrap_or(0) > 0, "{t}");
        }
        assert!(types["Observation"] > types["Encounter"]);
    }

    #[test]
    fn transactions_link_by_urn_and_resources_by_relative_reference() {
        let record = patient_record(3, 1);
        let bundle = record.transaction();
        let dose = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["resource"]["resourceType"] != "Patient")
            .unwrap();
        assert_eq!(
            dose["resource"]["subject"]["reference"]
                .as_str()
                .or(dose["resource"]["patient"]["reference"].as_str()),
            Some(format!("urn:uuid:{}", record.patient_id()).as_str())
        );
        let resources = record.resources();
        assert_eq!(resources[0]["id"], record.patient_id());
        assert_eq!(
            resources[1]["subject"]["reference"],
            format!("Patient/{}", record.patient_id())
        );
    }
}
