//! Response shaping parameters every read-side interaction takes: `_format`, `_pretty`,
//! `_summary`, `_elements` (http://hl7.org/fhir/R4/http.html#parameters, search.html#summary).

use fhir_model::{IssueSeverity, IssueType, OperationOutcome};
use serde_json::{Map, Value, json};

use crate::errors::{FhirError, outcome_json};

/// What to do to each resource and to the whole answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Shaping {
    pretty: bool,
    summary: Summary,
    elements: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Summary {
    #[default]
    False,
    /// Only the elements the specification marks as summary.
    True,
    /// Only the narrative (and id, meta).
    Text,
    /// Everything but the narrative.
    Data,
    /// A search answer with only the total.
    Count,
}

const SHAPING_PARAMS: [&str; 4] = ["_format", "_pretty", "_summary", "_elements"];

fn bad(name: &str, rule: &str) -> FhirError {
    FhirError::BadRequest(outcome_json(OperationOutcome::single(
        IssueSeverity::Error,
        IssueType::Invalid,
        format!("{name} {rule}"),
    )))
}

impl Shaping {
    /// Takes the shaping parameters out of `params` (the rest are search parameters).
    pub(crate) fn take(params: &mut Vec<(String, String)>) -> Result<Self, FhirError> {
        let mut shaping = Self::default();
        for (name, value) in params.iter() {
            match name.as_str() {
                "_format" => {
                    let media = value.split(';').next().unwrap_or_default().trim();
                    if !matches!(media, "json" | "application/json" | "application/fhir+json") {
                        return Err(FhirError::NotAcceptable(outcome_json(
                            OperationOutcome::single(
                                IssueSeverity::Error,
                                IssueType::NotSupported,
                                "_format: this server answers FHIR JSON only (json, \
                                 application/fhir+json)",
                            ),
                        )));
                    }
                }
                "_pretty" => {
                    shaping.pretty = match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad("_pretty", "takes true or false")),
                    };
                }
                "_summary" => {
                    shaping.summary = match value.as_str() {
                        "false" => Summary::False,
                        "text" => Summary::Text,
                        "data" => Summary::Data,
                        "count" => Summary::Count,
                        "true" => Summary::True,
                        _ => return Err(bad("_summary", "takes true, text, data, count or false")),
                    };
                }
                "_elements" => {
                    let elements: Vec<String> = value
                        .split(',')
                        .map(|e| e.trim().to_owned())
                        .filter(|e| !e.is_empty())
                        .collect();
                    if elements.is_empty() {
                        return Err(bad("_elements", "names no elements"));
                    }
                    shaping.elements = Some(elements);
                }
                _ => {}
            }
        }
        params.retain(|(name, _)| !SHAPING_PARAMS.contains(&name.as_str()));
        Ok(shaping)
    }

    pub(crate) fn summary(&self) -> Summary {
        self.summary
    }

    /// Shapes one resource (a match or an include): the summary, then `_elements`. A resource
    /// that lost elements is tagged SUBSETTED, as FHIR requires.
    pub(crate) fn resource(&self, resource: Value) -> Value {
        let Value::Object(mut object) = resource else {
            return resource;
        };
        let before = object.len();
        // Which members of its type each summary keeps.
        let keep: Option<fn(&str, &str) -> bool> = match self.summary {
            Summary::Text => Some(fhir_model::summary::is_text_summary_member),
            Summary::True => Some(fhir_model::summary::is_summary_member),
            Summary::Data | Summary::False | Summary::Count => None,
        };
        if let Some(keep) = keep {
            let resource_type = object
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            object.retain(|key, _| keep(&resource_type, key));
        }
        if self.summary == Summary::Data {
            object.remove("text");
        }
        if let Some(elements) = &self.elements {
            object.retain(|key, _| {
                matches!(key.as_str(), "resourceType" | "id" | "meta")
                    || elements.iter().any(|e| e == key)
            });
        }
        if object.len() < before {
            tag_subsetted(&mut object);
        }
        Value::Object(object)
    }

    /// Serializes an answer, pretty if asked.
    pub(crate) fn render(&self, value: &Value) -> Vec<u8> {
        let rendered = if self.pretty {
            serde_json::to_vec_pretty(value)
        } else {
            serde_json::to_vec(value)
        };
        rendered.unwrap_or_default()
    }

    /// A stored resource body, shaped (unchanged bytes when nothing applies).
    pub(crate) fn body(&self, body: Vec<u8>) -> Vec<u8> {
        if *self == Self::default() {
            return body;
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(value) => self.render(&self.resource(value)),
            Err(_) => body,
        }
    }
}

fn tag_subsetted(object: &mut Map<String, Value>) {
    let meta = object
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        let tags = meta
            .entry("tag")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(tags) = tags {
            tags.push(json!({
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "SUBSETTED",
            }));
        }
    }
}
