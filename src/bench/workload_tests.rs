//! Unit tests of `workload`.

use super::*;
use kbatch_core::config::WireConfig;
use kbatch_core::tensor::{DType, TensorSpec};
use kbatch_core::wire::{validate, Inputs, Request, SchemaVersion};

/// Validates against the bundled model's signature (64 x 16 float32 in, 3 float32 out).
fn valid(mut req: Request) -> bool {
    let inputs = [TensorSpec::fixed("input", DType::Float32, &[64, 16])];
    let outputs = [TensorSpec::fixed("output", DType::Float32, &[3])];
    validate(&mut req, &inputs, &outputs).is_ok()
}

#[test]
fn tier_mix_parses_four_weights_and_rejects_the_rest() {
    let m: TierMix = "10,20,40,30".parse().unwrap();
    assert_eq!(m.weights(), [10, 20, 40, 30]);
    assert_eq!(m.to_string(), "10/20/40/30");
    assert_eq!(
        "1/0/0/0".parse::<TierMix>().unwrap().weights(),
        [1, 0, 0, 0]
    );
    assert!("10,20,40".parse::<TierMix>().is_err());
    assert!("0,0,0,0".parse::<TierMix>().is_err());
    assert!("a,1,1,1".parse::<TierMix>().is_err());
    assert!("-1,1,1,1".parse::<TierMix>().is_err());
}

#[test]
fn tier_mix_sampling_follows_the_cumulative_weights() {
    let m = TierMix::new([10, 20, 40, 30]).unwrap();
    assert_eq!(m.sample(0.0), Tier::Critical);
    assert_eq!(m.sample(0.0999), Tier::Critical);
    assert_eq!(m.sample(0.1), Tier::High);
    assert_eq!(m.sample(0.2999), Tier::High);
    assert_eq!(m.sample(0.3), Tier::Normal);
    assert_eq!(m.sample(0.6999), Tier::Normal);
    assert_eq!(m.sample(0.7), Tier::Low);
    assert_eq!(m.sample(1.0), Tier::Low);
    // A zero weight is never drawn, even at the edges.
    let m = TierMix::new([0, 5, 5, 0]).unwrap();
    assert_eq!(m.sample(0.0), Tier::High);
    assert_eq!(m.sample(1.0), Tier::Normal);
}

#[test]
fn plan_is_seeded_and_matches_the_mix() {
    let mix = TierMix::default();
    let a = Plan::new(20_000, &mix, 0.0, 7);
    let b = Plan::new(20_000, &mix, 0.0, 7);
    let c = Plan::new(20_000, &mix, 0.0, 8);
    let tiers = |p: &Plan| (0..p.len()).map(|s| p.tier(s)).collect::<Vec<_>>();
    assert_eq!(tiers(&a), tiers(&b));
    assert_ne!(tiers(&a), tiers(&c));
    let per = a.per_tier();
    for (got, want) in per.iter().zip([0.1, 0.2, 0.4, 0.3]) {
        let share = *got as f64 / 20_000.0;
        assert!((share - want).abs() < 0.02, "share {share} vs {want}");
    }
    assert!((0..a.len()).all(|s| a.kind(s) == Kind::Valid));
}

#[test]
fn plan_bad_fraction_splits_into_invalid_and_undecodable() {
    let p = Plan::new(10_000, &TierMix::default(), 0.2, 1);
    let count = |k| (0..p.len()).filter(|&s| p.kind(s) == k).count() as f64;
    assert!((count(Kind::Invalid) / 10_000.0 - 0.1).abs() < 0.02);
    assert!((count(Kind::Undecodable) / 10_000.0 - 0.1).abs() < 0.02);
}

#[test]
fn request_ids_round_trip_and_reject_other_runs() {
    let ids = RequestIds::new("b1a2b3c4");
    assert_eq!(ids.id(42), "b1a2b3c4-42");
    assert_eq!(ids.classify("b1a2b3c4-42"), IdKind::Seq(42));
    assert_eq!(ids.classify(&ids.warm_up(3)), IdKind::WarmUp);
    assert_eq!(ids.classify("b1a2b3c4-042"), IdKind::Foreign);
    assert_eq!(ids.classify("b1a2b3c4-"), IdKind::Foreign);
    assert_eq!(ids.classify("ffffffff-42"), IdKind::Foreign);
    assert_eq!(ids.classify("b1a2b3c4-4x"), IdKind::Foreign);
}

#[test]
fn factory_encodes_valid_invalid_and_undecodable_records() {
    let wire = WireConfig::default();
    let codec = WireCodec::new(&wire);
    let format = RecordFormat {
        framing: Framing::Confluent,
        contract: SchemaVersion::V1,
    };
    let mut f = RecordFactory::new(codec.clone(), format, 3, "replies.x", Some(250));
    let mut buf = Vec::new();
    f.encode(5, Kind::Valid, "r-5", 1234, &mut buf);
    assert_eq!(buf[0], 0x00, "Confluent magic byte");
    let req = codec.decode_request(&buf).unwrap();
    assert_eq!(req.request_id, "r-5");
    assert_eq!(req.created_at_ms, 1234);
    assert_eq!(req.timeout_ms, Some(250));
    assert_eq!(req.reply_topic.as_deref(), Some("replies.x"));
    assert_eq!(req.inputs.tensors()[0].shape, MODEL_SHAPE.to_vec());
    assert!(valid(req));

    f.encode(5, Kind::Invalid, "r-6", 1234, &mut buf);
    let bad = codec.decode_request(&buf).unwrap();
    assert!(!valid(bad));
    // The template is restored after an invalid record.
    f.encode(5, Kind::Valid, "r-7", 1234, &mut buf);
    assert!(valid(codec.decode_request(&buf).unwrap()));

    f.encode(5, Kind::Undecodable, "r-8", 1234, &mut buf);
    assert!(codec.decode_request(&buf).is_err());

    // Version 2: the same values as one named tensor, valid and invalid alike.
    let v2 = RecordFormat {
        framing: Framing::Confluent,
        contract: SchemaVersion::V2,
    };
    let mut f2 = RecordFactory::new(codec.clone(), v2, 3, "replies.x", Some(250));
    f2.encode(5, Kind::Valid, "r-9", 1234, &mut buf);
    assert_eq!(&buf[..5], &[0, 0, 0, 0, 4], "the version-2 schema id");
    let req = codec.decode_request(&buf).unwrap();
    let Inputs::V2(tensors) = &req.inputs else {
        panic!("a version-2 request")
    };
    assert_eq!(tensors[0].name, "input");
    f.encode(5, Kind::Valid, "r-9", 1234, &mut buf);
    let same = codec.decode_request(&buf).unwrap();
    assert_eq!(
        tensors[0].data,
        same.inputs.tensors()[0].data,
        "same values"
    );
    assert!(valid(req));
    f2.encode(5, Kind::Invalid, "r-10", 1234, &mut buf);
    assert!(!valid(codec.decode_request(&buf).unwrap()));
}
