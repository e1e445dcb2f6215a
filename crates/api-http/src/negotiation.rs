//! Content negotiation for the FHIR endpoints: this server answers FHIR JSON only, so a request
//! whose `Accept` header admits no JSON gets 406 (FHIR R4 http.html §3.1.0.1.7), just as
//! `_format=xml` does. `_format` in the query overrides `Accept`, as FHIR says, and is checked
//! with the other shaping parameters.

use poem::Request;
use poem::http::header;

/// The media types an answer of this server is: FHIR JSON, plain JSON, and the DSTU2 name
/// `application/json+fhir` that older clients (HAPI's among them) still send.
const ANSWERS: [&str; 3] = [
    "application/fhir+json",
    "application/json",
    "application/json+fhir",
];

/// Whether `request` (to a FHIR endpoint) admits a JSON answer. No `Accept` admits anything.
pub(crate) fn accepts_json(request: &Request) -> bool {
    if request
        .uri()
        .query()
        .is_some_and(|query| form_urlencoded::parse(query.as_bytes()).any(|(n, _)| n == "_format"))
    {
        return true;
    }
    let mut fields = request.headers().get_all(header::ACCEPT).iter().peekable();
    if fields.peek().is_none() {
        return true;
    }
    fields.any(|field| field.to_str().map_or(true, admits_json))
}

/// Whether one `Accept` field value has a media range with q > 0 that covers JSON.
fn admits_json(field: &str) -> bool {
    field.split(',').any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let quality = parts
            .filter_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .or_else(|| p.trim().strip_prefix("Q="))
            })
            .next()
            .map_or(1.0, |q| q.trim().parse::<f32>().unwrap_or(1.0));
        quality > 0.0
            && (media.is_empty()
                || media == "*/*"
                || media == "application/*"
                || ANSWERS.contains(&media.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_wildcards_and_the_old_fhir_name_are_admitted() {
        for field in [
            "application/fhir+json",
            "application/json",
            "application/fhir+json;q=1.0, application/json+fhir;q=0.9",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "application/*",
            "APPLICATION/FHIR+JSON; charset=utf-8",
        ] {
            assert!(admits_json(field), "{field}");
        }
    }

    #[test]
    fn xml_turtle_text_and_refused_json_are_not() {
        for field in [
            "application/fhir+xml",
            "application/xml, text/xml",
            "text/turtle",
            "text/plain",
            "application/json;q=0",
            "application/fhir+json;q=0, application/fhir+xml",
        ] {
            assert!(!admits_json(field), "{field}");
        }
    }

    #[test]
    fn format_in_the_query_overrides_accept() {
        let request = Request::builder()
            .uri_str("/fhir/Patient?_format=json")
            .header(header::ACCEPT, "application/fhir+xml")
            .finish();
        assert!(accepts_json(&request));
        let request = Request::builder()
            .uri_str("/fhir/Patient")
            .header(header::ACCEPT, "application/fhir+xml")
            .finish();
        assert!(!accepts_json(&request));
        assert!(accepts_json(
            &Request::builder().uri_str("/fhir/Patient").finish()
        ));
    }
}
