//! Which members of a resource FHIR's `_summary` keeps: for `true`, the elements the
//! specification marks `isSummary`; for `text`, the mandatory top-level elements beside `id`,
//! `meta` and `text` (both tables are generated from the R4 definitions, see
//! `summary_elements.rs`).

use crate::summary_elements::{MANDATORY_ELEMENTS, SUMMARY_ELEMENTS};

type Table = [(&'static str, &'static [&'static str])];

fn lookup(table: &'static Table, resource_type: &str) -> Option<&'static [&'static str]> {
    table
        .binary_search_by(|(name, _)| (*name).cmp(resource_type))
        .ok()
        .and_then(|i| table.get(i))
        .map(|(_, elements)| *elements)
}

/// The summary elements of `resource_type` as the specification names them (choice elements as
/// `name[x]`), or `None` for a type R4 does not define.
pub fn summary_elements(resource_type: &str) -> Option<&'static [&'static str]> {
    lookup(SUMMARY_ELEMENTS, resource_type)
}

/// The mandatory top-level elements of `resource_type` (cardinality `1..`), or `None` for a type
/// R4 does not define.
pub fn mandatory_elements(resource_type: &str) -> Option<&'static [&'static str]> {
    lookup(MANDATORY_ELEMENTS, resource_type)
}

/// Whether the JSON member `key` of a `resource_type` resource belongs in its `_summary=text`
/// form: `resourceType`, `id`, `meta`, `text` and the mandatory elements. For a type R4 does not
/// define, only the first four.
pub fn is_text_summary_member(resource_type: &str, key: &str) -> bool {
    matches!(key, "resourceType" | "id" | "meta" | "text")
        || mandatory_elements(resource_type).is_some_and(|elements| names_member(elements, key))
}

/// Whether JSON member `key` is one of `elements`: `_name` (a primitive's id and extensions)
/// goes with `name`, `valueQuantity` with `value[x]`.
fn names_member(elements: &[&str], key: &str) -> bool {
    let key = key.strip_prefix('_').unwrap_or(key);
    elements
        .iter()
        .any(|element| match element.strip_suffix("[x]") {
            Some(stem) => key
                .strip_prefix(stem)
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase())),
            None => key == *element,
        })
}

/// Whether the JSON member `key` of a `resource_type` resource belongs in its summary.
/// `resourceType` always does; `_name` (a primitive's id and extensions) goes with `name`;
/// `valueQuantity` matches `value[x]`. For a type R4 does not define, every member is kept.
pub fn is_summary_member(resource_type: &str, key: &str) -> bool {
    if key == "resourceType" {
        return true;
    }
    let Some(elements) = summary_elements(resource_type) else {
        return true;
    };
    names_member(elements, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_so_lookups_find_every_type() {
        assert!(SUMMARY_ELEMENTS.windows(2).all(|w| w[0].0 < w[1].0));
        for (name, elements) in SUMMARY_ELEMENTS {
            assert_eq!(summary_elements(name), Some(*elements));
        }
        assert_eq!(SUMMARY_ELEMENTS.len(), 146, "the resource types of FHIR R4");
    }

    #[test]
    fn the_text_summary_keeps_the_mandatory_elements() {
        assert!(MANDATORY_ELEMENTS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(MANDATORY_ELEMENTS.len(), SUMMARY_ELEMENTS.len());
        for kept in [
            "resourceType",
            "id",
            "meta",
            "text",
            "status",
            "_status",
            "vaccineCode",
            "patient",
            "occurrenceDateTime",
        ] {
            assert!(is_text_summary_member("Immunization", kept), "{kept}");
        }
        for dropped in ["lotNumber", "protocolApplied", "note", "identifier"] {
            assert!(
                !is_text_summary_member("Immunization", dropped),
                "{dropped}"
            );
        }
        // Patient has no mandatory element; Bundle needs its type.
        assert!(!is_text_summary_member("Patient", "name"));
        assert!(is_text_summary_member("Bundle", "type"));
        assert!(!is_text_summary_member("NotAType", "anything"));
    }

    #[test]
    fn patient_and_immunization_summaries_follow_the_specification() {
        for kept in [
            "id",
            "meta",
            "identifier",
            "name",
            "birthDate",
            "_birthDate",
            "deceasedBoolean",
        ] {
            assert!(is_summary_member("Patient", kept), "{kept}");
        }
        for dropped in [
            "text",
            "contact",
            "photo",
            "extension",
            "communication",
            "deceased",
        ] {
            assert!(!is_summary_member("Patient", dropped), "{dropped}");
        }
        assert!(is_summary_member("Immunization", "occurrenceDateTime"));
        assert!(is_summary_member("Immunization", "vaccineCode"));
        assert!(!is_summary_member("Immunization", "lotNumber"));
        assert!(!is_summary_member("Immunization", "protocolApplied"));
        assert!(is_summary_member("NotAType", "anything"));
    }
}
