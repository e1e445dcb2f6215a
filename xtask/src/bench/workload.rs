//! What the bench asks of the server: the patients it creates, and the requests of each
//! measured phase.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};

use super::Options;
use super::clients::{Phase, run_clients};

pub(super) const IDENTIFIER_SYSTEM: &str = "urn:oid:2.16.840.1.113883.3.72.5.9.1";

/// A client that sends the bench's bearer token.
pub(super) fn http_client(token: &str, clients: u64) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut bearer = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))?;
    bearer.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, bearer);
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(usize::try_from(clients)?)
        .default_headers(headers)
        .build()?)
}

/// What one request of a phase asks: a GET of a URL made from the request's pseudo-random seed,
/// answered 200, with a check of the answer.
#[derive(Clone, Copy)]
pub(super) enum Ask {
    /// A random loaded patient by id.
    Read,
    /// A random loaded patient by its MRN; the bundle must hold that patient.
    Identifier,
    /// `family=<4-letter prefix>&birthdate=<year>`: about 1/1,600 of the patients.
    FamilyAndBirthYear,
    /// `name=<4-letter prefix>`: the patients with that family name, 1/16.
    NamePrefix,
    /// `given=<name>&family=<name>`: 1/192 of the patients.
    GivenAndFamily,
    /// `given=<name>&_total=accurate&_count=10`: 1/12 of the patients counted; the total must
    /// be in the answer.
    GivenTotal,
}

impl Ask {
    async fn once(
        self,
        client: reqwest::Client,
        base: &str,
        ids: &[(u64, String)],
        seed: u64,
    ) -> anyhow::Result<()> {
        let family = FAMILIES[pick(seed, FAMILIES.len())];
        let given = GIVEN[pick(seed >> 4, GIVEN.len())];
        let (n, id) = &ids[pick(seed, ids.len())];
        let url = match self {
            Self::Read => format!("{base}/fhir/Patient/{id}"),
            Self::Identifier => {
                format!("{base}/fhir/Patient?identifier={IDENTIFIER_SYSTEM}|MRN-{n}")
            }
            Self::FamilyAndBirthYear => format!(
                "{base}/fhir/Patient?family={}&birthdate=19{:02}&_count=20",
                &family[..4],
                (seed >> 8) % 100
            ),
            Self::NamePrefix => format!("{base}/fhir/Patient?name={}&_count=20", &family[..4]),
            Self::GivenAndFamily => {
                format!("{base}/fhir/Patient?given={given}&family={family}&_count=20")
            }
            Self::GivenTotal => {
                format!("{base}/fhir/Patient?given={given}&_total=accurate&_count=10")
            }
        };
        let response = client.get(url).send().await?;
        if response.status() != 200 {
            bail!("the server answered {}", response.status());
        }
        match self {
            Self::Identifier => {
                let bundle: serde_json::Value = response.json().await?;
                if bundle["entry"][0]["resource"]["id"].as_str() != Some(id) {
                    bail!("the identifier search did not find patient {n}");
                }
            }
            Self::GivenTotal => {
                let bundle: serde_json::Value = response.json().await?;
                if bundle["total"].as_u64().is_none() {
                    bail!("_total=accurate answered without a total");
                }
            }
            _ => {
                response.bytes().await?;
            }
        }
        Ok(())
    }

    /// The step `timed` and `paced` run.
    pub(super) fn step(
        self,
        base: &Arc<String>,
        ids: &Arc<Vec<(u64, String)>>,
    ) -> impl Fn(
        reqwest::Client,
        u64,
    ) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>
    + Clone
    + Send
    + 'static {
        let (base, ids) = (base.clone(), ids.clone());
        move |client, seed| {
            let (base, ids) = (base.clone(), ids.clone());
            Box::pin(async move { self.once(client, &base, &ids, seed).await })
        }
    }
}

/// How a phase offers its load.
#[derive(Clone, Copy)]
pub(super) enum Load {
    /// This many clients (0: the bench's `--clients`), each sending its next request when the
    /// last is answered.
    Closed(u64),
    /// This many requests a second, on a fixed schedule, over the bench's clients.
    Paced(u64),
}

/// Creates the patients through the API; returns the phase and each patient's (n, id).
pub(super) async fn load(
    options: &Options,
    client: &reqwest::Client,
    base: &Arc<String>,
) -> anyhow::Result<(Phase, Vec<(u64, String)>)> {
    eprintln!("bench: creating {} patients", options.patients);
    let next = Arc::new(AtomicU64::new(0));
    let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
    let create = {
        let (base, next, ids) = (base.clone(), next.clone(), ids.clone());
        let total = options.patients;
        run_clients(options.clients, client, move |client| {
            let (base, next, ids) = (base.clone(), next.clone(), ids.clone());
            async move {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return Ok(false);
                }
                let response = client
                    .post(format!("{base}/fhir/Patient"))
                    .header("content-type", "application/fhir+json")
                    .header("prefer", "return=minimal")
                    .body(patient(n).to_string())
                    .send()
                    .await?;
                if response.status() != 201 {
                    bail!("create answered {}", response.status());
                }
                let location = response.headers()["location"].to_str()?.to_owned();
                let id = location
                    .split("/Patient/")
                    .nth(1)
                    .and_then(|rest| rest.split('/').next())
                    .context("a Location naming the patient")?
                    .to_owned();
                ids.lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .push((n, id));
                Ok(true)
            }
        })
        .await?
    };
    let ids = ids.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    Ok((create, ids))
}

pub(super) fn write_ids(path: &Path, ids: &[(u64, String)]) -> anyhow::Result<()> {
    let text: String = ids.iter().map(|(n, id)| format!("{n}\t{id}\n")).collect();
    Ok(std::fs::write(path, text)?)
}

pub(super) fn read_ids(path: &Path) -> anyhow::Result<Vec<(u64, String)>> {
    std::fs::read_to_string(path)?
        .lines()
        .map(|line| {
            let (n, id) = line.split_once('\t').context("n<TAB>id")?;
            Ok((n.parse()?, id.to_owned()))
        })
        .collect()
}

fn pick(seed: u64, len: usize) -> usize {
    usize::try_from(seed % u64::try_from(len).unwrap_or(1)).unwrap_or(0)
}

const FAMILIES: [&str; 16] = [
    "Johnson",
    "Williams",
    "Garcia",
    "Martinez",
    "Anderson",
    "Thompson",
    "Robinson",
    "Rodriguez",
    "Hernandez",
    "Nakamura",
    "Okafor",
    "Kowalski",
    "Lindqvist",
    "Fitzgerald",
    "Castellano",
    "Abernathy",
];
const GIVEN: [&str; 12] = [
    "Olivia", "Liam", "Amara", "Noah", "Sofia", "Mateo", "Aisha", "Lucas", "Yuki", "Elena",
    "Kwame", "Ingrid",
];

/// A realistic registry Patient, different for each `n`.
fn patient(n: u64) -> serde_json::Value {
    let mix = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
    // Each attribute from its own bits of `mix`, so that they vary independently.
    let family = FAMILIES[pick(mix, FAMILIES.len())];
    let given = GIVEN[pick(mix >> 4, GIVEN.len())];
    let gender = ["female", "male", "other", "unknown"][pick(mix >> 8, 4)];
    let (year, month, day) = (
        (mix >> 10) % 100,
        1 + (mix >> 17) % 12,
        1 + (mix >> 21) % 28,
    );
    serde_json::json!({
        "resourceType": "Patient",
        "identifier": [
            {"use": "usual", "system": IDENTIFIER_SYSTEM, "value": format!("MRN-{n}")},
            {"system": "http://hl7.org/fhir/sid/us-ssn", "value": format!("{:09}", (mix >> 26) % 1_000_000_000)}
        ],
        "active": true,
        "name": [{"use": "official", "family": family, "given": [given, "Marie"]}],
        "telecom": [{"system": "phone", "value": format!("+1 555 {:04}", n % 10_000), "use": "home"}],
        "gender": gender,
        "birthDate": format!("19{year:02}-{month:02}-{day:02}"),
        "address": [{"line": [format!("{} Main Street", n % 997)], "city": "Springfield",
                     "state": "IL", "postalCode": format!("62{:03}", n % 1000), "country": "US"}],
        "managingOrganization": {"reference": "Organization/registry"}
    })
}
