//! Liveness and readiness (the `/healthz` and `/ready` probes), from facts the pipeline reports
//! as they happen.
//!
//! Invariants: liveness fails only for faults a restart can cure — a pipeline task or inference
//! thread that ended while the service was not shutting down, or an inference call running past
//! `stall_bound` — never for a broker outage (that is readiness: restarting would not bring the
//! broker back). Readiness needs all three: model loaded and warmed up, consumer group joined,
//! a broker reachable; every failing condition is named in the body.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One task or thread whose end the liveness probe must notice.
#[derive(Debug)]
struct Component {
    name: String,
    /// `Some(why)` once it ended.
    ended: Option<String>,
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
    stall_bound: Duration,
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
            stall_bound,
        }
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
    /// Shutdown began: components ending now are expected, and the instance takes no traffic.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// `Err` names every reason the process should be restarted.
    pub fn liveness(&self) -> Result<(), String> {
        let draining = self.draining.load(Ordering::Acquire);
        let now = Instant::now();
        let mut why = Vec::new();
        for c in self.lock().iter() {
            match (&c.ended, c.busy_since) {
                (Some(reason), _) if !draining => why.push(format!("{} ended: {reason}", c.name)),
                (None, Some(t)) if now.duration_since(t) > self.stall_bound => why.push(format!(
                    "{} has run one batch for {:.1} s (bound {:.0} s)",
                    c.name,
                    now.duration_since(t).as_secs_f64(),
                    self.stall_bound.as_secs_f64()
                )),
                _ => {}
            }
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(why.join("; "))
        }
    }

    /// `Err` names every condition keeping the instance from taking traffic.
    pub fn readiness(&self) -> Result<(), String> {
        let mut why = Vec::new();
        if self.draining.load(Ordering::Acquire) {
            why.push("shutting down".to_owned());
        }
        if !self.model_ready.load(Ordering::Acquire) {
            why.push("model not loaded and warmed up".to_owned());
        }
        if !self.broker_up.load(Ordering::Acquire) {
            why.push("no broker reachable".to_owned());
        }
        if !self.group_joined.load(Ordering::Acquire) {
            why.push("consumer group not joined".to_owned());
        }
        if let Err(e) = self.liveness() {
            why.push(e);
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(why.join("; "))
        }
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
            c.ended = Some(reason.to_owned());
            c.busy_since = None;
        }
    }
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
