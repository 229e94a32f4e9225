//! Apache Kafka as a child process: one KRaft node that is broker and controller at once, on
//! free loopback ports, with its log directory in a fresh temporary folder.
//!
//! Invariant: the JVM is started only on a formatted log directory made for this process, is
//! sized for a small machine (two cores), and is stopped with SIGTERM (Kafka's controlled
//! shutdown) before it is killed; its folder is removed either way.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::{answers, await_ready, free_port, tail, LaunchError};

/// Where `scripts/install-kafka.sh` installs Kafka, relative to the repository.
pub const DEFAULT_HOME: &str = ".kbatch/kafka";

/// A KRaft cluster id must be a base64-encoded UUID; any fixed one does for a one-node cluster.
const CLUSTER_ID: &str = "a2JhdGNoLWxvY2FsLWthZg";

/// A Kafka installation: a folder with `libs/` holding the broker's jars (the Maven install or
/// any Kafka distribution).
#[derive(Debug, Clone)]
pub struct KafkaHome {
    root: PathBuf,
    version: String,
}

impl KafkaHome {
    /// `explicit`, else `KBATCH_KAFKA_HOME`, else [`DEFAULT_HOME`]; `None` when that folder
    /// holds no Kafka (the caller falls back to another broker).
    pub fn locate(explicit: Option<&Path>) -> Option<Self> {
        let root = explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("KBATCH_KAFKA_HOME").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_HOME));
        Self::at(&root).ok()
    }

    /// The installation at `root`, or why there is none.
    pub fn at(root: &Path) -> Result<Self, LaunchError> {
        let not_installed = || LaunchError::NotInstalled {
            home: root.to_path_buf(),
        };
        let entries = std::fs::read_dir(root.join("libs")).map_err(|_| not_installed())?;
        let version = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let v = name.strip_prefix("kafka_2.13-")?.strip_suffix(".jar")?;
                // The distribution also ships -sources / -test jars; the version has no letters
                // beyond a qualifier such as 4.1.1 or 4.2.0-rc1.
                (!v.contains("test") && !v.contains("sources")).then(|| v.to_owned())
            })
            .next()
            .ok_or_else(not_installed)?;
        Ok(Self {
            root: root.to_path_buf(),
            version,
        })
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn classpath(&self) -> String {
        format!("{}/libs/*", self.root.display())
    }

    /// The install's Log4j 2 file, when it has one (a distribution has its own under config/).
    fn log4j(&self) -> Option<PathBuf> {
        ["config/log4j2.properties", "config/log4j2.yaml"]
            .iter()
            .map(|f| self.root.join(f))
            .find(|p| p.is_file())
    }
}

/// How to start the broker.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// Client port; a free one when `None`.
    pub port: Option<u16>,
    /// JVM heap (`-Xmx`); the broker needs little for a test or a demo.
    pub heap: String,
    /// Partitions of new topics when a client does not say (`num.partitions`).
    pub default_partitions: u32,
    /// Longest wait for the broker's first answer.
    pub startup_limit: Duration,
    /// Extra broker properties (`key=value`), after kbatch's own, so they win.
    pub properties: Vec<(String, String)>,
}

impl Default for KafkaOptions {
    fn default() -> Self {
        Self {
            port: None,
            heap: "512m".into(),
            default_partitions: 4,
            startup_limit: Duration::from_secs(90),
            properties: Vec::new(),
        }
    }
}

/// How a stop went.
#[derive(Debug, Clone, Copy)]
pub struct StopReport {
    /// The broker exited on SIGTERM within the grace period (a controlled shutdown).
    pub clean: bool,
    pub took: Duration,
}

/// A running Kafka broker. Dropping it kills the JVM and removes its folder.
pub struct KafkaProcess {
    child: Child,
    bootstrap: String,
    home: KafkaHome,
    dir: PathBuf,
    started_in: Duration,
}

/// JVM settings for a two-core machine: a small fixed-size young generation would do, but G1
/// with two parallel GC threads, one concurrent, and two JIT compiler threads keeps the JVM
/// from taking both cores from kbatch at start and under load.
const JVM_FLAGS: &[&str] = &[
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:ParallelGCThreads=2",
    "-XX:ConcGCThreads=1",
    "-XX:CICompilerCount=2",
    "-Djava.awt.headless=true",
];

impl KafkaProcess {
    /// Formats a fresh log directory and starts the broker, waiting until it answers.
    pub async fn start(home: &KafkaHome, opts: &KafkaOptions) -> Result<Self, LaunchError> {
        let t0 = Instant::now();
        let port = match opts.port {
            Some(p) => p,
            None => free_port()?,
        };
        let controller_port = free_port()?;
        let bootstrap = format!("127.0.0.1:{port}");
        let dir =
            std::env::temp_dir().join(format!("kbatch-kafka-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| LaunchError::io(format!("creating {}", dir.display()), e))?;
        let props = dir.join("server.properties");
        std::fs::write(&props, server_properties(&dir, port, controller_port, opts))
            .map_err(|e| LaunchError::io(format!("writing {}", props.display()), e))?;
        let name = format!("Kafka {}", home.version());
        let log = dir.join("broker.log");

        let format = java(home, "256m")
            .args(["kafka.tools.StorageTool", "format", "-t", CLUSTER_ID, "-c"])
            .arg(&props)
            .output()
            .await
            .map_err(|e| {
                let _ = std::fs::remove_dir_all(&dir);
                LaunchError::io(format!("running java ({})", java_binary().display()), e)
            })?;
        if !format.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(LaunchError::Format {
                broker: name,
                status: format.status,
                output: String::from_utf8_lossy(&[format.stdout, format.stderr].concat())
                    .into_owned(),
            });
        }

        let out = std::fs::File::create(&log)
            .map_err(|e| LaunchError::io(format!("creating {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| LaunchError::io("duplicating the log file handle", e))?;
        let child = java(home, &opts.heap)
            .arg("kafka.Kafka")
            .arg(&props)
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| LaunchError::io(format!("starting {name}"), e))?;
        let mut this = Self {
            child,
            bootstrap,
            home: home.clone(),
            dir,
            started_in: Duration::ZERO,
        };
        let bootstrap = this.bootstrap.clone();
        let timing = (t0, opts.startup_limit, Duration::from_millis(200));
        match await_ready(&mut this.child, timing, || {
            answers(&bootstrap, Duration::from_secs(1))
        })
        .await
        {
            Ok(()) => {
                this.started_in = t0.elapsed();
                Ok(this)
            }
            Err(why) => {
                let log = tail(&log, 30);
                this.stop().await;
                Err(why.error(name, &bootstrap, opts.startup_limit, log))
            }
        }
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    pub fn version(&self) -> &str {
        self.home.version()
    }

    pub fn home(&self) -> &Path {
        self.home.root()
    }

    /// From the start of formatting to the first answered metadata request.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The broker's log so far (its last lines).
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.dir.join("broker.log"), lines)
    }

    /// SIGTERM, then up to 30 s for the controlled shutdown, then SIGKILL; the folder goes.
    pub async fn stop(mut self) -> StopReport {
        let t0 = Instant::now();
        let mut clean = false;
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) with a pid this process spawned and has not reaped yet.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
            clean = matches!(
                tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await,
                Ok(Ok(_))
            );
        }
        if !clean {
            let _ = self.child.kill().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        StopReport {
            clean,
            took: t0.elapsed(),
        }
    }
}

impl Drop for KafkaProcess {
    fn drop(&mut self) {
        // The child itself is killed by `kill_on_drop`; its folder would otherwise stay behind.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn java_binary() -> PathBuf {
    std::env::var_os("JAVA_HOME")
        .map(|h| PathBuf::from(h).join("bin/java"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("java"))
}

fn java(home: &KafkaHome, heap: &str) -> Command {
    let mut c = Command::new(java_binary());
    // The whole heap up front: no resizing pauses while a benchmark runs.
    c.arg(format!("-Xmx{heap}"))
        .arg(format!("-Xms{heap}"))
        .args(JVM_FLAGS);
    if let Some(log4j) = home.log4j() {
        c.arg(format!("-Dlog4j2.configurationFile={}", log4j.display()));
    }
    c.arg("-cp").arg(home.classpath()).stdin(Stdio::null());
    c
}

/// A single-node KRaft configuration. Replication factors of the internal topics are 1 (there is
/// one node); group joins start at once; topics are created explicitly, never on first use.
fn server_properties(dir: &Path, port: u16, controller_port: u16, opts: &KafkaOptions) -> String {
    let mut p: Vec<(String, String)> = [
        ("process.roles", "broker,controller".to_owned()),
        ("node.id", "1".to_owned()),
        (
            "controller.quorum.voters",
            format!("1@127.0.0.1:{controller_port}"),
        ),
        (
            "listeners",
            format!("PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}"),
        ),
        (
            "advertised.listeners",
            format!("PLAINTEXT://127.0.0.1:{port}"),
        ),
        ("controller.listener.names", "CONTROLLER".to_owned()),
        ("inter.broker.listener.name", "PLAINTEXT".to_owned()),
        (
            "listener.security.protocol.map",
            "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT".to_owned(),
        ),
        ("log.dirs", dir.join("data").display().to_string()),
        ("num.partitions", opts.default_partitions.to_string()),
        ("auto.create.topics.enable", "false".to_owned()),
        ("group.initial.rebalance.delay.ms", "0".to_owned()),
        ("offsets.topic.replication.factor", "1".to_owned()),
        ("offsets.topic.num.partitions", "8".to_owned()),
        ("transaction.state.log.replication.factor", "1".to_owned()),
        ("transaction.state.log.min.isr", "1".to_owned()),
        ("transaction.state.log.num.partitions", "8".to_owned()),
        (
            "share.coordinator.state.topic.replication.factor",
            "1".to_owned(),
        ),
        ("share.coordinator.state.topic.min.isr", "1".to_owned()),
        // Two cores: as many network and I/O threads as cores, not Kafka's 3 and 8.
        ("num.network.threads", "2".to_owned()),
        ("num.io.threads", "2".to_owned()),
        ("background.threads", "2".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    p.extend(opts.properties.iter().cloned());
    p.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

#[cfg(test)]
#[path = "kafka_tests.rs"]
mod tests;
