//! Live configuration reload: the config file (and profile file) is re-read when its content
//! changes or on SIGHUP, and the settings that may change at run time are published on a
//! `watch` channel.
//!
//! Invariant: a config published on the channel has always passed [`load`]'s validation, and
//! again [`validate`] after merging; an invalid file never replaces the running config (the old
//! one keeps serving, and the reason is logged with `tracing::error!` and kept in
//! [`ReloadCounters`]). Settings that cannot change at run time keep their running value and are
//! named in a `tracing::warn!` ("needs a restart").
//!
//! Which settings are reloadable is decided per dotted key over the serialized `Config`, so a
//! field added later is covered without touching this module: restart-only unless it falls
//! under a [`RELOADABLE`] prefix.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::{load, validate, Config, LoadOptions};

/// Dotted prefixes of the settings that may change at run time; everything else (and any
/// section added later) needs a restart.
pub const RELOADABLE: &[&str] = &[
    "batch_processing",
    "adaptive_batching",
    "priority_queueing",
    "deduplication",
    "performance_monitoring",
    "logging.level",
];

/// Keys under a [`RELOADABLE`] prefix that still need a restart.
pub const FIXED_AT_START: &[&str] = &[
    // The consumer's intake is built for one overflow rule.
    "batch_processing.when_queue_full",
];

/// A periodic timer of `period` (at least `floor`) whose late ticks are delayed, not bunched:
/// what the samplers and checkers whose period follows reloads tick on.
pub fn ticker(period: Duration, floor: Duration) -> Interval {
    let mut tick = tokio::time::interval(period.max(floor));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick
}

/// A value derived from the running configuration, republished after each applied reload that
/// changes it (a sampler's period, a checker's). The task behind it ends when the configuration
/// channel closes or nobody holds the returned receiver.
pub fn follow<T>(
    mut config: watch::Receiver<Arc<Config>>,
    derive: fn(&Config) -> T,
) -> watch::Receiver<T>
where
    T: PartialEq + Send + Sync + 'static,
{
    let (tx, rx) = watch::channel(derive(&config.borrow_and_update()));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tx.closed() => return,
                changed = config.changed() => if changed.is_err() { return },
            }
            let value = derive(&config.borrow_and_update());
            tx.send_if_modified(|current| {
                let differs = *current != value;
                if differs {
                    *current = value;
                }
                differs
            });
        }
    });
    rx
}

/// How a reload treats the top-level `section`, in words for `validate-config`: `live`,
/// `live, except X (restart)`, `restart, except Y (live)` or `restart`.
pub fn reload_note(section: &str) -> String {
    let below = |list: &[&str]| -> Vec<String> {
        list.iter()
            .filter_map(|k| k.strip_prefix(section)?.strip_prefix('.'))
            .map(str::to_string)
            .collect()
    };
    if RELOADABLE.contains(&section) {
        let fixed = below(FIXED_AT_START);
        if fixed.is_empty() {
            "live".to_string()
        } else {
            format!("live, except {} (restart)", fixed.join(", "))
        }
    } else {
        let live = below(RELOADABLE);
        if live.is_empty() {
            "restart".to_string()
        } else {
            format!("restart, except {} (live)", live.join(", "))
        }
    }
}

/// Whether the setting at dotted `key` may change at run time.
pub fn is_reloadable(key: &str) -> bool {
    let under = |prefix: &&str| {
        key.strip_prefix(*prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    };
    RELOADABLE.iter().any(under) && !FIXED_AT_START.iter().any(under)
}

/// The running config with the reloadable settings of a newly loaded one.
#[derive(Debug, Clone, PartialEq)]
pub struct Merge {
    pub config: Config,
    /// Dotted keys of reloadable settings whose value changed.
    pub changed: Vec<String>,
    /// Dotted keys of restart-only settings that differ; `config` keeps their running value.
    pub needs_restart: Vec<String>,
}

/// Takes every reloadable setting from `loaded` and every other one from `running`.
///
/// Keys are compared leaf by leaf on the JSON form; a `kafka.properties` entry is one leaf
/// (`kafka.properties.security.protocol`) because paths are kept as segments, never split on
/// dots. Fails only if the merged tree does not deserialize back, which a non-finite float (JSON
/// has none) would cause.
pub fn merge_reloadable(running: &Config, loaded: &Config) -> Result<Merge, serde_json::Error> {
    let old_tree = serde_json::to_value(running)?;
    let new_tree = serde_json::to_value(loaded)?;
    let (old, new) = (leaves(&old_tree), leaves(&new_tree));
    let mut merged = old_tree.clone();
    let (mut changed, mut needs_restart) = (Vec::new(), Vec::new());
    // Sorted by segments, so a replaced parent comes before the leaves below it.
    let keys: BTreeSet<&Vec<&str>> = old.keys().chain(new.keys()).collect();
    for key in keys {
        let now = new.get(key);
        if old.get(key) == now {
            continue;
        }
        let dotted = key.join(".");
        if !is_reloadable(&dotted) {
            needs_restart.push(dotted);
            continue;
        }
        match now {
            Some(value) => insert_at(&mut merged, key, (*value).clone()),
            None => remove_at(&mut merged, key),
        }
        changed.push(dotted);
    }
    Ok(Merge {
        config: serde_json::from_value(merged)?,
        changed,
        needs_restart,
    })
}

/// Leaves of `tree` by path; an empty object is a leaf so that an emptied map still differs.
fn leaves(tree: &Value) -> BTreeMap<Vec<&str>, &Value> {
    fn walk<'a>(
        v: &'a Value,
        path: &mut Vec<&'a str>,
        out: &mut BTreeMap<Vec<&'a str>, &'a Value>,
    ) {
        match v {
            Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    path.push(key);
                    walk(child, path, out);
                    path.pop();
                }
            }
            _ => {
                out.insert(path.clone(), v);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(tree, &mut Vec::new(), &mut out);
    out
}

fn insert_at(root: &mut Value, path: &[&str], value: Value) {
    let mut node = root;
    for key in path {
        // A scalar here (an enum variant or `None` before) is replaced by the new subtree.
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        node = node
            .as_object_mut()
            .expect("made an object above")
            .entry(*key)
            .or_insert(Value::Null);
    }
    *node = value;
}

fn remove_at(root: &mut Value, path: &[&str]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = root;
    for key in parents {
        // Missing or not an object: an earlier key already replaced this subtree.
        match node.get_mut(*key) {
            Some(child) => node = child,
            None => return,
        }
    }
    if let Value::Object(map) = node {
        map.remove(*last);
    }
}

/// What one reload attempt did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// Reloadable settings changed; publish `Merge::config`.
    Applied(Box<Merge>),
    /// No reloadable setting changed (restart-only ones may have, and were warned about).
    Unchanged,
    /// The new configuration is invalid; the reason names the field (or, for a syntax error,
    /// the file and line).
    Rejected(String),
}

/// Loads the configuration again and merges it into `running`.
pub fn reload_once(opts: &LoadOptions, running: &Config) -> ReloadOutcome {
    let loaded = match load(opts) {
        Ok(loaded) => loaded,
        Err(e) => return ReloadOutcome::Rejected(e.to_string()),
    };
    let merge = match merge_reloadable(running, &loaded.config) {
        Ok(merge) => merge,
        Err(e) => {
            return ReloadOutcome::Rejected(format!("cannot merge the new configuration: {e}"))
        }
    };
    if !merge.needs_restart.is_empty() {
        tracing::warn!(
            keys = %merge.needs_restart.join(", "),
            "configuration change needs a restart; keeping the running values"
        );
    }
    if merge.changed.is_empty() {
        return ReloadOutcome::Unchanged;
    }
    // No rule ties a reloadable key to a restart-only one today; this keeps the invariant when
    // one is added (the merged pair was never checked together by `load`).
    let issues = validate(&merge.config, None);
    if !issues.is_empty() {
        let list: Vec<String> = issues.iter().map(ToString::to_string).collect();
        return ReloadOutcome::Rejected(format!(
            "invalid together with the settings kept until restart: {}",
            list.join("; ")
        ));
    }
    ReloadOutcome::Applied(Box::new(merge))
}

/// Reload results, for metrics and `/stats`.
#[derive(Debug, Default)]
pub struct ReloadCounters {
    pub applied: AtomicU64,
    pub rejected: AtomicU64,
    /// Reason of the most recent rejection; not cleared by a later success.
    pub last_error: Mutex<Option<String>>,
}

impl ReloadCounters {
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn reject(&self, reason: String) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(reason);
    }
}

/// The files [`run_reloader`] watches, by the rule `load` uses: the named file or else
/// `config/default.yaml` if it exists, then the profile file.
///
/// Repeated here rather than taken from `Loaded::files` because the file may be invalid (and
/// `load` fail) at the moment the reloader starts.
pub fn watched_files(opts: &LoadOptions) -> Vec<PathBuf> {
    let default_file = PathBuf::from("config/default.yaml");
    let file = opts
        .file
        .clone()
        .or_else(|| default_file.exists().then_some(default_file));
    let profile = opts.profile.as_ref().map(|name| {
        let dir = opts.config_dir.clone().unwrap_or_else(|| match &file {
            Some(f) => f.parent().map(PathBuf::from).unwrap_or_default(),
            None => PathBuf::from("config"),
        });
        dir.join("profiles").join(format!("{name}.yaml"))
    });
    file.into_iter().chain(profile).collect()
}

/// Reloads once at start, then on a content change of a watched file (polled every `poll`; zero
/// turns polling off) and on SIGHUP, publishing applied configs on `tx`, until `cancel` fires or
/// every receiver is gone.
///
/// Contents are compared rather than watched with inotify, which misses a Kubernetes ConfigMap
/// update (a symlink swapped to a new directory), or by modification time, which is coarse.
pub async fn run_reloader(
    opts: LoadOptions,
    initial: Arc<Config>,
    tx: watch::Sender<Arc<Config>>,
    poll: Duration,
    counters: Arc<ReloadCounters>,
    cancel: CancellationToken,
) {
    let mut hangup = hangup_signal("reloading on file changes only");
    let mut files = Contents::new(watched_files(&opts));
    let mut ticker = (!poll.is_zero() && !files.paths.is_empty()).then(|| {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + poll, poll);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker
    });
    let mut publisher = Publisher {
        opts,
        running: initial,
        tx,
        counters,
    };
    // `initial` was loaded before the first snapshot: a write in between would go unnoticed
    // until the file changed again.
    let mut live = publisher.reload("start");
    while live {
        let trigger = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = publisher.tx.closed() => return,
            () = next_hangup(&mut hangup) => {
                // Snapshot before loading, so a write racing the load is seen by the next poll.
                files.resync();
                "SIGHUP"
            }
            () = next_tick(&mut ticker) => {
                if !files.changed() {
                    continue;
                }
                "file change"
            }
        };
        live = publisher.reload(trigger);
    }
}

/// The reloader's running config and where its results go.
struct Publisher {
    opts: LoadOptions,
    running: Arc<Config>,
    tx: watch::Sender<Arc<Config>>,
    counters: Arc<ReloadCounters>,
}

impl Publisher {
    /// Reloads and publishes an applied config; false once no receiver is left.
    fn reload(&mut self, trigger: &'static str) -> bool {
        // A blocking read of a small local file, once per change: not worth a task hop.
        match reload_once(&self.opts, &self.running) {
            ReloadOutcome::Applied(merge) => {
                tracing::info!(
                    trigger,
                    changed = %merge.changed.join(", "),
                    "configuration reloaded"
                );
                let config = Arc::new(merge.config);
                if self.tx.send(Arc::clone(&config)).is_err() {
                    return false;
                }
                self.counters.applied.fetch_add(1, Ordering::Relaxed);
                self.running = config;
            }
            ReloadOutcome::Unchanged => {
                tracing::debug!(trigger, "configuration reload: nothing reloadable changed");
            }
            ReloadOutcome::Rejected(reason) => {
                tracing::error!(
                    trigger,
                    %reason,
                    "configuration reload rejected; the running configuration stays"
                );
                self.counters.reject(reason);
            }
        }
        true
    }
}

/// A SIGHUP listener for a task that also acts without one (`otherwise` says how, in the
/// warning logged when the listener cannot be installed).
pub fn hangup_signal(otherwise: &str) -> Option<Signal> {
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; {otherwise}");
            None
        }
    }
}

/// The next SIGHUP; never, when no listener is installed.
pub async fn next_hangup(hangup: &mut Option<Signal>) {
    if let Some(s) = hangup {
        if s.recv().await.is_some() {
            return;
        }
    }
    // Not installed, or the signal driver is gone: never fires.
    std::future::pending().await
}

async fn next_tick(ticker: &mut Option<Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The bytes of the watched files (`None`: unreadable or missing).
struct Contents {
    paths: Vec<PathBuf>,
    seen: Vec<Option<Vec<u8>>>,
    pending: Option<Vec<Option<Vec<u8>>>>,
}

impl Contents {
    fn new(paths: Vec<PathBuf>) -> Self {
        let seen = read_all(&paths);
        Self {
            paths,
            seen,
            pending: None,
        }
    }

    fn resync(&mut self) {
        self.seen = read_all(&self.paths);
        self.pending = None;
    }

    /// True once new contents have held still for two polls: a file caught half-written by an
    /// in-place editor would otherwise be loaded, rejected and reported as an error.
    fn changed(&mut self) -> bool {
        let now = read_all(&self.paths);
        if now == self.seen {
            self.pending = None;
            return false;
        }
        if self.pending.as_ref() == Some(&now) {
            self.seen = now;
            self.pending = None;
            return true;
        }
        self.pending = Some(now);
        false
    }
}

fn read_all(paths: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    paths.iter().map(|p| std::fs::read(p).ok()).collect()
}

#[cfg(test)]
#[path = "reload_tests.rs"]
mod tests;
