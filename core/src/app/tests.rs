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

#[test]
fn gpu_readings_follow_the_device_the_versions_run_on_not_the_configured_one() {
    use crate::model::{ModelId, ModelInfo, ServedModel, Signature};
    use crate::registry::RoutingTable;
    let served = |device| {
        Arc::new(ServedModel::unloaded(ModelInfo {
            id: ModelId::new("m", "1"),
            signature: Signature::float32("x", &[1], "y", 1),
            device,
            library_path: Default::default(),
        }))
    };
    let mut table = RoutingTable::single(served(Device::Cpu));
    // model.device: cuda that fell back to CPU: nothing to sample.
    assert_eq!(
        format!("{:?}", gpu_in_use(Routes::fixed(table.clone()), 3)),
        "GpuInUse(None)"
    );
    let routes = table.models.get_mut("m").expect("the model");
    routes
        .versions
        .values_mut()
        .for_each(|v| *v = served(Device::Cuda));
    assert_eq!(
        format!("{:?}", gpu_in_use(Routes::fixed(table), 3)),
        "GpuInUse(Some(3))"
    );
}
