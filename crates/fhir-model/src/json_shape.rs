//! Rules of FHIR's JSON form that hold for every element of every resource, typed or not:
//! no `null` outside arrays, no empty objects, arrays or strings, and no whitespace-only strings
//! (FHIR R4 §2.6.2 "JSON Representation of Resources").

use serde_json::Value;

use crate::outcome::IssueType;
use crate::validation::{Issues, Location};

/// Walks `value` (the members of an object found at `at`) and records every shape problem.
pub(crate) fn check_object(
    object: &serde_json::Map<String, Value>,
    at: &Location,
    issues: &mut Issues,
) {
    if object.is_empty() {
        issues.push(
            IssueType::Structure,
            at,
            "an object must have at least one member",
        );
    }
    for (name, value) in object {
        match value {
            Value::Null => issues.push(
                IssueType::Structure,
                &at.child(name),
                "null is not allowed here (leave the element out instead)",
            ),
            Value::Array(items) => {
                // `_given: [null, {...}]` pairs with `given`: nulls are allowed inside arrays.
                if items.is_empty() {
                    issues.push(
                        IssueType::Structure,
                        &at.child(name),
                        "an array must not be empty",
                    );
                }
                if !items.is_empty() && items.iter().all(Value::is_null) {
                    issues.push(
                        IssueType::Structure,
                        &at.child(name),
                        "an array must not hold only nulls",
                    );
                }
                for (index, item) in items.iter().enumerate() {
                    check_value(item, &at.item(name, index), issues);
                }
            }
            other => check_value(other, &at.child(name), issues),
        }
    }
}

fn check_value(value: &Value, at: &Location, issues: &mut Issues) {
    match value {
        Value::Object(object) => check_object(object, at, issues),
        Value::String(s) if s.trim().is_empty() => issues.push(
            IssueType::Value,
            at,
            "a string must contain at least one non-whitespace character",
        ),
        Value::Array(_) => issues.push(IssueType::Structure, at, "arrays cannot be nested"),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(value: Value, expected: &[&str]) {
        let mut issues = Issues::default();
        let Value::Object(object) = value else {
            unreachable!("test input is an object")
        };
        check_object(&object, &Location::root("Patient"), &mut issues);
        let found: Vec<String> = issues
            .0
            .iter()
            .map(|i| {
                format!(
                    "{} {}",
                    i.location.clone().unwrap_or_default(),
                    i.code.code()
                )
            })
            .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn shapes() {
        check(json!({"resourceType": "Patient", "active": true}), &[]);
        check(
            json!({"resourceType": "Patient", "gender": null, "name": [], "text": {}, "id": " "}),
            &[
                "Patient.gender structure",
                "Patient.name structure",
                "Patient.text structure",
                "Patient.id value",
            ],
        );
        check(
            json!({"resourceType": "Patient", "name": [{"given": ["a", null], "_given": [null, {"id": "x"}]}]}),
            &[],
        );
        check(
            json!({"resourceType": "Patient", "name": [{"given": [[]]}]}),
            &["Patient.name[0].given[0] structure"],
        );
    }
}
