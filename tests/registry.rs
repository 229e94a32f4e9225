//! The model registry on a real broker: several models and versions served at once, routed by
//! name and version; a version added while serving takes traffic after its warm-up with no
//! failed request; a removed version drains and unloads; a version with the wrong signature is
//! refused while the old one serves; a weighted split follows its weights.
#![cfg(feature = "container-tests")]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::pipeline::*;
use common::serving::{http_addr, serve_observed, stop};
use common::{producer, shared_broker, with_timeout};
use kbatch_core::config::Config;
use kbatch_core::inference::{load_backend, LoadSpec};
use kbatch_core::model::ModelId;
use kbatch_core::telemetry::models::VersionState;
use kbatch_core::telemetry::Telemetry;
use kbatch_core::tier::Tier;
use kbatch_core::wire::{Inputs, Request, Status};

fn bundled(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(rel)
}

/// Puts `file` in place as `<root>/<model>/<version>/model.onnx` all at once: written under a
/// hidden name (which scans skip), then renamed, so a rescan never sees half a file.
fn install(root: &Path, model: &str, version: &str, file: &str) {
    let dir = root.join(model);
    let staging = dir.join(format!(".staging-{version}"));
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::copy(bundled(file), staging.join("model.onnx")).unwrap();
    std::fs::rename(&staging, dir.join(version)).unwrap();
}

async fn registry_config(bootstrap: &str, root: &Path) -> Config {
    let mut cfg = test_config(bootstrap, 2).await;
    cfg.model_registry.path = root.to_path_buf();
    cfg.model_registry.sync_interval_s = 1.0;
    cfg.model.warmup_batches = 1;
    cfg
}

/// A request for `model`/`version` whose input fits `risk_mlp` (8 values) or `cnn_lstm`.
fn routed(id: &str, n: u64, model: Option<&str>, version: Option<&str>) -> Request {
    let mut r = request(id, n);
    r.model_name = model.map(str::to_owned);
    r.model_version = version.map(str::to_owned);
    if model == Some("risk_mlp") {
        r.inputs = Inputs::v1(
            vec![8],
            (0..8).map(|i| ((i + n) % 7) as f32 / 7.0 - 0.5).collect(),
        );
    }
    r
}

/// Direct outputs of one bundled file for `req`: its first output, as a version-1 reply
/// carries it.
fn direct(cfg: &Config, file: &str, req: &Request) -> Vec<f32> {
    let spec = LoadSpec::new(&cfg.model, ModelId::new("direct", "1"), bundled(file));
    let mut b = load_backend(&spec).expect("backend");
    infer_v1(b.as_mut(), req)
}

fn state_of(t: &Telemetry, model: &str, version: &str) -> Option<VersionState> {
    let view = t.stats.models()?;
    let m = view.models.iter().find(|m| m.name == model)?;
    Some(m.versions.iter().find(|v| v.version == version)?.state)
}

/// A server on a repository holding cnn_lstm version 1 only, once that version is ready.
struct Serving1 {
    root: tempfile::TempDir,
    cfg: Config,
    replies_reader: rdkafka::consumer::StreamConsumer,
    telemetry: std::sync::Arc<Telemetry>,
    serving: common::serving::Serving,
}

async fn serve_version_1(bootstrap: &str) -> Serving1 {
    let root = tempfile::tempdir().unwrap();
    install(root.path(), "cnn_lstm", "1", "cnn_lstm/1/model.onnx");
    let cfg = registry_config(bootstrap, root.path()).await;
    let replies_reader = reader(bootstrap, &cfg.replies.default_topic);
    let (telemetry, serving) = serve_observed(&cfg);
    wait_state(&telemetry, "cnn_lstm", "1", VersionState::Ready).await;
    Serving1 {
        root,
        cfg,
        replies_reader,
        telemetry,
        serving,
    }
}

/// Waits until the registry reports `model` `version` in `state`.
async fn wait_state(t: &Telemetry, model: &str, version: &str, state: VersionState) {
    let what = format!("{model} {version} {}", state.as_str());
    wait_for(&what, || state_of(t, model, version) == Some(state)).await;
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    with_timeout(what, Duration::from_secs(60), async {
        while !ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_models_and_two_versions_are_served_at_once_routed_by_name_and_version() {
    let broker = shared_broker().await;
    let root = tempfile::tempdir().unwrap();
    install(root.path(), "cnn_lstm", "1", "cnn_lstm/1/model.onnx");
    install(root.path(), "cnn_lstm", "2", "cnn_lstm/2/model.onnx");
    install(root.path(), "risk_mlp", "1", "risk_mlp/1/model.onnx");
    let cfg = registry_config(broker.bootstrap_servers(), root.path()).await;
    let replies_reader = reader(broker.bootstrap_servers(), &cfg.replies.default_topic);
    let (_telemetry, serving) = serve_observed(&cfg);
    let p = producer(broker.bootstrap_servers());
    // (model, version, the file that must answer) per request kind.
    let kinds: [(Option<&str>, Option<&str>, Option<&str>); 6] = [
        (Some("cnn_lstm"), Some("1"), Some("cnn_lstm/1/model.onnx")),
        (Some("cnn_lstm"), Some("2"), Some("cnn_lstm/2/model.onnx")),
        (None, None, Some("cnn_lstm/2/model.onnx")), // default model, latest version
        (Some("risk_mlp"), None, Some("risk_mlp/1/model.onnx")),
        (Some("fraud"), None, None),         // not served: UNKNOWN_MODEL
        (Some("cnn_lstm"), Some("3"), None), // no such version: UNKNOWN_MODEL
    ];
    let mut reqs = Vec::new();
    for i in 0..120u64 {
        let (m, v, _) = kinds[(i % 6) as usize];
        reqs.push(routed(&format!("mix-{i}"), i, m, v));
    }
    for (i, r) in reqs.iter().enumerate() {
        send_request(&p, &cfg, Tier::ALL[i % 4], r).await;
    }
    let replies = collect_replies(&replies_reader, &cfg, Duration::from_secs(60), |r| {
        r.len() >= reqs.len()
    })
    .await;
    assert_eq!(replies.len(), reqs.len(), "one reply each");
    let by_id: HashMap<&str, &Request> = reqs.iter().map(|r| (r.request_id.as_str(), r)).collect();
    for r in &replies {
        let i: u64 = r.reply.request_id[4..].parse().unwrap();
        let (m, v, file) = kinds[(i % 6) as usize];
        let req = by_id[r.reply.request_id.as_str()];
        match file {
            Some(file) => {
                assert_eq!(r.reply.status, Status::Ok, "{:?}", r.reply.error);
                let want_model = m.unwrap_or("cnn_lstm");
                let want_version = v.unwrap_or(if want_model == "risk_mlp" { "1" } else { "2" });
                assert_eq!(
                    (r.reply.model_name.as_str(), r.reply.model_version.as_str()),
                    (want_model, want_version)
                );
                let want = direct(&cfg, file, req);
                let got = r.reply.outputs.first_f32();
                assert_eq!(got.len(), want.len());
                for (a, b) in got.iter().zip(&want) {
                    assert!((a - b).abs() <= 1e-5, "{}: {a} vs {b}", r.reply.request_id);
                }
            }
            None => {
                assert_eq!(r.reply.status, Status::UnknownModel);
                let e = r.reply.error.as_deref().unwrap_or_default();
                assert!(e.contains("fraud") || e.contains("\"3\""), "{e}");
            }
        }
    }
    // The versions really ran apart: v1 and v2 disagree on the same input.
    let probe = request("probe", 5);
    assert_ne!(
        direct(&cfg, "cnn_lstm/1/model.onnx", &probe),
        direct(&cfg, "cnn_lstm/2/model.onnx", &probe)
    );
    stop(serving).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versions_roll_out_and_drain_live_with_no_failed_request() {
    let broker = shared_broker().await;
    let Serving1 {
        root,
        cfg,
        replies_reader,
        telemetry,
        serving,
    } = serve_version_1(broker.bootstrap_servers()).await;
    let p = producer(broker.bootstrap_servers());

    // Traffic without a version all along: it follows the latest version.
    let sender = {
        let (p, cfg) = (p.clone(), cfg.clone());
        tokio::spawn(async move {
            for i in 0..400u64 {
                send_request(
                    &p,
                    &cfg,
                    Tier::ALL[(i % 4) as usize],
                    &request(&format!("roll-{i}"), i),
                )
                .await;
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    install(root.path(), "cnn_lstm", "2", "cnn_lstm/2/model.onnx");
    wait_state(&telemetry, "cnn_lstm", "2", VersionState::Ready).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    std::fs::remove_dir_all(root.path().join("cnn_lstm/1")).unwrap();
    // Draining, then unloaded: gone from the report.
    wait_for("version 1 unloaded", || {
        state_of(&telemetry, "cnn_lstm", "1").is_none()
    })
    .await;
    sender.await.unwrap();
    let replies = collect_replies(&replies_reader, &cfg, Duration::from_secs(60), |r| {
        r.len() >= 400
    })
    .await;
    assert_eq!(replies.len(), 400, "one reply each");
    let failed: Vec<_> = replies
        .iter()
        .filter(|r| r.reply.status != Status::Ok)
        .map(|r| (&r.reply.request_id, r.reply.status, &r.reply.error))
        .collect();
    assert!(
        failed.is_empty(),
        "no request fails during a rollout: {failed:?}"
    );
    let versions: Vec<&str> = replies
        .iter()
        .map(|r| r.reply.model_version.as_str())
        .collect();
    let first_v2 = versions
        .iter()
        .position(|v| *v == "2")
        .expect("version 2 took traffic");
    assert!(
        versions[..first_v2].iter().all(|v| *v == "1"),
        "version 1 served first"
    );
    assert!(
        versions[versions.len() - 50..].iter().all(|v| *v == "2"),
        "after the rollout only version 2 answers"
    );
    stop(serving).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_rescans_at_once_and_a_failed_warm_up_is_reported() {
    // Registered first: a SIGHUP reaching the process before the registry listens must not end it.
    let _keep_alive =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).unwrap();
    let broker = shared_broker().await;
    let root = tempfile::tempdir().unwrap();
    install(root.path(), "cnn_lstm", "1", "cnn_lstm/1/model.onnx");
    let mut cfg = registry_config(broker.bootstrap_servers(), root.path()).await;
    // No rescan on the interval within this test: only SIGHUP can find the new versions.
    cfg.model_registry.sync_interval_s = 3600.0;
    let (telemetry, serving) = serve_observed(&cfg);
    wait_state(&telemetry, "cnn_lstm", "1", VersionState::Ready).await;
    install(root.path(), "cnn_lstm", "2", "cnn_lstm/2/model.onnx");
    // Version 3's warm-up sample (3 values) does not fit its 64 x 16 input: its warm-up fails.
    install(root.path(), "cnn_lstm", "3", "cnn_lstm/2/model.onnx");
    std::fs::write(root.path().join("cnn_lstm/3/warm.json"), "[[1, 2, 3]]").unwrap();
    std::fs::write(
        root.path().join("cnn_lstm/3/model.yaml"),
        "warmup: {samples: warm.json}\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        state_of(&telemetry, "cnn_lstm", "2"),
        None,
        "no rescan before the signal"
    );
    // SAFETY: kill(2) on our own pid with a signal this process handles.
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGHUP) }, 0);
    wait_state(&telemetry, "cnn_lstm", "2", VersionState::Ready).await;
    assert_eq!(
        state_of(&telemetry, "cnn_lstm", "3"),
        Some(VersionState::Failed)
    );
    let view = telemetry.stats.models().unwrap();
    let v3 = view.models[0]
        .versions
        .iter()
        .find(|v| v.version == "3")
        .unwrap();
    assert!(
        v3.error.as_deref().unwrap().contains("does not fit"),
        "{v3:?}"
    );
    stop(serving).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_with_the_wrong_signature_is_refused_and_the_old_one_keeps_serving() {
    let broker = shared_broker().await;
    let Serving1 {
        root,
        cfg,
        replies_reader,
        telemetry,
        serving,
    } = serve_version_1(broker.bootstrap_servers()).await;
    // A different model's file as version 2: its signature is not version 1's.
    install(root.path(), "cnn_lstm", "2", "risk_mlp/1/model.onnx");
    wait_state(&telemetry, "cnn_lstm", "2", VersionState::Failed).await;
    let view = telemetry.stats.models().unwrap();
    let v2 = view.models[0]
        .versions
        .iter()
        .find(|v| v.version == "2")
        .unwrap();
    let why = v2.error.as_deref().unwrap();
    assert!(
        why.contains("signature") && why.contains("version 1 serves"),
        "{why}"
    );
    // The same report over HTTP, as `kbatch models` prints it.
    let addr = http_addr(&telemetry).await.to_string();
    let text = kbatch_core::telemetry::client::models_with_headers(&addr, false, &[])
        .await
        .expect("GET /models");
    let line = |v: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(v))
            .unwrap_or("")
    };
    assert!(
        line("1 ").contains("ready") && line("1 ").contains("input: float32[batch, 64, 16]"),
        "{text}"
    );
    assert!(
        line("2 ").contains("failed") && line("2 ").contains("signature"),
        "{text}"
    );
    let metrics = telemetry.render_metrics();
    assert!(
        metrics.contains("kbatch_model_load_failures_total{model=\"cnn_lstm\"} 1"),
        "{metrics}"
    );
    let p = producer(broker.bootstrap_servers());
    for i in 0..20u64 {
        let v = (i % 2 == 1).then_some("2");
        send_request(
            &p,
            &cfg,
            Tier::Normal,
            &routed(&format!("sig-{i}"), i, None, v),
        )
        .await;
    }
    let replies = collect_replies(&replies_reader, &cfg, Duration::from_secs(60), |r| {
        r.len() >= 20
    })
    .await;
    assert_eq!(replies.len(), 20);
    for r in &replies {
        let i: u64 = r.reply.request_id[4..].parse().unwrap();
        if i % 2 == 1 {
            assert_eq!(
                r.reply.status,
                Status::UnknownModel,
                "version 2 is never served"
            );
        } else {
            assert_eq!(r.reply.status, Status::Ok, "{:?}", r.reply.error);
            assert_eq!(r.reply.model_version, "1");
        }
    }
    stop(serving).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_weighted_split_sends_each_version_its_share() {
    let broker = shared_broker().await;
    let root = tempfile::tempdir().unwrap();
    install(root.path(), "cnn_lstm", "1", "cnn_lstm/1/model.onnx");
    install(root.path(), "cnn_lstm", "2", "cnn_lstm/2/model.onnx");
    std::fs::write(
        root.path().join("cnn_lstm/model.yaml"),
        "version_policy: {weights: {\"1\": 70, \"2\": 30}}\n",
    )
    .unwrap();
    let cfg = registry_config(broker.bootstrap_servers(), root.path()).await;
    let replies_reader = reader(broker.bootstrap_servers(), &cfg.replies.default_topic);
    let (_telemetry, serving) = serve_observed(&cfg);
    let p = producer(broker.bootstrap_servers());
    let n = 10_000u64;
    // Sent 500 at a time: one by one, 10,000 deliveries would take most of a minute.
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let reqs: Vec<Request> = chunk
            .iter()
            .map(|&i| request(&format!("canary-{i}"), i))
            .collect();
        let sends = reqs
            .iter()
            .enumerate()
            .map(|(k, r)| send_request(&p, &cfg, Tier::ALL[k % 4], r));
        futures::future::join_all(sends).await;
    }
    let replies = collect_replies(&replies_reader, &cfg, Duration::from_secs(180), |r| {
        r.len() >= n as usize
    })
    .await;
    assert_eq!(replies.len(), n as usize);
    assert!(replies.iter().all(|r| r.reply.status == Status::Ok));
    let to_2 = replies
        .iter()
        .filter(|r| r.reply.model_version == "2")
        .count();
    let share = to_2 as f64 / n as f64;
    eprintln!("weighted split 70/30: version 2 answered {to_2} of {n} ({share:.4})");
    assert!(
        (share - 0.30).abs() <= 0.03,
        "version 2 answered {share:.3} of requests"
    );
    stop(serving).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_single_file_form_refuses_a_file_that_contradicts_its_declared_shape() {
    let broker = shared_broker().await;
    let mut cfg = test_config(broker.bootstrap_servers(), 1).await;
    cfg.model.file = Some("cnn_lstm/1/model.onnx".into());
    cfg.model.input_shape = Some(vec![64, 15]);
    let (_telemetry, (_cancel, handle)) = serve_observed(&cfg);
    let err = with_timeout("serve refusing to start", Duration::from_secs(60), handle)
        .await
        .expect("serve task")
        .expect_err("a contradicted shape must not serve");
    let text = err.to_string();
    assert!(
        text.contains("model.input_shape says [64, 15]") && text.contains("float32[batch, 64, 16]"),
        "{text}"
    );
}
