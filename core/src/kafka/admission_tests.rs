//! Unit tests of admission: every branch of `Admission::decide` without Kafka.

use std::path::PathBuf;

use tokio::time::Instant;

use super::*;
use crate::config::{Device, Framing};
use crate::model::{ModelId, ModelInfo, Signature};
use crate::registry::RoutingTable;
use crate::wire::Inputs;

const NOW_MS: i64 = 1_700_000_000_000;

fn model() -> ModelInfo {
    ModelInfo {
        id: ModelId::new("cnn_lstm", "1"),
        signature: Signature::float32("input", &[2, 3], "output", 3),
        device: Device::Cpu,
        library_path: PathBuf::new(),
    }
}

/// The one model version served in these tests.
fn routes() -> Routes {
    Routes::fixed(RoutingTable::single(Arc::new(ServedModel::unloaded(
        model(),
    ))))
}

fn request() -> Request {
    Request {
        request_id: "r-1".into(),
        created_at_ms: NOW_MS - 5,
        deadline_ms: None,
        timeout_ms: None,
        model_name: None,
        model_version: None,
        priority: None,
        reply_topic: None,
        client_id: None,
        inputs: Inputs::v1(vec![2, 3], vec![0.5; 6]),
    }
}

fn encode(req: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    WireCodec::new(&Config::default().wire).encode_request(req, Framing::SingleObject, &mut out);
    out
}

fn origin(tier: Tier) -> Origin {
    Origin {
        topic_tier: tier,
        partition: 1,
        offset: 42,
        epoch: 7,
    }
}

fn raw<'a>(key: &'a [u8], value: Option<&'a [u8]>) -> RawHeader<'a> {
    RawHeader { key, value }
}

/// Runs admission on a record holding `value`, read from the topic of `tier`.
fn decide_with(cfg: &Config, tier: Tier, value: &[u8]) -> Decision {
    let headers = [
        raw(b"correlation-id", Some(b"corr-9")),
        raw(
            b"traceparent",
            Some(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ),
        raw(b"other", None),
    ];
    let rec = RecordParts {
        topic: cfg.kafka.topics.topic(tier),
        partition: 1,
        offset: 42,
        key: Some(b"key-1"),
        value: Some(value),
        headers: &headers,
        timestamp_ms: Some(NOW_MS - 20),
    };
    Admission::new(cfg, routes()).decide(&rec, origin(tier), Instant::now(), NOW_MS)
}

fn decide(tier: Tier, req: &Request) -> Decision {
    decide_with(&Config::default(), tier, &encode(req))
}

fn reply_of(d: Decision) -> (Status, Box<crate::wire::Reply>, ReplyTo, Origin) {
    match d {
        Decision::Invalid(Outcome::Reply {
            reply,
            reply_to,
            origin,
        })
        | Decision::UnknownModel(Outcome::Reply {
            reply,
            reply_to,
            origin,
        }) => (reply.status, reply, reply_to, origin),
        other => panic!("expected an error reply, got {other:?}"),
    }
}

#[test]
fn a_valid_request_is_admitted_with_its_routing() {
    let Decision::Admit(a) = decide(Tier::High, &request()) else {
        panic!("not admitted")
    };
    assert_eq!(a.tier, Tier::High);
    assert_eq!(a.origin, origin(Tier::High));
    assert_eq!(a.reply_to.topic, "inference.replies");
    assert_eq!(a.reply_to.key.as_deref(), Some(&b"key-1"[..]));
    assert_eq!(a.reply_to.correlation_id.as_deref(), Some(&b"corr-9"[..]));
    let trace = a.reply_to.trace.expect("the caller's trace is joined");
    assert_eq!(trace.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(trace.flags, 1);
    assert_eq!(a.record_timestamp_ms, NOW_MS - 20);
    assert_eq!(a.deadline, None);
}

#[test]
fn priority_only_demotes() {
    let mut req = request();
    req.priority = Some(Tier::Low);
    let Decision::Admit(a) = decide(Tier::High, &req) else {
        panic!()
    };
    assert_eq!(a.tier, Tier::Low);
    req.priority = Some(Tier::Critical);
    let Decision::Admit(a) = decide(Tier::Normal, &req) else {
        panic!()
    };
    assert_eq!(a.tier, Tier::Normal, "a request cannot raise its tier");
    assert_eq!(a.origin.topic_tier, Tier::Normal);
}

#[test]
fn reply_topic_follows_the_request_only_when_allowed_and_safe() {
    let mut req = request();
    req.reply_topic = Some("caller.replies".into());
    let Decision::Admit(a) = decide(Tier::Low, &req) else {
        panic!()
    };
    assert_eq!(a.reply_to.topic, "caller.replies");

    req.reply_topic = Some("inference.requests.critical".into());
    let Decision::Admit(a) = decide(Tier::Low, &req) else {
        panic!()
    };
    assert_eq!(
        a.reply_to.topic, "inference.replies",
        "never reply into a request topic"
    );

    let mut cfg = Config::default();
    cfg.replies.allow_request_reply_topic = false;
    req.reply_topic = Some("caller.replies".into());
    let Decision::Admit(a) = decide_with(&cfg, Tier::Low, &encode(&req)) else {
        panic!()
    };
    assert_eq!(a.reply_to.topic, "inference.replies");
}

#[test]
fn undecodable_records_are_dead_lettered_byte_for_byte() {
    let value = b"\x07garbage";
    let Decision::DeadLetter(Outcome::DeadLetter {
        letter,
        key,
        origin: o,
    }) = decide_with(&Config::default(), Tier::Critical, value)
    else {
        panic!("not dead-lettered")
    };
    assert_eq!(o, origin(Tier::Critical));
    assert_eq!(key.as_deref(), Some(&b"key-1"[..]));
    assert_eq!(letter.error_kind, "unknown_framing");
    assert_eq!(letter.value.as_deref(), Some(&value[..]));
    assert_eq!(letter.source_topic, "inference.requests.critical");
    assert_eq!((letter.source_partition, letter.source_offset), (1, 42));
    assert_eq!(letter.processor, "kbatch");
    assert_eq!(letter.failed_at_ms, NOW_MS);
    assert_eq!(letter.headers.len(), 3);
    assert_eq!(letter.headers[2], Header::new("other", None));
}

#[test]
fn invalid_content_gets_an_invalid_input_reply() {
    let mut req = request();
    req.inputs.v1_mut().unwrap().values[3] = f32::NAN;
    let (status, reply, reply_to, o) = reply_of(decide(Tier::Normal, &req));
    assert_eq!(status, Status::InvalidInput);
    assert_eq!(reply.request_id, "r-1");
    assert!(reply.error.as_deref().unwrap().contains("finite"));
    assert_eq!(reply_to.correlation_id.as_deref(), Some(&b"corr-9"[..]));
    assert_eq!(o, origin(Tier::Normal));

    let mut req = request();
    req.inputs = Inputs::v1(vec![3, 2], vec![0.0; 6]);
    assert_eq!(reply_of(decide(Tier::Normal, &req)).0, Status::InvalidInput);
}

#[test]
fn another_model_or_version_gets_unknown_model() {
    let mut req = request();
    req.model_name = Some("other".into());
    // Its shape is the other model's business.
    req.inputs = Inputs::v1(vec![9], vec![0.0; 9]);
    assert_eq!(reply_of(decide(Tier::High, &req)).0, Status::UnknownModel);

    let mut req = request();
    req.model_name = Some("cnn_lstm".into());
    req.model_version = Some("2".into());
    let (status, reply, ..) = reply_of(decide(Tier::High, &req));
    assert_eq!(status, Status::UnknownModel);
    assert_eq!(
        (reply.model_name.as_str(), reply.model_version.as_str()),
        ("cnn_lstm", "1")
    );

    let mut req = request();
    req.model_name = Some("cnn_lstm".into());
    req.model_version = Some("1".into());
    assert!(matches!(decide(Tier::High, &req), Decision::Admit(_)));
}

#[test]
fn deadlines_are_translated_to_the_monotonic_clock() {
    let now = Instant::now();
    assert_eq!(
        deadline_instant(NOW_MS + 250, now, NOW_MS),
        now + Duration::from_millis(250)
    );
    let past = deadline_instant(NOW_MS - 100, now, NOW_MS);
    assert!(past <= now, "a past deadline stays in the past");

    let mut req = request();
    req.timeout_ms = Some(50); // created 5 ms ago: 45 ms left
    req.deadline_ms = Some(NOW_MS + 1000);
    let before = Instant::now();
    let Decision::Admit(a) = decide(Tier::High, &req) else {
        panic!()
    };
    let left = a.deadline.unwrap().duration_since(before);
    // `before` precedes the `now` used inside: at least 45 ms, plus however long decide took.
    assert!(
        left >= Duration::from_millis(45) && left < Duration::from_millis(500),
        "{left:?}"
    );
}

#[test]
fn missing_timestamp_falls_back_to_now() {
    let value = encode(&request());
    let rec = RecordParts {
        topic: "inference.requests.low",
        partition: 0,
        offset: 0,
        key: None,
        value: Some(&value),
        headers: &[],
        timestamp_ms: None,
    };
    let adm = Admission::new(&Config::default(), routes());
    let Decision::Admit(a) = adm.decide(&rec, origin(Tier::Low), Instant::now(), NOW_MS) else {
        panic!()
    };
    assert_eq!(a.record_timestamp_ms, NOW_MS);
    assert_eq!(a.reply_to.key, None);
    assert_eq!(a.reply_to.correlation_id, None);
}

#[test]
fn inputs_are_hashed_on_admission_only_when_deduplication_is_on() {
    let key_of = |cfg: &Config, req: &Request| match decide_with(cfg, Tier::Normal, &encode(req)) {
        Decision::Admit(a) => a.dedup_key,
        other => panic!("not admitted: {other:?}"),
    };
    let off = Config::default();
    assert_eq!(key_of(&off, &request()), None);

    let mut on = Config::default();
    on.deduplication.enable_deduplication = true;
    let same = key_of(&on, &request()).expect("hashed");
    let mut other_id = request();
    other_id.request_id = "r-2".into();
    // The key is the input's, not the request's: another id with the same tensor coalesces.
    assert_eq!(key_of(&on, &other_id), Some(same));
    let mut other_input = request();
    other_input.inputs.v1_mut().unwrap().values[5] = 0.25;
    assert_ne!(key_of(&on, &other_input), Some(same));
    let m = model();
    let r = request();
    assert_eq!(
        same,
        crate::pipeline::dedup_key(&m.id, r.inputs.tensors()),
        "the batcher's fallback must compute the same key"
    );
}

#[test]
fn a_reloaded_default_timeout_and_deduplication_apply_to_the_next_record() {
    let value = encode(&request());
    let rec = RecordParts {
        topic: "inference.requests.low",
        partition: 0,
        offset: 0,
        key: None,
        value: Some(&value),
        headers: &[],
        timestamp_ms: Some(NOW_MS),
    };
    let admit = |adm: &Admission| match adm.decide(&rec, origin(Tier::Low), Instant::now(), NOW_MS)
    {
        Decision::Admit(a) => a,
        other => panic!("not admitted: {other:?}"),
    };
    let mut adm = Admission::new(&Config::default(), routes());
    let before = admit(&adm);
    assert_eq!((before.deadline, before.dedup_key), (None, None));
    let mut cfg = Config::default();
    cfg.priority_queueing.low_default_timeout_ms = 5_000;
    cfg.deduplication.enable_deduplication = true;
    adm.reconfigure(&cfg);
    let after = admit(&adm);
    let left = after
        .deadline
        .expect("the reloaded default timeout")
        .duration_since(Instant::now());
    assert!(
        left > Duration::from_secs(4) && left <= Duration::from_secs(5),
        "{left:?}"
    );
    assert!(after.dedup_key.is_some(), "hashed once deduplication is on");
}

#[test]
fn a_request_its_full_queue_cannot_take_is_answered_overloaded() {
    let cfg = Config::default();
    let Decision::Admit(a) = decide(Tier::High, &request()) else {
        panic!("admitted")
    };
    let o = Admission::new(&cfg, routes()).overloaded(a, NOW_MS);
    let (status, reply, reply_to, from) = reply_of(Decision::Invalid(o));
    assert_eq!(status, Status::Overloaded);
    assert_eq!(reply.request_id, "r-1");
    let msg = reply.error.as_deref().unwrap_or_default();
    assert!(msg.contains("high queue is full"), "{msg}");
    assert_eq!(reply_to.correlation_id.as_deref(), Some(&b"corr-9"[..]));
    assert_eq!(
        from,
        origin(Tier::High),
        "its offset is settled by this reply"
    );
}

/// A record for `client` on the topic of `tier`, decided by `admission` (kept across calls, so
/// rate limits carry over).
fn decide_as(
    admission: &Admission,
    tier: Tier,
    client: Option<&str>,
    priority: Option<Tier>,
) -> Decision {
    let cfg = Config::default();
    let mut req = request();
    req.client_id = client.map(str::to_owned);
    req.priority = priority;
    let value = encode(&req);
    let rec = RecordParts {
        topic: cfg.kafka.topics.topic(tier),
        partition: 1,
        offset: 42,
        key: None,
        value: Some(&value),
        headers: &[],
        timestamp_ms: Some(NOW_MS),
    };
    admission.decide(&rec, origin(tier), Instant::now(), NOW_MS)
}

fn guarded(security: crate::config::SecurityConfig) -> Admission {
    let cfg = Config {
        security,
        ..Config::default()
    };
    Admission::new(&cfg, routes())
}

fn critical_for(clients: &[&str]) -> crate::config::SecurityConfig {
    let mut s = crate::config::SecurityConfig::default();
    s.tier_access.critical.allowed_clients = Some(clients.iter().map(|c| c.to_string()).collect());
    s
}

#[test]
fn a_client_not_allowed_on_its_tier_is_rejected_before_anything_else() {
    let admission = guarded(critical_for(&["trusted"]));
    let d = decide_as(&admission, Tier::Critical, Some("intruder"), None);
    let (status, reply, _, from) = reply_of(d);
    assert_eq!(status, Status::Rejected);
    assert_eq!(
        from,
        origin(Tier::Critical),
        "its offset is settled by this reply"
    );
    let msg = reply.error.as_deref().unwrap_or_default();
    assert!(
        msg.contains("\"intruder\" is not allowed on tier critical"),
        "{msg}"
    );
    // Even a request that is also invalid is refused for access first.
    let cfg = Config {
        security: critical_for(&["trusted"]),
        ..Config::default()
    };
    let mut bad = request();
    bad.model_name = Some("other".into());
    bad.client_id = Some("intruder".into());
    let (status, ..) = reply_of(decide_with(&cfg, Tier::Critical, &encode(&bad)));
    assert_eq!(status, Status::Rejected);

    assert!(matches!(
        decide_as(&admission, Tier::Critical, Some("trusted"), None),
        Decision::Admit(_)
    ));
    assert!(matches!(
        decide_as(&admission, Tier::Low, Some("intruder"), None),
        Decision::Admit(_)
    ));
    let (status, ..) = reply_of(decide_as(&admission, Tier::Critical, None, None));
    assert_eq!(
        status,
        Status::Rejected,
        "no client_id is not a listed client"
    );
}

#[test]
fn access_is_checked_at_the_tier_the_request_is_served_at() {
    let admission = guarded(critical_for(&["trusted"]));
    // An unlisted client demoting itself to low is served at low, where anyone may be.
    let Decision::Admit(a) = decide_as(
        &admission,
        Tier::Critical,
        Some("intruder"),
        Some(Tier::Low),
    ) else {
        panic!("admitted at low")
    };
    assert_eq!(a.tier, Tier::Low);
    // Asking for a higher tier changes nothing: it is still served (and checked) at critical.
    let mut s = crate::config::SecurityConfig::default();
    s.tier_access.high.allowed_clients = Some(vec!["trusted".into()]);
    let admission = guarded(s);
    let (status, ..) = reply_of(decide_as(
        &admission,
        Tier::High,
        Some("x"),
        Some(Tier::Critical),
    ));
    assert_eq!(status, Status::Rejected);
}

#[test]
fn a_client_over_its_rate_limit_is_rejected_and_clones_share_the_buckets() {
    let mut s = crate::config::SecurityConfig::default();
    s.tier_access.low.rate_limit = Some(crate::config::RateLimit {
        rate_per_second: 0.001,
        burst: 3,
    });
    let admission = guarded(s);
    let clone = admission.clone();
    let mut admitted = 0;
    for i in 0..6 {
        let a = if i % 2 == 0 { &admission } else { &clone };
        match decide_as(a, Tier::Low, Some("bulk"), None) {
            Decision::Admit(_) => admitted += 1,
            d => {
                let (status, reply, ..) = reply_of(d);
                assert_eq!(status, Status::Rejected);
                let msg = reply.error.as_deref().unwrap_or_default();
                assert!(
                    msg.starts_with("rate limit exceeded for client \"bulk\" on tier low"),
                    "{msg}"
                );
            }
        }
    }
    assert_eq!(admitted, 3, "one burst across both clones");
    assert!(matches!(
        decide_as(&admission, Tier::Low, Some("other"), None),
        Decision::Admit(_)
    ));
}

#[test]
fn admission_moves_to_the_consumer_thread() {
    fn send<T: Send + Clone + std::fmt::Debug>(_: &T) {}
    send(&guarded(critical_for(&["a"])));
}
