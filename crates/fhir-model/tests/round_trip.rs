//! Every example parses, validates clean, and serializes back to the same JSON: unknown
//! elements, primitive extensions and decimal precision included.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fhir_model::Resource;
use serde_json::Value;

fn examples() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/examples");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "examples are missing");
    files
        .into_iter()
        .map(|path| (path.display().to_string(), std::fs::read(&path).unwrap()))
        .collect()
}

#[test]
fn examples_round_trip_losslessly_and_validate() {
    for (name, bytes) in examples() {
        let resource = Resource::from_json(&bytes).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(resource.validate(), vec![], "{name}");
        let out = resource.to_json();
        let before: Value = serde_json::from_slice(&bytes).unwrap();
        let after: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(before, after, "{name} changed in the round trip");
        // And once more: serializing is stable.
        assert_eq!(Resource::from_json(&out).unwrap().to_json(), out, "{name}");
    }
}

#[test]
fn unknown_elements_extensions_and_decimals_survive() {
    let input = br#"{"resourceType":"Immunization","status":"completed",
        "vaccineCode":{"text":"x","futureElement":{"a":[1,2]}},
        "patient":{"reference":"Patient/1"},"occurrenceDateTime":"2021",
        "_status":{"extension":[{"url":"http://e.org/x","valueDecimal":1.50}]},
        "doseQuantity":{"value":0.50},
        "extension":[{"url":"http://e.org/y","valueQuantity":{"value":1e3}}],
        "someR5Element":true}"#;
    let resource = Resource::from_json(input).unwrap();
    let Resource::Immunization(imm) = &resource else {
        panic!("typed")
    };
    assert_eq!(imm.vaccine_code.as_ref().unwrap().extra.len(), 1);
    assert!(imm.extra.contains_key("someR5Element"));
    let text = String::from_utf8(resource.to_json()).unwrap();
    for kept in [
        "\"futureElement\":{\"a\":[1,2]}",
        "\"valueDecimal\":1.50",
        "\"value\":0.50",
        "1e+3",
        "\"someR5Element\":true",
    ] {
        assert!(text.contains(kept), "{kept} lost in {text}");
    }
}

#[test]
fn every_r4_type_is_accepted_generically() {
    for resource_type in fhir_model::ResourceType::all() {
        let body = format!(r#"{{"resourceType":"{resource_type}","id":"a1","custom":{{"x":1}}}}"#);
        let resource = Resource::from_json(body.as_bytes()).unwrap();
        assert_eq!(resource.resource_type(), resource_type);
        assert_eq!(resource.id().map(|i| i.as_str()), Some("a1"));
    }
}
