//! The chaos suite (issue 6): a driver produces a known set of requests across tiers while three
//! `kbatch serve` processes in one group are gracefully stopped, `kill -9`-ed and restarted, and
//! the broker is frozen and thawed; a verifier then checks that every request has at least one
//! reply with the model's output, counts duplicates, and checks every commit it observed: no
//! committed offset ever passed a record whose reply had not been written before the commit was
//! seen. Bounded: about a minute of load and faults, two minutes at most to settle.
#![cfg(feature = "container-tests")]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::pipeline::*;
use common::{producer, start_broker, with_timeout};
use kbatch_core::config::{Config, Framing};
use kbatch_core::tier::Tier;
use kbatch_core::wire::{Status, WireCodec};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::process::{Child, Command};

const REQUESTS: usize = 2_400;
/// Distinct inputs (the expected outputs are computed once per input).
const INPUTS: u64 = 40;
const PARTITIONS: i32 = 4;

/// Where each request landed: (tier, partition, offset).
type Placement = HashMap<String, (Tier, i32, i64)>;

/// A commit observation: (seen at ms, tier, partition, committed offset).
type Commits = Vec<(i64, Tier, i32, i64)>;

/// A reply as the verifier saw it: id, status, outputs, the reply record's timestamp (ms).
type Seen = Vec<(String, Status, Vec<f32>, i64)>;

/// A free local port for an instance's HTTP endpoint (readiness gates the rolling restart).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `kbatch serve` process and its HTTP endpoint.
struct Instance {
    child: Child,
    http: std::net::SocketAddr,
}

fn spawn(cfg: &Config) -> Instance {
    let http: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let child = Command::new(env!("CARGO_BIN_EXE_kbatch"))
        .arg("serve")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .envs(serve_env(cfg))
        .env("KBATCH_HTTP__PORT", http.port().to_string())
        .env(
            "LOG_LEVEL",
            std::env::var("KBATCH_CHAOS_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .kill_on_drop(true)
        .spawn()
        .expect("spawning kbatch serve");
    Instance { child, http }
}

/// Waits until the instance answers `/ready` with 200 (model warm, group joined, broker up), as
/// an orchestrator gates each step of a rolling restart.
async fn wait_ready(i: &Instance) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while tokio::time::Instant::now() < deadline {
        let r = kbatch_core::telemetry::client::get(i.http, "/ready", Duration::from_secs(2)).await;
        if matches!(r, Ok((200, _))) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("instance at {} not ready within 90 s", i.http);
}

async fn sigterm(i: &mut Instance) {
    let child = &mut i.child;
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    let waited = tokio::time::timeout(Duration::from_secs(40), child.wait()).await;
    assert!(
        matches!(waited, Ok(Ok(s)) if s.success()),
        "a SIGTERM-ed instance drains and exits 0: {waited:?}"
    );
}

async fn sigkill(i: &mut Instance) {
    i.child.start_kill().expect("SIGKILL");
    i.child.wait().await.expect("reaping");
}

/// Produces every request at a steady pace; returns where each landed.
async fn drive(p: FutureProducer, cfg: Config) -> Placement {
    let codec = WireCodec::new(&cfg.wire);
    let mut placed = Placement::new();
    for i in 0..REQUESTS {
        let tier = Tier::ALL[i % 4];
        let req = request(&format!("c-{i}"), i as u64 % INPUTS);
        let mut buf = Vec::new();
        codec.encode_request(&req, Framing::Confluent, &mut buf);
        let rec = FutureRecord::to(cfg.kafka.topics.topic(tier))
            .key(&req.request_id)
            .payload(&buf);
        let d = p
            .send(rec, Duration::from_secs(60))
            .await
            .unwrap_or_else(|(e, _)| panic!("producing {}: {e}", req.request_id));
        placed.insert(req.request_id, (tier, d.partition, d.offset));
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    placed
}

/// Reads every reply into `seen` until cancelled.
async fn verify_replies(cfg: Config, bootstrap: String, seen: Arc<Mutex<Seen>>) {
    let codec = WireCodec::new(&cfg.wire);
    let r = reader(&bootstrap, &cfg.replies.default_topic);
    loop {
        let Ok(msg) = r.recv().await else { continue };
        let Ok(reply) = codec.decode_reply(msg.payload().unwrap_or_default()) else {
            continue;
        };
        let ts = msg.timestamp().to_millis().unwrap_or(i64::MAX);
        seen.lock().unwrap().push((
            reply.request_id,
            reply.status,
            reply.outputs.first_f32().to_vec(),
            ts,
        ));
    }
}

/// Every 300 ms: the group's committed offset of each tier partition, with the time seen (ms).
async fn watch_commits(cfg: Config, bootstrap: String, commits: Arc<Mutex<Commits>>) {
    let c: BaseConsumer = kafka_client(&bootstrap, &cfg.kafka.group_id);
    let mut tpl = TopicPartitionList::new();
    for t in Tier::ALL {
        for p in 0..PARTITIONS {
            tpl.add_partition(cfg.kafka.topics.topic(t), p);
        }
    }
    let c = Arc::new(c);
    loop {
        let (c2, tpl2) = (c.clone(), tpl.clone());
        let got =
            tokio::task::spawn_blocking(move || c2.committed_offsets(tpl2, Duration::from_secs(3)))
                .await
                .expect("join");
        let at = kbatch_core::pipeline::now_ms();
        if let Ok(list) = got {
            let mut out = commits.lock().unwrap();
            for e in list.elements() {
                let tier = Tier::ALL
                    .into_iter()
                    .find(|&t| cfg.kafka.topics.topic(t) == e.topic());
                if let (Some(tier), Offset::Offset(o)) = (tier, e.offset()) {
                    out.push((at, tier, e.partition(), o));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn kafka_client(bootstrap: &str, group: &str) -> BaseConsumer {
    common::kafka::consumer_config(bootstrap, group)
        .create()
        .expect("offset reader")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_under_stops_kills_and_a_frozen_broker_lose_nothing() {
    let broker = start_broker().await;
    let mut cfg = test_config(broker.bootstrap_servers(), PARTITIONS).await;
    // A frozen broker is noticed when a request times out.
    cfg.kafka
        .properties
        .insert("socket.timeout.ms".into(), "5000".into());
    let bootstrap = broker.bootstrap_servers().to_owned();
    let seen = Arc::new(Mutex::new(Seen::new()));
    let commits = Arc::new(Mutex::new(Commits::new()));
    let reader_task = tokio::spawn(verify_replies(cfg.clone(), bootstrap.clone(), seen.clone()));
    let commit_task = tokio::spawn(watch_commits(
        cfg.clone(),
        bootstrap.clone(),
        commits.clone(),
    ));
    let mut inst: Vec<Instance> = (0..3).map(|_| spawn(&cfg)).collect();
    let driver = tokio::spawn(drive(producer(&bootstrap), cfg.clone()));

    let faults = inject_faults(&cfg, &broker, &mut inst).await;
    let placed = with_timeout("the driver", Duration::from_secs(120), driver)
        .await
        .expect("driver");

    // Settle: every request answered at least once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let answered: std::collections::HashSet<String> =
            seen.lock().unwrap().iter().map(|s| s.0.clone()).collect();
        if answered.len() >= REQUESTS || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A last look at the commits once everything settled.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for c in &mut inst {
        sigterm(c).await;
    }
    reader_task.abort();
    commit_task.abort();

    let seen = seen.lock().unwrap().clone();
    let commits = commits.lock().unwrap().clone();
    verify(&cfg, &placed, &seen, &commits, &faults);
}

/// Which faults to inject: all by default; `KBATCH_CHAOS_FAULTS=stop,kill,freeze,rolling` (any
/// subset, or `none`) narrows a diagnosis.
fn enabled(fault: &str) -> bool {
    match std::env::var("KBATCH_CHAOS_FAULTS") {
        Ok(list) => list.split(',').any(|f| f.trim() == fault),
        Err(_) => true,
    }
}

/// The fault schedule: a graceful stop, two `kill -9`s, a frozen broker and a rolling restart of
/// the whole group. A killed instance's replacement starts at once, as an orchestrator restarts
/// a crashed pod, while the dead member still holds its partitions in the group; the next fault
/// waits until the replacement is ready.
async fn inject_faults(
    cfg: &Config,
    broker: &common::broker::Broker,
    inst: &mut [Instance],
) -> BTreeMap<&'static str, u32> {
    let mut faults: BTreeMap<&str, u32> = BTreeMap::new();
    let pause = |s| tokio::time::sleep(Duration::from_secs(s));
    pause(6).await;
    if enabled("stop") {
        sigterm(&mut inst[0]).await;
        *faults.entry("graceful stop").or_default() += 1;
        inst[0] = spawn(cfg);
        wait_ready(&inst[0]).await;
    }
    pause(3).await;
    if enabled("kill") {
        sigkill(&mut inst[1]).await;
        *faults.entry("kill -9").or_default() += 1;
        inst[1] = spawn(cfg);
        wait_ready(&inst[1]).await;
    }
    pause(3).await;
    if enabled("freeze") {
        broker.freeze().await;
        *faults.entry("broker frozen 6 s").or_default() += 1;
        pause(6).await;
        broker.thaw().await;
        for i in inst.iter() {
            wait_ready(i).await;
        }
    }
    pause(3).await;
    if enabled("kill") {
        sigkill(&mut inst[2]).await;
        *faults.entry("kill -9").or_default() += 1;
        inst[2] = spawn(cfg);
        wait_ready(&inst[2]).await;
    }
    if enabled("rolling") {
        // Each step waits for the replacement to be ready, as a Deployment's rolling update
        // does with a readiness probe.
        for instance in inst.iter_mut() {
            pause(2).await;
            sigterm(instance).await;
            *instance = spawn(cfg);
            wait_ready(instance).await;
            *faults.entry("rolling restart step").or_default() += 1;
        }
    }
    faults
}

/// The verdict: nothing lost, outputs right, no commit past an unanswered record.
fn verify(
    cfg: &Config,
    placed: &Placement,
    seen: &Seen,
    commits: &[(i64, Tier, i32, i64)],
    faults: &BTreeMap<&str, u32>,
) {
    let mut backend = load_default_backend(cfg);
    let mut want: HashMap<u64, Vec<f32>> = HashMap::new();
    for n in 0..INPUTS {
        want.insert(n, infer_v1(backend.as_mut(), &request("x", n)));
    }
    // First reply time per request.
    let mut first: HashMap<&str, i64> = HashMap::new();
    for (id, status, outputs, ts) in seen {
        assert_eq!(*status, Status::Ok, "{id}");
        let i: u64 = id["c-".len()..].parse().expect("our id");
        for (g, w) in outputs.iter().zip(&want[&(i % INPUTS)]) {
            assert!((g - w).abs() < 1e-4, "{id}: {g} vs {w}");
        }
        let e = first.entry(id.as_str()).or_insert(*ts);
        *e = (*e).min(*ts);
    }
    let lost: Vec<&String> = placed
        .keys()
        .filter(|id| !first.contains_key(id.as_str()))
        .collect();
    // Index the placements by partition for the commit check.
    let mut by_part: HashMap<(Tier, i32), Vec<(i64, &str)>> = HashMap::new();
    for (id, &(t, p, o)) in placed {
        by_part.entry((t, p)).or_default().push((o, id.as_str()));
    }
    let mut violations = Vec::new();
    for &(at, t, p, committed) in commits {
        for &(o, id) in by_part.get(&(t, p)).map(Vec::as_slice).unwrap_or_default() {
            // Committed past `o` when seen at `at`: its reply must have been written by then
            // (1 ms for timestamp granularity).
            if o < committed && first.get(id).is_none_or(|&ts| ts > at + 1) {
                violations.push(format!(
                    "{t}/{p} committed {committed} at {at} past {id}@{o}"
                ));
            }
        }
    }
    let duplicates = seen.len() - first.len();
    let mut parts: Vec<_> = by_part.keys().copied().collect();
    parts.sort();
    for k in parts {
        let v = &by_part[&k];
        let missing: Vec<i64> = v
            .iter()
            .filter(|(_, id)| !first.contains_key(id))
            .map(|(o, _)| *o)
            .collect();
        let last_commit = commits
            .iter()
            .filter(|c| (c.1, c.2) == k)
            .map(|c| c.3)
            .next_back();
        eprintln!(
            "partition {}/{}: {} records, last commit {:?}, missing {} (from offset {:?})",
            k.0,
            k.1,
            v.len(),
            last_commit,
            missing.len(),
            missing.iter().min()
        );
    }
    eprintln!(
        "chaos: {REQUESTS} requests, {} replies, lost {}, duplicated {duplicates}, faults {faults:?}, \
         commit snapshots {}, violations {}",
        seen.len(),
        lost.len(),
        commits.len(),
        violations.len()
    );
    assert!(
        lost.is_empty(),
        "lost {} requests, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        violations.is_empty(),
        "{:?}",
        &violations[..violations.len().min(5)]
    );
    assert!(commits.len() > 100, "commits were observed throughout");
}
