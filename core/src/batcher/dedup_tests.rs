use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;

use super::*;
use crate::pipeline::fixtures::admitted;
use crate::pipeline::{dedup_key, ModelId};
use crate::tensor::{Tensor, TensorData};
use crate::wire::Inputs;

const TTL: Duration = Duration::from_secs(60);

fn params(cache_size: usize) -> DedupParams {
    DedupParams {
        enabled: true,
        cache_size,
        ttl: TTL,
        purge_interval: None,
    }
}

/// A request `id` at `tier` whose input is `data`, with its key.
fn req(id: &str, tier: Tier, data: &[f32], at: Instant) -> (Admitted, DedupKey) {
    let mut a = admitted(id, (tier, 0, 0), tier, at);
    a.request.inputs = Inputs::v1(vec![data.len() as i32], data.to_vec());
    let key = dedup_key(&ModelId::new("m", "1"), a.request.inputs.tensors());
    (a, key)
}

/// The key of a version-1 input.
fn v1_key(model: &ModelId, shape: &[i32], data: &[f32]) -> DedupKey {
    dedup_key(model, Inputs::v1(shape.to_vec(), data.to_vec()).tensors())
}

fn outputs(v: &[f32]) -> Arc<[Tensor]> {
    Arc::from(vec![Tensor::new(
        "y",
        vec![v.len() as i32],
        TensorData::F32(v.to_vec()),
    )])
}

fn ids(list: &[Admitted]) -> Vec<&str> {
    list.iter().map(|a| a.request.request_id.as_str()).collect()
}

fn run_id(admit: Admit) -> String {
    match admit {
        Admit::Run(a) => a.request.request_id,
        other => panic!("expected Run, got {other:?}"),
    }
}

#[test]
fn identical_inputs_run_once_and_complete_answers_every_follower() {
    let t0 = Instant::now();
    let mut c = Coalescer::new(params(10));
    let (a, key) = req("a", Tier::Normal, &[1.0, 2.0], t0);
    assert_eq!(run_id(c.admit(a, key, t0)), "a");
    for id in ["b", "c"] {
        let (f, k) = req(id, Tier::Normal, &[1.0, 2.0], t0);
        assert!(matches!(c.admit(f, k, t0), Admit::Joined));
    }
    let s = c.stats();
    assert_eq!((s.leaders, s.joins, s.pending, s.waiting), (1, 2, 1, 2));

    let answered = c.complete(&key, outputs(&[9.0]), t0);
    assert_eq!(ids(&answered), ["b", "c"]);
    let s = c.stats();
    assert_eq!((s.pending, s.waiting, s.cached), (0, 0, 1));
}

#[test]
fn a_result_is_reused_within_the_ttl_and_recomputed_after() {
    let t0 = Instant::now();
    let mut c = Coalescer::new(params(10));
    let (a, key) = req("a", Tier::Normal, &[1.0], t0);
    c.admit(a, key, t0);
    c.complete(&key, outputs(&[7.0, 8.0]), t0);

    let just_before = t0 + TTL - Duration::from_millis(1);
    let (b, k) = req("b", Tier::Normal, &[1.0], just_before);
    match c.admit(b, k, just_before) {
        Admit::Cached(b, out) => {
            assert_eq!(b.request.request_id, "b");
            assert_eq!(&*out, &*outputs(&[7.0, 8.0]));
        }
        other => panic!("expected Cached, got {other:?}"),
    }

    let at_ttl = t0 + TTL;
    let (d, k) = req("d", Tier::Normal, &[1.0], at_ttl);
    assert_eq!(run_id(c.admit(d, k, at_ttl)), "d");
    let s = c.stats();
    assert_eq!((s.hits, s.expired, s.cached, s.leaders), (1, 1, 0, 2));
}

#[test]
fn the_cache_keeps_at_most_cache_size_results_evicting_the_oldest() {
    let t0 = Instant::now();
    let mut c = Coalescer::new(params(2));
    for (i, x) in [1.0, 2.0, 3.0].into_iter().enumerate() {
        let at = t0 + Duration::from_millis(i as u64);
        let (a, key) = req("a", Tier::Normal, &[x], at);
        c.admit(a, key, at);
        c.complete(&key, outputs(&[x]), at);
    }
    assert_eq!((c.stats().cached, c.stats().evictions), (2, 1));

    let now = t0 + Duration::from_millis(5);
    let (oldest, k) = req("oldest", Tier::Normal, &[1.0], now);
    assert!(matches!(c.admit(oldest, k, now), Admit::Run(_)));
    for x in [2.0, 3.0] {
        let (a, k) = req("kept", Tier::Normal, &[x], now);
        assert!(matches!(c.admit(a, k, now), Admit::Cached(..)));
    }
}

#[test]
fn shrinking_or_disabling_on_reload_drops_results_but_keeps_followers() {
    let t0 = Instant::now();
    let mut c = Coalescer::new(params(3));
    for x in [1.0, 2.0, 3.0] {
        let (a, key) = req("a", Tier::Normal, &[x], t0);
        c.admit(a, key, t0);
        c.complete(&key, outputs(&[x]), t0);
    }
    c.set_params(params(1));
    assert_eq!((c.stats().cached, c.stats().evictions), (1, 2));
    let (newest, k) = req("n", Tier::Normal, &[3.0], t0);
    assert!(matches!(c.admit(newest, k, t0), Admit::Cached(..)));

    let (leader, key) = req("l", Tier::Normal, &[4.0], t0);
    c.admit(leader, key, t0);
    let (f, k) = req("f", Tier::Normal, &[4.0], t0);
    assert!(matches!(c.admit(f, k, t0), Admit::Joined));
    c.set_params(DedupParams {
        enabled: false,
        ..params(1)
    });
    assert_eq!(c.stats().cached, 0);
    assert_eq!(ids(&c.complete(&key, outputs(&[4.0]), t0)), ["f"]);
    assert_eq!(c.stats().cached, 0, "disabled: nothing stored");
}

#[test]
fn keys_differ_by_element_type_and_by_any_input_of_several() {
    let m = ModelId::new("m", "1");
    let t = |name: &str, data: TensorData| Tensor::new(name, vec![data.len() as i32], data);
    let ints = [t("a", TensorData::I32(vec![1, 2]))];
    let floats = [t(
        "a",
        TensorData::F32(vec![f32::from_bits(1), f32::from_bits(2)]),
    )];
    assert_ne!(
        dedup_key(&m, &ints),
        dedup_key(&m, &floats),
        "same bits, other type"
    );
    let two = [
        t("a", TensorData::F32(vec![1.0])),
        t("b", TensorData::I64(vec![7])),
    ];
    let changed = [
        t("a", TensorData::F32(vec![1.0])),
        t("b", TensorData::I64(vec![8])),
    ];
    assert_ne!(dedup_key(&m, &two), dedup_key(&m, &changed));
    // Moving a value from one tensor to the other changes the key (lengths end the encoding).
    let split_a = [
        t("a", TensorData::I64(vec![1, 2])),
        t("b", TensorData::I64(vec![3])),
    ];
    let split_b = [
        t("a", TensorData::I64(vec![1])),
        t("b", TensorData::I64(vec![2, 3])),
    ];
    assert_ne!(dedup_key(&m, &split_a), dedup_key(&m, &split_b));
    // Names are not part of the key: tensors are in the model's order by then, so a version-1
    // request and a version-2 request with the same input share a result.
    let v1 = Inputs::v1(vec![2], vec![1.0, 2.0]);
    let v2 = [t("input", TensorData::F32(vec![1.0, 2.0]))];
    assert_eq!(dedup_key(&m, v1.tensors()), dedup_key(&m, &v2));
}

#[test]
fn keys_differ_by_model_version_shape_and_data() {
    let base = v1_key(&ModelId::new("m", "1"), &[2], &[1.0, 2.0]);
    assert_eq!(base, v1_key(&ModelId::new("m", "1"), &[2], &[1.0, 2.0]));
    let others = [
        v1_key(&ModelId::new("n", "1"), &[2], &[1.0, 2.0]),
        v1_key(&ModelId::new("m", "2"), &[2], &[1.0, 2.0]),
        v1_key(&ModelId::new("m", "1"), &[1, 2], &[1.0, 2.0]),
        v1_key(&ModelId::new("m", "1"), &[2], &[1.0, 2.5]),
        v1_key(&ModelId::new("m", "1"), &[2], &[1.0]),
        // Field boundaries matter: "m1" + "" is not "m" + "1".
        v1_key(&ModelId::new("m1", ""), &[2], &[1.0, 2.0]),
    ];
    for other in others {
        assert_ne!(base, other);
    }
    assert_ne!(
        v1_key(&ModelId::new("m", "1"), &[1], &[0.0]),
        v1_key(&ModelId::new("m", "1"), &[1], &[-0.0])
    );
    // More than one hasher update's worth of floats.
    let long: Vec<f32> = (0..3000).map(|i| i as f32).collect();
    let mut changed = long.clone();
    changed[2999] = -1.0;
    assert_ne!(
        v1_key(&ModelId::new("m", "1"), &[3000], &long),
        v1_key(&ModelId::new("m", "1"), &[3000], &changed)
    );
}

proptest! {
    #[test]
    fn any_single_bit_flip_in_data_changes_the_key(
        data in prop::collection::vec(any::<f32>(), 1..2100),
        index in any::<prop::sample::Index>(),
        bit in 0u32..32,
    ) {
        let i = index.index(data.len());
        let mut flipped = data.clone();
        flipped[i] = f32::from_bits(data[i].to_bits() ^ (1 << bit));
        let shape = [data.len() as i32];
        prop_assert_ne!(v1_key(&ModelId::new("m", "1"), &shape, &data), v1_key(&ModelId::new("m", "1"), &shape, &flipped));
    }
}

#[test]
fn a_failed_leader_hands_its_followers_back_and_the_first_leads_again() {
    let t0 = Instant::now();
    let mut c = Coalescer::new(params(10));
    let (a, key) = req("a", Tier::Normal, &[1.0], t0);
    c.admit(a, key, t0);
    for id in ["b", "c"] {
        let (f, k) = req(id, Tier::Normal, &[1.0], t0);
        c.admit(f, k, t0);
    }
    let back = c.fail(&key);
    assert_eq!(ids(&back), ["b", "c"]);
    assert_eq!(c.stats().cached, 0, "a failure is never cached");
    assert_eq!(c.stats().pending, 0);

    let mut back = back.into_iter();
    let b = back.next().unwrap();
    assert_eq!(run_id(c.admit(b, key, t0)), "b");
    let rest = back.next().unwrap();
    assert!(matches!(c.admit(rest, key, t0), Admit::Joined));
    assert_eq!(ids(&c.complete(&key, outputs(&[1.0]), t0)), ["c"]);
}

#[test]
fn cancel_expired_returns_only_followers_past_their_deadline() {
    let t0 = Instant::now();
    let mut c = Coalescer::new(params(10));
    let (a, key) = req("a", Tier::Normal, &[1.0], t0);
    c.admit(a, key, t0);
    let ms = Duration::from_millis;
    for (id, deadline) in [
        ("late", Some(ms(50))),
        ("soon", Some(ms(10))),
        ("none", None),
    ] {
        let (mut f, k) = req(id, Tier::Normal, &[1.0], t0);
        f.deadline = deadline.map(|d| t0 + d);
        assert!(matches!(c.admit(f, k, t0), Admit::Joined));
    }
    assert_eq!(c.next_deadline(), Some(t0 + ms(10)));
    assert!(c.cancel_expired(t0 + ms(9)).is_empty());

    assert_eq!(ids(&c.cancel_expired(t0 + ms(10))), ["soon"]);
    assert_eq!(c.next_deadline(), Some(t0 + ms(50)));
    assert_eq!((c.stats().cancelled, c.stats().waiting), (1, 2));

    assert_eq!(
        ids(&c.complete(&key, outputs(&[1.0]), t0 + ms(20))),
        ["late", "none"]
    );
    assert_eq!(
        c.next_deadline(),
        None,
        "answered followers leave the deadline index"
    );
    assert!(c.cancel_expired(t0 + ms(60)).is_empty());
}

#[test]
fn an_urgent_request_never_waits_behind_a_less_urgent_leader() {
    let t0 = Instant::now();
    let mut c = Coalescer::new(params(10));
    let (low, key) = req("low", Tier::Low, &[1.0], t0);
    assert_eq!(run_id(c.admit(low, key, t0)), "low");
    let (low2, k) = req("low2", Tier::Low, &[1.0], t0);
    assert!(
        matches!(c.admit(low2, k, t0), Admit::Joined),
        "less urgent joins"
    );
    let (crit, k) = req("crit", Tier::Critical, &[1.0], t0);
    assert_eq!(
        run_id(c.admit(crit, k, t0)),
        "crit",
        "more urgent runs itself"
    );
    let (high, k) = req("high", Tier::High, &[1.0], t0);
    assert!(
        matches!(c.admit(high, k, t0), Admit::Joined),
        "joins the critical leader"
    );

    // Whichever leader finishes first answers everyone; the other's completion only caches.
    assert_eq!(
        ids(&c.complete(&key, outputs(&[1.0]), t0)),
        ["low2", "high"]
    );
    assert!(c.complete(&key, outputs(&[1.0]), t0).is_empty());
    assert!(c.fail(&key).is_empty());
    assert_eq!(c.stats().leaders, 2);
}

#[test]
fn disabled_dedup_always_runs_and_counts_nothing() {
    let t0 = Instant::now();
    let mut c = Coalescer::new(DedupParams {
        enabled: false,
        ..params(10)
    });
    for id in ["a", "b"] {
        let (a, key) = req(id, Tier::Normal, &[1.0], t0);
        assert_eq!(run_id(c.admit(a, key, t0)), id);
        assert!(c.complete(&key, outputs(&[1.0]), t0).is_empty());
    }
    let (a, key) = req("c", Tier::Normal, &[1.0], t0);
    assert!(matches!(c.admit(a, key, t0), Admit::Run(_)));
    assert_eq!(c.stats(), DedupStats::default());
}

#[test]
fn params_come_from_the_deduplication_section() {
    let mut config = Config::default();
    config.deduplication.enable_deduplication = true;
    config.deduplication.deduplication_ttl = 1.5;
    let p = DedupParams::from_config(&config);
    assert_eq!(
        p,
        DedupParams {
            enabled: true,
            cache_size: 1000,
            ttl: Duration::from_millis(1500),
            purge_interval: Some(Duration::from_secs(30)),
        }
    );
    config.resource_management.enable_memory_cleanup = false;
    assert_eq!(DedupParams::from_config(&config).purge_interval, None);
}

#[test]
fn purge_releases_expired_results_on_its_interval_without_any_use_of_the_cache() {
    let t0 = Instant::now();
    let every = Duration::from_secs(30);
    let mut c = Coalescer::new(DedupParams {
        purge_interval: Some(every),
        ..params(10)
    });
    assert_eq!(c.next_purge(), None, "nothing held, nothing to purge");
    for (i, at) in [(0.0f32, t0), (1.0, t0 + Duration::from_secs(20))] {
        let (a, key) = req(&format!("r{i}"), Tier::Normal, &[i], at);
        assert!(matches!(c.admit(a, key, at), Admit::Run(_)));
        c.complete(&key, outputs(&[i, i, i]), at);
    }
    // The interval counts from when the cache began holding results.
    assert_eq!(c.next_purge(), Some(t0 + every));
    assert_eq!(c.purge(t0 + every), Purged::default(), "both still fresh");
    assert_eq!(c.next_purge(), Some(t0 + 2 * every));
    // At 60 s the first result's TTL has passed, the second's (stored at 20 s) has not.
    let purged = c.purge(t0 + 2 * every);
    assert_eq!(
        purged,
        Purged {
            results: 1,
            bytes: 12
        }
    );
    assert_eq!(c.stats().cached, 1);
    assert_eq!(c.stats().expired, 1);
    let purged = c.purge(t0 + 3 * every);
    assert_eq!(purged.results, 1);
    assert_eq!(c.stats().cached, 0);
    assert_eq!(c.next_purge(), None, "an empty cache needs no timer");
}

#[test]
fn without_a_purge_interval_no_purge_is_ever_due() {
    let t0 = Instant::now();
    let mut c = Coalescer::new(params(10));
    let (a, key) = req("a", Tier::Normal, &[1.0], t0);
    assert!(matches!(c.admit(a, key, t0), Admit::Run(_)));
    c.complete(&key, outputs(&[1.0]), t0);
    assert_eq!(c.next_purge(), None);
}
