//! The FHIR answers that are Bundles or Parameters: `history` and `searchset` Bundles with
//! their paging links, and `$series-status` Parameters.

use fhir_model::ResourceType;
use records::StoredResource;

use crate::shaping::Shaping;

/// A `history` Bundle: each entry with its resource (none for a deletion), the request that
/// made it and the response it got.
pub(crate) fn history_bundle(
    base: &str,
    entries: &[records::HistoryEntry],
    links: Option<Vec<serde_json::Value>>,
) -> Vec<u8> {
    use serde_json::{Value, json};
    let items: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let path = format!("{}/{}", entry.resource_type, entry.id);
            let (method, url, status) = match (&entry.body, entry.version) {
                (None, _) => ("DELETE", path.clone(), "204"),
                (Some(_), 1) => ("POST", entry.resource_type.to_string(), "201"),
                (Some(_), _) => ("PUT", path.clone(), "200"),
            };
            let mut item = json!({
                "fullUrl": format!("{base}/fhir/{path}"),
                "request": {"method": method, "url": url},
                "response": {
                    "status": status,
                    "etag": format!("W/\"{}\"", entry.version),
                    "lastModified": records::instant(entry.last_updated),
                },
            });
            if let Some(body) = &entry.body {
                item["resource"] = serde_json::from_slice(body).unwrap_or(Value::Null);
            }
            item
        })
        .collect();
    let mut bundle = json!({"resourceType": "Bundle", "type": "history"});
    if let Some(links) = links {
        bundle["link"] = Value::Array(links);
    }
    if !items.is_empty() {
        bundle["entry"] = Value::Array(items);
    }
    serde_json::to_vec(&bundle).unwrap_or_default()
}

/// The series status as a FHIR Parameters resource.
pub(crate) fn series_parameters(status: &[records::series::SeriesStatus]) -> Vec<u8> {
    use serde_json::{Value, json};
    let parameters: Vec<Value> = status
        .iter()
        .map(|series| {
            let mut parts = Vec::new();
            if let Some(name) = &series.series {
                parts.push(json!({"name": "series", "valueString": name}));
            }
            for (system, code) in &series.target_diseases {
                let mut coding = json!({"code": code});
                if let Some(system) = system {
                    coding["system"] = json!(system);
                }
                parts.push(json!({"name": "targetDisease",
                    "valueCodeableConcept": {"coding": [coding]}}));
            }
            parts.push(json!({"name": "dosesGiven", "valueInteger": series.doses_given}));
            if let Some(required) = series.doses_required {
                parts.push(json!({"name": "dosesRequired", "valueInteger": required}));
            }
            parts.push(json!({"name": "complete", "valueBoolean": series.complete}));
            for date in &series.dose_dates {
                parts.push(json!({"name": "doseDate", "valueDateTime": date}));
            }
            json!({"name": "series", "part": parts})
        })
        .collect();
    let mut resource = json!({"resourceType": "Parameters"});
    if !parameters.is_empty() {
        resource["parameter"] = Value::Array(parameters);
    }
    serde_json::to_vec(&resource).unwrap_or_default()
}

/// `[base][path]?name=value&…` with URL-encoded values, or without `?` when there are none:
/// the `self` and `next` links of searchset and history Bundles.
pub(crate) fn page_url<'a>(
    base: &str,
    path: &str,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        query.append_pair(name, value);
    }
    let query = query.finish();
    if query.is_empty() {
        format!("{base}{path}")
    } else {
        format!("{base}{path}?{query}")
    }
}

pub(crate) fn version_url(base: &str, stored: &StoredResource) -> String {
    format!(
        "{base}/fhir/{}/{}/_history/{}",
        stored.resource_type, stored.id, stored.version
    )
}

/// A `searchset` Bundle. The `self` link repeats the parameters the server used; `next`
/// carries the opaque cursor of the following page.
pub(crate) fn searchset(
    base: &str,
    resource_type: ResourceType,
    params: &[(String, String)],
    page: records::SearchPage,
    shaping: &Shaping,
) -> Vec<u8> {
    use serde_json::{Value, json};
    let path = format!("/fhir/{resource_type}");
    let url_for = |extra: Option<(&str, &str)>| {
        let kept = params
            .iter()
            .filter(|(name, _)| name != "_cursor")
            .map(|(name, value)| (name.as_str(), value.as_str()));
        page_url(base, &path, kept.chain(extra))
    };
    // `self` is this very page: the cursor it was asked with, if any.
    let this_cursor = params
        .iter()
        .find(|(name, _)| name == "_cursor")
        .map(|(_, value)| ("_cursor", value.as_str()));
    let mut links = vec![json!({"relation": "self", "url": url_for(this_cursor)})];
    if let Some(cursor) = &page.next_cursor {
        links.push(json!({"relation": "next", "url": url_for(Some(("_cursor", cursor)))}));
    }
    if let Some(cursor) = &page.previous_cursor {
        links.push(json!({"relation": "previous", "url": url_for(Some(("_cursor", cursor)))}));
    }
    let entries: Vec<Value> = page
        .resources
        .iter()
        .map(|found| {
            // Stored bodies are JSON this server wrote; an unparsable one is reported as null
            // rather than breaking the page (the integrity check already passed).
            let resource: Value = serde_json::from_slice(&found.body).unwrap_or(Value::Null);
            json!({
                "fullUrl": format!("{base}/fhir/{}/{}", found.resource_type, found.id),
                "resource": shaping.resource(resource),
                "search": {"mode": "match"},
            })
        })
        .collect();
    let mut entries = entries;
    entries.extend(page.included.iter().map(|found| {
        json!({
            "fullUrl": format!("{base}/fhir/{}/{}", found.resource_type, found.id),
            "resource": shaping.resource(
                serde_json::from_slice::<Value>(&found.body).unwrap_or(Value::Null)
            ),
            "search": {"mode": "include"},
        })
    }));
    if !page.ignored.is_empty() {
        let outcome = fhir_model::OperationOutcome::single(
            fhir_model::IssueSeverity::Warning,
            fhir_model::IssueType::NotSupported,
            format!(
                "ignored under Prefer: handling=lenient (not search parameters of {resource_type}): {}",
                page.ignored.join(", ")
            ),
        );
        let outcome = fhir_model::Resource::OperationOutcome(Box::new(outcome));
        entries.push(json!({
            "resource": serde_json::from_slice::<Value>(&outcome.to_json()).unwrap_or(Value::Null),
            "search": {"mode": "outcome"},
        }));
    }
    let mut bundle = json!({"resourceType": "Bundle", "type": "searchset", "link": links});
    if let Some(total) = page.total {
        bundle["total"] = json!(total);
    }
    if !entries.is_empty() {
        bundle["entry"] = Value::Array(entries);
    }
    shaping.render(&bundle)
}
