//! The layering of `kbatch-core` (docs/architecture.md), checked on the sources: each layer may
//! import only the layers below it, so there are no cycles and no stage imports another stage's
//! internals. The tools (this package's `src/`) may import anything from the core; the core
//! cannot import the tools at all (it does not depend on this package, so the compiler keeps
//! that half of the rule).
//!
//! Unit tests (`*_tests.rs`, `tests.rs`, `fixtures.rs`) are left out: a test may reach across.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each layer of the core and the layers it may import. Order: bottom to top.
const LAYERS: &[(&str, &[&str])] = &[
    ("tier", &[]),
    // Which cores threads run on: a system call and a plan, nothing of kbatch's own.
    ("affinity", &[]),
    // Element types, typed values and named tensors: what requests carry and models take.
    ("tensor", &[]),
    ("config", &["tier"]),
    ("wire", &["config", "tensor", "tier"]),
    // A model's identity, signature, the `Backend` seam and a served version's sessions.
    ("model", &["config", "tensor"]),
    ("pipeline", &["model", "tensor", "tier", "wire"]),
    (
        "telemetry",
        &["config", "model", "pipeline", "tier", "wire"],
    ),
    ("resources", &["config"]),
    (
        "inference",
        &[
            "affinity",
            "config",
            "model",
            "pipeline",
            "resources",
            "telemetry",
            "tensor",
            "tier",
            "wire",
        ],
    ),
    (
        "batcher",
        &[
            "config",
            "model",
            "pipeline",
            "resources",
            "telemetry",
            "tensor",
            "tier",
            "wire",
        ],
    ),
    // The model repository: loads versions (`inference`) and publishes the routing table.
    (
        "registry",
        &[
            "config",
            "inference",
            "model",
            "pipeline",
            "telemetry",
            "tensor",
        ],
    ),
    // Admission routes requests with the registry's table and checks them against the version.
    (
        "kafka",
        &[
            "config",
            "model",
            "pipeline",
            "registry",
            "telemetry",
            "tier",
            "wire",
        ],
    ),
    (
        "app",
        &[
            "affinity",
            "batcher",
            "config",
            "inference",
            "kafka",
            "model",
            "pipeline",
            "registry",
            "resources",
            "telemetry",
            "tier",
            "wire",
        ],
    ),
];

fn core_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("core/src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read core/src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with("_tests.rs") || name == "tests.rs" || name == "fixtures.rs"
}

/// The top-level modules that `text` names through `crate::` paths, `use crate::{a, b::c}`
/// groups included.
fn crate_imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// Layer → the layers its non-test sources import.
fn import_edges() -> BTreeMap<String, BTreeSet<String>> {
    let root = core_src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let layers: BTreeSet<&str> = LAYERS.iter().map(|(l, _)| *l).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in files.iter().filter(|p| !is_test_file(p)) {
        let rel = path.strip_prefix(&root).expect("under core/src");
        let first = rel.components().next().expect("a component");
        let layer = first
            .as_os_str()
            .to_str()
            .expect("utf-8 path")
            .trim_end_matches(".rs")
            .to_owned();
        if layer == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(path).expect("read source");
        let entry = edges.entry(layer.clone()).or_default();
        for imported in crate_imports(&text) {
            if imported != layer && layers.contains(imported.as_str()) {
                entry.insert(imported);
            }
        }
    }
    edges
}

#[test]
fn every_core_module_belongs_to_a_declared_layer() {
    let declared: BTreeSet<&str> = LAYERS.iter().map(|(l, _)| *l).collect();
    let found: Vec<String> = import_edges()
        .into_keys()
        .filter(|l| !declared.contains(l.as_str()))
        .collect();
    assert!(
        found.is_empty(),
        "core modules outside the layer table (add them to docs/architecture.md and LAYERS): {found:?}"
    );
}

#[test]
fn each_layer_imports_only_the_layers_below_it() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = LAYERS
        .iter()
        .map(|(l, deps)| (*l, deps.iter().copied().collect()))
        .collect();
    let mut violations = Vec::new();
    for (layer, imports) in import_edges() {
        let Some(ok) = allowed.get(layer.as_str()) else {
            continue;
        };
        for imported in imports {
            if !ok.contains(imported.as_str()) {
                violations.push(format!("{layer} imports {imported}"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layering of docs/architecture.md: {violations:?}"
    );
}

#[test]
fn the_layer_table_is_ordered_so_it_has_no_cycles() {
    // Each layer may only name layers listed before it: a cycle would need a back edge.
    for (i, (layer, deps)) in LAYERS.iter().enumerate() {
        let below: BTreeSet<&str> = LAYERS[..i].iter().map(|(l, _)| *l).collect();
        for dep in *deps {
            assert!(
                below.contains(dep),
                "{layer} may import {dep}, which is not below it"
            );
        }
    }
}

#[test]
fn the_import_scanner_sees_grouped_and_nested_paths() {
    let text =
        "use crate::pipeline::{Admitted, Batch};\nuse crate::{config::Config, tier::Tier};\n\
                fn f() { crate::wire::decode(); }";
    let found: Vec<String> = crate_imports(text).into_iter().collect();
    assert_eq!(found, ["config", "pipeline", "tier", "wire"]);
}
