//! Search as R4 defines it, through real HTTP on both databases: dates with offsets,
//! `_lastUpdated` to the microsecond, string parameters, the prefixes and modifiers clients
//! send, `_has`, `POST _search`, `_count=0`, and conditional creates asked in the query.

use std::collections::HashSet;

use futures::StreamExt;
use serde_json::{Value, json};
use tests::{TestApp, fhir_json};

async fn create(app: &TestApp, path: &str, body: &Value) -> Value {
    let response = app.post(path, body).await;
    assert_eq!(response.status(), 201, "{}", app.backend());
    fhir_json(response).await
}

async fn patient(app: &TestApp, family: &str) -> String {
    let body = json!({"resourceType": "Patient", "name": [{"family": family, "given": ["Ann"]}]});
    create(app, "/fhir/Patient", &body).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn dose(patient: &str, when: &str) -> Value {
    json!({"resourceType": "Immunization", "status": "completed",
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "208",
            "display": "COVID-19, mRNA, LNP-S, PF, 30 mcg/0.3 mL dose"}]},
        "patient": {"reference": format!("Patient/{patient}")},
        "occurrenceDateTime": when})
}

/// The ids a search answers (every page), in order.
async fn ids(app: &TestApp, path: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut next = Some(path.to_owned());
    while let Some(path) = next.take() {
        let response = app.get(&path).await;
        assert_eq!(response.status(), 200, "{}: {path}", app.backend());
        let bundle = fhir_json(response).await;
        found.extend(entry_ids(&bundle));
        next = link(app, &bundle, "next");
    }
    found
}

fn entry_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["search"]["mode"] == "match")
                .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn link(app: &TestApp, bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"].as_array()?.iter().find_map(|l| {
        (l["relation"] == relation).then(|| {
            l["url"]
                .as_str()
                .unwrap()
                .strip_prefix(&app.base)
                .unwrap()
                .to_owned()
        })
    })
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

async fn status_and_text(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn dates_with_offsets_are_compared_and_sorted_as_instants() {
    for app in TestApp::on_every_backend().await {
        let p = patient(&app, "Offset").await;
        // name → occurrenceDateTime, and the instant in UTC.
        let doses = [
            // The evening of 28 February in New York is 1 March in UTC.
            ("west", "2021-02-28T20:30:00-05:00"), // 03-01T01:30Z
            ("east", "2021-03-01T03:30:00+05:30"), // 02-28T22:00Z
            ("evening", "2021-03-20T17:00:00-05:00"), // 03-20T22:00Z
            ("kolkata", "2021-03-21T03:00:00+05:30"), // 03-20T21:30Z
            // Either side of New York's change to summer time on 14 March 2021.
            ("est", "2021-03-14T01:30:00-05:00"), // 06:30Z
            ("edt", "2021-03-14T03:30:00-04:00"), // 07:30Z
            ("month", "2021-03"),
            ("day", "2021-03-20"),
            ("fraction", "2021-03-20T22:00:00.123Z"),
        ];
        let mut id_of = std::collections::HashMap::new();
        for (name, when) in doses {
            let id = create(&app, "/fhir/Immunization", &dose(&p, when)).await["id"]
                .as_str()
                .unwrap()
                .to_owned();
            id_of.insert(name, id);
        }
        let names = |found: Vec<String>| {
            let mut names: Vec<&str> = found
                .iter()
                .map(|id| *id_of.iter().find(|(_, v)| *v == id).unwrap().0)
                .collect();
            names.sort_unstable();
            names
        };
        let search = |query: &str| format!("/fhir/Immunization?patient={p}&{query}");
        let cases: &[(&str, &[&str])] = &[
            (
                "date=2021-03",
                &[
                    "day", "edt", "est", "evening", "fraction", "kolkata", "month", "west",
                ],
            ),
            ("date=2021-02", &["east"]),
            ("date=2021-03-01", &["west"]),
            ("date=2021-02-28", &["east"]),
            // 22:00:00Z is the evening dose written at 17:00-05:00, and the fraction.
            ("date=2021-03-20T22:00:00Z", &["evening", "fraction"]),
            ("date=2021-03-20T17:00:00-05:00", &["evening", "fraction"]),
            ("date=2021-03-20T22:00:00.123Z", &["fraction"]),
            ("date=2021-03-20T22:00Z", &["evening", "fraction"]),
            ("date=2021-03-14T07:30:00Z", &["edt"]),
            ("date=2021-03-14T06:30:00%2B00:00", &["est"]),
            // After 21:45Z on the 20th: the evening and the fraction,
            // and the day and the month, which reach past it.
            (
                "date=gt2021-03-20T21:45:00Z",
                &["day", "evening", "fraction", "month"],
            ),
            (
                "date=lt2021-03-20T21:45:00Z",
                &["day", "east", "edt", "est", "kolkata", "month", "west"],
            ),
            ("date=sa2021-03-20T21:45:00Z", &["evening", "fraction"]),
            ("date=eb2021-03-01", &["east"]),
            (
                "date=ne2021-03-20",
                &["east", "edt", "est", "month", "west"],
            ),
            (
                "date=ge2021-03-20&date=lt2021-03-21",
                &["day", "evening", "fraction", "kolkata", "month"],
            ),
            ("date=le2021-02-28T22:00:00Z", &["east"]),
            // Approximately: a tenth of the years since, at least a day, around the value.
            (
                "date=ap2021-03-14T07:00:00Z",
                &[
                    "day", "east", "edt", "est", "evening", "fraction", "kolkata", "month", "west",
                ],
            ),
        ];
        for (query, want) in cases {
            let found = names(ids(&app, &search(query)).await);
            assert_eq!(&found, want, "{}: {query}", app.backend());
        }
        // Sorted by date: by each value's start ascending (the month starts first), by its
        // end descending (the evening's second ends after the fraction's millisecond).
        let order = |found: Vec<String>| {
            found
                .iter()
                .map(|id| *id_of.iter().find(|(_, v)| *v == id).unwrap().0)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            order(ids(&app, &search("_sort=date")).await),
            [
                "east", "month", "west", "est", "edt", "day", "kolkata", "evening", "fraction"
            ],
            "{}",
            app.backend()
        );
        assert_eq!(
            order(ids(&app, &search("_sort=-date")).await),
            [
                "month", "day", "evening", "fraction", "kolkata", "edt", "est", "west", "east"
            ],
            "{}",
            app.backend()
        );
        for bad in [
            "date=2021-03-20T25:00Z",
            "date=xx2021",
            "date=2021-03-20T22:00:00%2B15:00",
        ] {
            let (status, text) = status_and_text(app.get(&search(bad)).await).await;
            assert_eq!(status, 400, "{bad}: {text}");
            assert!(
                text.contains("OperationOutcome") && text.contains("date"),
                "{text}"
            );
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn paging_by_date_through_a_thousand_mixed_offsets_repeats_and_skips_nothing() {
    let offsets = [
        "Z", "-05:00", "-04:00", "+05:30", "+14:00", "-12:00", "+01:00",
    ];
    for app in TestApp::on_every_backend().await {
        let p = patient(&app, "Pager").await;
        // A thousand doses, eleven minutes apart (with repeats), each written in one of seven
        // offsets, some with a fraction of a second.
        let bodies: Vec<Value> = (0..1000)
            .map(|n: usize| {
                let base = time::macros::datetime!(2021-01-01 0:00 UTC)
                    + time::Duration::minutes(11 * (n as i64 % 400))
                    + time::Duration::milliseconds(if n.is_multiple_of(3) { 250 } else { 0 });
                let offset = offsets[n % offsets.len()];
                let local = if offset == "Z" {
                    base
                } else {
                    let sign = if offset.starts_with('-') { -1 } else { 1 };
                    let hours: i64 = offset[1..3].parse().unwrap();
                    let minutes: i64 = offset[4..6].parse().unwrap();
                    base + time::Duration::minutes(sign * (hours * 60 + minutes))
                };
                let fraction = if n.is_multiple_of(3) { ".250" } else { "" };
                let when = format!(
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{fraction}{offset}",
                    local.year(),
                    u8::from(local.month()),
                    local.day(),
                    local.hour(),
                    local.minute(),
                    local.second()
                );
                dose(&p, &when)
            })
            .collect();
        let created: Vec<String> = futures::stream::iter(bodies)
            .map(|body| {
                let app = &app;
                async move {
                    create(app, "/fhir/Immunization", &body).await["id"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        for sort in ["date", "-date"] {
            let first = format!("/fhir/Immunization?patient={p}&_sort={sort}&_count=37");
            let forward = ids(&app, &first).await;
            let unique: HashSet<&String> = forward.iter().collect();
            assert_eq!(forward.len(), 1000, "{}: _sort={sort}", app.backend());
            assert_eq!(
                unique.len(),
                1000,
                "{}: _sort={sort} repeats",
                app.backend()
            );
            assert_eq!(
                sorted(forward.clone()),
                sorted(created.clone()),
                "{}: _sort={sort}",
                app.backend()
            );
            // The order is by instant: check it against the bodies' own dates.
            let mut previous: Option<time::OffsetDateTime> = None;
            for chunk in forward.chunks(100) {
                let query = format!("/fhir/Immunization?_id={}&_count=100", chunk.join(","));
                let bundle = fhir_json(app.get(&query).await).await;
                let when: std::collections::HashMap<String, time::OffsetDateTime> = bundle["entry"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| {
                        let text = e["resource"]["occurrenceDateTime"].as_str().unwrap();
                        let start = time::OffsetDateTime::parse(
                            text,
                            &time::format_description::well_known::Rfc3339,
                        )
                        .unwrap();
                        // Ascending sorts by a value's start, descending by its end; a value
                        // with milliseconds is a millisecond wide, one without a second.
                        let width = if text.contains('.') {
                            time::Duration::MILLISECOND
                        } else {
                            time::Duration::SECOND
                        };
                        let key = if sort == "date" { start } else { start + width };
                        (e["resource"]["id"].as_str().unwrap().to_owned(), key)
                    })
                    .collect();
                for id in chunk {
                    let at = when[id];
                    if let Some(previous) = previous {
                        if sort == "date" {
                            assert!(previous <= at, "{}: out of order", app.backend());
                        } else {
                            assert!(previous >= at, "{}: out of order", app.backend());
                        }
                    }
                    previous = Some(at);
                }
            }
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn last_updated_is_compared_to_the_microsecond() {
    for app in TestApp::on_every_backend().await {
        let mut stamped = Vec::new();
        for n in 0..30 {
            let created = create(
                &app,
                "/fhir/Patient",
                &json!({"resourceType": "Patient", "name": [{"family": format!("Stamp{n}")}]}),
            )
            .await;
            stamped.push((
                created["id"].as_str().unwrap().to_owned(),
                created["meta"]["lastUpdated"].as_str().unwrap().to_owned(),
            ));
        }
        for (n, (id, at)) in stamped.iter().enumerate() {
            let at = at.replace('+', "%2B");
            assert_eq!(
                ids(&app, &format!("/fhir/Patient?_lastUpdated={at}")).await,
                std::slice::from_ref(id),
                "{}: eq its own lastUpdated",
                app.backend()
            );
            let later = ids(
                &app,
                &format!("/fhir/Patient?_lastUpdated=gt{at}&_count=100"),
            )
            .await;
            assert_eq!(
                sorted(later),
                sorted(stamped[n + 1..].iter().map(|(id, _)| id.clone()).collect()),
                "{}: gt {n}",
                app.backend()
            );
            let earlier = ids(
                &app,
                &format!("/fhir/Patient?_lastUpdated=lt{at}&_count=100"),
            )
            .await;
            assert_eq!(earlier.len(), n, "{}: lt {n}", app.backend());
        }
        let (first, last) = (&stamped[0].1, &stamped[29].1);
        let between = ids(
            &app,
            &format!("/fhir/Patient?_lastUpdated=ge{first}&_lastUpdated=le{last}&_count=100"),
        )
        .await;
        assert_eq!(between.len(), 30, "{}", app.backend());
        let none = ids(
            &app,
            &format!("/fhir/Patient?_lastUpdated=ne{first}&_count=100"),
        )
        .await;
        assert_eq!(none.len(), 29, "{}", app.backend());
        app.stop().await;
    }
}

#[tokio::test]
async fn string_parameters_match_as_r4_says() {
    for app in TestApp::on_every_backend().await {
        let berg = patient(&app, "van der Berg").await;
        let vandam = patient(&app, "Vandam").await;
        for (query, want) in [
            ("family=van", vec![berg.clone(), vandam.clone()]),
            ("family=van%20der", vec![berg.clone()]),
            ("family=der", vec![]),
            ("family=berg", vec![]),
            ("family=VAND", vec![vandam.clone()]),
            // `name` is server-defined: Cairn matches the start of any word of any part.
            ("name=berg", vec![berg.clone()]),
            ("name=der", vec![berg.clone()]),
            ("given=ann", vec![berg.clone(), vandam.clone()]),
        ] {
            assert_eq!(
                sorted(ids(&app, &format!("/fhir/Patient?{query}")).await),
                sorted(want),
                "{}: {query}",
                app.backend()
            );
        }
        let (status, text) =
            status_and_text(app.get("/fhir/Patient?family:contains=erg").await).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("keyed hashes"), "{text}");
        // lot-number is an R4 string: case-insensitive starts-with, and :contains.
        let p = patient(&app, "Lot").await;
        let mut lots = Vec::new();
        for lot in ["LOT001", "lot002-B", "XLOT9"] {
            let mut body = dose(&p, "2021-05-01");
            body["lotNumber"] = json!(lot);
            lots.push(
                create(&app, "/fhir/Immunization", &body).await["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        for (query, want) in [
            ("lot-number=lot001", vec![0]),
            ("lot-number=LOT", vec![0, 1]),
            ("lot-number:contains=lot", vec![0, 1, 2]),
            ("lot-number:contains=2-b", vec![1]),
            ("lot-number=lot0,xlot", vec![0, 1, 2]),
        ] {
            assert_eq!(
                sorted(ids(&app, &format!("/fhir/Immunization?patient={p}&{query}")).await),
                sorted(want.iter().map(|&i| lots[i].clone()).collect()),
                "{}: {query}",
                app.backend()
            );
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn token_modifiers_reverse_chains_and_post_search() {
    for app in TestApp::on_every_backend().await {
        let vaccinated = patient(&app, "Vaccinated").await;
        let flu_only = patient(&app, "Flu").await;
        let none = patient(&app, "Nothing").await;
        let covid = create(&app, "/fhir/Immunization", &dose(&vaccinated, "2021-05-01")).await;
        let mut flu = dose(&flu_only, "2021-10-01");
        flu["vaccineCode"] = json!({"coding": [{"system": "http://hl7.org/fhir/sid/cvx",
            "code": "140"}], "text": "Influenza, seasonal, injectable"});
        let flu = create(&app, "/fhir/Immunization", &flu).await;
        let (covid, flu) = (
            covid["id"].as_str().unwrap().to_owned(),
            flu["id"].as_str().unwrap().to_owned(),
        );
        let mine = format!("patient={vaccinated},{flu_only},{none}");
        for (query, want) in [
            ("vaccine-code:not=208", vec![flu.clone()]),
            (
                "vaccine-code:not=http://hl7.org/fhir/sid/cvx|140",
                vec![covid.clone()],
            ),
            ("vaccine-code:text=mrna", vec![covid.clone()]),
            ("vaccine-code:text=SEASONAL", vec![flu.clone()]),
            ("vaccine-code:text=easonal", vec![]),
        ] {
            assert_eq!(
                ids(&app, &format!("/fhir/Immunization?{mine}&{query}")).await,
                want,
                "{}: {query}",
                app.backend()
            );
        }
        let ours = format!("_id={vaccinated},{flu_only},{none}");
        for (query, want) in [
            (
                "_has:Immunization:patient:vaccine-code=208",
                vec![vaccinated.clone()],
            ),
            (
                "_has:Immunization:patient:date=ge2021-01-01",
                vec![vaccinated.clone(), flu_only.clone()],
            ),
        ] {
            assert_eq!(
                sorted(ids(&app, &format!("/fhir/Patient?{ours}&{query}")).await),
                sorted(want),
                "{}: {query}",
                app.backend()
            );
        }
        for (query, says) in [
            (
                "_has:Immunization:vaccine-code=208",
                "_has:Type:reference-parameter:parameter",
            ),
            (
                "_has:Immunization:performer:status=completed",
                "does not refer to Patient",
            ),
            (
                "_has:Nothing:patient:status=completed",
                "unknown resource type",
            ),
            ("identifier:text=mrn", "not supported"),
        ] {
            let (status, text) =
                status_and_text(app.get(&format!("/fhir/Patient?{query}")).await).await;
            assert_eq!(status, 400, "{query}: {text}");
            assert!(text.contains(says), "{query}: {text}");
        }
        // The same search as a form body, with a parameter in the URL too.
        let response = app
            .client
            .post(app.url(&format!("/fhir/Immunization/_search?{mine}")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("vaccine-code=http%3A%2F%2Fhl7.org%2Ffhir%2Fsid%2Fcvx%7C208&_count=5")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", app.backend());
        assert_eq!(
            entry_ids(&fhir_json(response).await),
            std::slice::from_ref(&covid)
        );
        // `_count=0`: the number of matches only.
        let counted = fhir_json(
            app.get(&format!("/fhir/Immunization?{mine}&_count=0"))
                .await,
        )
        .await;
        assert_eq!(counted["total"], 2, "{}", app.backend());
        assert!(counted["entry"].is_null(), "{counted}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_create_with_search_parameters_in_the_query_is_conditional() {
    for app in TestApp::on_every_backend().await {
        let body = json!({"resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.3", "value": "MRN-77"}]});
        let path = "/fhir/Patient?identifier=urn:oid:1.2.3%7CMRN-77";
        let first = app.post(path, &body).await;
        assert_eq!(first.status(), 201, "{}", app.backend());
        let first = fhir_json(first).await;
        let again = app.post(path, &body).await;
        assert_eq!(again.status(), 200, "{}", app.backend());
        assert_eq!(fhir_json(again).await["id"], first["id"]);
        assert_eq!(
            ids(&app, "/fhir/Patient?identifier=urn:oid:1.2.3%7CMRN-77")
                .await
                .len(),
            1
        );
        // Both the header and the query: refused, nothing created.
        let both = app
            .client
            .post(app.url("/fhir/Patient?identifier=urn:oid:1.2.3%7CMRN-78"))
            .header("content-type", "application/fhir+json")
            .header("if-none-exist", "identifier=urn:oid:1.2.3|MRN-78")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let (status, text) = status_and_text(both).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("If-None-Exist"), "{text}");
        // A query that is not a search of the type: refused, nothing created.
        let (status, text) =
            status_and_text(app.post("/fhir/Patient?shoe-size=42", &body).await).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("shoe-size"), "{text}");
        // Shaping parameters alone leave it a plain create.
        assert_eq!(
            app.post("/fhir/Patient?_pretty=true", &body).await.status(),
            201
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn clients_can_discover_what_search_and_security_support() {
    let db = store_sql::testing::TestDatabase::sqlite();
    let app = TestApp::start(db).await;
    let statement = fhir_json(app.get("/fhir/metadata").await).await;
    let rest = &statement["rest"][0];
    assert!(
        rest["security"]["description"]
            .as_str()
            .unwrap()
            .contains("Bearer"),
        "{rest}"
    );
    let immunization = rest["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Immunization")
        .unwrap();
    let codes: Vec<&str> = immunization["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"history-type"), "{codes:?}");
    assert_eq!(
        codes.iter().filter(|c| **c == "search-type").count(),
        1,
        "{codes:?}"
    );
    let lot = immunization["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "lot-number")
        .unwrap();
    assert_eq!(lot["type"], "string");
    assert_eq!(
        lot["definition"],
        "http://hl7.org/fhir/SearchParameter/Immunization-lot-number"
    );
    // SMART discovery needs no token and claims no OAuth endpoint Cairn does not have.
    let smart: Value = app
        .anonymous
        .get(app.url("/fhir/.well-known/smart-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        smart["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("permission-v2"))
    );
    assert!(smart["token_endpoint"].is_null());
    assert_eq!(smart["grant_types_supported"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn a_server_makes_an_index_of_older_rules_anew_before_it_answers() {
    for app in TestApp::on_every_backend().await {
        let berg = patient(&app, "van der Berg").await;
        assert!(
            ids(&app, "/fhir/Patient?family=van%20d")
                .await
                .contains(&berg)
        );
        // The store says its rows were made by the first rules: a new instance on it makes
        // them anew (and says the index is current) before it listens.
        assert_eq!(
            app.db
                .execute("UPDATE index_state SET generation = 1", vec![])
                .await,
            1
        );
        let mut config = app.config.clone();
        config.listen = "127.0.0.1:0".into();
        let other = cairn::start(&config).await.unwrap();
        assert_eq!(
            app.db
                .execute(
                    "UPDATE index_state SET generation = generation WHERE generation > 1",
                    vec![]
                )
                .await,
            1,
            "{}: the index is current again",
            app.backend()
        );
        let client = tests::client_with(&app.token);
        let bundle: Value = client
            .get(format!(
                "http://{}/fhir/Patient?family=van%20der%20b",
                other.local_addr
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            entry_ids(&bundle),
            std::slice::from_ref(&berg),
            "{}",
            app.backend()
        );
        other.stop().await.unwrap();
        app.stop().await;
    }
}
