//! Liveness and readiness (the `/healthz` and `/ready` probes), from facts the pipeline reports
//! as they happen.
//!
//! Invariants: liveness fails only for faults a restart can cure — a pipeline task or inference
//! thread that ended while the service was not shutting down, or an inference call running past
//! `stall_bound` — never for a broker outage (that is readiness: restarting would not bring the
//! broker back). Readiness needs all four: model loaded and warmed up, consumer group joined,
//! a broker reachable, and a working reply producer; every failing condition is named in the body.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One reason a probe fails.
#[derive(Debug, Clone, PartialEq)]
pub enum Unhealthy {
    /// Shutdown began: the instance takes no more traffic.
    ShuttingDown,
    /// The model is not loaded and warmed up yet.
    ModelNotReady,
    /// No broker answered recently.
    NoBroker,
    /// The consumer has not joined its group (or left it).
    GroupNotJoined,
    /// The reply producer hit a fatal error (an idempotent producer's sequence broke, or it was
    /// fenced): outcomes wait until its replacement delivers them.
    ProducerFailed,
    /// A stage's task or thread ended while the service was not shutting down.
    Ended { stage: String, how: &'static str },
    /// An inference call has run longer than the stall bound.
    Stalled {
        stage: String,
        running: Duration,
        bound: Duration,
    },
}

impl fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unhealthy::ShuttingDown => f.write_str("shutting down"),
            Unhealthy::ModelNotReady => f.write_str("model not loaded and warmed up"),
            Unhealthy::NoBroker => f.write_str("no broker reachable"),
            Unhealthy::GroupNotJoined => f.write_str("consumer group not joined"),
            Unhealthy::ProducerFailed => {
                f.write_str("reply producer failed fatally; its replacement has not delivered yet")
            }
            Unhealthy::Ended { stage, how } => write!(f, "{stage} ended: {how}"),
            Unhealthy::Stalled {
                stage,
                running,
                bound,
            } => write!(
                f,
                "{stage} has run one batch for {:.1} s (bound {:.0} s)",
                running.as_secs_f64(),
                bound.as_secs_f64()
            ),
        }
    }
}

/// Every reason a probe fails, in the order checked; shown as one line, `; `-separated (the
/// probe's response body).
#[derive(Debug, Clone, PartialEq)]
pub struct Reasons(pub Vec<Unhealthy>);

impl fmt::Display for Reasons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, reason) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{reason}")?;
        }
        Ok(())
    }
}

fn verdict(reasons: Vec<Unhealthy>) -> Result<(), Reasons> {
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Reasons(reasons))
    }
}

/// One task or thread whose end the liveness probe must notice.
#[derive(Debug)]
struct Component {
    name: String,
    /// `Some(how)` once it ended: `stopped` or `panicked`.
    ended: Option<&'static str>,
    /// Inference threads: when the running batch started.
    busy_since: Option<Instant>,
}

#[derive(Debug)]
pub struct Health {
    components: Mutex<Vec<Component>>,
    model_ready: AtomicBool,
    group_joined: AtomicBool,
    broker_up: AtomicBool,
    draining: AtomicBool,
    /// The reply producer failed fatally and no replacement has delivered yet.
    producer_failed: AtomicBool,
    /// Reloadable (`set_stall_bound`).
    stall_bound: Mutex<Duration>,
}

/// Marks its component ended when dropped (a task returning or panicking, a thread exiting).
#[derive(Debug)]
pub struct Alive {
    health: Arc<Health>,
    id: usize,
}

impl Health {
    /// `stall_bound`: the longest one inference call may run before liveness fails.
    pub fn new(stall_bound: Duration) -> Self {
        Self {
            components: Mutex::new(Vec::new()),
            model_ready: AtomicBool::new(false),
            group_joined: AtomicBool::new(false),
            broker_up: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            producer_failed: AtomicBool::new(false),
            stall_bound: Mutex::new(stall_bound),
        }
    }

    /// A reloaded stall bound, applied from the next liveness check.
    pub fn set_stall_bound(&self, bound: Duration) {
        *self
            .stall_bound
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = bound;
    }

    /// How long one inference call may run before liveness fails.
    pub fn stall_bound(&self) -> Duration {
        *self
            .stall_bound
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Component>> {
        // Every update leaves the list consistent; a poisoned lock is still usable.
        self.components
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a component; keep the guard for as long as it runs.
    pub fn register(self: &Arc<Self>, name: impl Into<String>) -> Alive {
        let mut c = self.lock();
        c.push(Component {
            name: name.into(),
            ended: None,
            busy_since: None,
        });
        Alive {
            health: self.clone(),
            id: c.len() - 1,
        }
    }

    pub fn set_model_ready(&self, ready: bool) {
        self.model_ready.store(ready, Ordering::Release);
    }
    pub fn set_group_joined(&self, joined: bool) {
        self.group_joined.store(joined, Ordering::Release);
    }
    /// Whether librdkafka holds a session to a broker (last statistics or error callback).
    pub fn broker_up(&self) -> bool {
        self.broker_up.load(Ordering::Acquire)
    }

    pub fn set_broker_up(&self, up: bool) {
        self.broker_up.store(up, Ordering::Release);
    }
    /// The reply producer failed fatally (`true`) or its replacement delivered (`false`).
    pub fn set_producer_failed(&self, failed: bool) {
        self.producer_failed.store(failed, Ordering::Release);
    }
    /// Shutdown began: components ending now are expected, and the instance takes no traffic.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// `Err` names every reason the process should be restarted.
    pub fn liveness(&self) -> Result<(), Reasons> {
        verdict(self.liveness_reasons())
    }

    fn liveness_reasons(&self) -> Vec<Unhealthy> {
        let draining = self.draining.load(Ordering::Acquire);
        let now = Instant::now();
        let stall_bound = self.stall_bound();
        let mut why = Vec::new();
        for component in self.lock().iter() {
            match (component.ended, component.busy_since) {
                (Some(how), _) if !draining => why.push(Unhealthy::Ended {
                    stage: component.name.clone(),
                    how,
                }),
                (None, Some(since)) if now.duration_since(since) > stall_bound => {
                    why.push(Unhealthy::Stalled {
                        stage: component.name.clone(),
                        running: now.duration_since(since),
                        bound: stall_bound,
                    })
                }
                _ => {}
            }
        }
        why
    }

    /// `Err` names every condition keeping the instance from taking traffic.
    pub fn readiness(&self) -> Result<(), Reasons> {
        let mut why = Vec::new();
        if self.draining.load(Ordering::Acquire) {
            why.push(Unhealthy::ShuttingDown);
        }
        if !self.model_ready.load(Ordering::Acquire) {
            why.push(Unhealthy::ModelNotReady);
        }
        if !self.broker_up.load(Ordering::Acquire) {
            why.push(Unhealthy::NoBroker);
        }
        if !self.group_joined.load(Ordering::Acquire) {
            why.push(Unhealthy::GroupNotJoined);
        }
        if self.producer_failed.load(Ordering::Acquire) {
            why.push(Unhealthy::ProducerFailed);
        }
        why.extend(self.liveness_reasons());
        verdict(why)
    }
}

impl Alive {
    /// Inference threads: a batch started (`true`) or finished (`false`).
    pub fn busy(&self, busy: bool) {
        let mut c = self.health.lock();
        if let Some(c) = c.get_mut(self.id) {
            c.busy_since = busy.then(Instant::now);
        }
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        let reason = if std::thread::panicking() {
            "panicked"
        } else {
            "stopped"
        };
        if let Some(c) = self.health.lock().get_mut(self.id) {
            c.ended = Some(reason);
            c.busy_since = None;
        }
    }
}

/// The liveness checker (`performance_monitoring.health_check_interval`): every `period` it
/// evaluates liveness, publishes the verdict on `live` (1 or 0), and logs each change of verdict
/// with its reasons, so a stalled or dead stage is on record and on a dashboard even when no
/// probe asks `/healthz`. A new period (a reload) restarts the ticks. Returns at `cancel`.
pub async fn run_liveness_checker(
    health: Arc<Health>,
    mut period: tokio::sync::watch::Receiver<Duration>,
    live: prometheus::IntGauge,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut tick =
        crate::config::reload::ticker(*period.borrow_and_update(), Duration::from_millis(10));
    let mut was_live = true;
    let mut reloads = true;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
            changed = period.changed(), if reloads => {
                match changed {
                    Ok(()) => {
                        let every = *period.borrow_and_update();
                        tick = crate::config::reload::ticker(every, Duration::from_millis(10));
                        tracing::info!(?every, "liveness check period reloaded");
                    }
                    Err(_) => reloads = false,
                }
                continue;
            }
        }
        let verdict = health.liveness();
        live.set(i64::from(verdict.is_ok()));
        match (&verdict, was_live) {
            (Err(why), true) => tracing::error!(reasons = %why, "liveness check failed"),
            (Ok(()), false) => tracing::info!("liveness check passes again"),
            _ => {}
        }
        was_live = verdict.is_ok();
    }
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
