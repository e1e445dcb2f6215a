//! What `cairn import` reads: NDJSON files (`.ndjson`, `.ndjson.gz`: one resource per line,
//! the Bulk Data format) and Bundle files (`.json`: a transaction, as Synthea writes one per
//! patient, or a collection), found in the paths given (directories walked, in name order).
//!
//! Every resource becomes an entry of a transaction chunk that stores it under a stable id, so
//! that importing the same files again finds each resource in place: an NDJSON line's own id
//! (or, without one, an id derived from its content); a Bundle entry's `urn:uuid:` fullUrl (or
//! its `PUT` url, or its resource's id). Entries keep where they came from (`file:line`,
//! `file#entry[n]`) for error reports.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{Value, json};

/// One entry of a transaction chunk, and where it came from.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub source: String,
    /// A Bundle entry (`fullUrl`, `resource`, `request`) as JSON text: a chunk is these
    /// texts joined, read once by the transaction use case (an NDJSON line is not parsed into a
    /// tree and written out again on its way there).
    pub entry: String,
}

/// What an NDJSON line must name for its entry's request; the rest of the line is skipped
/// here and read by the transaction use case.
#[derive(serde::Deserialize)]
struct Named<'a> {
    #[serde(rename = "resourceType", borrow)]
    resource_type: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
}

/// The files to import under `paths`, in the order given, directories walked in name order.
pub(crate) fn files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for path in paths {
        collect(path, &mut found)?;
    }
    Ok(found)
}

fn collect(path: &Path, found: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let metadata =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if metadata.is_dir() {
        let mut children: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        children.sort();
        for child in children {
            if child.is_dir() || kind(&child).is_some() {
                collect(&child, found)?;
            }
        }
    } else if kind(path).is_some() {
        found.push(path.to_owned());
    } else {
        anyhow::bail!(
            "{}: not a file cairn import reads (.ndjson, .ndjson.gz or a Bundle .json)",
            path.display()
        );
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ndjson,
    NdjsonGz,
    Bundle,
}

fn kind(path: &Path) -> Option<Kind> {
    let name = path.file_name()?.to_str()?;
    if name.ends_with(".ndjson") {
        Some(Kind::Ndjson)
    } else if name.ends_with(".ndjson.gz") {
        Some(Kind::NdjsonGz)
    } else if name.ends_with(".json") {
        Some(Kind::Bundle)
    } else {
        None
    }
}

/// How many resources a file holds (for progress): lines of NDJSON, entries of a Bundle.
pub(crate) fn count(path: &Path) -> anyhow::Result<u64> {
    Ok(match kind(path) {
        Some(Kind::Bundle) => {
            let bundle: Value = serde_json::from_slice(&std::fs::read(path)?).unwrap_or_default();
            bundle["entry"].as_array().map_or(0, |e| e.len() as u64)
        }
        _ => lines(path)?
            .filter(|line| line.as_ref().is_ok_and(|l| !l.trim().is_empty()))
            .count() as u64,
    })
}

fn lines(path: &Path) -> anyhow::Result<Box<dyn Iterator<Item = std::io::Result<String>>>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader: Box<dyn Read> = match kind(path) {
        Some(Kind::NdjsonGz) => Box::new(flate2::read::MultiGzDecoder::new(file)),
        _ => Box::new(file),
    };
    Ok(Box::new(BufReader::with_capacity(1 << 20, reader).lines()))
}

/// A problem with one resource, before any database work: `source` and what is wrong (never a
/// value from the resource).
#[derive(Debug, Clone)]
pub(crate) struct Unreadable {
    pub source: String,
    pub why: String,
}

/// A file's entries: each one read, or unreadable; an error if the file itself fails.
pub(crate) type Entries = Box<dyn Iterator<Item = anyhow::Result<Result<Entry, Unreadable>>>>;

/// `path`'s entries, in order. A line or entry that cannot be read is an `Err` item of its
/// own; a file that cannot be read stops the iteration with an error.
pub(crate) fn read(path: &Path) -> anyhow::Result<Entries> {
    let name = path.display().to_string();
    Ok(match kind(path) {
        Some(Kind::Bundle) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            Box::new(bundle_entries(&name, &bytes).into_iter().map(Ok))
        }
        _ => Box::new(
            lines(path)?
                .enumerate()
                .filter(|(_, line)| line.as_ref().map_or(true, |l| !l.trim().is_empty()))
                .map(move |(number, line)| {
                    let source = format!("{name}:{}", number + 1);
                    let line = line.with_context(|| format!("cannot read {source}"))?;
                    Ok(ndjson_entry(source, &line))
                }),
        ),
    })
}

/// Whether `path` is a Bundle file, whose entries go into one chunk together (their
/// `urn:uuid:` references resolve within the transaction).
pub(crate) fn is_bundle(path: &Path) -> bool {
    kind(path) == Some(Kind::Bundle)
}

fn ndjson_entry(source: String, line: &str) -> Result<Entry, Unreadable> {
    let unreadable = |why: &str| Unreadable {
        source: source.clone(),
        why: why.to_owned(),
    };
    let not_json = || unreadable("not JSON: each line must be one resource");
    let line = line.trim();
    if !line.starts_with('{') {
        return Err(not_json());
    }
    let named: Named = serde_json::from_str(line).map_err(|_| not_json())?;
    let resource_type = named
        .resource_type
        .ok_or_else(|| unreadable("resourceType is required"))?;
    let request = |id: &str| json!({"method": "PUT", "url": format!("{resource_type}/{id}")});
    let entry = match named.id {
        Some(id) => format!(r#"{{"resource":{line},"request":{}}}"#, request(&id)),
        None => {
            // Rare: the line is given the id derived from it, so it is rewritten.
            let id = derived_id(line.as_bytes());
            let mut resource: Value = serde_json::from_str(line).map_err(|_| not_json())?;
            resource["id"] = json!(id);
            json!({"resource": resource, "request": request(&id)}).to_string()
        }
    };
    Ok(Entry { source, entry })
}

/// A Bundle file's entries, each made a PUT under a stable id (see the module's comment);
/// entries that are already conditional or not creates keep their request.
fn bundle_entries(name: &str, bytes: &[u8]) -> Vec<Result<Entry, Unreadable>> {
    let Ok(bundle) = serde_json::from_slice::<Value>(bytes) else {
        return vec![Err(Unreadable {
            source: name.to_owned(),
            why: "not JSON".to_owned(),
        })];
    };
    let kind = bundle
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle")
        || !matches!(kind, "transaction" | "collection" | "batch")
    {
        return vec![Err(Unreadable {
            source: name.to_owned(),
            why: "a .json file must be a Bundle of type transaction, batch or collection"
                .to_owned(),
        })];
    }
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    entries
        .into_iter()
        .enumerate()
        .map(|(index, mut entry)| {
            let source = format!("{name}#entry[{index}]");
            let resource = entry.get("resource").cloned().unwrap_or(Value::Null);
            let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) else {
                return Err(Unreadable {
                    source,
                    why: "the entry has no resource with a resourceType".to_owned(),
                });
            };
            let method = entry["request"]["method"].as_str().unwrap_or("POST");
            let conditional = entry["request"].get("ifNoneExist").is_some()
                || entry["request"]["url"]
                    .as_str()
                    .is_some_and(|u| u.contains('?'));
            if method == "POST" && !conditional || kind == "collection" {
                let full_url = entry.get("fullUrl").and_then(Value::as_str);
                let id = full_url
                    .and_then(|u| u.strip_prefix("urn:uuid:"))
                    .filter(|id| fhir_model::is_valid_id(id))
                    .map(str::to_owned)
                    .or_else(|| {
                        resource
                            .get("id")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .unwrap_or_else(|| derived_id(resource.to_string().as_bytes()));
                entry["resource"]["id"] = json!(id);
                entry["request"] = json!({"method": "PUT", "url": format!("{resource_type}/{id}")});
            }
            Ok(Entry {
                source,
                entry: entry.to_string(),
            })
        })
        .collect()
}

/// An id from a resource's bytes: the same content always gets the same id, so a resource
/// without one is found again by the next import of the same file.
fn derived_id(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
