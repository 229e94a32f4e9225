//! The version-2 request contract on a real broker: named tensors of several element types,
//! several inputs and outputs per request, a dynamic dimension, against the bundled registry
//! (`models/`: cnn_lstm, risk_mlp, txn_scorer). Outputs are checked against the generator's
//! numpy reference and against ONNX Runtime run directly on the file; version-1 requests keep
//! working beside version-2 ones.
#![cfg(feature = "container-tests")]

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use common::pipeline::*;
use common::serving::{serve_observed, stop};
use common::{producer, shared_broker, with_timeout};
use kbatch_core::config::Config;
use kbatch_core::inference::{load_backend, LoadSpec};
use kbatch_core::model::{parse_samples, ModelId, Signature};
use kbatch_core::telemetry::models::VersionState;
use kbatch_core::telemetry::Telemetry;
use kbatch_core::tensor::{DType, Tensor, TensorData, TensorSpec};
use kbatch_core::tier::Tier;
use kbatch_core::wire::{Framing, Inputs, Outputs, Request, Status, WireCodec};
use rdkafka::Message;

/// Waits until every bundled model's latest version is ready (warmed up).
async fn wait_ready(t: &Telemetry) {
    let ready = |name: &str| {
        t.stats.models().is_some_and(|view| {
            view.models.iter().any(|m| {
                m.name == name && m.versions.iter().any(|v| v.state == VersionState::Ready)
            })
        })
    };
    with_timeout("the bundled models ready", Duration::from_secs(60), async {
        while !(ready("txn_scorer") && ready("cnn_lstm")) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// txn_scorer's signature as its model.yaml declares it.
fn txn_signature() -> Signature {
    Signature {
        inputs: vec![
            TensorSpec::fixed("features", DType::Float32, &[8]),
            TensorSpec::fixed("merchant", DType::Int64, &[1]),
            TensorSpec::new(
                "history",
                DType::Float32,
                vec![
                    kbatch_core::tensor::Dim::Dynamic,
                    kbatch_core::tensor::Dim::Fixed(4),
                ],
            ),
        ],
        outputs: vec![
            TensorSpec::fixed("score", DType::Float32, &[2]),
            TensorSpec::fixed("label", DType::Int64, &[1]),
        ],
    }
}

/// A version-2 request for txn_scorer: `steps` history rows, `merchant` as the int64 input, the
/// tensors in an order that depends on `n` (the wire order is free).
fn txn(id: &str, n: u64, merchant: i64, steps: usize) -> Request {
    let f = |k: u64| ((k * 37 + n * 11) % 101) as f32 / 50.0 - 1.0;
    let features = Tensor::new(
        "features",
        vec![8],
        TensorData::F32((0..8).map(f).collect()),
    );
    let merchant = Tensor::new("merchant", vec![1], TensorData::I64(vec![merchant]));
    let history = Tensor::new(
        "history",
        vec![steps as i32, 4],
        TensorData::F32((0..steps as u64 * 4).map(|k| f(k + 100)).collect()),
    );
    let mut inputs = vec![features, merchant, history];
    inputs.rotate_left((n % 3) as usize);
    Request {
        model_name: Some("txn_scorer".into()),
        inputs: Inputs::V2(inputs),
        ..request(id, n)
    }
}

/// Every output of the file for one request, run directly by ONNX Runtime.
fn direct(cfg: &Config, file: &str, req: &Request, sig: &Signature) -> Vec<Tensor> {
    let spec = LoadSpec::new(
        &cfg.model,
        ModelId::new("direct", "1"),
        models_dir().join(file),
    );
    let mut b = load_backend(&spec).expect("backend");
    // The model's input order, as admission arranges it.
    let ordered: Vec<Tensor> = sig
        .inputs
        .iter()
        .map(|s| {
            let t = req.inputs.tensors().iter().find(|t| t.name == s.name);
            t.expect("every input").clone()
        })
        .collect();
    infer_one(b.as_mut(), &ordered)
}

fn close(a: &Tensor, b: &Tensor) -> bool {
    a.name == b.name
        && a.shape == b.shape
        && match (&a.data, &b.data) {
            (TensorData::F32(x), TensorData::F32(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(p, q)| (p - q).abs() <= 1e-5)
            }
            (x, y) => x == y,
        }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn typed_multi_input_requests_are_served_beside_version_1_ones() {
    let broker = shared_broker().await;
    let bootstrap = broker.bootstrap_servers();
    let mut cfg = test_config(bootstrap, 2).await;
    cfg.model.warmup_batches = 1;
    // Long enough waits that requests of different history lengths share batches.
    cfg.batch_processing.min_batch_interval = 0.02;
    let replies_reader = reader(bootstrap, &cfg.replies.default_topic);
    let dlq_reader = reader(bootstrap, &cfg.replies.dead_letter_topic);
    let (telemetry, serving) = serve_observed(&cfg);
    wait_ready(&telemetry).await;
    let p = producer(bootstrap);
    let codec = WireCodec::new(&cfg.wire);

    // 1. The generator's numpy reference cases, through Kafka and kbatch.
    let text = std::fs::read_to_string(models_dir().join("txn_scorer.reference.json")).unwrap();
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = reference["cases"].as_array().unwrap();
    let mut sent: Vec<Request> = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let sample = parse_samples(&format!("[{}]", case["inputs"])).unwrap();
        let mut tensors = sample[0].tensors(&txn_signature()).unwrap();
        tensors.reverse();
        sent.push(Request {
            model_name: Some("txn_scorer".into()),
            inputs: Inputs::V2(tensors),
            ..request(&format!("ref-{i}"), i as u64)
        });
    }
    // 2. Random ones: history lengths 1..6 and merchants across the table, every tier.
    for n in 0..60u64 {
        sent.push(txn(
            &format!("txn-{n}"),
            n,
            (n * 7 % 64) as i64,
            1 + (n % 6) as usize,
        ));
    }
    // 3. One merchant outside the embedding table: fails alone (MODEL_ERROR, dead letter).
    sent.push(txn("poison", 999, 64, 2));
    // 4. A version-1 request for txn_scorer: it cannot describe three inputs.
    sent.push(Request {
        model_name: Some("txn_scorer".into()),
        ..request("v1-for-txn", 7)
    });
    // 5. cnn_lstm in both versions of the contract, with the same tensor.
    let v1 = request("cnn-v1", 3);
    let v2 = Request {
        request_id: "cnn-v2".into(),
        inputs: Inputs::V2(vec![Tensor {
            name: "input".into(),
            ..v1.inputs.tensors()[0].clone()
        }]),
        ..v1.clone()
    };
    sent.push(v1.clone());
    sent.push(v2);
    for (i, r) in sent.iter().enumerate() {
        send_request(&p, &cfg, Tier::ALL[i % 4], r).await;
    }
    // 6. JSON framing of a version-2 request: int64 values travel as JSON integers.
    let json_req = txn("json", 5, 63, 3);
    let mut json = Vec::new();
    codec.encode_request(&json_req, Framing::Json, &mut json);
    assert!(String::from_utf8_lossy(&json).contains(r#""dtype":"INT64""#));
    send_raw(&p, &cfg.kafka.topics.normal, "json", &json).await;
    sent.push(json_req);

    let replies = collect_replies(&replies_reader, &cfg, Duration::from_secs(90), |r| {
        r.len() >= sent.len()
    })
    .await;
    let dead = common::consume_n(&dlq_reader, 1, Duration::from_secs(30)).await;
    stop(serving).await;
    assert_eq!(replies.len(), sent.len(), "one reply each");
    let by_id: HashMap<&str, &Request> = sent.iter().map(|r| (r.request_id.as_str(), r)).collect();
    let sig = txn_signature();
    let mut shared_batches = 0;
    let mut cnn_outputs = HashMap::new();
    for r in &replies {
        let id = r.reply.request_id.as_str();
        let req = by_id[id];
        match id {
            "poison" => {
                assert_eq!(r.reply.status, Status::ModelError);
                assert_eq!(r.reply.outputs, Outputs::V2(Vec::new()));
            }
            "v1-for-txn" => {
                assert_eq!(r.reply.status, Status::InvalidInput);
                let e = r.reply.error.as_deref().unwrap_or_default();
                assert!(e.contains("send an io.kbatch.v2.InferenceRequest"), "{e}");
                assert!(matches!(r.reply.outputs, Outputs::V1 { .. }), "a v1 reply");
            }
            "cnn-v1" | "cnn-v2" => {
                assert_eq!(r.reply.status, Status::Ok, "{:?}", r.reply.error);
                cnn_outputs.insert(id, r.reply.outputs.clone());
            }
            _ => {
                assert_eq!(r.reply.status, Status::Ok, "{id}: {:?}", r.reply.error);
                assert_eq!(r.reply.model_name, "txn_scorer");
                let Outputs::V2(got) = &r.reply.outputs else {
                    panic!("{id}: a version-2 reply, got {:?}", r.reply.outputs)
                };
                let names: Vec<&str> = got.iter().map(|t| t.name.as_str()).collect();
                assert_eq!(names, ["score", "label"], "{id}");
                let want = direct(&cfg, "txn_scorer/1/model.onnx", req, &sig);
                assert!(
                    got.iter().zip(&want).all(|(a, b)| close(a, b)),
                    "{id}: {got:?} vs {want:?}"
                );
                if let Some(i) = id.strip_prefix("ref-") {
                    let case = &cases[i.parse::<usize>().unwrap()]["outputs"];
                    let TensorData::F32(score) = &got[0].data else {
                        panic!("float32 score")
                    };
                    for (k, s) in score.iter().enumerate() {
                        let want = case["score"][k].as_f64().unwrap() as f32;
                        assert!((s - want).abs() <= 1e-5, "{id}: numpy {want}, got {s}");
                    }
                    let label = case["label"][0].as_i64().unwrap();
                    assert_eq!(got[1].data, TensorData::I64(vec![label]), "{id}");
                }
                if r.reply.timings.batch_size > 1 {
                    shared_batches += 1;
                }
            }
        }
    }
    assert!(
        shared_batches > 0,
        "requests of one history length shared a model call"
    );
    // Version 1 gets the first output as floats; version 2 the named tensor; same values.
    let Outputs::V2(named) = &cnn_outputs["cnn-v2"] else {
        panic!("a version-2 reply")
    };
    assert_eq!(named[0].name, "output");
    assert_eq!(
        cnn_outputs["cnn-v1"],
        Outputs::V1 {
            output_shape: named[0].shape.clone(),
            outputs: named[0].data.clone().into_f32()
        }
    );
    // The poison request is kept on the dead-letter topic, in its own version, typed intact.
    let dl = codec
        .decode_dead_letter(dead[0].payload().unwrap_or_default())
        .expect("dead letter decodes");
    let kept = codec.decode_request(dl.value.as_deref().unwrap()).unwrap();
    assert_eq!(kept.request_id, "poison");
    let merchant = kept.inputs.tensors().iter().find(|t| t.name == "merchant");
    assert_eq!(merchant.unwrap().data, TensorData::I64(vec![64]));
    assert!(dl.error.contains("out of"), "{}", dl.error);
}
