//! A Kafka broker in a container, started through testcontainers: one shared by every test of a
//! test binary ([`shared_broker`]), or one of its own for a test that freezes or stops it
//! ([`start_broker`]).
//!
//! Invariant: a broker handed out here has answered a metadata request at its bootstrap address
//! and advertises exactly that address (Kafka clients reconnect to the advertised listener, not
//! the one they dialled); an own broker's container is removed when its [`Broker`] drops, the
//! shared one's when the test process exits.
//!
//! Environment:
//! - `KBATCH_TEST_BROKER_IMAGE`: image to run; default [`DEFAULT_IMAGE`] (the test bench sets
//!   the locally built Apache Kafka image).
//! - `KBATCH_TEST_BROKER_KIND=tansu|kafka`: flavour; default guessed from the image name.
//! - `KBATCH_TEST_BROKER_NETWORK=bridge|host`: default `bridge` with a 127.0.0.1 port binding.
//! - `DOCKER_HOST`: the Docker-API socket (Podman's, from `.kbatch/testbench.env`, on our bench).
use std::net::TcpListener;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use testcontainers::bollard::models::{HostConfig, PortBinding};
use testcontainers::core::ContainerPort;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use super::kafka::poll_metadata;

/// Image used when `KBATCH_TEST_BROKER_IMAGE` is unset: real Kafka, for machines with a registry.
pub const DEFAULT_IMAGE: &str = "apache/kafka:latest";

/// How long a broker may take to answer its first metadata request. Apache Kafka's JVM start
/// dominates (5-15 s); tansu is ready in milliseconds.
pub const STARTUP_LIMIT: Duration = Duration::from_secs(90);

/// KRaft needs a base64 UUID; this is the example id from Kafka's own quickstart.
const KRAFT_CLUSTER_ID: &str = "MkU3OEVBNTcwNTJENDM2Qk";

/// Which broker implementation the image holds; decides how it is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    /// tansu: configured by command-line flags, in-memory storage.
    Tansu,
    /// Apache Kafka's official image: configured by `KAFKA_*` env vars, KRaft single node.
    Kafka,
}

impl BrokerKind {
    /// `KBATCH_TEST_BROKER_KIND` if set, else `Tansu` when the image name mentions tansu.
    pub fn detect(image: &str) -> Self {
        match std::env::var("KBATCH_TEST_BROKER_KIND").as_deref() {
            Ok("tansu") => Self::Tansu,
            Ok("kafka") => Self::Kafka,
            Ok(other) => panic!("KBATCH_TEST_BROKER_KIND={other:?}: expected tansu or kafka"),
            Err(_) if image.to_ascii_lowercase().contains("tansu") => Self::Tansu,
            Err(_) => Self::Kafka,
        }
    }
}

/// A running broker container. Dropping it removes the container.
pub struct Broker {
    bootstrap: String,
    kind: BrokerKind,
    image: String,
    container: ContainerAsync<GenericImage>,
}

impl Broker {
    /// `host:port` to give clients as `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// The flavour the harness configured.
    pub fn kind(&self) -> BrokerKind {
        self.kind
    }

    /// The image reference the container runs.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// The container's stdout and stderr so far, for failure messages.
    pub async fn logs(&self) -> String {
        container_logs(&self.container).await
    }

    /// Freezes the broker (a network partition, as clients see it: connections stay open and
    /// nothing answers). A stop and restart would not do here: tansu's memory storage comes back
    /// empty, and librdkafka 2.12 crashes on the metadata tansu then returns (topics with a null
    /// name and no error) for the topic ids it remembered.
    pub async fn freeze(&self) {
        // runc's cgroup freezer occasionally reports a failure while the JVM's threads are
        // being frozen ("runc pause ... exit status 1"); a second attempt succeeds.
        for attempt in 1.. {
            match self.container.pause().await {
                Ok(()) => return,
                Err(e) if attempt < 5 => {
                    eprintln!("pausing the broker container (attempt {attempt}): {e}");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => panic!("pausing the broker container: {e}"),
            }
        }
    }

    pub async fn thaw(&self) {
        self.container
            .unpause()
            .await
            .expect("unpausing the broker container");
    }
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("bootstrap", &self.bootstrap)
            .field("kind", &self.kind)
            .field("image", &self.image)
            .field("container", &self.container.id())
            .finish()
    }
}

/// The broker every test of this binary shares (topics and groups are unique per test, so
/// tests do not see each other). Started on first use; removed when the process exits.
pub struct SharedBroker {
    bootstrap: String,
    kind: BrokerKind,
    image: String,
    /// Dropping the sender tells the broker's thread to remove the container.
    stop: Mutex<Option<mpsc::Sender<()>>>,
    removed: Mutex<mpsc::Receiver<()>>,
}

impl SharedBroker {
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    pub fn kind(&self) -> BrokerKind {
        self.kind
    }

    pub fn image(&self) -> &str {
        &self.image
    }
}

static SHARED: OnceLock<SharedBroker> = OnceLock::new();

/// The test binary's shared broker, started by the first test that asks.
///
/// Not for a test that freezes, stops or restarts its broker: that one takes [`start_broker`].
pub async fn shared_broker() -> &'static SharedBroker {
    tokio::task::spawn_blocking(|| SHARED.get_or_init(start_shared))
        .await
        .expect("starting the shared broker (its panic is above)")
}

/// Runs the container on a thread and runtime of its own, which outlive every test's runtime;
/// the container is removed at process exit (`atexit`), since statics are never dropped.
fn start_shared() -> SharedBroker {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let (removed_tx, removed_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("shared-broker".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime for the shared broker");
            let broker = rt.block_on(start_broker());
            let info = (broker.bootstrap.clone(), broker.kind, broker.image.clone());
            let _ = ready_tx.send(info);
            // Returns when the sender is dropped: at process exit.
            let _ = stop_rx.recv();
            let _ = rt.block_on(broker.container.rm());
            let _ = removed_tx.send(());
        })
        .expect("spawning the shared broker's thread");
    let (bootstrap, kind, image) = ready_rx
        .recv()
        .expect("the shared broker did not start (its panic is above)");
    // SAFETY: registers a plain function with no captured state; it runs once at exit.
    unsafe {
        libc::atexit(remove_shared);
    }
    SharedBroker {
        bootstrap,
        kind,
        image,
        stop: Mutex::new(Some(stop_tx)),
        removed: Mutex::new(removed_rx),
    }
}

extern "C" fn remove_shared() {
    let Some(shared) = SHARED.get() else { return };
    drop(shared.stop.lock().map(|mut s| s.take()));
    if let Ok(removed) = shared.removed.lock() {
        // Bounded: a hung container engine must not hang the test run's exit.
        let _ = removed.recv_timeout(Duration::from_secs(30));
    }
}

/// Starts the configured broker image and waits until it serves metadata.
///
/// Panics (with the container's logs where there are any) if the Docker API is unreachable,
/// the image is missing, or the broker does not answer within [`STARTUP_LIMIT`].
pub async fn start_broker() -> Broker {
    let image = std::env::var("KBATCH_TEST_BROKER_IMAGE").unwrap_or_else(|_| DEFAULT_IMAGE.into());
    let kind = BrokerKind::detect(&image);
    let host_net = match std::env::var("KBATCH_TEST_BROKER_NETWORK").as_deref() {
        Ok("host") => true,
        Ok("bridge") | Err(_) => false,
        Ok(other) => panic!("KBATCH_TEST_BROKER_NETWORK={other:?}: expected bridge or host"),
    };
    // The advertised port must be known before the container starts, so the host port cannot be
    // left to the runtime: take one the OS says is free and use it on both sides.
    let port = free_port();
    let controller_port = free_port();
    let bootstrap = format!("127.0.0.1:{port}");
    // Bound on all container interfaces under bridge networking (the port forward arrives on the
    // container's eth0), on loopback only when sharing the host's network.
    let bind = if host_net { "127.0.0.1" } else { "0.0.0.0" };

    let (name, tag) = split_image(&image);
    let mut req = match kind {
        BrokerKind::Tansu => GenericImage::new(name, tag).with_cmd([
            "broker".to_owned(),
            "--listener-url".to_owned(),
            format!("tcp://{bind}:{port}"),
            "--advertised-listener-url".to_owned(),
            format!("tcp://{bootstrap}"),
            "--storage-engine".to_owned(),
            "memory://tansu/".to_owned(),
            "--cluster-id".to_owned(),
            "kbatch-test".to_owned(),
        ]),
        BrokerKind::Kafka => kafka_env(
            GenericImage::new(name, tag).into(),
            bind,
            port,
            controller_port,
        ),
    };
    req = req.with_container_name(format!("kbatch-broker-{}", uuid::Uuid::new_v4().simple()));
    if !host_net {
        req = req.with_mapped_port(port, ContainerPort::Tcp(port));
    }
    req = req.with_host_config_modifier(move |hc: &mut HostConfig| {
        if host_net {
            // Podman accepts host networking only as the host config's network mode; a
            // testcontainers "network" named host is treated as a user network and fails.
            hc.network_mode = Some("host".into());
            hc.port_bindings = None;
            hc.publish_all_ports = Some(false);
        } else {
            // Podman rejects a binding without HostIp; 127.0.0.1 also keeps the broker off
            // every other interface.
            let binding = PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(port.to_string()),
            };
            hc.port_bindings = Some([(format!("{port}/tcp"), Some(vec![binding]))].into());
        }
    });

    let container = req.start().await.unwrap_or_else(|e| {
        panic!(
            "starting broker image {image} ({kind:?}) failed: {e}\n\
             DOCKER_HOST={:?}. On the bench: source .kbatch/testbench.env \
             (after scripts/setup-testbench.sh).",
            std::env::var("DOCKER_HOST").ok()
        )
    });

    // Polled in short rounds so a broker that exits at once (wrong flavour, bad flags) fails in
    // seconds with its logs, instead of after the whole startup limit.
    let started = std::time::Instant::now();
    let advertised = Arc::new(Mutex::new(Vec::new()));
    loop {
        let seen = Arc::clone(&advertised);
        let answered = poll_metadata(&bootstrap, None, Duration::from_secs(2), move |md| {
            let brokers: Vec<String> = md
                .brokers()
                .iter()
                .map(|b| format!("{}:{}", b.host(), b.port()))
                .collect();
            *seen.lock().unwrap() = brokers;
            !md.brokers().is_empty()
        })
        .await;
        if answered {
            break;
        }
        let stopped = !container.is_running().await.unwrap_or(true);
        if stopped || started.elapsed() > STARTUP_LIMIT {
            let why = if stopped {
                format!(
                    "exited (code {:?})",
                    container.exit_code().await.ok().flatten()
                )
            } else {
                format!(
                    "did not answer metadata within {STARTUP_LIMIT:?} (wrong flavour? set \
                     KBATCH_TEST_BROKER_KIND)"
                )
            };
            panic!(
                "broker {image} ({kind:?}) at {bootstrap} {why}; container logs:\n{}",
                container_logs(&container).await
            );
        }
    }
    // Clients follow the advertised address after the first request; a mismatch would surface
    // later as a confusing produce timeout, so it is caught here.
    let advertised = advertised.lock().unwrap().clone();
    assert!(
        advertised.contains(&bootstrap),
        "broker {image} answers at {bootstrap} but advertises {advertised:?}"
    );
    Broker {
        bootstrap,
        kind,
        image,
        container,
    }
}

/// Single-node KRaft settings for the official `apache/kafka` image.
fn kafka_env(
    req: testcontainers::ContainerRequest<GenericImage>,
    bind: &str,
    port: u16,
    controller_port: u16,
) -> testcontainers::ContainerRequest<GenericImage> {
    let host = if bind == "0.0.0.0" { "" } else { bind };
    [
        ("CLUSTER_ID", KRAFT_CLUSTER_ID.to_owned()),
        ("KAFKA_NODE_ID", "1".to_owned()),
        ("KAFKA_PROCESS_ROLES", "broker,controller".to_owned()),
        (
            "KAFKA_LISTENERS",
            format!("PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}"),
        ),
        (
            "KAFKA_ADVERTISED_LISTENERS",
            format!("PLAINTEXT://127.0.0.1:{port}"),
        ),
        ("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER".to_owned()),
        (
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
            "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT".to_owned(),
        ),
        (
            "KAFKA_CONTROLLER_QUORUM_VOTERS",
            format!("1@127.0.0.1:{controller_port}"),
        ),
        ("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT".to_owned()),
        ("KAFKA_LOG_DIRS", "/tmp/kraft-combined-logs".to_owned()),
        // A single node cannot hold the default three replicas of the internal topics.
        ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1".to_owned()),
        (
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
            "1".to_owned(),
        ),
        ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1".to_owned()),
        // The default 3 s delay would slow every group join in every test.
        ("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0".to_owned()),
        // KIP-848 groups (`group.protocol=consumer`) take their session timeout and heartbeat
        // from the broker (45 s and 5 s by default); the classic groups of the tests use 6 s
        // and 0.5 s, and a dead member must be noticed as fast under either protocol.
        (
            "KAFKA_GROUP_CONSUMER_MIN_SESSION_TIMEOUT_MS",
            "6000".to_owned(),
        ),
        ("KAFKA_GROUP_CONSUMER_SESSION_TIMEOUT_MS", "6000".to_owned()),
        (
            "KAFKA_GROUP_CONSUMER_MIN_HEARTBEAT_INTERVAL_MS",
            "500".to_owned(),
        ),
        (
            "KAFKA_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS",
            "500".to_owned(),
        ),
        ("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false".to_owned()),
    ]
    .into_iter()
    .fold(req, |r, (k, v)| r.with_env_var(k, v))
}

/// A TCP port that was free a moment ago. Racy in principle (another process may take it before
/// the container binds it); in practice the kernel does not hand the same ephemeral port out
/// again that quickly.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0 to find a free port")
        .port()
}

/// Splits `registry/name:tag` into name and tag; a colon before the last `/` is a registry port.
fn split_image(image: &str) -> (String, String) {
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => (
            image[..slash + i].to_owned(),
            image[slash + i + 1..].to_owned(),
        ),
        None => (image.to_owned(), "latest".to_owned()),
    }
}

async fn container_logs(c: &ContainerAsync<GenericImage>) -> String {
    let out = c.stdout_to_vec().await.unwrap_or_default();
    let err = c.stderr_to_vec().await.unwrap_or_default();
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&err)
    )
}
