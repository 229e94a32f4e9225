//! The batcher with several model versions: batches never mix them, a busy model never holds
//! another's critical request behind its own lower tiers, equally urgent models take turns, and
//! a model's batching overrides apply to its own batches only.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{entry, ids, policy, start};
use crate::model::{ModelBatching, ServedModel};
use crate::pipeline::{fixtures, Admitted, Batch};
use crate::tier::Tier;

fn model(name: &str, batching: ModelBatching) -> Arc<ServedModel> {
    Arc::new(ServedModel::unloaded(fixtures::model_info(name)).with_batching(batching))
}

fn routed(id: u64, tier: Tier, m: &Arc<ServedModel>) -> Admitted {
    let mut a = entry(id, tier, Instant::now());
    a.model = m.clone();
    a
}

fn name(b: &Batch) -> &str {
    &b.model.id().name
}

fn assert_one_model(b: &Batch) {
    assert!(
        b.requests.iter().all(|a| Arc::ptr_eq(&a.model, &b.model)),
        "batch of {} holds another model's request",
        name(b)
    );
}

#[tokio::test(start_paused = true)]
async fn a_busy_models_low_tier_never_holds_another_models_critical_request() {
    let (a, b) = (
        model("a", ModelBatching::default()),
        model("b", ModelBatching::default()),
    );
    let mut h = start(policy(), 1);
    for i in 0..4 {
        h.tiers[3].send(routed(i, Tier::Low, &a)).await.unwrap();
    }
    let first = h.batches.recv().await.unwrap();
    assert_eq!(name(&first), "a");
    // The only worker is busy: model a's next full low batch queues first, then b's critical.
    for i in 4..8 {
        h.tiers[3].send(routed(i, Tier::Low, &a)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    h.tiers[0]
        .send(routed(100, Tier::Critical, &b))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(first);
    let second = h.batches.recv().await.unwrap();
    assert_eq!((name(&second), ids(&second.requests)), ("b", vec!["r100"]));
    drop(second);
    let third = h.batches.recv().await.unwrap();
    assert_eq!(name(&third), "a");
    assert_eq!(third.requests.len(), 4);
}

#[tokio::test(start_paused = true)]
async fn batches_never_mix_versions_and_equally_urgent_models_take_turns() {
    let (a, b) = (
        model("a", ModelBatching::default()),
        model("b", ModelBatching::default()),
    );
    let mut h = start(policy(), 1);
    let first_a = routed(0, Tier::Normal, &a);
    h.tiers[2].send(first_a).await.unwrap();
    let first = h.batches.recv().await.unwrap();
    // Both models queue full batches while the worker is busy.
    for i in 1..=8 {
        h.tiers[2].send(routed(i, Tier::Normal, &a)).await.unwrap();
        h.tiers[2]
            .send(routed(100 + i, Tier::Normal, &b))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(first);
    let mut order = Vec::new();
    let mut served = 0;
    while served < 16 {
        let batch = h.batches.recv().await.unwrap();
        assert_one_model(&batch);
        served += batch.requests.len();
        order.push(name(&batch).to_owned());
    }
    assert_eq!(
        order,
        ["b", "a", "b", "a"],
        "a ran last, so b goes first, then turns"
    );
}

#[tokio::test(start_paused = true)]
async fn a_models_batching_overrides_shape_its_own_batches_only() {
    let small = ModelBatching {
        max_batch_size: Some(2),
        ..ModelBatching::default()
    };
    let (a, b) = (model("a", small), model("b", ModelBatching::default()));
    let mut h = start(policy(), 2);
    for i in 0..4 {
        h.tiers[2].send(routed(i, Tier::Normal, &a)).await.unwrap();
    }
    for i in 0..4 {
        h.tiers[2]
            .send(routed(10 + i, Tier::Normal, &b))
            .await
            .unwrap();
    }
    let mut sizes: Vec<(String, usize)> = Vec::new();
    let mut held = Vec::new();
    while sizes.iter().map(|(_, n)| n).sum::<usize>() < 8 {
        let batch = h.batches.recv().await.unwrap();
        assert_one_model(&batch);
        sizes.push((name(&batch).to_owned(), batch.requests.len()));
        held.push(batch);
        if held.len() == 2 {
            held.clear();
        }
    }
    sizes.sort();
    assert_eq!(
        sizes,
        [("a".into(), 2), ("a".into(), 2), ("b".into(), 4)],
        "model a batches at most 2 (its override), b at the service's 4"
    );
}
