//! Reload tests: which keys are reloadable, merging, rejection of invalid files, and the
//! reloader task reacting to file content changes and to SIGHUP.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::QueueFull;

const VALID: &str = "batch_processing:\n  max_batch_size: 64\n";

fn opts(file: &Path) -> LoadOptions {
    LoadOptions {
        file: Some(file.to_path_buf()),
        // The machine's variables must not leak into the loaded config.
        env: Some(vec![]),
        ..LoadOptions::default()
    }
}

/// Replaces `path` in one rename, as a ConfigMap update does, so no poll sees half a file.
fn write(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn config_file(content: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kbatch.yaml");
    write(&path, content);
    (dir, path)
}

fn loaded(content: &str) -> Config {
    let (_dir, path) = config_file(content);
    load(&opts(&path)).unwrap().config
}

fn applied(outcome: ReloadOutcome) -> Merge {
    match outcome {
        ReloadOutcome::Applied(merge) => *merge,
        other => panic!("expected Applied, got {other:?}"),
    }
}

fn rejected(outcome: ReloadOutcome) -> String {
    match outcome {
        ReloadOutcome::Rejected(reason) => reason,
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[test]
fn reloadable_keys_follow_the_prefixes_and_exceptions() {
    assert!(is_reloadable("batch_processing.max_batch_size"));
    assert!(is_reloadable("adaptive_batching.adaptive_scaling_factor"));
    assert!(is_reloadable("logging.level"));
    assert!(!is_reloadable("batch_processing.when_queue_full"));
    assert!(!is_reloadable("logging.format"));
    assert!(!is_reloadable("kafka.brokers"));
    assert!(!is_reloadable("resource_management.thread_pool_size"));
    // A prefix matches whole segments only.
    assert!(!is_reloadable("logging.level_extra"));
    assert!(!is_reloadable("deduplication_v2.x"));
}

#[test]
fn merge_takes_reloadable_fields_and_keeps_restart_only_ones() {
    let running = Config::default();
    let new = loaded(
        "batch_processing:\n  max_batch_size: 64\nlogging:\n  level: debug\n  format: json\n\
         kafka:\n  brokers: other:9092\nresource_management:\n  thread_pool_size: 8\n",
    );
    let merge = merge_reloadable(&running, &new).unwrap();
    assert_eq!(merge.config.batch_processing.max_batch_size, 64);
    assert_eq!(merge.config.logging.level, "debug");
    assert_eq!(merge.config.logging.format, running.logging.format);
    assert_eq!(merge.config.kafka.brokers, running.kafka.brokers);
    assert_eq!(merge.config.resource_management.thread_pool_size, 4);
    assert_eq!(
        merge.changed,
        ["batch_processing.max_batch_size", "logging.level"]
    );
    assert_eq!(
        merge.needs_restart,
        [
            "kafka.brokers",
            "logging.format",
            "resource_management.thread_pool_size"
        ]
    );
}

#[test]
fn merge_of_equal_configs_is_the_running_config_with_nothing_listed() {
    let running = loaded(VALID);
    let merge = merge_reloadable(&running, &running.clone()).unwrap();
    assert_eq!(merge.config, running);
    assert!(merge.changed.is_empty() && merge.needs_restart.is_empty());
}

#[test]
fn kafka_properties_are_restart_only_leaves_named_by_their_dotted_key() {
    let mut running = Config::default();
    running
        .kafka
        .properties
        .insert("security.protocol".into(), "SSL".into());
    let mut new = running.clone();
    new.kafka
        .properties
        .insert("security.protocol".into(), "PLAINTEXT".into());
    new.kafka
        .properties
        .insert("ssl.ca.location".into(), "/ca.pem".into());
    let merge = merge_reloadable(&running, &new).unwrap();
    assert_eq!(
        merge.needs_restart,
        [
            "kafka.properties.security.protocol",
            "kafka.properties.ssl.ca.location"
        ]
    );
    assert!(merge.changed.is_empty());
    assert_eq!(merge.config.kafka.properties, running.kafka.properties);
}

#[test]
fn a_changed_max_batch_size_is_applied_and_listed() {
    let (_dir, path) = config_file(VALID);
    let merge = applied(reload_once(&opts(&path), &Config::default()));
    assert_eq!(merge.changed, ["batch_processing.max_batch_size"]);
    assert_eq!(merge.config.batch_processing.max_batch_size, 64);
    assert!(merge.needs_restart.is_empty());
}

#[test]
fn when_queue_full_needs_a_restart() {
    let (_dir, path) = config_file("batch_processing:\n  when_queue_full: reject\n");
    let running = Config::default();
    assert!(matches!(
        reload_once(&opts(&path), &running),
        ReloadOutcome::Unchanged
    ));
    let new = load(&opts(&path)).unwrap().config;
    let merge = merge_reloadable(&running, &new).unwrap();
    assert_eq!(merge.needs_restart, ["batch_processing.when_queue_full"]);
    assert_eq!(
        merge.config.batch_processing.when_queue_full,
        QueueFull::Pause
    );
}

#[test]
fn an_out_of_range_value_is_rejected_naming_the_field() {
    let (_dir, path) = config_file("batch_processing:\n  max_batch_size: 0\n");
    let reason = rejected(reload_once(&opts(&path), &Config::default()));
    assert!(
        reason.contains("batch_processing.max_batch_size"),
        "{reason}"
    );
}

#[test]
fn a_yaml_syntax_error_is_rejected_naming_the_file_and_line() {
    let (_dir, path) = config_file("batch_processing:\n  max_batch_size: [64\n");
    let reason = rejected(reload_once(&opts(&path), &Config::default()));
    // figment may print the path relative to the working directory (e.g. `../.tmpX/kbatch.yaml`
    // when the checkout lives in /tmp): check the file's own name and its directory's.
    let dir = path
        .parent()
        .and_then(Path::file_name)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(reason.contains(&format!("{dir}/kbatch.yaml")), "{reason}");
    assert!(reason.contains("line 2"), "{reason}");
}

#[test]
fn the_merged_config_is_validated_again() {
    // Valid on its own, but the kept restart-only value is not: the merge must not pass.
    let (_dir, path) = config_file(VALID);
    let mut running = Config::default();
    running.resource_management.thread_pool_size = 0;
    let reason = rejected(reload_once(&opts(&path), &running));
    assert!(
        reason.contains("resource_management.thread_pool_size"),
        "{reason}"
    );
}

#[test]
fn watched_files_are_the_config_file_then_the_profile_file() {
    let mut o = opts(Path::new("/etc/kbatch/kbatch.yaml"));
    assert_eq!(
        watched_files(&o),
        [PathBuf::from("/etc/kbatch/kbatch.yaml")]
    );
    o.profile = Some("off_hours".into());
    assert_eq!(
        watched_files(&o),
        [
            PathBuf::from("/etc/kbatch/kbatch.yaml"),
            PathBuf::from("/etc/kbatch/profiles/off_hours.yaml")
        ]
    );
    o.config_dir = Some(PathBuf::from("/srv/conf"));
    assert_eq!(
        watched_files(&o)[1],
        PathBuf::from("/srv/conf/profiles/off_hours.yaml")
    );
}

/// A reloader task over `opts`, and what it publishes and counts.
struct Reloader {
    rx: watch::Receiver<Arc<Config>>,
    counters: Arc<ReloadCounters>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Starts the reloader without waiting for it to take its first snapshot.
fn spawn(opts: LoadOptions, poll: Duration) -> Reloader {
    let initial = Arc::new(load(&opts).unwrap().config);
    let (tx, rx) = watch::channel(Arc::clone(&initial));
    let counters = Arc::new(ReloadCounters::default());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run_reloader(
        opts,
        initial,
        tx,
        poll,
        Arc::clone(&counters),
        cancel.clone(),
    ));
    Reloader {
        rx,
        counters,
        cancel,
        task,
    }
}

/// Starts the reloader and lets it settle, so that what it publishes next comes from a poll
/// or a signal rather than from its catch-up reload at start.
async fn start(opts: LoadOptions, poll: Duration) -> Reloader {
    let r = spawn(opts, poll);
    tokio::time::sleep(Duration::from_millis(200)).await;
    r
}

/// The next published config, if one comes within `within`.
async fn published(rx: &mut watch::Receiver<Arc<Config>>, within: Duration) -> Option<Arc<Config>> {
    let changed = tokio::time::timeout(within, rx.changed()).await;
    matches!(changed, Ok(Ok(()))).then(|| Arc::clone(&rx.borrow_and_update()))
}

async fn wait_until(within: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while !done() {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

const POLL: Duration = Duration::from_millis(50);
const PATIENCE: Duration = Duration::from_secs(5);

#[tokio::test]
async fn file_changes_publish_valid_configs_and_never_invalid_ones() {
    let (_dir, path) = config_file(VALID);
    let mut r = start(opts(&path), POLL).await;

    write(&path, "batch_processing:\n  max_batch_size: 128\n");
    let c = published(&mut r.rx, PATIENCE).await.expect("no reload");
    assert_eq!(c.batch_processing.max_batch_size, 128);
    assert_eq!(r.counters.applied.load(Ordering::Relaxed), 1);

    write(&path, "batch_processing:\n  max_batch_size: 0\n");
    let counters = Arc::clone(&r.counters);
    assert!(wait_until(PATIENCE, || counters.rejected.load(Ordering::Relaxed) > 0).await);
    // Several polls later: still the old config, and the bad file was reported once, not on
    // every poll.
    tokio::time::sleep(POLL * 6).await;
    assert_eq!(r.counters.rejected.load(Ordering::Relaxed), 1);
    assert!(!r.rx.has_changed().unwrap());
    assert_eq!(r.rx.borrow().batch_processing.max_batch_size, 128);
    let error = r.counters.last_error().expect("no error kept");
    assert!(error.contains("batch_processing.max_batch_size"), "{error}");

    write(&path, "batch_processing:\n  max_batch_size: 256\n");
    let c = published(&mut r.rx, PATIENCE).await.expect("no reload");
    assert_eq!(c.batch_processing.max_batch_size, 256);
    assert_eq!(r.counters.rejected.load(Ordering::Relaxed), 1);
    assert_eq!(r.counters.applied.load(Ordering::Relaxed), 2);
    r.cancel.cancel();
    r.task.await.unwrap();
}

#[tokio::test]
async fn a_write_between_the_startup_load_and_the_first_snapshot_is_not_lost() {
    let (_dir, path) = config_file(VALID);
    // The task has not run yet (current-thread runtime): its first snapshot sees this content.
    let mut r = spawn(opts(&path), Duration::from_secs(3600));
    write(&path, "batch_processing:\n  max_batch_size: 77\n");
    let c = published(&mut r.rx, PATIENCE).await.expect("no reload");
    assert_eq!(c.batch_processing.max_batch_size, 77);
    r.cancel.cancel();
}

#[tokio::test]
async fn a_restart_only_change_alone_publishes_nothing() {
    let (_dir, path) = config_file(VALID);
    let mut r = start(opts(&path), POLL).await;
    write(
        &path,
        "batch_processing:\n  max_batch_size: 64\nkafka:\n  brokers: b:9092\n",
    );
    assert!(published(&mut r.rx, Duration::from_millis(500))
        .await
        .is_none());
    // The reloader is alive: a reloadable change afterwards is still picked up.
    write(
        &path,
        "batch_processing:\n  max_batch_size: 65\nkafka:\n  brokers: b:9092\n",
    );
    let c = published(&mut r.rx, PATIENCE).await.expect("no reload");
    assert_eq!(c.batch_processing.max_batch_size, 65);
    assert_eq!(c.kafka.brokers, Config::default().kafka.brokers);
    r.cancel.cancel();
}

#[tokio::test]
async fn a_profile_file_change_is_picked_up() {
    let (dir, path) = config_file(VALID);
    std::fs::create_dir(dir.path().join("profiles")).unwrap();
    let profile = dir.path().join("profiles").join("custom.yaml");
    write(
        &profile,
        "adaptive_batching:\n  adaptive_scaling_factor: 2.0\n",
    );
    let mut o = opts(&path);
    o.profile = Some("custom".into());
    let mut r = start(o, POLL).await;
    write(
        &profile,
        "adaptive_batching:\n  adaptive_scaling_factor: 3.0\n",
    );
    let c = published(&mut r.rx, PATIENCE).await.expect("no reload");
    assert_eq!(c.adaptive_batching.adaptive_scaling_factor, 3.0);
    r.cancel.cancel();
}

#[tokio::test]
async fn sighup_reloads_without_a_file_poll() {
    // Registered first so that a SIGHUP reaching the process early cannot terminate it.
    let _keep_alive = signal(SignalKind::hangup()).unwrap();
    let (_dir, path) = config_file(VALID);
    let mut r = start(opts(&path), Duration::from_secs(3600)).await;
    write(&path, "batch_processing:\n  max_batch_size: 99\n");
    // With an hour's poll interval, only the signal can load this.
    assert!(published(&mut r.rx, Duration::from_millis(300))
        .await
        .is_none());

    let mut reloaded = None;
    for _ in 0..10 {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        reloaded = published(&mut r.rx, Duration::from_millis(500)).await;
        if reloaded.is_some() {
            break;
        }
    }
    let c = reloaded.expect("SIGHUP did not reload");
    assert_eq!(c.batch_processing.max_batch_size, 99);
    r.cancel.cancel();
}

#[tokio::test]
async fn the_reloader_stops_on_cancel_and_when_receivers_are_gone() {
    let (_dir, path) = config_file(VALID);
    let r = start(opts(&path), POLL).await;
    r.cancel.cancel();
    tokio::time::timeout(PATIENCE, r.task)
        .await
        .unwrap()
        .unwrap();

    let r = start(opts(&path), POLL).await;
    drop(r.rx);
    tokio::time::timeout(PATIENCE, r.task)
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn reload_notes_name_the_exceptions_of_each_section() {
    assert_eq!(
        reload_note("batch_processing"),
        "live, except when_queue_full (restart)"
    );
    assert_eq!(reload_note("deduplication"), "live");
    assert_eq!(reload_note("logging"), "restart, except level (live)");
    assert_eq!(reload_note("kafka"), "restart");
}

/// The bundled configuration tells its reader, per section, what `reload_note` says: the file
/// users edit cannot promise a reload the code does not make.
#[test]
fn every_section_of_the_bundled_config_states_how_it_reloads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/default.yaml");
    let text = std::fs::read_to_string(path).expect("config/default.yaml");
    let sections: Vec<(&str, &str)> = text
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_lowercase()))
        .filter_map(|l| l.split_once(':'))
        .collect();
    let tree = serde_json::to_value(Config::default()).expect("serializes");
    let mut names: Vec<&str> = sections.iter().map(|(s, _)| *s).collect();
    names.sort_unstable();
    let mut expected: Vec<&str> = tree
        .as_object()
        .expect("a map")
        .keys()
        .map(String::as_str)
        .collect();
    expected.sort_unstable();
    assert_eq!(names, expected, "every section is in the bundled file");
    for (section, rest) in sections {
        let note = format!("# reload: {}", reload_note(section));
        assert!(
            rest.trim_start().starts_with(&note),
            "{section}: expected `{note}`, found `{}`",
            rest.trim()
        );
    }
}
