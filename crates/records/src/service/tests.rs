#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use fhir_model::ResourceType;
use futures_executor::block_on;
use serde_json::{Value, json};
use time::macros::datetime;

use phi_crypto::{FixedKeyring, Keyring, Vault};

use crate::fakes::{FixedClock, MemoryStore, SequentialIds};
use crate::{Records, RecordsError, ResourceStore};

fn records_with_store() -> (Records, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::default());
    let keyring = Keyring::generate(datetime!(2026-01-01 0:00 UTC)).unwrap();
    let vault = Vault::new(store.keys(), Arc::new(FixedKeyring(Arc::new(keyring))));
    let records = Records::new(
        store.clone(),
        vault,
        Arc::new(FixedClock::at(datetime!(2026-11-22 10:00:00.123456789 UTC))),
        Arc::new(SequentialIds::default()),
        Arc::new(store.audit_log()),
    );
    (records, store)
}

fn records() -> Records {
    records_with_store().0
}

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn search_ids(records: &Records, rt: ResourceType, pairs: &[(&str, &str)]) -> Vec<String> {
    block_on(records.search(rt, &params(pairs)))
        .unwrap()
        .resources
        .into_iter()
        .map(|r| r.id)
        .collect()
}

#[test]
fn bodies_are_stored_sealed_and_index_rows_hold_no_plaintext() {
    let (records, store) = records_with_store();
    let body = json!({"resourceType": "Patient", "name": [{"family": "Canaryfam"}],
        "birthDate": "1931-02-03", "identifier": [{"system": "urn:x", "value": "CANARY-ID"}]});
    let created =
        block_on(records.create(ResourceType::PATIENT, body.to_string().as_bytes())).unwrap();
    let raw = block_on(store.read_current(ResourceType::PATIENT, &created.id))
        .unwrap()
        .unwrap();
    assert_eq!(raw.key_owner.as_str(), "Patient/id-1");
    for secret in ["Canaryfam", "1931", "CANARY-ID"] {
        assert!(
            !raw.body
                .windows(secret.len())
                .any(|w| w == secret.as_bytes())
        );
        assert!(String::from_utf8_lossy(&created.body).contains(secret));
    }
}

#[test]
fn blind_indexed_parameters_find_patients_with_fhir_semantics() {
    let records = records();
    for body in [
        json!({"resourceType": "Patient", "name": [{"family": "Müller", "given": ["Ana"]}],
            "birthDate": "1970-03-14", "gender": "female",
            "identifier": [{"system": "urn:mrn", "value": "A1"}],
            "telecom": [{"system": "phone", "value": "+1 (555) 010-1234"}],
            "address": [{"postalCode": "02139"}]}),
        json!({"resourceType": "Patient", "name": [{"family": "Mulroney"}], "birthDate": "1970",
            "gender": "male", "identifier": [{"value": "A1"}]}),
    ] {
        block_on(records.create(ResourceType::PATIENT, body.to_string().as_bytes())).unwrap();
    }
    let p = ResourceType::PATIENT;
    assert_eq!(
        search_ids(&records, p, &[("family", "mul")]),
        ["id-1", "id-2"]
    );
    assert_eq!(
        search_ids(&records, p, &[("family", "MUEL")]),
        Vec::<String>::new()
    );
    assert_eq!(search_ids(&records, p, &[("family", "muller")]), ["id-1"]);
    assert_eq!(
        search_ids(&records, p, &[("family:exact", "Müller")]),
        ["id-1"]
    );
    assert_eq!(search_ids(&records, p, &[("name", "ana")]), ["id-1"]);
    assert_eq!(
        search_ids(&records, p, &[("given", "ana,mulroney")]),
        ["id-1"]
    );
    assert_eq!(
        search_ids(&records, p, &[("birthdate", "1970")]),
        ["id-1", "id-2"]
    );
    assert_eq!(
        search_ids(&records, p, &[("birthdate", "1970-03")]),
        ["id-1"]
    );
    assert_eq!(
        search_ids(&records, p, &[("birthdate", "eq1970-03-14")]),
        ["id-1"]
    );
    assert_eq!(
        search_ids(&records, p, &[("identifier", "urn:mrn|A1")]),
        ["id-1"]
    );
    assert_eq!(search_ids(&records, p, &[("identifier", "|A1")]), ["id-2"]);
    assert_eq!(
        search_ids(&records, p, &[("identifier", "A1")]),
        ["id-1", "id-2"]
    );
    assert_eq!(
        search_ids(&records, p, &[("identifier", "urn:mrn|")]),
        ["id-1"]
    );
    assert_eq!(
        search_ids(&records, p, &[("telecom", "+15550101234")]),
        ["id-1"]
    );
    assert_eq!(
        search_ids(&records, p, &[("address-postalcode", "021")]),
        ["id-1"]
    );
    assert_eq!(search_ids(&records, p, &[("gender", "male")]), ["id-2"]);
    assert_eq!(
        search_ids(&records, p, &[("telecom:missing", "true")]),
        ["id-2"]
    );
    assert_eq!(
        search_ids(&records, p, &[("address-postalcode:missing", "false")]),
        ["id-1"]
    );
    assert_eq!(
        search_ids(&records, p, &[("_lastUpdated", "2026-11-22")]),
        ["id-1", "id-2"]
    );
    assert!(search_ids(&records, p, &[("_lastUpdated", "lt2026-11-22")]).is_empty());
    let counted = block_on(records.search(
        p,
        &params(&[("family", "mul"), ("_count", "1"), ("_total", "accurate")]),
    ))
    .unwrap();
    assert_eq!((counted.resources.len(), counted.total), (1, Some(2)));
    let uncounted = block_on(records.search(p, &params(&[("family", "mul")]))).unwrap();
    assert_eq!(uncounted.total, None, "no total unless asked");
    assert_eq!(
        search_ids(&records, p, &[("family", "mul"), ("gender", "female")]),
        ["id-1"]
    );
    for (name, value, says) in [
        ("family", "mu", "prefixes of 3 or more"),
        ("birthdate", "gt1970-01-01", "only equality"),
        (
            "birthdate",
            "1970-03-14T10:00:00Z",
            "year, year-month or full date",
        ),
        (
            "family:contains",
            "ull",
            "modifier :contains is not supported",
        ),
        ("shoe-size", "42", "no search parameter"),
        ("_count", "many", "whole number"),
        ("_cursor", "garbage", "not a cursor"),
    ] {
        let err = block_on(records.search(p, &params(&[(name, value)]))).unwrap_err();
        let RecordsError::Search(err) = err else {
            panic!("{err:?}")
        };
        assert_eq!(err.param, name);
        assert!(err.reason.contains(says), "{name}: {}", err.reason);
        assert!(
            !err.reason.contains(value) || value.len() < 3,
            "{}",
            err.reason
        );
    }
}

#[test]
fn an_empty_page_reached_through_a_cursor_links_back() {
    let records = records();
    let mut ids = Vec::new();
    for n in 0..4 {
        let body = json!({"resourceType": "Patient", "name": [{"family": format!("Gone{n}")}]});
        let created =
            block_on(records.create(ResourceType::PATIENT, body.to_string().as_bytes())).unwrap();
        ids.push(created.id);
    }
    let search = |cursor: Option<&str>| {
        let mut pairs = params(&[("family", "gone"), ("_count", "2")]);
        if let Some(c) = cursor {
            pairs.push(("_cursor".to_owned(), c.to_owned()));
        }
        block_on(records.search(ResourceType::PATIENT, &pairs)).unwrap()
    };
    let first = search(None);
    let second = search(first.next_cursor.as_deref());
    let back = second.previous_cursor.clone().unwrap();
    let next = second.next_cursor.clone();
    assert!(next.is_none(), "four matches, two pages");
    // Everything on the first page goes, then the second page's `previous` is followed.
    for id in &ids[..2] {
        block_on(records.delete(ResourceType::PATIENT, id, None)).unwrap();
    }
    let empty = search(Some(&back));
    assert!(empty.resources.is_empty());
    assert!(empty.previous_cursor.is_none(), "nothing before it");
    let onward = search(Some(&empty.next_cursor.expect("a way back")));
    let onward_ids: Vec<&str> = onward.resources.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        onward_ids,
        [ids[2].as_str(), ids[3].as_str()],
        "the first page now"
    );
    // And forward: the last page's matches go, then its `next` from the page before is empty.
    let page_one = search(None);
    for id in &ids[2..] {
        block_on(records.delete(ResourceType::PATIENT, id, None)).unwrap();
    }
    assert!(page_one.next_cursor.is_none());
    let again = search(Some(&first.next_cursor.clone().unwrap()));
    assert!(again.resources.is_empty() && again.next_cursor.is_none());
    let last = search(Some(&again.previous_cursor.expect("a way back")));
    assert!(last.resources.is_empty(), "every match is gone");
    assert!(last.next_cursor.is_none() && last.previous_cursor.is_none());
}

#[test]
fn sorted_paging_by_last_updated_walks_every_match_once_in_order() {
    let records = records();
    let clock_records = records.clone();
    for n in 0..5 {
        let body = json!({"resourceType": "Patient", "name": [{"family": format!("Sorted{n}")}]});
        block_on(clock_records.create(ResourceType::PATIENT, body.to_string().as_bytes())).unwrap();
    }
    let search = |sort: &str, cursor: &Option<String>| {
        let mut pairs = params(&[("family", "sorted"), ("_count", "2"), ("_sort", sort)]);
        if let Some(c) = cursor {
            pairs.push(("_cursor".to_owned(), c.clone()));
        }
        block_on(records.search(ResourceType::PATIENT, &pairs)).unwrap()
    };
    let ascending = ["id-1", "id-2", "id-3", "id-4", "id-5"];
    let descending = ["id-5", "id-4", "id-3", "id-2", "id-1"];
    for (sort, want) in [("_lastUpdated", ascending), ("-_lastUpdated", descending)] {
        // Forward with `next` to the last page, then back with `previous` to the first.
        let mut pages: Vec<Vec<String>> = Vec::new();
        let mut cursor: Option<String> = None;
        let last = loop {
            let page = search(sort, &cursor);
            assert_eq!(page.previous_cursor.is_some(), cursor.is_some(), "{sort}");
            pages.push(page.resources.iter().map(|r| r.id.clone()).collect());
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break page,
            }
        };
        assert_eq!(pages.concat(), want, "{sort}: equal times go by id");
        let mut back = Vec::new();
        let mut cursor = last.previous_cursor;
        while let Some(previous) = cursor.take() {
            let page = search(sort, &Some(previous));
            assert!(
                page.next_cursor.is_some(),
                "{sort}: a previous page has a next"
            );
            back.push(
                page.resources
                    .iter()
                    .map(|r| r.id.clone())
                    .collect::<Vec<_>>(),
            );
            cursor = page.previous_cursor;
        }
        back.reverse();
        assert_eq!(
            back,
            pages[..pages.len() - 1],
            "{sort}: back through the same pages"
        );
    }
    // A cursor from an unsorted search does not fit a sorted one.
    let unsorted = block_on(records.search(
        ResourceType::PATIENT,
        &params(&[("family", "sorted"), ("_count", "1")]),
    ))
    .unwrap();
    let mixed = params(&[
        ("_sort", "_lastUpdated"),
        ("_cursor", &unsorted.next_cursor.unwrap()),
    ]);
    assert!(matches!(
        block_on(records.search(ResourceType::PATIENT, &mixed)),
        Err(RecordsError::Search(_))
    ));
    assert!(matches!(
        block_on(records.search(ResourceType::PATIENT, &params(&[("_sort", "birthdate")]))),
        Err(RecordsError::Search(_))
    ));
}

#[test]
fn paging_walks_every_match_once() {
    let records = records();
    for n in 0..7 {
        let body = json!({"resourceType": "Patient", "name": [{"family": format!("Pager{n}")}]});
        block_on(records.create(ResourceType::PATIENT, body.to_string().as_bytes())).unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut pairs = vec![
            ("family".to_owned(), "pager".to_owned()),
            ("_count".to_owned(), "3".to_owned()),
        ];
        if let Some(c) = &cursor {
            pairs.push(("_cursor".to_owned(), c.clone()));
        }
        let page = block_on(records.search(ResourceType::PATIENT, &pairs)).unwrap();
        seen.extend(page.resources.into_iter().map(|r| r.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    seen.dedup();
    assert_eq!(seen.len(), 7);
}

#[test]
fn erasing_a_patient_shreds_their_compartment() {
    let records = records();
    let patient = block_on(
        records.create(
            ResourceType::PATIENT,
            json!({"resourceType": "Patient", "name": [{"family": "Erasme"}]})
                .to_string()
                .as_bytes(),
        ),
    )
    .unwrap();
    let immunization = json!({"resourceType": "Immunization", "status": "completed",
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "208"}]},
        "patient": {"reference": format!("Patient/{}", patient.id)},
        "occurrenceDateTime": "2021-04-01"});
    let imm = block_on(records.create(
        ResourceType::IMMUNIZATION,
        immunization.to_string().as_bytes(),
    ))
    .unwrap();
    let other = block_on(
        records.create(
            ResourceType::PATIENT,
            json!({"resourceType": "Patient", "name": [{"family": "Erasmus"}]})
                .to_string()
                .as_bytes(),
        ),
    )
    .unwrap();
    let erasure = block_on(records.erase_patient(&patient.id)).unwrap();
    assert_eq!((erasure.resources, erasure.versions), (2, 2));
    for (rt, id) in [
        (ResourceType::PATIENT, &patient.id),
        (ResourceType::IMMUNIZATION, &imm.id),
    ] {
        let read = block_on(records.read(rt, id));
        assert!(matches!(read, Err(RecordsError::Erased { .. })), "{read:?}");
    }
    assert_eq!(
        search_ids(&records, ResourceType::PATIENT, &[("family", "eras")]),
        vec![other.id.clone()]
    );
    assert!(
        search_ids(
            &records,
            ResourceType::IMMUNIZATION,
            &[("patient", &patient.id)]
        )
        .is_empty()
    );
    let late = block_on(records.create(
        ResourceType::IMMUNIZATION,
        immunization.to_string().as_bytes(),
    ));
    assert!(
        matches!(late, Err(RecordsError::CompartmentErased { .. })),
        "{late:?}"
    );
    assert!(matches!(
        block_on(records.erase_patient(&patient.id)),
        Err(RecordsError::Erased { .. })
    ));
    assert!(matches!(
        block_on(records.erase_patient("nobody")),
        Err(RecordsError::NotFound { .. })
    ));
    assert!(block_on(records.read(ResourceType::PATIENT, &other.id)).is_ok());
}

#[test]
fn create_assigns_id_and_meta_and_read_returns_it() {
    let records = records();
    let body = json!({"resourceType": "Patient", "id": "client-chosen", "gender": "female",
        "meta": {"versionId": "77", "tag": [{"code": "kept"}]}});
    let created =
        block_on(records.create(ResourceType::PATIENT, body.to_string().as_bytes())).unwrap();
    assert_eq!((created.id.as_str(), created.version), ("id-1", 1));
    let stored: Value = serde_json::from_slice(&created.body).unwrap();
    assert_eq!(stored["id"], "id-1");
    assert_eq!(stored["meta"]["versionId"], "1");
    assert_eq!(stored["meta"]["lastUpdated"], "2026-11-22T10:00:00.123456Z");
    assert_eq!(stored["meta"]["tag"][0]["code"], "kept");
    assert_eq!(stored["gender"], "female");

    let read = block_on(records.read(ResourceType::PATIENT, "id-1")).unwrap();
    assert_eq!(read, created);
}

#[test]
fn invalid_and_mismatched_bodies_are_refused_and_nothing_is_stored() {
    let records = records();
    let wrong =
        block_on(records.create(ResourceType::IMMUNIZATION, br#"{"resourceType":"Patient"}"#));
    assert!(
        matches!(wrong, Err(RecordsError::WrongType { .. })),
        "{wrong:?}"
    );
    let invalid = block_on(records.create(
        ResourceType::IMMUNIZATION,
        br#"{"resourceType":"Immunization"}"#,
    ));
    let Err(RecordsError::Invalid { issues }) = invalid else {
        panic!("{invalid:?}")
    };
    assert_eq!(issues.len(), 4);
    for id in ["id-1", "id-2"] {
        assert!(matches!(
            block_on(records.read(ResourceType::IMMUNIZATION, id)),
            Err(RecordsError::NotFound { .. })
        ));
    }
}

#[test]
fn reading_unknown_or_malformed_ids_is_not_found() {
    let records = records();
    for id in ["nope", "../etc", ""] {
        assert!(
            matches!(
                block_on(records.read(ResourceType::PATIENT, id)),
                Err(RecordsError::NotFound { .. })
            ),
            "{id}"
        );
    }
}

#[test]
fn the_memory_store_meets_the_contract() {
    let store = MemoryStore::default();
    block_on(crate::contract::resource_store(
        &store,
        store.keys().as_ref(),
    ));
    block_on(crate::contract::key_store(
        &phi_crypto::fakes::MemoryKeyStore::default(),
    ));
}

fn patient_body(id: &str, family: &str) -> Vec<u8> {
    json!({"resourceType": "Patient", "id": id, "name": [{"family": family}]})
        .to_string()
        .into_bytes()
}

#[test]
fn update_versions_vread_and_history() {
    let records = records();
    let p = ResourceType::PATIENT;
    // Update as create, with the client's id.
    let (v1, created) =
        block_on(records.update(p, "pat-1", &patient_body("pat-1", "First"), None)).unwrap();
    assert!(created);
    assert_eq!(v1.version, 1);
    let (v2, created) =
        block_on(records.update(p, "pat-1", &patient_body("pat-1", "Second"), Some(1))).unwrap();
    assert!(!created);
    assert_eq!(v2.version, 2);
    let stored: Value = serde_json::from_slice(&v2.body).unwrap();
    assert_eq!(stored["meta"]["versionId"], "2");
    // A stale If-Match is refused and changes nothing.
    let stale = block_on(records.update(p, "pat-1", &patient_body("pat-1", "Stale"), Some(1)));
    assert!(
        matches!(
            stale,
            Err(RecordsError::VersionMismatch {
                expected: 1,
                current: Some(2),
                ..
            })
        ),
        "{stale:?}"
    );
    assert_eq!(search_ids(&records, p, &[("family", "second")]), ["pat-1"]);
    assert!(search_ids(&records, p, &[("family", "first")]).is_empty());
    assert!(search_ids(&records, p, &[("family", "stale")]).is_empty());
    let old: Value =
        serde_json::from_slice(&block_on(records.vread(p, "pat-1", "1")).unwrap().body).unwrap();
    assert_eq!(old["name"][0]["family"], "First");
    for bad in ["3", "x", "-1"] {
        assert!(matches!(
            block_on(records.vread(p, "pat-1", bad)),
            Err(RecordsError::NotFound { .. })
        ));
    }
    // Body and URL ids must agree.
    for (url_id, body) in [
        ("pat-1", patient_body("other", "X")),
        ("pat-1", br#"{"resourceType":"Patient"}"#.to_vec()),
    ] {
        assert!(matches!(
            block_on(records.update(p, url_id, &body, None)),
            Err(RecordsError::IdMismatch { .. })
        ));
    }
    assert!(matches!(
        block_on(records.update(p, "bad id!", &patient_body("bad id!", "X"), None)),
        Err(RecordsError::BadId { .. })
    ));
    // Delete: a new version; reads answer Deleted, vread of the marker too; history keeps all.
    assert_eq!(
        block_on(records.delete(p, "pat-1", Some(2))).unwrap(),
        Some(3)
    );
    assert_eq!(block_on(records.delete(p, "pat-1", None)).unwrap(), None);
    assert!(matches!(
        block_on(records.read(p, "pat-1")),
        Err(RecordsError::Deleted { version: 3, .. })
    ));
    assert!(matches!(
        block_on(records.vread(p, "pat-1", "3")),
        Err(RecordsError::Deleted { .. })
    ));
    assert!(search_ids(&records, p, &[("family", "second")]).is_empty());
    let history = block_on(records.history(p, "pat-1", None, 10)).unwrap();
    assert_eq!(
        history
            .iter()
            .map(|h| (h.version, h.body.is_some()))
            .collect::<Vec<_>>(),
        [(3, false), (2, true), (1, true)]
    );
    assert_eq!(
        block_on(records.history(p, "pat-1", None, 2))
            .unwrap()
            .len(),
        2
    );
    assert!(matches!(
        block_on(records.history(p, "nobody", None, 10)),
        Err(RecordsError::NotFound { .. })
    ));
    assert!(matches!(
        block_on(records.delete(p, "nobody", None)),
        Err(RecordsError::NotFound { .. })
    ));
    // Updating after a delete brings it back as version 4.
    let (v4, created) =
        block_on(records.update(p, "pat-1", &patient_body("pat-1", "Back"), None)).unwrap();
    assert_eq!((v4.version, created), (4, false));
    assert_eq!(search_ids(&records, p, &[("family", "back")]), ["pat-1"]);
}

#[test]
fn conditional_create_returns_the_one_match_or_creates() {
    let records = records();
    let p = ResourceType::PATIENT;
    let body =
        json!({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "C-1"}]})
            .to_string();
    let criteria = params(&[("identifier", "urn:mrn|C-1")]);
    let (first, created) =
        block_on(records.create_conditional(p, body.as_bytes(), &criteria)).unwrap();
    assert!(created);
    let (again, created) =
        block_on(records.create_conditional(p, body.as_bytes(), &criteria)).unwrap();
    assert!(!created);
    assert_eq!(again.id, first.id);
    // A second match (created unconditionally) makes the criteria ambiguous.
    block_on(records.create(p, body.as_bytes())).unwrap();
    assert!(matches!(
        block_on(records.create_conditional(p, body.as_bytes(), &criteria)),
        Err(RecordsError::MultipleMatches { .. })
    ));
    for bad in [vec![], params(&[("shoe-size", "9")])] {
        assert!(matches!(
            block_on(records.create_conditional(p, body.as_bytes(), &bad)),
            Err(RecordsError::Search(_))
        ));
    }
}

#[test]
fn a_confined_caller_sees_and_writes_only_its_patients_compartment() {
    let records = records();
    let pt = ResourceType::PATIENT;
    let imm = ResourceType::parse("Immunization").unwrap();
    let mine = block_on(records.create(pt, &patient_body("a", "Own"))).unwrap();
    let theirs = block_on(records.create(pt, &patient_body("b", "Other"))).unwrap();
    let shot = |patient: &str| {
        json!({"resourceType": "Immunization", "status": "completed",
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "207"}]},
            "patient": {"reference": format!("Patient/{patient}")},
            "occurrenceDateTime": "2026-01-01"})
        .to_string()
        .into_bytes()
    };
    let my_shot = block_on(records.create(imm, &shot(&mine.id))).unwrap();
    let their_shot = block_on(records.create(imm, &shot(&theirs.id))).unwrap();
    let confined = records.confined_to_patient(&mine.id);

    let not_found = |r: Result<_, RecordsError>| matches!(r, Err(RecordsError::NotFound { .. }));
    assert!(block_on(confined.read(pt, &mine.id)).is_ok());
    assert!(not_found(
        block_on(confined.read(pt, &theirs.id)).map(|_| ())
    ));
    assert!(not_found(
        block_on(confined.read(imm, &their_shot.id)).map(|_| ())
    ));
    assert!(not_found(
        block_on(confined.vread(pt, &theirs.id, "1")).map(|_| ())
    ));
    assert!(not_found(
        block_on(confined.history(pt, &theirs.id, None, 10)).map(|_| ())
    ));
    assert!(not_found(
        block_on(confined.series_status(&theirs.id)).map(|_| ())
    ));

    // Searches, totals, _include and _revinclude stay inside.
    let page = block_on(confined.search(
        imm,
        &params(&[("_total", "accurate"), ("_include", "Immunization:patient")]),
    ))
    .unwrap();
    assert_eq!(
        page.resources.iter().map(|r| &r.id).collect::<Vec<_>>(),
        [&my_shot.id]
    );
    assert_eq!(page.total, Some(1));
    assert_eq!(
        page.included.iter().map(|r| &r.id).collect::<Vec<_>>(),
        [&mine.id]
    );
    let page =
        block_on(confined.search(pt, &params(&[("_revinclude", "Immunization:patient")]))).unwrap();
    assert_eq!(
        page.resources.iter().map(|r| &r.id).collect::<Vec<_>>(),
        [&mine.id]
    );
    assert_eq!(
        page.included.iter().map(|r| &r.id).collect::<Vec<_>>(),
        [&my_shot.id]
    );
    // An Immunization pointing at another patient cannot be pulled in by _include either.
    let page = block_on(confined.search(
        imm,
        &params(&[
            ("patient", &format!("Patient/{}", theirs.id)),
            ("_include", "Immunization:patient"),
        ]),
    ))
    .unwrap();
    assert!(page.resources.is_empty() && page.included.is_empty());
    let history = block_on(confined.history_all(None, None, 100, None)).unwrap();
    assert!(
        history
            .entries
            .iter()
            .all(|e| e.id == mine.id || e.id == my_shot.id)
    );
    assert_eq!(history.entries.len(), 2);

    // Writes: inside allowed, outside refused or not found; nothing changes outside.
    assert!(block_on(confined.create(imm, &shot(&mine.id))).is_ok());
    assert!(matches!(
        block_on(confined.create(imm, &shot(&theirs.id))),
        Err(RecordsError::OutsideCompartment { .. })
    ));
    assert!(not_found(
        block_on(confined.delete(pt, &theirs.id, None)).map(|_| ())
    ));
    assert!(not_found(
        block_on(confined.update(pt, &theirs.id, &patient_body(&theirs.id, "X"), None)).map(|_| ())
    ));
    assert_eq!(block_on(records.read(pt, &theirs.id)).unwrap().version, 1);
}

#[test]
fn an_index_made_by_older_rules_is_made_anew_once() {
    use crate::index::{BlindRow, INDEX_GENERATION, index_rows};
    use phi_crypto::Phi;
    let (records, store) = records_with_store();
    let patient = block_on(
        records.create(
            ResourceType::PATIENT,
            json!({"resourceType": "Patient", "name": [{"family": "van der Berg"}]})
                .to_string()
                .as_bytes(),
        ),
    )
    .unwrap();
    let dose = json!({"resourceType": "Immunization", "status": "completed",
        "vaccineCode": {"text": "x"}, "patient": {"reference": format!("Patient/{}", patient.id)},
        "occurrenceDateTime": "2021-02-28T20:30:00-05:00", "lotNumber": "LOT001"});
    block_on(records.create(ResourceType::IMMUNIZATION, dose.to_string().as_bytes())).unwrap();
    // The first rules indexed every word of a family name: put such rows back, as a store made
    // before them would hold, and say so.
    let resource = fhir_model::Resource::from_json(&patient.body).unwrap();
    let blind = records.vault.blind_index();
    let mut old = index_rows(&resource, &blind);
    let family = blind.key("Patient.name");
    old.blind.extend(
        family
            .string_terms(&Phi::new("van der Berg".to_owned()), true)
            .into_iter()
            .map(|token| BlindRow {
                param: "family",
                token,
            }),
    );
    assert!(block_on(store.replace_index(ResourceType::PATIENT, &patient.id, 1, old)).unwrap());
    block_on(store.set_index_generation(1)).unwrap();
    assert_eq!(
        search_ids(&records, ResourceType::PATIENT, &[("family", "der")]),
        std::slice::from_ref(&patient.id)
    );

    let report = block_on(records.ensure_index_current()).unwrap().unwrap();
    assert_eq!((report.from_generation, report.reindexed), (1, 2));
    assert!(search_ids(&records, ResourceType::PATIENT, &[("family", "der")]).is_empty());
    assert_eq!(
        search_ids(&records, ResourceType::PATIENT, &[("family", "van der")]),
        std::slice::from_ref(&patient.id)
    );
    assert_eq!(
        search_ids(
            &records,
            ResourceType::IMMUNIZATION,
            &[("lot-number", "lot0")]
        )
        .len(),
        1
    );
    assert_eq!(
        block_on(store.index_generation()).unwrap(),
        INDEX_GENERATION
    );
    let entries = store.audit_log().entries();
    assert!(
        entries
            .iter()
            .any(|e| e.action == audit_chain::Action::Reindex
                && e.operation.as_deref() == Some("$reindex")),
        "the reindex is on the audit log"
    );
    assert!(block_on(records.ensure_index_current()).unwrap().is_none());
}

/// `family` and `given` share `name`'s key, and `name` keeps rows only for the terms they lack:
/// a name search still finds every part (any word of it), the part parameters only their own
/// part from its start, and `:missing` sees a name held only in part rows.
#[test]
fn a_name_search_finds_every_part_though_name_rows_keep_only_what_the_parts_lack() {
    use crate::index::index_rows;
    let (records, _store) = records_with_store();
    let body = json!({"resourceType": "Patient", "name": [{"family": "van der Berg",
        "given": ["Amara", "Jo"], "prefix": ["Prof"]}]});
    let created =
        block_on(records.create(ResourceType::PATIENT, body.to_string().as_bytes())).unwrap();
    let found = |pairs: &[(&str, &str)]| {
        search_ids(&records, ResourceType::PATIENT, pairs) == std::slice::from_ref(&created.id)
    };
    for term in ["ama", "amara", "van", "van der b", "der", "berg", "pro"] {
        assert!(found(&[("name", term)]), "name={term}");
    }
    assert!(found(&[("name:exact", "Amara")]));
    assert!(found(&[("family", "van d")]));
    assert!(found(&[("given", "ama")]));
    assert!(found(&[("name:missing", "false")]));
    for (param, term) in [
        ("family", "ama"),
        ("family", "ber"),
        ("given", "van"),
        ("given", "pro"),
        ("name:missing", "true"),
    ] {
        assert!(!found(&[(param, term)]), "{param}={term}");
    }

    let resource = fhir_model::Resource::from_json(&created.body).unwrap();
    let rows = index_rows(&resource, &records.vault.blind_index()).blind;
    let of = |param: &str| -> std::collections::BTreeSet<_> {
        rows.iter()
            .filter(|r| r.param == param)
            .map(|r| r.token)
            .collect()
    };
    let (name, parts) = (of("name"), &of("family") | &of("given"));
    assert!(name.is_disjoint(&parts));
    // The words after the first ("der": 1, "berg": 2) and the prefix ("prof": exact and 2).
    assert_eq!(name.len(), 6);
}
