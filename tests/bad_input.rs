//! Bad input end to end (issue 6): one `kbatch serve` against a real broker is fed every kind
//! of bad record, each between two valid requests, and then a run of valid requests. Every bad
//! record gets the outcome README "Delivery" and "Wire contract" document (a dead letter with
//! its `error_kind` and the original bytes, or an error reply on the default reply topic), the
//! valid requests around them are all answered OK, and the serve report counts what was sent.
#![cfg(feature = "container-tests")]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::pipeline::*;
use common::{assert_no_more, consume_n, create_topic, producer, shared_broker, with_timeout};
use common::{Topics, WAIT};
use kbatch_core::config::Config;
use kbatch_core::kafka::REPLY_UNDELIVERABLE;
use kbatch_core::tensor::{Tensor, TensorData};
use kbatch_core::tier::Tier;
use kbatch_core::wire::{
    DeadLetter, Framing, Inputs, Outputs, Request, Status, Timings, WireCodec,
};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use tokio_util::sync::CancellationToken;

/// Smaller than the defaults so an oversized record stays well inside what the broker and the
/// producer accept (librdkafka's `message.max.bytes` is 1,000,000, below the default 1 MiB).
const MAX_REQUEST_BYTES: usize = 64 * 1024;
const MAX_TENSOR_ELEMENTS: usize = 4096;

/// What a bad record must become.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// A dead letter of this `error_kind` whose `error` mentions the text.
    Dead(&'static str, &'static str),
    /// A reply with this status on the default reply topic whose `error` mentions the text.
    Reply(Status, &'static str),
}

/// One bad record: its key (also its request id when it has one), value and expected outcome.
struct Case {
    name: &'static str,
    /// `None`: a tombstone (null value).
    value: Option<Vec<u8>>,
    expect: Expect,
}

/// Where a record landed.
#[derive(Debug, Clone)]
struct Landed {
    topic: String,
    partition: i32,
    offset: i64,
    value: Option<Vec<u8>>,
}

fn confluent(cfg: &Config, req: &Request) -> Vec<u8> {
    encoded(cfg, req, Framing::Confluent)
}

fn encoded(cfg: &Config, req: &Request, framing: Framing) -> Vec<u8> {
    let mut buf = Vec::new();
    WireCodec::new(&cfg.wire).encode_request(req, framing, &mut buf);
    buf
}

/// The Avro zig-zag varint of `v`, for forging a length by hand.
fn varint(v: i64) -> Vec<u8> {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = Vec::new();
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
    out
}

/// A request of `n` values shaped `[n]`.
fn flat(id: &str, n: usize) -> Request {
    Request {
        inputs: Inputs::v1(vec![n as i32], vec![0.25; n]),
        ..request(id, 0)
    }
}

/// Every bad record that is not about the reply topic, with its documented outcome.
fn bad_records(cfg: &Config) -> Vec<Case> {
    use Expect::{Dead, Reply};
    let mut cases = Vec::new();
    let mut add = |name, value: Option<Vec<u8>>, expect| {
        cases.push(Case {
            name,
            value,
            expect,
        })
    };

    // Not readable as a request: dead-lettered.
    let mut wrong_id = confluent(cfg, &request("wrong-schema-id", 1));
    wrong_id[1..5].copy_from_slice(&42u32.to_be_bytes());
    add(
        "wrong-schema-id",
        Some(wrong_id),
        Dead("unknown_schema_id", "42"),
    );
    let mut wrong_fp = encoded(cfg, &request("wrong-fp", 2), Framing::SingleObject);
    wrong_fp[2] ^= 0xff;
    add(
        "wrong-fingerprint",
        Some(wrong_fp),
        Dead("unknown_fingerprint", "InferenceRequest"),
    );
    let mut reply_bytes = Vec::new();
    WireCodec::new(&cfg.wire).encode_reply(
        // `Expect::Reply` shadows the record type here.
        &kbatch_core::wire::Reply {
            request_id: "a-reply".into(),
            status: Status::Ok,
            error: None,
            model_name: "cnn_lstm".into(),
            model_version: "1".into(),
            outputs: Outputs::V1 {
                output_shape: vec![3],
                outputs: vec![0.1, 0.2, 0.7],
            },
            tier: Tier::High,
            timings: Timings::default(),
            completed_at_ms: 1,
        },
        &mut reply_bytes,
    );
    add(
        "a-reply-as-request",
        Some(reply_bytes),
        Dead("unknown_fingerprint", ""),
    );
    let whole = confluent(cfg, &request("truncated", 3));
    add(
        "truncated",
        Some(whole[..whole.len() / 2].to_vec()),
        Dead("truncated", "data"),
    );
    add(
        "truncated-header",
        Some(vec![0, 0, 0]),
        Dead("truncated", "confluent header"),
    );
    let mut trailing = confluent(cfg, &request("trailing", 4));
    trailing.extend_from_slice(b"xx");
    add(
        "trailing-bytes",
        Some(trailing),
        Dead("trailing_bytes", "2 trailing"),
    );
    add(
        "garbage",
        Some(b"not a request at all".to_vec()),
        Dead("unknown_framing", "0x6e"),
    );
    add(
        "bad-json",
        Some(br#"{"request_id": 7, "data": [1, 2]}"#.to_vec()),
        Dead("json", "invalid type"),
    );
    let mut forged = vec![0, 0, 0, 0, 1];
    forged.extend(varint(1 << 60));
    forged.extend_from_slice(b"r-forged");
    add(
        "forged-length",
        Some(forged),
        Dead("too_large", "`request_id` too large: 1152921504606846976"),
    );
    let mut negative = vec![0, 0, 0, 0, 1];
    negative.extend(varint(-5));
    add(
        "negative-length",
        Some(negative),
        Dead("malformed", "negative length"),
    );
    add(
        "too-many-elements",
        Some(confluent(
            cfg,
            &flat("too-many-elements", MAX_TENSOR_ELEMENTS + 1),
        )),
        Dead("too_large", "`data` too large: 4097 > limit 4096"),
    );
    let big = confluent(cfg, &flat("oversized-record", 20_000));
    assert!(big.len() > MAX_REQUEST_BYTES && big.len() < 900_000);
    add(
        "oversized-record",
        Some(big),
        Dead("too_large", "`record` too large"),
    );
    add("empty-value", Some(Vec::new()), Dead("empty", "empty"));
    add("tombstone", None, Dead("empty", "empty"));

    // Readable requests with invalid content: INVALID_INPUT.
    let with_value = |id: &str, v: f32| {
        let mut r = request(id, 5);
        r.inputs.v1_mut().expect("version 1").values[100] = v;
        r
    };
    for (name, v) in [
        ("nan", f32::NAN),
        ("pos-inf", f32::INFINITY),
        ("neg-inf", f32::NEG_INFINITY),
    ] {
        add(
            name,
            Some(confluent(cfg, &with_value(name, v))),
            Reply(Status::InvalidInput, "data[100]"),
        );
    }
    add(
        "wrong-shape",
        Some(confluent(
            cfg,
            &Request {
                inputs: Inputs::v1(vec![16, 64], vec![0.5; 1024]),
                ..request("wrong-shape", 6)
            },
        )),
        Reply(
            Status::InvalidInput,
            "does not match the model's input shape",
        ),
    );
    add(
        "short-data",
        Some(confluent(
            cfg,
            &Request {
                inputs: Inputs::v1(vec![64, 16], vec![0.5; 1023]),
                ..request("short-data", 7)
            },
        )),
        Reply(Status::InvalidInput, "1023 values but shape needs 1024"),
    );
    add(
        "negative-shape",
        Some(confluent(
            cfg,
            &Request {
                inputs: Inputs::v1(vec![64, -16], vec![0.5; 1024]),
                ..request("negative-shape", 8)
            },
        )),
        Reply(Status::InvalidInput, "dimensions must be positive"),
    );
    add(
        "negative-timeout",
        Some(confluent(
            cfg,
            &Request {
                timeout_ms: Some(-1),
                ..request("negative-timeout", 9)
            },
        )),
        Reply(Status::InvalidInput, "must not be negative"),
    );
    // serde reads JSON floats through f64: 1e39 overflows f32 to +inf, which validation refuses.
    let halves = Request {
        inputs: Inputs::v1(vec![64, 16], vec![0.5; 1024]),
        ..request("json-inf", 10)
    };
    let json_inf = String::from_utf8(encoded(cfg, &halves, Framing::Json))
        .unwrap()
        .replacen("\"data\":[0.5,", "\"data\":[1e39,", 1);
    assert!(json_inf.contains("[1e39,"));
    add(
        "json-inf",
        Some(json_inf.into_bytes()),
        Reply(Status::InvalidInput, "data[0] is inf"),
    );

    // Requests for another model or version: UNKNOWN_MODEL.
    add(
        "unknown-model-name",
        Some(confluent(
            cfg,
            &Request {
                model_name: Some("gpt-9".into()),
                ..request("unknown-model-name", 11)
            },
        )),
        Reply(Status::UnknownModel, "\"gpt-9\" is not served here"),
    );
    add(
        "unknown-model-version",
        Some(confluent(
            cfg,
            &Request {
                model_version: Some("999".into()),
                ..request("unknown-model-version", 12)
            },
        )),
        Reply(Status::UnknownModel, "has no version \"999\""),
    );

    // Version-2 requests: the same model, named typed tensors checked against its signature.
    let v2 = |id: &str, n: u64, tensors: Vec<Tensor>| Request {
        inputs: Inputs::V2(tensors),
        ..request(id, n)
    };
    let halves = |dtype_f64: bool| {
        let data = if dtype_f64 {
            TensorData::F64(vec![0.5; 1024])
        } else {
            TensorData::F32(vec![0.5; 1024])
        };
        Tensor::new("input", vec![64, 16], data)
    };
    add(
        "v2-wrong-dtype",
        Some(confluent(
            cfg,
            &v2("v2-wrong-dtype", 13, vec![halves(true)]),
        )),
        Reply(
            Status::InvalidInput,
            "input \"input\" is float64, the model takes float32",
        ),
    );
    let mut misnamed = halves(false);
    misnamed.name = "inputs".into();
    add(
        "v2-unknown-input",
        Some(confluent(cfg, &v2("v2-unknown-input", 14, vec![misnamed]))),
        Reply(
            Status::InvalidInput,
            "is not an input of the model (its inputs: input)",
        ),
    );
    add(
        "v2-missing-input",
        Some(confluent(cfg, &v2("v2-missing-input", 15, Vec::new()))),
        Reply(
            Status::InvalidInput,
            "missing input input: float32[batch, 64, 16]",
        ),
    );
    // A byte count that is not whole float32 values: the record cannot be read.
    let mut ragged = confluent(cfg, &v2("v2-ragged", 16, vec![halves(false)]));
    let tail = 1 + 4096 + 1; // data length varint (2 bytes: 8192 zig-zag), 4096 bytes, array end
    let at = ragged.len() - tail - 1;
    assert_eq!(&ragged[at..at + 2], &[0x80, 0x40], "4096 zig-zag encoded");
    ragged[at..at + 2].copy_from_slice(&[0xfe, 0x3f]); // 4095
    ragged.remove(ragged.len() - 2);
    add(
        "v2-ragged-bytes",
        Some(ragged),
        Dead("malformed", "not a whole number of elements"),
    );
    cases
}

/// Produces one record with a `case` header (a `None` value is a tombstone).
async fn send(p: &FutureProducer, topic: &str, key: &str, value: Option<&[u8]>) -> Landed {
    let headers = OwnedHeaders::new().insert(Header {
        key: "case",
        value: Some(key),
    });
    let mut rec = FutureRecord::<str, [u8]>::to(topic)
        .key(key)
        .headers(headers);
    if let Some(v) = value {
        rec = rec.payload(v);
    }
    let d = with_timeout("a delivery", WAIT, p.send(rec, Duration::from_secs(10)))
        .await
        .unwrap_or_else(|(e, _)| panic!("producing {key} to {topic}: {e}"));
    Landed {
        topic: topic.to_owned(),
        partition: d.partition,
        offset: d.offset,
        value: value.map(<[u8]>::to_vec),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_bad_input_gets_its_documented_outcome_and_serving_goes_on() {
    let broker = shared_broker().await;
    let bootstrap = broker.bootstrap_servers();
    let mut cfg = test_config(bootstrap, 2).await;
    cfg.wire.max_request_bytes = MAX_REQUEST_BYTES;
    cfg.wire.max_tensor_elements = MAX_TENSOR_ELEMENTS;
    let own_topic = format!("{}.caller", cfg.replies.default_topic);
    create_topic(bootstrap, Topics::Admin, &own_topic, 1).await;
    let missing_topic = format!("{}.nowhere", cfg.replies.default_topic);
    let replies_reader = reader(bootstrap, &cfg.replies.default_topic);
    let own_reader = reader(bootstrap, &own_topic);
    let dlq_reader = reader(bootstrap, &cfg.replies.dead_letter_topic);

    let mut cases = bad_records(&cfg);
    // `reply_topic` routing (`Admission::reply_topic`): a reserved or empty topic falls back to
    // the default, the caller's own topic is used, a missing one ends as a dead letter.
    let reply_to = |name: &'static str, topic: &str| Case {
        name,
        value: Some(confluent(
            &cfg,
            &Request {
                reply_topic: Some(topic.to_owned()),
                ..request(name, 13)
            },
        )),
        expect: Expect::Reply(Status::Ok, ""),
    };
    cases.push(reply_to("reply-to-dlq", &cfg.replies.dead_letter_topic));
    cases.push(reply_to(
        "reply-to-request-topic",
        cfg.kafka.topics.topic(Tier::Critical),
    ));
    cases.push(reply_to("reply-to-empty-topic", ""));
    let own = reply_to("reply-to-own-topic", &own_topic);
    let missing = Case {
        expect: Expect::Dead(REPLY_UNDELIVERABLE, ""),
        ..reply_to("reply-to-missing-topic", &missing_topic)
    };

    let serving = {
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(kbatch_core::app::serve(cfg.clone(), cancel.clone()));
        (cancel, handle)
    };
    let p = producer(bootstrap);
    let codec = WireCodec::new(&cfg.wire);
    let mut landed: HashMap<&str, Landed> = HashMap::new();
    let mut good = Vec::new();
    let mut next_good_id = |i: usize| {
        let id = format!("good-{i}");
        good.push(id.clone());
        id
    };
    // Each bad record between two valid requests, spread over the four tier topics.
    for (i, case) in cases.iter().chain([&own, &missing]).enumerate() {
        let tier = Tier::ALL[i % 4];
        let id = next_good_id(i);
        send_request(&p, &cfg, tier, &request(&id, i as u64)).await;
        let topic = cfg.kafka.topics.topic(tier);
        let at = send(&p, topic, case.name, case.value.as_deref()).await;
        landed.insert(case.name, at);
    }
    // The processor keeps serving: a run of valid requests after all of it, one in JSON.
    for i in cases.len() + 2..cases.len() + 22 {
        let id = next_good_id(i);
        send_request(&p, &cfg, Tier::ALL[i % 4], &request(&id, i as u64)).await;
    }
    let json_id = next_good_id(10_000);
    let json_ok = encoded(&cfg, &request(&json_id, 7), Framing::Json);
    send(&p, &cfg.kafka.topics.normal, &json_id, Some(&json_ok)).await;

    let expected_replies: HashSet<String> = good
        .iter()
        .cloned()
        .chain(
            cases
                .iter()
                .filter(|c| matches!(c.expect, Expect::Reply(..)))
                .map(|c| c.name.to_owned()),
        )
        .collect();
    let replies = collect_replies(
        &replies_reader,
        &cfg,
        Duration::from_secs(90),
        |r: &[Received]| {
            let ids: HashSet<&str> = r.iter().map(|x| x.reply.request_id.as_str()).collect();
            expected_replies.iter().all(|id| ids.contains(id.as_str()))
        },
    )
    .await;
    let dead_cases: Vec<&Case> = cases
        .iter()
        .chain([&missing])
        .filter(|c| matches!(c.expect, Expect::Dead(..)))
        .collect();
    let dead = consume_n(&dlq_reader, dead_cases.len(), Duration::from_secs(90)).await;
    let own_replies = collect_replies(&own_reader, &cfg, Duration::from_secs(30), |r| {
        !r.is_empty()
    })
    .await;
    // Exactly one outcome each: nothing more on either topic in a quiet second.
    assert_no_more(&dlq_reader, Duration::from_secs(1)).await;
    let extra = collect_replies(&replies_reader, &cfg, Duration::from_secs(1), |_| false).await;
    assert!(extra.is_empty(), "unexpected extra replies: {extra:?}");

    // Replies: every valid request OK, every invalid one with its status and reason.
    let by_id: HashMap<&str, &Received> = replies
        .iter()
        .map(|r| (r.reply.request_id.as_str(), r))
        .collect();
    assert_eq!(by_id.len(), replies.len(), "one reply per request");
    assert_eq!(
        by_id.keys().map(|k| k.to_string()).collect::<HashSet<_>>(),
        expected_replies,
        "replies on the default topic"
    );
    for id in &good {
        let r = &by_id[id.as_str()].reply;
        assert_eq!(r.status, Status::Ok, "{id}: {:?}", r.error);
        assert_eq!(r.outputs.first_f32().len(), 3, "{id}");
    }
    for case in &cases {
        let Expect::Reply(status, reason) = case.expect else {
            continue;
        };
        let got = by_id[case.name];
        assert_eq!(
            got.reply.status, status,
            "{}: {:?}",
            case.name, got.reply.error
        );
        assert_eq!(got.key.as_deref(), Some(case.name.as_bytes()));
        if status == Status::Ok {
            assert_eq!(got.reply.outputs.first_f32().len(), 3, "{}", case.name);
        } else {
            let error = got.reply.error.as_deref().unwrap_or_default();
            assert!(error.contains(reason), "{}: {error}", case.name);
            assert!(got.reply.outputs.is_empty(), "{}", case.name);
            assert_eq!(got.reply.timings.batch_size, 0, "{} never runs", case.name);
        }
    }
    assert_eq!(own_replies.len(), 1);
    assert_eq!(own_replies[0].reply.request_id, own.name);
    assert_eq!(own_replies[0].reply.status, Status::Ok);

    // Dead letters: the original record byte for byte, where it came from and why it failed.
    let letters: HashMap<String, DeadLetter> = dead
        .iter()
        .map(|m| {
            let dl = codec
                .decode_dead_letter(m.payload().expect("a dead letter has a value"))
                .expect("dead letter decodes");
            let key = String::from_utf8(m.key().expect("keyed").to_vec()).unwrap();
            (key, dl)
        })
        .collect();
    assert_eq!(
        letters.len(),
        dead_cases.len(),
        "one dead letter per record"
    );
    for case in &dead_cases {
        let Expect::Dead(kind, reason) = case.expect else {
            unreachable!()
        };
        let dl = letters
            .get(case.name)
            .unwrap_or_else(|| panic!("no dead letter for {}", case.name));
        let at = &landed[case.name];
        assert_eq!(dl.error_kind, kind, "{}: {}", case.name, dl.error);
        assert!(dl.error.contains(reason), "{}: {}", case.name, dl.error);
        assert_eq!(
            (
                dl.source_topic.as_str(),
                dl.source_partition,
                dl.source_offset
            ),
            (at.topic.as_str(), at.partition, at.offset),
            "{}",
            case.name
        );
        assert_eq!(dl.key.as_deref(), Some(case.name.as_bytes()));
        assert_eq!(dl.processor, cfg.kafka.client_id);
        if kind == REPLY_UNDELIVERABLE {
            // The value is the undeliverable reply, not the request.
            assert!(dl.error.contains(&missing_topic), "{}", dl.error);
            let reply = codec
                .decode_reply(dl.value.as_deref().expect("the reply"))
                .expect("the dead letter carries the reply");
            assert_eq!(reply.request_id, case.name);
            assert_eq!(reply.status, Status::Ok);
            continue;
        }
        match &at.value {
            None => assert_eq!(dl.value, None, "a tombstone stays null"),
            Some(v) => assert_eq!(
                dl.value.as_deref().unwrap_or_default(),
                v.as_slice(),
                "{}: original bytes",
                case.name
            ),
        }
        assert!(
            dl.headers
                .iter()
                .any(|h| h.key == "case" && h.value.as_deref() == Some(case.name.as_bytes())),
            "{}: headers kept: {:?}",
            case.name,
            dl.headers
        );
    }

    // The report counts what was sent.
    let (cancel, handle) = serving;
    cancel.cancel();
    let report = with_timeout("a graceful drain", Duration::from_secs(30), handle)
        .await
        .expect("serve task")
        .expect("serve ran");
    let count = |f: &dyn Fn(&Expect) -> bool| {
        cases
            .iter()
            .chain([&own, &missing])
            .filter(|c| f(&c.expect))
            .count() as u64
    };
    let admission_dead = count(&|e| matches!(e, Expect::Dead(k, _) if *k != REPLY_UNDELIVERABLE));
    let invalid = count(&|e| matches!(e, Expect::Reply(Status::InvalidInput, _)));
    let unknown = count(&|e| matches!(e, Expect::Reply(Status::UnknownModel, _)));
    let routed_ok = count(&|e| matches!(e, Expect::Reply(Status::Ok, _))) + 1; // + missing
    let c = &report.consumer;
    assert_eq!(c.dead_lettered, admission_dead, "{c:?}");
    assert_eq!(c.invalid, invalid, "{c:?}");
    assert_eq!(c.unknown_model, unknown, "{c:?}");
    assert_eq!(c.admitted, good.len() as u64 + routed_ok, "{c:?}");
    assert_eq!(c.consumed, (good.len() + cases.len() + 2) as u64, "{c:?}");
    let r = &report.replier;
    assert_eq!(r.reply_fallbacks, 1, "{r:?}");
    assert_eq!(r.dead_letters, admission_dead + 1, "{r:?}");
    assert_eq!(r.delivery_failures, 0, "{r:?}");
    assert_eq!(r.replies_with(Status::InvalidInput), invalid, "{r:?}");
    assert_eq!(r.replies_with(Status::UnknownModel), unknown, "{r:?}");
    assert_eq!(
        r.replies_with(Status::Ok),
        good.len() as u64 + routed_ok - 1,
        "{r:?}"
    );
    assert_eq!(report.batcher.requests, good.len() as u64 + routed_ok);
    eprintln!(
        "bad input: {} bad records ({admission_dead} dead-lettered, {invalid} INVALID_INPUT, \
         {unknown} UNKNOWN_MODEL, 1 reply_undeliverable), {} valid requests answered OK",
        cases.len() + 2,
        good.len()
    );
}

/// An unreadable record just under the default `wire.max_request_bytes` (1 MiB) but over
/// librdkafka's default `message.max.bytes` (1,000,000): its dead letter (the record plus its
/// envelope) must still be delivered, or the partition's commit point stops in front of it.
///
/// Found by this test and fixed: with librdkafka's 1,000,000-byte `message.max.bytes` the dead
/// letter was refused locally (`MessageSizeTooLarge`, a permanent error), the replier gave up and
/// the offset was never committed past (a poison pill). The producer now allows
/// 2 x `max_request_bytes` + 64 KiB (`kafka::client::producer_config`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_near_the_default_size_limit_is_dead_lettered_and_commits_go_on() {
    near_limit_record_is_dead_lettered(&[]).await;
}

/// An explicit `kafka.properties` limit still works: it raises kbatch's `message.max.bytes` to
/// cover a dead letter of a whole `max_request_bytes` record (tansu accepts it; on Apache Kafka
/// the dead-letter topic's `max.message.bytes` must allow it too).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_raised_producer_limit_a_near_limit_record_is_dead_lettered() {
    near_limit_record_is_dead_lettered(&[("message.max.bytes", "2200000")]).await;
}

async fn near_limit_record_is_dead_lettered(properties: &[(&str, &str)]) {
    use rdkafka::Offset;

    let broker = shared_broker().await;
    let bootstrap = broker.bootstrap_servers();
    // One partition: the unreadable record sits in front of the valid one.
    let mut cfg = test_config(bootstrap, 1).await;
    for (k, v) in properties {
        cfg.kafka.properties.insert((*k).into(), (*v).into());
    }
    let replies_reader = reader(bootstrap, &cfg.replies.default_topic);
    let dlq_reader = reader(bootstrap, &cfg.replies.dead_letter_topic);
    let serving = {
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(kbatch_core::app::serve(cfg.clone(), cancel.clone()));
        (cancel, handle)
    };
    // A client allowed to write records up to the broker's limit.
    let big_producer: FutureProducer = common::producer_config(bootstrap)
        .set("message.max.bytes", "2000000")
        .create()
        .expect("producer");
    let topic = cfg.kafka.topics.normal.clone();
    let mut value = vec![b'x'; 1_000_500];
    value[0] = b'!';
    assert!(value.len() < cfg.wire.max_request_bytes);
    let at = send(&big_producer, &topic, "near-limit", Some(&value)).await;
    send_request(&big_producer, &cfg, Tier::Normal, &request("after", 1)).await;

    let replies = collect_replies(&replies_reader, &cfg, Duration::from_secs(60), |r| {
        !r.is_empty()
    })
    .await;
    // Bounded but not panicking: the report and the commit point below say why.
    let dead = tokio::time::timeout(Duration::from_secs(20), dlq_reader.recv())
        .await
        .ok()
        .map(|m| m.expect("dlq consumer").detach());
    let (cancel, handle) = serving;
    cancel.cancel();
    let report = with_timeout("a graceful drain", Duration::from_secs(30), handle)
        .await
        .expect("serve task")
        .expect("serve ran");
    let offset = committed_offset(bootstrap, &cfg.kafka.group_id, &topic, 0);

    assert_eq!(replies.len(), 1, "the valid request behind it is served");
    assert_eq!(replies[0].reply.status, Status::Ok);
    let dead = dead
        .unwrap_or_else(|| panic!("no dead letter; committed {offset:?}; {:?}", report.replier));
    let dl = WireCodec::new(&cfg.wire)
        .decode_dead_letter(dead.payload().unwrap())
        .expect("dead letter decodes");
    assert_eq!(dl.error_kind, "unknown_framing");
    assert_eq!(
        dl.value.as_deref(),
        Some(value.as_slice()),
        "original bytes"
    );
    assert_eq!(dl.source_offset, at.offset);
    assert_eq!(report.replier.delivery_failures, 0, "{:?}", report.replier);
    assert_eq!(offset, Some(Offset::Offset(2)), "commits go past both");
}

/// A dead letter larger than the dead-letter topic accepts: the tier topic takes records up to
/// 3 MB (topic `max.message.bytes`), `wire.max_request_bytes` is 2 MiB, and the dead-letter
/// topic keeps Kafka's default limit (1 MiB). The unreadable 1.5 MB record's full dead letter
/// would be refused by the broker (MESSAGE_TOO_LARGE); kbatch cuts its value to the longest prefix
/// the dead-letter topic takes, says so, points at the source record, and the partition's
/// commits go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_letter_too_large_for_its_topic_keeps_what_fits() {
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::Offset;

    let broker = shared_broker().await;
    let bootstrap = broker.bootstrap_servers();
    let mut cfg = test_config(bootstrap, 1).await;
    cfg.wire.max_request_bytes = 2 * 1024 * 1024;
    let topic = cfg.kafka.topics.normal.clone();
    let admin: AdminClient<DefaultClientContext> = common::client_config(bootstrap)
        .create()
        .expect("admin client");
    let raise =
        AlterConfig::new(ResourceSpecifier::Topic(&topic)).set("max.message.bytes", "3000000");
    let altered = with_timeout(
        "AlterConfigs",
        WAIT,
        admin.alter_configs([&raise], &AdminOptions::new()),
    )
    .await
    .expect("alter_configs");
    assert!(altered.iter().all(Result::is_ok), "{altered:?}");
    let replies_reader = reader(bootstrap, &cfg.replies.default_topic);
    let dlq_reader = reader(bootstrap, &cfg.replies.dead_letter_topic);
    let serving = {
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(kbatch_core::app::serve(cfg.clone(), cancel.clone()));
        (cancel, handle)
    };
    let big_producer: FutureProducer = common::producer_config(bootstrap)
        .set("message.max.bytes", "3000000")
        .create()
        .expect("producer");
    let mut value = vec![b'x'; 1_500_000];
    value[0] = b'!';
    // The topic's new limit may take a moment to apply on the partition leader.
    let at = loop {
        let rec = FutureRecord::<str, [u8]>::to(&topic)
            .key("too-big")
            .payload(&value);
        match big_producer.send(rec, Duration::from_secs(10)).await {
            Ok(d) => break d,
            Err((e, _)) if e.to_string().contains("too large") => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err((e, _)) => panic!("producing the big record: {e}"),
        }
    };
    send_request(&big_producer, &cfg, Tier::Normal, &request("after", 1)).await;

    let replies = collect_replies(&replies_reader, &cfg, Duration::from_secs(60), |r| {
        !r.is_empty()
    })
    .await;
    let dead = tokio::time::timeout(Duration::from_secs(30), dlq_reader.recv())
        .await
        .ok()
        .map(|m| m.expect("dlq consumer").detach());
    let (cancel, handle) = serving;
    cancel.cancel();
    let report = with_timeout("a graceful drain", Duration::from_secs(30), handle)
        .await
        .expect("serve task")
        .expect("serve ran");
    let offset = committed_offset(bootstrap, &cfg.kafka.group_id, &topic, 0);

    assert_eq!(replies.len(), 1, "the valid request behind it is served");
    assert_eq!(replies[0].reply.status, Status::Ok);
    let dead = dead
        .unwrap_or_else(|| panic!("no dead letter; committed {offset:?}; {:?}", report.replier));
    let trimmed = dead
        .headers()
        .and_then(|hs| {
            use rdkafka::message::Headers;
            hs.iter()
                .find(|h| h.key == kbatch_core::kafka::TRIMMED_HEADER)
        })
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).parse::<usize>().expect("a size"));
    assert!(
        trimmed.is_some_and(|n| n > 1_048_588),
        "the whole letter's size is recorded: {trimmed:?}"
    );
    let size = dead.payload().map_or(0, <[u8]>::len);
    assert!(size <= 1_048_588, "the letter fits the topic: {size} bytes");
    let dl = WireCodec::new(&cfg.wire)
        .decode_dead_letter(dead.payload().unwrap())
        .expect("dead letter decodes");
    assert_eq!(dl.error_kind, "unknown_framing");
    let kept = dl.value.as_deref().expect("the value's prefix that fits");
    assert!(kept.len() > 1_000_000, "kept {} bytes", kept.len());
    assert!(
        kept == &value[..kept.len()],
        "a prefix of the original bytes"
    );
    assert_eq!(
        (dl.source_topic.as_str(), dl.source_offset),
        (topic.as_str(), at.offset)
    );
    assert_eq!(dl.key.as_deref(), Some(&b"too-big"[..]));
    assert!(
        dl.error
            .contains(&format!("value cut to {} of 1500000 bytes", kept.len())),
        "{}",
        dl.error
    );
    assert_eq!(report.replier.dead_letters, 1, "{:?}", report.replier);
    assert_eq!(report.replier.delivery_failures, 0, "{:?}", report.replier);
    assert_eq!(offset, Some(Offset::Offset(2)), "commits go past both");
}
