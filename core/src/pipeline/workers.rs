//! The hand-off from the batcher to the inference workers.
//!
//! Invariant: a batch is sent only with one of `idle`'s permits, which its worker releases
//! after the batch's outcomes are handed on, so the channel never holds more batches than there
//! are workers and "a permit is free" means "a worker is idle".

use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};

use super::Batch;

/// The free inference workers and the queue to them.
#[derive(Clone)]
pub struct WorkerPool {
    /// One permit per idle worker; a batch carries its permit until the worker is done.
    pub idle: Arc<Semaphore>,
    pub batches: mpsc::Sender<Batch>,
}
