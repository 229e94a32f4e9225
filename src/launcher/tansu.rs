//! tansu as a child process: a Kafka-compatible broker in one static binary, with in-memory
//! storage, kept as an explicit alternative to Apache Kafka (`kbatch demo --tansu-bin`).
//!
//! Invariant: the broker's output pipes are drained for as long as it runs (a full pipe would
//! block it), and the process is killed when its handle drops.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use super::{await_ready, free_port, LaunchError};

/// Default tansu binary, relative to the working directory (where `scripts/install-tansu.sh`
/// puts it).
pub const DEFAULT_BIN: &str = ".kbatch/bin/tansu";

/// Lines of broker output kept for error messages.
const KEPT_LINES: usize = 40;

/// A tansu broker running as a child process on a free loopback port.
pub struct TansuProcess {
    child: Child,
    bootstrap: String,
    binary: PathBuf,
    output: Arc<Mutex<VecDeque<String>>>,
}

impl TansuProcess {
    /// Starts `binary` and waits (up to 10 s) until it accepts connections.
    pub async fn start(binary: &Path) -> Result<Self, LaunchError> {
        let name = format!("tansu broker {}", binary.display());
        let port = free_port()?;
        let bootstrap = format!("127.0.0.1:{port}");
        let url = format!("tcp://{bootstrap}");
        let mut child = Command::new(binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
                "--cluster-id",
                "kbatch-demo",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| LaunchError::io(format!("starting {name}"), e))?;
        let output = Arc::new(Mutex::new(VecDeque::with_capacity(KEPT_LINES)));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(keep_lines(out, output.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(keep_lines(err, output.clone()));
        }
        let mut this = Self {
            child,
            bootstrap,
            binary: binary.to_owned(),
            output,
        };
        let limit = Duration::from_secs(10);
        let bootstrap = this.bootstrap.clone();
        let timing = (std::time::Instant::now(), limit, Duration::from_millis(20));
        let listening = || async { tokio::net::TcpStream::connect(&bootstrap).await.is_ok() };
        match await_ready(&mut this.child, timing, listening).await {
            Ok(()) => Ok(this),
            Err(why) => {
                let log = this.output();
                this.stop().await;
                Err(why.error(name, &bootstrap, limit, log))
            }
        }
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The last lines the broker printed.
    pub fn output(&self) -> String {
        let lines = self.output.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Kills the broker and reaps it (its storage is in memory: nothing to shut down cleanly).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

async fn keep_lines(stream: impl AsyncRead + Unpin, keep: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut k = keep.lock().unwrap_or_else(|e| e.into_inner());
        if k.len() == KEPT_LINES {
            k.pop_front();
        }
        k.push_back(line);
    }
}

#[cfg(test)]
#[path = "tansu_tests.rs"]
mod tests;
