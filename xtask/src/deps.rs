//! The dependency rule: domain crates stay usable by any service, so none of them may depend,
//! even transitively, on a database, web framework or async runtime; and adapters depend on
//! the core, never on each other.

use std::collections::{BTreeSet, HashMap};

use cargo_metadata::{DependencyKind, Metadata, PackageId};

/// The pure crates: types, rules and ports only.
pub const DOMAIN_CRATES: &[&str] = &[
    "fhir-model",
    "phi-crypto",
    "audit-chain",
    "consent",
    "access",
    "records",
];

/// What a domain crate must never reach.
pub const FORBIDDEN: &[&str] = &[
    "sea-orm",
    "sqlx",
    "poem",
    "poem-openapi",
    "tokio",
    "hyper",
    "reqwest",
];

/// The adapters: each translates between the core's ports and one technology, and none may
/// depend on another (the composition root, `cairn`, wires them together).
pub const ADAPTER_CRATES: &[&str] = &["api-http", "store-sql"];

fn forbidden(name: &str) -> bool {
    FORBIDDEN.contains(&name) || name.starts_with("sqlx-") || name.starts_with("sea-orm-")
}

/// One line per broken rule, with the path that breaks it: a domain crate reaching a forbidden
/// package, or an adapter reaching another adapter.
pub fn violations(metadata: &Metadata) -> Vec<String> {
    let mut found = reaching(metadata, DOMAIN_CRATES, forbidden);
    for adapter in ADAPTER_CRATES {
        let other = |name: &str| name != *adapter && ADAPTER_CRATES.contains(&name);
        found.extend(reaching(metadata, &[adapter], other));
    }
    found
}

/// One line per (workspace crate in `crates`, package that `bad` names) pair it reaches
/// through normal dependencies, with the path.
fn reaching(metadata: &Metadata, crates: &[&str], bad: impl Fn(&str) -> bool) -> Vec<String> {
    let Some(resolve) = &metadata.resolve else {
        return vec!["cargo metadata has no dependency graph".to_owned()];
    };
    let names: HashMap<&PackageId, &str> = metadata
        .packages
        .iter()
        .map(|p| (&p.id, p.name.as_str()))
        .collect();
    let nodes: HashMap<&PackageId, _> = resolve.nodes.iter().map(|n| (&n.id, n)).collect();
    let mut found = BTreeSet::new();
    for package in metadata.workspace_packages() {
        if !crates.contains(&package.name.as_str()) {
            continue;
        }
        // Depth-first over normal (not dev, not build) dependencies, remembering the path.
        let mut stack = vec![(&package.id, vec![package.name.to_string()])];
        let mut seen = BTreeSet::new();
        while let Some((id, path)) = stack.pop() {
            let Some(node) = nodes.get(id) else { continue };
            for dep in &node.deps {
                let normal = dep
                    .dep_kinds
                    .iter()
                    .any(|k| k.kind == DependencyKind::Normal);
                if !normal || !seen.insert(&dep.pkg) {
                    continue;
                }
                let name = names.get(&dep.pkg).copied().unwrap_or("?");
                let mut here = path.clone();
                here.push(name.to_owned());
                if bad(name) {
                    found.insert(format!(
                        "{} reaches {name} via {}",
                        package.name,
                        here.join(" -> ")
                    ));
                }
                stack.push((&dep.pkg, here));
            }
        }
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn metadata() -> Metadata {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        cargo_metadata::MetadataCommand::new()
            .manifest_path(root)
            .exec()
            .expect("cargo metadata")
    }

    /// The rule holds for this workspace: this is the test the build fails on.
    #[test]
    fn the_workspace_obeys_the_dependency_rule() {
        let metadata = metadata();
        let domain: Vec<_> = metadata
            .workspace_packages()
            .iter()
            .filter(|p| DOMAIN_CRATES.contains(&p.name.as_str()))
            .map(|p| p.name.to_string())
            .collect();
        assert!(
            [
                "fhir-model",
                "phi-crypto",
                "access",
                "audit-chain",
                "records"
            ]
            .iter()
            .all(|name| domain.contains(&(*name).to_owned())),
            "domain crates not found: {domain:?}"
        );
        assert_eq!(violations(&metadata), Vec::<String>::new());
    }

    /// The check is not vacuous: give fhir-model a dependency on sea-orm in the real graph and
    /// it is caught, with the path.
    #[test]
    fn a_domain_crate_reaching_sea_orm_is_caught() {
        let mut metadata = metadata();
        let find = |m: &Metadata, name: &str| {
            m.packages
                .iter()
                .find(|p| p.name.as_str() == name)
                .map(|p| p.id.clone())
                .unwrap()
        };
        let fhir_model = find(&metadata, "fhir-model");
        let store = find(&metadata, "store-sql");
        let resolve = metadata.resolve.as_mut().unwrap();
        let store_edge = resolve
            .nodes
            .iter()
            .find(|n| n.id == store)
            .unwrap()
            .deps
            .iter()
            .find(|d| d.name == "sea_orm")
            .unwrap()
            .clone();
        resolve
            .nodes
            .iter_mut()
            .find(|n| n.id == fhir_model)
            .unwrap()
            .deps
            .push(store_edge);
        let found = violations(&metadata);
        assert!(
            found
                .iter()
                .any(|v| v.starts_with("fhir-model reaches sea-orm via fhir-model -> sea-orm")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|v| v.starts_with("fhir-model reaches tokio via")),
            "{found:?}"
        );
    }

    /// An adapter depending on another adapter is caught too.
    #[test]
    fn an_adapter_reaching_another_adapter_is_caught() {
        let mut metadata = metadata();
        let find = |m: &Metadata, name: &str| {
            m.packages
                .iter()
                .find(|p| p.name.as_str() == name)
                .map(|p| p.id.clone())
                .unwrap()
        };
        let (api, cairn) = (find(&metadata, "api-http"), find(&metadata, "cairn"));
        let resolve = metadata.resolve.as_mut().unwrap();
        let store_edge = resolve
            .nodes
            .iter()
            .find(|n| n.id == cairn)
            .unwrap()
            .deps
            .iter()
            .find(|d| d.name == "store_sql")
            .unwrap()
            .clone();
        resolve
            .nodes
            .iter_mut()
            .find(|n| n.id == api)
            .unwrap()
            .deps
            .push(store_edge);
        let found = violations(&metadata);
        assert!(
            found
                .iter()
                .any(|v| v == "api-http reaches store-sql via api-http -> store-sql"),
            "{found:?}"
        );
    }
}
