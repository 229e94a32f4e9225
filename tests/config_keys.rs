//! No setting is accepted and ignored: every key of `config/default.yaml` is read somewhere in
//! the code outside its validation and outside the tests. Checked on the sources: each key's
//! field must be read as `.field` (not assigned) in `core/src` or `src`, comments and string
//! literals left out, so a key whose only readers are its validation, its documentation or a
//! test fails here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where a setting is validated, or set from the predecessor's environment variables: reading
/// it there is not using it. (An accessor beside the section's definition counts: it is how
/// the stages read some settings.)
const NOT_USE: &[&str] = &["core/src/config/validate.rs", "core/src/config/load.rs"];

fn is_test_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name.ends_with("_tests.rs")
        || name == "tests.rs"
        || name == "fixtures.rs"
        || path.components().any(|c| c.as_os_str() == "tests")
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("a source directory")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && !is_test_file(&path) {
            out.push(path);
        }
    }
}

/// `src` without comments and string literals (so a key named in a message or a doc comment
/// does not count as read).
fn code_only(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            // A char literal holding a quote would otherwise open a string.
            '\'' if chars.peek() == Some(&'"') => {
                chars.next();
                chars.next();
            }
            c => out.push(c),
        }
    }
    out
}

/// Dotted paths of every leaf of the YAML tree (an empty map is a leaf: its entries are free).
fn leaves(v: &serde_yaml::Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        serde_yaml::Value::Mapping(map) if !map.is_empty() => {
            for (k, child) in map {
                let k = k.as_str().expect("string keys");
                let path = if prefix.is_empty() {
                    k.to_string()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(child, &path, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// The Rust field a YAML key deserializes into, where the names differ.
fn field_of(key: &str) -> &str {
    match key {
        "model_registry.type" => "kind",
        _ => key.rsplit('.').next().unwrap_or(key),
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether `code` reads `.field`: not a longer name that starts with it, not an assignment.
fn reads(code: &str, field: &str) -> bool {
    let needle = format!(".{field}");
    code.match_indices(&needle).any(|(i, _)| {
        let rest = &code[i + needle.len()..];
        if rest.chars().next().is_some_and(is_ident) {
            return false;
        }
        let rest = rest.trim_start();
        let assigned = rest.starts_with('=') && !rest.starts_with("==");
        !assigned
    })
}

#[test]
fn every_key_of_the_bundled_config_is_read_outside_its_definition_and_validation() {
    let root = repo();
    let text = std::fs::read_to_string(root.join("config/default.yaml")).expect("default.yaml");
    let tree: serde_yaml::Value = serde_yaml::from_str(&text).expect("valid YAML");
    let mut keys = Vec::new();
    leaves(&tree, "", &mut keys);
    assert!(
        keys.len() > 80,
        "the bundled keys were found: {}",
        keys.len()
    );

    let mut files = Vec::new();
    sources(&root.join("core/src"), &mut files);
    sources(&root.join("src"), &mut files);
    let code: BTreeMap<String, String> = files
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(&root).unwrap_or(f).display().to_string();
            let src = std::fs::read_to_string(f).expect("a source file");
            (rel, code_only(&src))
        })
        .filter(|(rel, _)| !NOT_USE.contains(&rel.as_str()))
        .collect();
    assert!(code.len() > 50, "the sources were found: {}", code.len());

    let unread: Vec<&String> = keys
        .iter()
        .filter(|key| {
            let field = field_of(key);
            !code.values().any(|c| reads(c, field))
        })
        .collect();
    assert!(
        unread.is_empty(),
        "accepted but read nowhere outside the configuration and its validation: {unread:?}"
    );
}

#[test]
fn the_scan_tells_a_read_from_a_mention() {
    let code = code_only(
        "let a = cfg.batch_processing.max_retries; // .cleanup_interval_seconds\n\
         let s = \".cpu_affinity_enabled\"; let c = '\"'; x.enable_memory_cleanupX;\n\
         cfg.model.warmup_batches = 3;",
    );
    assert!(reads(&code, "max_retries"));
    assert!(!reads(&code, "cleanup_interval_seconds"), "a comment");
    assert!(!reads(&code, "cpu_affinity_enabled"), "a string");
    assert!(!reads(&code, "enable_memory_cleanup"), "a longer name");
    assert!(!reads(&code, "warmup_batches"), "an assignment");
}
