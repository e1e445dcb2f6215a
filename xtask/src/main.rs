//! Cairn's automation, in Rust: `cargo xtask <command>`.
//!
//! - `ci`: everything CI checks — formatting, clippy with warnings denied, the dependency rule,
//!   OpenAPI drift, and the whole test suite.
//! - `openapi [--check]`: writes `docs/api/openapi.json` from the code; `--check` fails on drift.
//! - `deps-check`: fails when a domain crate reaches an IO framework (see `deps.rs`).
//! - `conformance-tools`: makes the independent FHIR validators and client the end-to-end suite
//!   uses (see `conformance.rs`) and prints the variables that point the tests at them.
//! - `bench [--patients N] [--clients N] [--seconds N] [--sqlite]`: HTTP throughput and
//!   latency over a loaded database (see `bench.rs`).
//! - `gen-data --patients N [--seed S] [--out DIR]`: deterministic Synthea-shaped test data, as
//!   transaction Bundles and as NDJSON (see `gen_data.rs`).
//! - `fhir-summary [--check]`: regenerates the `_summary=true` element table of `fhir-model`
//!   from the official definitions; `--check` fails on drift.

mod bench;
mod conformance;
mod deps;
mod gen_data;
mod summary;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

const OPENAPI_PATH: &str = "docs/api/openapi.json";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["ci"] => ci(&root),
        ["openapi"] => openapi(&root, false),
        ["openapi", "--check"] => openapi(&root, true),
        ["deps-check"] => deps_check(&root),
        ["bench", rest @ ..] => bench::run(
            &root,
            &rest.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        ),
        ["gen-data", rest @ ..] => gen_data::run(
            &root,
            &rest.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        ),
        ["fhir-summary"] => summary::generate(&root, false),
        ["fhir-summary", "--check"] => summary::generate(&root, true),
        ["conformance-tools"] => {
            // Printed for `eval "$(cargo xtask conformance-tools)"`.
            let mut out = std::io::stdout().lock();
            for (name, value) in conformance::prepare(&root)?.env() {
                writeln!(out, "export {name}={}", value.display())?;
            }
            Ok(())
        }
        _ => bail!(
            "usage: cargo xtask <ci | openapi [--check] | deps-check | conformance-tools | \
             fhir-summary [--check] | bench [options] | gen-data [options]>"
        ),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn openapi(root: &Path, check: bool) -> anyhow::Result<()> {
    let spec: serde_json::Value =
        serde_json::from_str(&api_http::openapi_json().map_err(|err| anyhow::anyhow!(err))?)
            .context("the generated spec is JSON")?;
    let text = format!("{}\n", serde_json::to_string_pretty(&spec)?);
    let path = root.join(OPENAPI_PATH);
    if check {
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != text {
            bail!(
                "{OPENAPI_PATH} is out of date with the code: run `cargo xtask openapi` and commit it"
            );
        }
        eprintln!("openapi: {OPENAPI_PATH} matches the code");
    } else {
        std::fs::write(&path, text).with_context(|| format!("cannot write {OPENAPI_PATH}"))?;
        eprintln!("openapi: wrote {OPENAPI_PATH}");
    }
    Ok(())
}

fn deps_check(root: &Path) -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .manifest_path(root.join("Cargo.toml"))
        .exec()
        .context("cargo metadata failed")?;
    let violations = deps::violations(&metadata);
    if violations.is_empty() {
        eprintln!(
            "deps-check: the domain crates reach no IO framework, and no adapter reaches another"
        );
        return Ok(());
    }
    for violation in &violations {
        eprintln!("deps-check: {violation}");
    }
    bail!(
        "the dependency rule is broken ({} violation(s))",
        violations.len()
    )
}

fn ci(root: &Path) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let tools = conformance::prepare(root)?;
    let run = |args: &[&str]| -> anyhow::Result<()> {
        eprintln!("\n==> cargo {}", args.join(" "));
        let status = Command::new(&cargo)
            .args(args)
            .envs(tools.env())
            // The conformance tests fail rather than skip when the tools are missing.
            .env("CAIRN_TEST_REQUIRE_CONFORMANCE", "1")
            .current_dir(root)
            .status()
            .with_context(|| format!("cannot run cargo {args:?}"))?;
        if !status.success() {
            bail!("`cargo {}` failed", args.join(" "));
        }
        Ok(())
    };
    run(&["fmt", "--all", "--check"])?;
    run(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ])?;
    eprintln!("\n==> deps-check");
    deps_check(root)?;
    eprintln!("\n==> openapi --check");
    openapi(root, true)?;
    eprintln!("\n==> fhir-summary --check");
    summary::generate(root, true)?;
    run(&[
        "test",
        "--workspace",
        "--locked",
        "--",
        "--test-threads",
        "4",
    ])?;
    eprintln!("\nci: all checks passed");
    Ok(())
}
