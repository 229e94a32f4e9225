//! Test fixtures shared by the stage tests: a minimal request and an admitted request.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use tokio::time::Instant;

use super::{Admitted, Origin, ReplyTo};
use crate::config::Device;
use crate::model::{ModelId, ModelInfo, ServedModel, Signature};
use crate::tier::Tier;
use crate::wire::{Inputs, Request};

/// The model every fixture request is routed to: `m` version `1`, one value in, one out, no
/// sessions (stage tests that run batches bring their own backend).
pub fn model() -> Arc<ServedModel> {
    static MODEL: LazyLock<Arc<ServedModel>> =
        LazyLock::new(|| Arc::new(ServedModel::unloaded(model_info("m"))));
    MODEL.clone()
}

/// Version `1` of a model called `name`: one value in, one out.
pub fn model_info(name: &str) -> ModelInfo {
    ModelInfo {
        id: ModelId::new(name, "1"),
        signature: Signature::float32("input", &[1], "output", 1),
        device: Device::Cpu,
        library_path: PathBuf::new(),
    }
}

/// A one-value request with only its id set.
pub fn request(id: &str) -> Request {
    Request {
        request_id: id.to_string(),
        created_at_ms: 0,
        deadline_ms: None,
        timeout_ms: None,
        model_name: None,
        model_version: None,
        priority: None,
        reply_topic: None,
        client_id: None,
        inputs: Inputs::v1(vec![1], vec![0.0]),
    }
}

/// An admitted request read from `topic`'s `partition` at `offset`, served at `served`.
pub fn admitted(
    id: &str,
    (topic, partition, offset): (Tier, i32, i64),
    served: Tier,
    at: Instant,
) -> Admitted {
    Admitted {
        request: request(id),
        tier: served,
        origin: Origin {
            topic_tier: topic,
            partition,
            offset,
            epoch: 1,
        },
        reply_to: ReplyTo {
            topic: "replies".into(),
            key: None,
            correlation_id: None,
            trace: None,
        },
        record_timestamp_ms: 0,
        admitted_at: at,
        deadline: None,
        dedup_key: None,
        model: model(),
    }
}
