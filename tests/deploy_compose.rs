//! The compose stack, for real: `docker-compose.yml` with `deploy/compose/local.yml` on top
//! (images built here: kbatch FROM scratch out of this build's binary, Prometheus from Debian's
//! binary, Apache Kafka 4.1.1 from Maven Central as the broker; Grafana left out) is brought up
//! on Podman, `kbatch bench` runs inside the stack's network against it, and the test checks
//! every reply, that both replicas answered (one consumer group, partitions shared), that
//! Prometheus scraped both and counts the same replies, and that the image's health-check
//! command passes. The stack is torn down even when an assertion fails.
//!
//! Needs the test bench (scripts/setup-testbench.sh: Podman's Docker API in `DOCKER_HOST`, the
//! broker image) and scripts/setup-deploy.sh (docker-compose, prometheus); scripts/test.sh runs
//! both.
#![cfg(feature = "container-tests")]

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const REQUESTS: u64 = 300;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running stack; `down` on drop, so a failed assertion leaves no containers behind.
struct Stack {
    project: String,
    prometheus: SocketAddr,
    kafka_port: u16,
}

impl Stack {
    fn compose(&self) -> Command {
        let mut c = Command::new("docker-compose");
        c.current_dir(repo())
            .args(["-p", &self.project])
            .args(["-f", "docker-compose.yml", "-f", "deploy/compose/local.yml"])
            .env("PROMETHEUS_PORT", self.prometheus.port().to_string())
            .env("KAFKA_PORT", self.kafka_port.to_string());
        c
    }

    fn up() -> Stack {
        run(Command::new(repo().join("scripts/build-local-images.sh"))
            .arg(env!("CARGO_BIN_EXE_kbatch")));
        let id = common::unique_topic("kbc");
        let stack = Stack {
            project: id.replace(['.', '-'], "").to_lowercase(),
            prometheus: SocketAddr::from(([127, 0, 0, 1], free_port())),
            kafka_port: free_port(),
        };
        run(stack.compose().args(["up", "-d"]));
        stack
    }

    /// `kbatch <args>` in a throw-away container on the stack's network.
    fn kbatch(&self, args: &[&str]) -> Output {
        let network = format!("{}_default", self.project);
        run(Command::new("podman")
            .args([
                "run",
                "--rm",
                "--network",
                &network,
                "localhost/kbatch:local",
            ])
            .args(args))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.compose().args(["down", "-t", "3"]).output();
    }
}

/// `query`, percent-encoded for a URL's query string.
fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The instant vector `query` as (instance, value) pairs.
async fn instant(prometheus: SocketAddr, query: &str) -> Vec<(String, f64)> {
    let path = format!("/api/v1/query?query={}", encode(query));
    let Ok((200, body)) =
        kbatch_core::telemetry::client::get(prometheus, &path, Duration::from_secs(5)).await
    else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_str(&body).expect("Prometheus answers JSON");
    v["data"]["result"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    let instance = r["metric"]["instance"].as_str().unwrap_or("").to_string();
                    let value = r["value"][1].as_str().and_then(|s| s.parse().ok());
                    (instance, value.unwrap_or(f64::NAN))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `query` until `done` holds for its result or `limit` passes; returns the last result.
async fn until(
    prometheus: SocketAddr,
    query: &str,
    limit: Duration,
    done: impl Fn(&[(String, f64)]) -> bool,
) -> Vec<(String, f64)> {
    let start = Instant::now();
    loop {
        let r = instant(prometheus, query).await;
        if done(&r) || start.elapsed() > limit {
            return r;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_stack_serves_requests_and_prometheus_sees_both_replicas() {
    let stack = Stack::up();
    // Both replicas scraped: they are up, and their HTTP endpoints answer.
    let up = until(
        stack.prometheus,
        "up{job=\"kbatch\"} == 1",
        Duration::from_secs(90),
        |r| r.len() == 2,
    )
    .await;
    assert_eq!(up.len(), 2, "both replicas up in Prometheus: {up:?}");
    // Both replicas own partitions: each reports lag for the partitions assigned to it. On Kafka
    // the second member's join can complete after a short run is over, leaving it nothing to do,
    // so the load starts only once the group has settled with both.
    let owners = until(
        stack.prometheus,
        "count by (instance) (kbatch_consumer_lag_records)",
        Duration::from_secs(90),
        |r| r.len() == 2,
    )
    .await;
    assert_eq!(owners.len(), 2, "both replicas hold partitions: {owners:?}");

    let n = REQUESTS.to_string();
    let out = stack.kbatch(&[
        "bench",
        "--brokers",
        "kafka:9092",
        "-n",
        &n,
        "--rate",
        "100",
        "--wait-secs",
        "60",
        "--json",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("bench --json: {e}: {text}"));
    assert_eq!(report["expected_replies"], REQUESTS, "{report}");
    assert_eq!(report["answered"], REQUESTS, "{report}");
    assert_eq!(report["missing"], 0, "{report}");
    assert_eq!(report["statuses"]["OK"], REQUESTS, "{report}");

    let query = "sum by (instance) (kbatch_replies_total{status=\"OK\"})";
    let replies = until(stack.prometheus, query, Duration::from_secs(60), |r| {
        r.iter().map(|(_, v)| v).sum::<f64>() >= REQUESTS as f64
    })
    .await;
    let total: f64 = replies.iter().map(|(_, v)| v).sum();
    assert_eq!(
        total, REQUESTS as f64,
        "Prometheus counts every reply: {replies:?}"
    );
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert!(
        replies.iter().all(|(_, v)| *v > 0.0),
        "the group shared the partitions, both replicas answered: {replies:?}"
    );

    // The image's HEALTHCHECK command (Podman runs image health checks only under systemd).
    let container = format!("{}_kbatch-1_1", stack.project);
    run(Command::new("podman").args([
        "exec",
        &container,
        "/opt/kbatch/bin/kbatch",
        "probe",
        "/ready",
    ]));
    let user =
        run(Command::new("podman").args(["inspect", &container, "--format", "{{.Config.User}}"]));
    assert_eq!(
        String::from_utf8_lossy(&user.stdout).trim(),
        "10001",
        "non-root"
    );
}
