//! Unit tests of `app`.

use super::*;

fn threads(sessions: usize, intra_op: usize) -> InferenceThreads {
    InferenceThreads { sessions, intra_op }
}

#[test]
fn inference_threads_never_oversubscribe_and_keep_a_core_for_io() {
    let mut cfg = Config::default(); // thread_pool_size 4, intra_op_threads 2
    assert_eq!(inference_threads(&cfg, 2), threads(1, 1));
    assert_eq!(inference_threads(&cfg, 16), threads(2, 2));
    cfg.resource_management.thread_pool_size = 16;
    assert_eq!(inference_threads(&cfg, 8), threads(3, 2));
    cfg.model.intra_op_threads = 1;
    assert_eq!(inference_threads(&cfg, 1), threads(1, 1));
}

#[test]
fn one_async_worker_on_small_machines_unless_the_environment_says_otherwise() {
    assert_eq!(async_workers(2, None), 1);
    assert_eq!(async_workers(4, None), 1);
    assert_eq!(async_workers(16, None), 2);
    assert_eq!(async_workers(2, Some("3".into())), 3);
    // Nonsense falls back to the computed value rather than failing the start.
    assert_eq!(async_workers(2, Some("0".into())), 1);
    assert_eq!(async_workers(16, Some("many".into())), 2);
}
