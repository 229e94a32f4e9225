//! Unit tests of `health`.

use super::*;

fn ready_health() -> Arc<Health> {
    let h = Arc::new(Health::new(Duration::from_millis(50)));
    h.set_model_ready(true);
    h.set_group_joined(true);
    h.set_broker_up(true);
    h
}

#[test]
fn readiness_names_every_missing_condition() {
    let h = Arc::new(Health::new(Duration::from_secs(60)));
    let why = h.readiness().unwrap_err().to_string();
    for part in ["model", "broker", "group"] {
        assert!(why.contains(part), "{why}");
    }
    h.set_model_ready(true);
    h.set_group_joined(true);
    assert_eq!(
        h.readiness().unwrap_err().to_string(),
        "no broker reachable"
    );
    h.set_broker_up(true);
    assert_eq!(h.readiness(), Ok(()));
    // A broker outage is not a liveness failure: restarting would not bring it back.
    h.set_broker_up(false);
    assert_eq!(h.liveness(), Ok(()));
    assert!(h.readiness().is_err());
}

#[test]
fn a_component_ending_early_fails_liveness_but_not_during_shutdown() {
    let h = ready_health();
    let batcher = h.register("batcher");
    assert_eq!(h.liveness(), Ok(()));
    drop(batcher);
    let why = h.liveness().unwrap_err().to_string();
    assert!(why.contains("batcher ended: stopped"), "{why}");
    assert!(h.readiness().is_err());
    h.set_draining();
    assert_eq!(h.liveness(), Ok(()));
    assert_eq!(h.readiness().unwrap_err().to_string(), "shutting down");
}

#[test]
fn a_stalled_inference_call_fails_liveness() {
    let h = ready_health();
    let worker = h.register("inference-0");
    worker.busy(true);
    assert_eq!(h.liveness(), Ok(()));
    std::thread::sleep(Duration::from_millis(80));
    let why = h.liveness().unwrap_err().to_string();
    assert!(why.contains("inference-0 has run one batch"), "{why}");
    worker.busy(false);
    assert_eq!(h.liveness(), Ok(()));
}

#[test]
fn a_panicking_thread_is_reported_as_such() {
    let h = ready_health();
    let alive = h.register("inference-1");
    let joined = std::thread::spawn(move || {
        let _alive = alive;
        panic!("model crashed");
    })
    .join();
    assert!(joined.is_err());
    assert!(h.liveness().unwrap_err().to_string().contains("panicked"));
}

#[tokio::test(start_paused = true)]
async fn the_liveness_checker_runs_at_its_interval_and_publishes_the_verdict() {
    let h = Arc::new(Health::new(Duration::from_secs(60)));
    let live = prometheus::IntGauge::new("live", "test").unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let worker = h.register("inference-0");
    let (period, period_rx) = tokio::sync::watch::channel(Duration::from_secs(30));
    let task = tokio::spawn(run_liveness_checker(
        h.clone(),
        period_rx,
        live.clone(),
        cancel.clone(),
    ));
    // The first check runs at once.
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(live.get(), 1);
    // A stage ends; the verdict changes only at the next check, 30 s after the first.
    drop(worker);
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(live.get(), 1, "not checked again before the interval");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(live.get(), 0, "checked at 30 s");
    // A reloaded period of 5 s: the checker ticks at once on the change, then every 5 s, so a
    // recovery is seen within 5 s rather than 30.
    period.send(Duration::from_secs(5)).unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    h.set_draining();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(live.get(), 1, "checked again within the reloaded 5 s");
    cancel.cancel();
    task.await.unwrap();
}

#[test]
fn a_reloaded_stall_bound_applies_to_the_next_check() {
    let h = Arc::new(Health::new(Duration::from_secs(3600)));
    let worker = h.register("inference-0");
    worker.busy(true);
    std::thread::sleep(Duration::from_millis(20));
    assert!(h.liveness().is_ok(), "20 ms is far within an hour");
    h.set_stall_bound(Duration::from_millis(10));
    let why = h.liveness().unwrap_err().to_string();
    assert!(why.contains("inference-0"), "{why}");
}
