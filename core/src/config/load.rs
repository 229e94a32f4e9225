//! Assembling the configuration from its layers with figment, and remembering which layer set
//! each value so validation errors can say where a bad value came from.
//!
//! Invariant: layers merge in this order, later wins: defaults, file, profile, `KBATCH_*`
//! variables, the plain variables of the service kbatch replaces (`BATCH_TIMEOUT_MS`, ...),
//! `--set` overrides.

use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml, Yaml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::{resolve_secrets, validate, Config, ConfigError, SECTIONS};

/// The bundled profiles (trading-day load shapes), in `<config dir>/profiles/<name>.yaml`.
pub const PROFILES: [&str; 3] = ["market_hours", "off_hours", "stress_test"];

/// Where to read configuration from.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Config file (YAML or TOML). When unset, `config/default.yaml` is read if it exists.
    pub file: Option<PathBuf>,
    /// Profile to apply on top of the file. An empty name means none (`KBATCH_PROFILE=` in a
    /// container or compose file that leaves the choice to its user).
    pub profile: Option<String>,
    /// Directory holding `profiles/`; defaults to the config file's directory, else `config/`.
    pub config_dir: Option<PathBuf>,
    /// `key.path=value` overrides, applied last.
    pub overrides: Vec<String>,
    /// Environment to read instead of the process's (tests; embedding).
    pub env: Option<Vec<(String, String)>>,
}

/// A validated configuration and the figment that produced it (for provenance).
pub struct Loaded {
    pub config: Config,
    pub figment: Figment,
    /// Files that were read, in merge order.
    pub files: Vec<PathBuf>,
    /// What loading changed on its own, one sentence each (a wait lowered to `BATCH_TIMEOUT_MS`):
    /// `validate-config` prints them and `serve` logs them.
    pub notes: Vec<String>,
}

/// Loads, merges and validates the configuration.
///
/// `file:`/`env:` references among the `kafka.properties` values and `security.api_keys` are
/// resolved here (`env:` reads `opts.env` when set); one that cannot be is a validation issue.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let vars = environment(opts);
    let (figment, files) = assemble(opts, &vars)?;
    let mut config: Config = figment.extract()?;
    let notes = cap_waits_at_seed_timeout(&mut config, &vars);
    let mut issues = resolve_secrets(&mut config, &vars);
    issues.extend(validate(&config, Some(&figment)));
    if !issues.is_empty() {
        return Err(ConfigError::Invalid(issues));
    }
    Ok(Loaded {
        config,
        figment,
        files,
        notes,
    })
}

/// `BATCH_TIMEOUT_MS` is the predecessor's one bound on how long a request waits for its batch,
/// so when it is set it bounds every wait: `max_wait_time_seconds` and the four tier waits are
/// lowered to it where they exceed it (the seed's own default, 10 ms, is below the default low
/// and normal tier waits, which would otherwise make the configuration invalid). Returns one
/// note per lowered key.
fn cap_waits_at_seed_timeout(config: &mut Config, vars: &[(String, String)]) -> Vec<String> {
    if !vars.iter().any(|(k, _)| k == "BATCH_TIMEOUT_MS") {
        return Vec::new();
    }
    let limit = config.batch_processing.batch_timeout_seconds;
    let pq = &mut config.priority_queueing;
    let waits: [(&str, &mut f64); 5] = [
        (
            "batch_processing.max_wait_time_seconds",
            &mut config.batch_processing.max_wait_time_seconds,
        ),
        (
            "priority_queueing.critical_priority_wait_time",
            &mut pq.critical_priority_wait_time,
        ),
        (
            "priority_queueing.high_priority_wait_time",
            &mut pq.high_priority_wait_time,
        ),
        (
            "priority_queueing.normal_priority_wait_time",
            &mut pq.normal_priority_wait_time,
        ),
        (
            "priority_queueing.low_priority_wait_time",
            &mut pq.low_priority_wait_time,
        ),
    ];
    let mut notes = Vec::new();
    for (key, wait) in waits {
        if *wait > limit {
            notes.push(format!(
                "{key} lowered from {wait} s to {limit} s: BATCH_TIMEOUT_MS bounds every wait"
            ));
            *wait = limit;
        }
    }
    notes
}

/// The environment the layers and `env:` references read. Variables that are not UTF-8 are
/// left out (`std::env::vars` would panic on one); none of kbatch's can be.
fn environment(opts: &LoadOptions) -> Vec<(String, String)> {
    match &opts.env {
        Some(vars) => vars.clone(),
        None => std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect(),
    }
}

fn assemble(
    opts: &LoadOptions,
    vars: &[(String, String)],
) -> Result<(Figment, Vec<PathBuf>), ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    let mut files = Vec::new();
    let default_file = PathBuf::from("config/default.yaml");
    let file = match &opts.file {
        Some(f) if !f.exists() => return Err(ConfigError::MissingFile(f.clone())),
        Some(f) => Some(f.clone()),
        None => default_file.exists().then_some(default_file),
    };
    if let Some(f) = &file {
        figment = merge_file(figment, f);
        files.push(f.clone());
    }
    if let Some(name) = opts
        .profile
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let dir = opts.config_dir.clone().unwrap_or_else(|| match &file {
            Some(f) => f.parent().map(Path::to_path_buf).unwrap_or_default(),
            None => PathBuf::from("config"),
        });
        let path = dir.join("profiles").join(format!("{name}.yaml"));
        if !path.exists() {
            return Err(ConfigError::UnknownProfile {
                name: name.to_owned(),
                path,
                known: PROFILES.join(", "),
            });
        }
        figment = merge_file(figment, &path);
        files.push(path);
    }
    figment = figment
        .merge(KeyValues::kbatch_env(vars))
        .merge(InheritedEnv::from_vars(vars))
        .merge(KeyValues::overrides(&opts.overrides)?);
    Ok((figment, files))
}

fn merge_file(figment: Figment, path: &Path) -> Figment {
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => figment.merge(Toml::file_exact(path)),
        _ => figment.merge(Yaml::file_exact(path)),
    }
}

/// The environment variables that deployments of the service kbatch replaces already set,
/// mapped onto kbatch's keys.
pub struct InheritedEnv {
    vars: Vec<(&'static str, String)>,
}

/// A layer of dotted keys and values, with a name for error messages: the `KBATCH_*` variables
/// or the `--set` overrides.
pub struct KeyValues {
    name: &'static str,
    render: fn(&[&str]) -> String,
    entries: Vec<(Vec<String>, Value)>,
}

impl KeyValues {
    /// `KBATCH_<SECTION>__<KEY>[__<KEY>...]=value`; variables outside the known sections (such
    /// as `KBATCH_CONFIG`) are not configuration keys and are left alone.
    pub fn kbatch_env(vars: &[(String, String)]) -> Self {
        let entries = vars
            .iter()
            .filter_map(|(name, value)| {
                let path: Vec<String> = name
                    .strip_prefix("KBATCH_")?
                    .split("__")
                    .map(str::to_lowercase)
                    .collect();
                // Variable names cannot hold dots: `..._PROPERTIES__SECURITY_PROTOCOL` is
                // librdkafka's `security.protocol` (its property names have no underscores).
                let path = property_key(path, |k| k.replace('_', "."));
                SECTIONS
                    .contains(&path[0].as_str())
                    .then(|| entry(path, value))
            })
            .collect();
        Self {
            name: "environment variable",
            render: |keys| format!("KBATCH_{}", keys.join("__").to_uppercase()),
            entries,
        }
    }

    /// `section.key=value` pairs from the command line.
    pub fn overrides(pairs: &[String]) -> Result<Self, ConfigError> {
        let entries = pairs
            .iter()
            .map(|o| {
                let (key, value) = o
                    .split_once('=')
                    .filter(|(k, _)| !k.trim().is_empty())
                    .ok_or_else(|| ConfigError::BadOverride(o.clone()))?;
                let path = key.trim().split('.').map(str::to_string).collect();
                Ok(entry(property_key(path, str::to_string), value))
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(Self {
            name: "command line",
            render: |keys| format!("--set {}", keys.join(".")),
            entries,
        })
    }
}

/// `kafka.properties.<name>` keeps `<name>` as one key: librdkafka property names contain dots
/// (`--set kafka.properties.queued.max.messages.kbytes=4096`). `name` maps the joined rest.
fn property_key(mut path: Vec<String>, name: impl Fn(&str) -> String) -> Vec<String> {
    if path.len() > 2 && path[0] == "kafka" && path[1] == "properties" {
        let rest = path.split_off(2).join(".");
        path.push(name(&rest));
    }
    path
}

/// The value of `path` parsed as YAML-like scalars are, except librdkafka properties, which are
/// strings whatever they look like (`4096` stays `"4096"`).
fn entry(path: Vec<String>, raw: &str) -> (Vec<String>, Value) {
    let value = if path.len() == 3 && path[0] == "kafka" && path[1] == "properties" {
        Value::from(raw.to_string())
    } else {
        raw.parse().expect("infallible")
    };
    (path, value)
}

impl Provider for KeyValues {
    fn metadata(&self) -> Metadata {
        let render = self.render;
        Metadata::named(self.name).interpolater(move |_, keys| render(keys))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (path, value) in &self.entries {
            let (last, parents) = path.split_last().expect("path is non-empty");
            let mut node = &mut dict;
            for key in parents {
                let entry = node
                    .entry(key.clone())
                    .or_insert_with(|| Value::from(Dict::new()));
                let Value::Dict(_, child) = entry else {
                    return Err(figment::Error::from(format!(
                        "`{key}` is set both as a value and as a section"
                    )));
                };
                node = child;
            }
            node.insert(last.clone(), value.clone());
        }
        Ok(Profile::Default.collect(dict))
    }
}

const INHERITED_VARS: [&str; 6] = [
    "MAX_BATCH_SIZE",
    "BATCH_TIMEOUT_MS",
    "MODEL_REGISTRY_PATH",
    "DEVICE",
    "LOG_LEVEL",
    "CACHE_TTL_SECONDS",
];

impl InheritedEnv {
    pub fn from_vars(vars: &[(String, String)]) -> Self {
        let known = |name: &str| INHERITED_VARS.iter().copied().find(|k| *k == name);
        Self {
            vars: vars
                .iter()
                .filter_map(|(k, v)| Some((known(k)?, v.clone())))
                .collect(),
        }
    }
}

impl Provider for InheritedEnv {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable").interpolater(|_, keys| {
            match keys.join(".").as_str() {
                "batch_processing.max_batch_size" => "MAX_BATCH_SIZE".into(),
                "batch_processing.batch_timeout_seconds" => "BATCH_TIMEOUT_MS".into(),
                "model_registry.path" => "MODEL_REGISTRY_PATH".into(),
                "model.device" => "DEVICE".into(),
                "logging.level" => "LOG_LEVEL".into(),
                "deduplication.deduplication_ttl" => "CACHE_TTL_SECONDS".into(),
                other => other.to_string(),
            }
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (var, raw) in &self.vars {
            let ((section, key), value): ((&str, &str), Value) = match *var {
                "MAX_BATCH_SIZE" => (
                    ("batch_processing", "max_batch_size"),
                    raw.parse().expect("infallible"),
                ),
                "BATCH_TIMEOUT_MS" => {
                    let ms: f64 = raw.trim().parse().map_err(|_| {
                        figment::Error::from(format!(
                            "BATCH_TIMEOUT_MS={raw:?} is not a number of milliseconds"
                        ))
                    })?;
                    (
                        ("batch_processing", "batch_timeout_seconds"),
                        Value::from(ms / 1000.0),
                    )
                }
                "MODEL_REGISTRY_PATH" => (("model_registry", "path"), Value::from(raw.clone())),
                "DEVICE" => (("model", "device"), Value::from(raw.trim().to_lowercase())),
                "LOG_LEVEL" => (("logging", "level"), Value::from(raw.trim().to_lowercase())),
                "CACHE_TTL_SECONDS" => {
                    let s: f64 = raw.trim().parse().map_err(|_| {
                        figment::Error::from(format!(
                            "CACHE_TTL_SECONDS={raw:?} is not a number of seconds"
                        ))
                    })?;
                    (("deduplication", "deduplication_ttl"), Value::from(s))
                }
                _ => continue,
            };
            let entry = dict
                .entry(section.into())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, section) = entry {
                section.insert(key.into(), value);
            }
        }
        Ok(Profile::Default.collect(dict))
    }
}
