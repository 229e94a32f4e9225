//! The registry's state and the task that keeps it in step with the repository.
//!
//! Invariants: `loaded` holds exactly the versions in the last published table; a version is
//! loaded again only when its file changed (a failed one too: the same file fails the same way,
//! so it is not retried until it changes); a retired version stays in `draining` until nothing
//! else holds it, then it is dropped (its sessions unloaded) here, off the serving path.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{interval, interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::manifest::{read_samples, Manifest, VersionPolicy};
use super::routing::{ModelRoutes, RoutingTable};
use super::scan::{scan, Fingerprint, Found, FoundModel, FoundVersion, VersionKey};
use super::RegistryError;
use crate::config::reload::{hangup_signal, next_hangup};
use crate::config::{Config, Device, ModelConfig, ModelRegistryConfig};
use crate::inference::{load_backend, Backend, LoadSpec};
use crate::model::{ModelId, ModelInfo, ServedModel, Signature};
use crate::telemetry::models::{ModelView, ModelsView, VersionState, VersionView};
use crate::telemetry::Telemetry;
use crate::tensor::{Dim, TensorSpec};

/// How versions are loaded.
#[derive(Debug, Clone)]
pub struct LoadSettings {
    /// Runtime settings of every session (device, threads, warm-up) and the default model.
    pub model: ModelConfig,
    pub registry: ModelRegistryConfig,
    /// Sessions per version: one per inference worker.
    pub sessions: usize,
    /// `resource_management.enable_model_compilation`: full graph optimization and the
    /// optimized-model cache.
    pub compile: bool,
    /// `resource_management.enable_gpu_optimization`: tuned CUDA options on CUDA sessions.
    pub gpu_optimization: bool,
    /// `enable_memory_cleanup` / `cleanup_interval_seconds`: how often a session shrinks its
    /// arena (`None`: never).
    pub cleanup_interval: Option<Duration>,
    /// `cpu_affinity_enabled`: where ONNX Runtime's intra-op threads run (`None`: anywhere).
    pub intra_op_affinity: Option<String>,
}

impl LoadSettings {
    pub fn from_config(cfg: &Config, sessions: usize, intra_op_threads: usize) -> Self {
        let mut model = cfg.model.clone();
        model.intra_op_threads = intra_op_threads;
        Self {
            model,
            registry: cfg.model_registry.clone(),
            sessions: sessions.max(1),
            compile: cfg.resource_management.enable_model_compilation,
            gpu_optimization: cfg.resource_management.enable_gpu_optimization,
            cleanup_interval: cfg.resource_management.cleanup_interval(),
            intra_op_affinity: None,
        }
    }
}

/// The published routing table. Reading it is a lock-free `Arc` clone in the common case.
#[derive(Debug, Clone)]
pub struct Routes(watch::Receiver<Arc<RoutingTable>>);

impl Routes {
    /// The table in force now.
    pub fn current(&self) -> Arc<RoutingTable> {
        self.0.borrow().clone()
    }

    /// A table that never changes (tests, tools).
    pub fn fixed(table: RoutingTable) -> Self {
        let (tx, rx) = watch::channel(Arc::new(table));
        // The receiver keeps the last value after the sender is gone.
        drop(tx);
        Self(rx)
    }
}

type Key = (String, VersionKey);

struct Loaded {
    fingerprint: Fingerprint,
    served: Arc<ServedModel>,
}

struct Failed {
    fingerprint: Fingerprint,
    error: String,
}

/// The versions loaded, failed and draining, and where the routing table is published.
pub struct Registry {
    settings: LoadSettings,
    loaded: BTreeMap<Key, Loaded>,
    failed: BTreeMap<Key, Failed>,
    draining: Vec<Arc<ServedModel>>,
    /// Model-level manifests of the last scan.
    manifests: BTreeMap<String, Result<Option<Manifest>, RegistryError>>,
    sync_error: Option<String>,
    tx: watch::Sender<Arc<RoutingTable>>,
    telemetry: Arc<Telemetry>,
}

impl Registry {
    /// Loads the repository. Fails unless the default model has a version that serves.
    pub async fn start(
        settings: LoadSettings,
        telemetry: Arc<Telemetry>,
    ) -> Result<(Self, Routes), RegistryError> {
        let default = settings.model.name.clone();
        let (tx, rx) = watch::channel(Arc::new(empty_table(&default)));
        let mut reg = Self {
            settings,
            loaded: BTreeMap::new(),
            failed: BTreeMap::new(),
            draining: Vec::new(),
            manifests: BTreeMap::new(),
            sync_error: None,
            tx,
            telemetry,
        };
        reg.sync().await;
        if !reg.loaded.keys().any(|(name, _)| *name == default) {
            return Err(RegistryError::NoDefaultModel {
                reason: reg.why_not_served(&default),
                model: default,
            });
        }
        Ok((reg, Routes(rx)))
    }

    /// Rescans the repository: loads what is new or changed, retires what is gone, publishes.
    pub async fn sync(&mut self) {
        let found = match self.found() {
            Ok(found) => {
                self.sync_error = None;
                found
            }
            Err(e) => {
                // An unreadable repository (a remount, a permission change) retires nothing:
                // what serves keeps serving until the repository says otherwise.
                tracing::warn!(error = %e, "model registry: rescan failed; serving what is loaded");
                self.sync_error = Some(e.to_string());
                self.report();
                return;
            }
        };
        let mut changed = false;
        for (name, model) in &found {
            for (version, v) in &model.versions {
                let key = (name.clone(), version.clone());
                let current = self.loaded.get(&key).map(|l| l.fingerprint);
                let failed = self.failed.get(&key).map(|f| f.fingerprint);
                if current == Some(v.fingerprint) || failed == Some(v.fingerprint) {
                    continue;
                }
                changed = true;
                self.load(&key, model, v).await;
            }
        }
        let gone: Vec<Key> = self
            .loaded
            .keys()
            .filter(|(n, v)| !found.get(n).is_some_and(|m| m.versions.contains_key(v)))
            .cloned()
            .collect();
        for key in gone {
            if let Some(old) = self.loaded.remove(&key) {
                tracing::info!(model = %old.served.id(), "model version removed; draining");
                old.served.retire();
                self.draining.push(old.served);
                changed = true;
            }
        }
        self.failed
            .retain(|(n, v), _| found.get(n).is_some_and(|m| m.versions.contains_key(v)));
        let manifests: BTreeMap<_, _> = found
            .iter()
            .map(|(n, m)| (n.clone(), m.manifest.clone()))
            .collect();
        changed |= manifests != self.manifests;
        self.manifests = manifests;
        if changed {
            self.publish();
        }
        self.reap();
        self.report();
    }

    /// Drops the retired versions nothing holds any more (their sessions unload); true when one
    /// was dropped (the caller reports the change).
    pub fn reap(&mut self) -> bool {
        let before = self.draining.len();
        let mut unloaded = Vec::new();
        self.draining.retain(|m| {
            let idle = Arc::strong_count(m) == 1;
            if idle {
                unloaded.push(m.id().clone());
            }
            !idle
        });
        for id in &unloaded {
            let still_served = self
                .loaded
                .contains_key(&(id.name.clone(), VersionKey(id.version.clone())));
            if !still_served {
                self.telemetry.metrics.forget_model_version(id);
            }
        }
        self.draining.len() != before
    }

    /// Versions retired and not yet unloaded.
    pub fn draining(&self) -> usize {
        self.draining.len()
    }

    fn found(&self) -> Result<Found, RegistryError> {
        let Some(single) = self.settings.model.single_file(&self.settings.registry) else {
            return scan(&self.settings.registry.path);
        };
        let fingerprint = Fingerprint::of(&single.path)?;
        let mut versions = BTreeMap::new();
        versions.insert(
            VersionKey(single.version),
            FoundVersion {
                file: single.path,
                fingerprint,
                manifest: Ok(None),
            },
        );
        let mut found = Found::new();
        found.insert(
            self.settings.model.name.clone(),
            FoundModel {
                manifest: Ok(None),
                versions,
            },
        );
        Ok(found)
    }

    /// Loads, validates and warms up one version; on success it replaces what served under the
    /// same key (which drains), on failure it is recorded and the old one keeps serving.
    async fn load(&mut self, key: &Key, model: &FoundModel, v: &FoundVersion) {
        let id = ModelId::new(&key.0, &key.1 .0);
        let result = self.try_load(&id, model, v).await;
        match result {
            Ok(served) => {
                tracing::info!(model = %id, signature = %served.info().signature, "model version ready");
                self.failed.remove(key);
                let served = Arc::new(served);
                if let Some(old) = self.loaded.insert(
                    key.clone(),
                    Loaded {
                        fingerprint: v.fingerprint,
                        served,
                    },
                ) {
                    old.served.retire();
                    self.draining.push(old.served);
                }
            }
            Err(error) => {
                tracing::warn!(model = %id, %error, "model version not served");
                self.telemetry.metrics.model_load_failed(&id.name);
                self.failed.insert(
                    key.clone(),
                    Failed {
                        fingerprint: v.fingerprint,
                        error: error.to_string(),
                    },
                );
            }
        }
    }

    async fn try_load(
        &self,
        id: &ModelId,
        model: &FoundModel,
        v: &FoundVersion,
    ) -> Result<ServedModel, RegistryError> {
        let fail = |message: String| RegistryError::Version {
            model: id.name.clone(),
            version: id.version.clone(),
            message,
        };
        let own = v.manifest.clone().map_err(|e| fail(e.to_string()))?;
        let shared = model.manifest.clone().ok().flatten();
        let samples = own
            .as_ref()
            .and_then(|m| m.warmup.samples.clone())
            .or_else(|| shared.as_ref().and_then(|m| m.warmup.samples.clone()));
        let mut spec = LoadSpec::new(&self.settings.model, id.clone(), v.file.clone());
        spec.compile = self.settings.compile;
        spec.gpu_optimization = self.settings.gpu_optimization;
        spec.cleanup_interval = self.settings.cleanup_interval;
        spec.intra_op_affinity = self.settings.intra_op_affinity.clone();
        if let Some(path) = samples {
            spec.warmup_samples = read_samples(&path).map_err(|e| fail(e.to_string()))?;
        }
        let sessions = self.settings.sessions;
        let backends = tokio::task::spawn_blocking(move || {
            (0..sessions)
                .map(|_| load_backend(&spec))
                .collect::<Result<Vec<Box<dyn Backend>>, _>>()
        })
        .await
        .map_err(|e| fail(format!("loading task failed: {e}")))?
        .map_err(|e| fail(e.to_string()))?;
        let info = backends[0].info().clone();
        self.validate(id, &info, own.as_ref(), shared.as_ref())
            .map_err(fail)?;
        let batching = shared.map(|m| m.batching).unwrap_or_default();
        ServedModel::new(backends, batching).ok_or_else(|| fail("no session was created".into()))
    }

    /// The version's signature against its `model.yaml` (its own, else the model's), else the
    /// version it supersedes; and, in the single-file form, against `model.input_shape` and
    /// `model.output_size` when they are set.
    fn validate(
        &self,
        id: &ModelId,
        info: &ModelInfo,
        own: Option<&Manifest>,
        shared: Option<&Manifest>,
    ) -> Result<(), String> {
        let got = &info.signature;
        if self.settings.model.file.is_some() {
            let m = &self.settings.model;
            let input = match got.inputs.as_slice() {
                [only] => Some(only),
                _ => None,
            };
            let shape_fits =
                |shape: &Vec<usize>| input.is_some_and(|i| i.shape == fixed_dims(shape));
            if let Some(shape) = m.input_shape.as_ref().filter(|s| !shape_fits(s)) {
                return Err(format!(
                    "the file declares {got}, model.input_shape says {shape:?} per row"
                ));
            }
            let output_len = got.outputs.first().and_then(TensorSpec::fixed_len);
            if let Some(size) = m.output_size.filter(|s| Some(*s) != output_len) {
                return Err(format!(
                    "the file declares {got}, model.output_size says {size} values per row"
                ));
            }
        }
        if !self.settings.registry.validation_enabled {
            return Ok(());
        }
        let declared = own
            .and_then(|m| m.signature.as_ref())
            .or_else(|| shared.and_then(|m| m.signature.as_ref()));
        if let Some(want) = declared {
            return check(got, want, "its model.yaml declares");
        }
        if let Some(prev) = self.superseded(id) {
            return check(
                got,
                &prev.info().signature,
                &format!("version {} serves", prev.id().version),
            );
        }
        Ok(())
    }

    /// The version a new one takes over from: the same version's old file, else the highest
    /// version of the model that serves.
    fn superseded(&self, id: &ModelId) -> Option<&Arc<ServedModel>> {
        let same = (id.name.clone(), VersionKey(id.version.clone()));
        if let Some(l) = self.loaded.get(&same) {
            return Some(&l.served);
        }
        self.loaded
            .iter()
            .filter(|((n, _), _)| *n == id.name)
            .map(|(_, l)| &l.served)
            .next_back()
    }

    fn policy(&self, name: &str) -> VersionPolicy {
        match self.manifests.get(name) {
            Some(Ok(Some(m))) => m.version_policy.clone(),
            _ => VersionPolicy::Latest,
        }
    }

    fn publish(&mut self) {
        let mut by_model: BTreeMap<String, BTreeMap<VersionKey, Arc<ServedModel>>> =
            BTreeMap::new();
        for ((name, version), l) in &self.loaded {
            by_model
                .entry(name.clone())
                .or_default()
                .insert(version.clone(), l.served.clone());
        }
        let models: BTreeMap<String, ModelRoutes> = by_model
            .into_iter()
            .filter_map(|(name, versions)| {
                let routes = ModelRoutes::new(versions, self.policy(&name))?;
                if let Some(p) = &routes.policy_problem {
                    tracing::warn!(model = %name, problem = %p, "version policy not followed as written");
                }
                Some((name, routes))
            })
            .collect();
        let default = self.settings.model.name.clone();
        let fallback = models
            .get(&default)
            .and_then(|r| r.versions.values().next_back().cloned())
            .unwrap_or_else(|| Arc::new(ServedModel::unloaded(unloaded_info(&default))));
        self.tx.send_replace(Arc::new(RoutingTable {
            default_model: default,
            models,
            fallback,
        }));
    }

    /// Publishes the view of every version to `/models`, `/stats` and the metrics.
    fn report(&self) {
        let table = self.tx.borrow().clone();
        let mut views: BTreeMap<String, ModelView> = BTreeMap::new();
        let names = self
            .manifests
            .keys()
            .chain(self.loaded.keys().map(|(n, _)| n))
            .chain(self.failed.keys().map(|(n, _)| n))
            .chain(self.draining.iter().map(|m| &m.id().name));
        for name in names {
            views.entry(name.clone()).or_insert_with(|| {
                let routes = table.models.get(name);
                ModelView {
                    name: name.clone(),
                    policy: self.policy(name).to_string(),
                    policy_problem: routes.and_then(|r| r.policy_problem.clone()),
                    manifest_error: match self.manifests.get(name) {
                        Some(Err(e)) => Some(e.to_string()),
                        _ => None,
                    },
                    versions: Vec::new(),
                }
            });
        }
        let mut entries: Vec<(&String, VersionKey, VersionView)> = Vec::new();
        for ((name, v), l) in &self.loaded {
            entries.push((name, v.clone(), served_view(&l.served, VersionState::Ready)));
        }
        for m in &self.draining {
            entries.push((
                &m.id().name,
                VersionKey(m.id().version.clone()),
                served_view(m, VersionState::Draining),
            ));
        }
        for ((name, v), f) in &self.failed {
            entries.push((
                name,
                v.clone(),
                VersionView {
                    version: v.0.clone(),
                    state: VersionState::Failed,
                    signature: None,
                    device: None,
                    error: Some(f.error.clone()),
                },
            ));
        }
        entries.sort_by(|a, b| a.1.cmp(&b.1));
        for (name, _, view) in entries {
            if let Some(m) = views.get_mut(name) {
                m.versions.push(view);
            }
        }
        let view = ModelsView {
            default_model: self.settings.model.name.clone(),
            registry_path: if self.settings.model.file.is_some() {
                String::new()
            } else {
                self.settings.registry.path.display().to_string()
            },
            models: views.into_values().collect(),
            synced_at_ms: crate::pipeline::now_ms(),
            sync_error: self.sync_error.clone(),
        };
        self.telemetry.metrics.set_models(&view);
        self.telemetry.stats.set_models(view);
    }

    fn why_not_served(&self, name: &str) -> String {
        let failures: Vec<String> = self
            .failed
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|(_, f)| f.error.clone())
            .collect();
        if !failures.is_empty() {
            return failures.join("; ");
        }
        if let Some(e) = &self.sync_error {
            return e.clone();
        }
        match self.settings.model.single_file(&self.settings.registry) {
            Some(s) => format!("no file {}", s.path.display()),
            None => format!(
                "no directory {} with a version holding model.onnx",
                self.settings.registry.path.join(name).display()
            ),
        }
    }
}

fn check(got: &Signature, want: &Signature, whose: &str) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "signature {got} does not match {want}, which {whose}"
        ))
    }
}

fn served_view(m: &ServedModel, state: VersionState) -> VersionView {
    let info = m.info();
    VersionView {
        version: info.id.version.clone(),
        state,
        signature: Some(info.signature.to_string()),
        device: Some(info.device.as_str().into()),
        error: None,
    }
}

/// `model.input_shape` as fixed dimensions.
fn fixed_dims(shape: &[usize]) -> Vec<Dim> {
    shape.iter().map(|&d| Dim::Fixed(d)).collect()
}

fn unloaded_info(name: &str) -> ModelInfo {
    ModelInfo {
        id: ModelId::new(name, ""),
        signature: Signature {
            inputs: Vec::new(),
            outputs: Vec::new(),
        },
        device: Device::Cpu,
        library_path: PathBuf::new(),
    }
}

fn empty_table(default: &str) -> RoutingTable {
    RoutingTable {
        default_model: default.to_owned(),
        models: BTreeMap::new(),
        fallback: Arc::new(ServedModel::unloaded(unloaded_info(default))),
    }
}

/// Rescans every `sync_interval_s` and on SIGHUP, and unloads drained versions, until `cancel`.
pub async fn run_registry(mut reg: Registry, cancel: CancellationToken) {
    let period = Duration::from_secs_f64(reg.settings.registry.sync_interval_s.max(1.0));
    let mut rescan = interval_at(Instant::now() + period, period);
    rescan.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Drained versions are looked at often: their sessions hold memory until dropped.
    let mut reap = interval(Duration::from_millis(500));
    reap.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut hangup = hangup_signal("the registry rescans on its interval only");
    loop {
        tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = rescan.tick() => reg.sync().await,
                    () = next_hangup(&mut hangup) => {
                        tracing::info!("SIGHUP: rescanning the model registry");
                        reg.sync().await;
                    }
        _ = reap.tick(), if reg.draining() > 0 => {
                        if reg.reap() {
                            reg.report();
                        }
                    }
                }
    }
}
