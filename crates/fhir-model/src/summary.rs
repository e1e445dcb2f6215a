//! Which members of a resource FHIR's `_summary=true` keeps: the elements the specification
//! marks `isSummary` (the table is generated from the R4 definitions, see
//! `summary_elements.rs`).

use crate::summary_elements::SUMMARY_ELEMENTS;

/// The summary elements of `resource_type` as the specification names them (choice elements as
/// `name[x]`), or `None` for a type R4 does not define.
pub fn summary_elements(resource_type: &str) -> Option<&'static [&'static str]> {
    SUMMARY_ELEMENTS
        .binary_search_by(|(name, _)| (*name).cmp(resource_type))
        .ok()
        .and_then(|i| SUMMARY_ELEMENTS.get(i))
        .map(|(_, elements)| *elements)
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
