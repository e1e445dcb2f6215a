//! `cargo xtask gen-data --patients N [--seed S] [--out DIR]`: deterministic Synthea-shaped
//! data (see the `testdata` crate), written as Synthea does — one transaction Bundle per
//! patient under `DIR/bundles/` — and as a Bulk Data export — one NDJSON file per resource type
//! under `DIR/ndjson/`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

pub fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let mut patients: u64 = 100;
    let mut seed: u64 = 1;
    let mut out = root.join("target").join("gen-data");
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--patients" => patients = value()?.parse().context("--patients")?,
            "--seed" => seed = value()?.parse().context("--seed")?,
            "--out" => out = PathBuf::from(value()?),
            other => bail!("gen-data: unknown option {other}"),
        }
    }
    let written = write(&out, seed, patients)?;
    eprintln!(
        "gen-data: {patients} patients, {written} resources (seed {seed}) in {}",
        out.display()
    );
    Ok(())
}

/// Writes `patients` records of `seed` under `out`; returns how many resources.
pub fn write(out: &Path, seed: u64, patients: u64) -> anyhow::Result<usize> {
    let bundles = out.join("bundles");
    let ndjson = out.join("ndjson");
    for dir in [&bundles, &ndjson] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut files: BTreeMap<String, std::io::BufWriter<std::fs::File>> = BTreeMap::new();
    let mut written = 0;
    for number in 0..patients {
        let record = testdata::patient_record(seed, number);
        written += record.len();
        let path = bundles.join(format!("patient-{number:07}.json"));
        std::fs::write(&path, serde_json::to_vec(&record.transaction())?)
            .with_context(|| format!("writing {}", path.display()))?;
        for resource in record.resources() {
            let resource_type = resource["resourceType"]
                .as_str()
                .unwrap_or("Unknown")
                .to_owned();
            let file = match files.entry(resource_type) {
                std::collections::btree_map::Entry::Occupied(file) => file.into_mut(),
                std::collections::btree_map::Entry::Vacant(slot) => {
                    let path = ndjson.join(format!("{}.ndjson", slot.key()));
                    let file = std::fs::File::create(&path)
                        .with_context(|| format!("writing {}", path.display()))?;
                    slot.insert(std::io::BufWriter::new(file))
                }
            };
            serde_json::to_writer(&mut *file, &resource)?;
            file.write_all(b"\n")?;
        }
    }
    for (_, mut file) in files {
        file.flush()?;
    }
    Ok(written)
}
