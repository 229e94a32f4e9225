//! Unit tests of `delivery`.

use super::*;
use crate::pipeline::Origin;
use crate::tier::Tier;
use crate::wire::{Status, Timings};
use rdkafka::message::Header as KHeader;
use rdkafka::Timestamp;

const DLQ: &str = "dead-letters";

fn note() -> Note {
    Note {
        tier: Tier::Normal,
        timings: Timings::default(),
        ready: std::time::Instant::now(),
    }
}

fn job(kind: Kind, attempt: u32) -> Job {
    let origin = Origin {
        topic_tier: Tier::Normal,
        partition: 0,
        offset: 5,
        epoch: 1,
    };
    Job {
        attempt,
        ..Job::first(Pending { origin, kind }, None)
    }
}

fn failure(code: RDKafkaErrorCode, topic: &str, trimmed: bool) -> Failure {
    let headers = trimmed.then(|| {
        OwnedHeaders::new().insert(KHeader {
            key: TRIMMED_HEADER,
            value: Some(&b"123"[..]),
        })
    });
    let message = OwnedMessage::new(
        Some(b"bytes".to_vec()),
        None,
        topic.to_owned(),
        Timestamp::NotAvailable,
        0,
        -1,
        headers,
    );
    Failure {
        error: RdError::MessageProduction(code),
        message: Some(message),
    }
}

fn reply() -> Kind {
    Kind::Reply(Status::Ok, note())
}

#[test]
fn a_transient_failure_is_retried_without_a_limit() {
    let timeout = RDKafkaErrorCode::MessageTimedOut;
    for attempt in [1, 2, 3, 4, 10, 100, 10_000] {
        let step = failure(timeout, "replies", false).next_step(&job(reply(), attempt), DLQ);
        assert!(
            matches!(step, Step::Retry(_)),
            "attempt {attempt}: {step:?}"
        );
        let letter = job(Kind::DeadLetter(note()), attempt);
        let step = failure(timeout, DLQ, false).next_step(&letter, DLQ);
        assert!(
            matches!(step, Step::Retry(_)),
            "attempt {attempt}: {step:?}"
        );
    }
}

#[test]
fn backoff_doubles_up_to_its_bound() {
    assert_eq!(backoff(2), Duration::from_millis(200));
    assert_eq!(backoff(3), Duration::from_millis(400));
    assert_eq!(backoff(6), Duration::from_millis(3200));
    assert_eq!(backoff(8), MAX_BACKOFF);
    assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
}

#[test]
fn a_reply_its_topic_refuses_falls_back_at_once_and_a_refused_letter_waits() {
    let refused = |topic| failure(RDKafkaErrorCode::UnknownTopic, topic, false);
    let step = refused("replies").next_step(&job(reply(), 1), DLQ);
    assert!(matches!(step, Step::Fallback(..)), "{step:?}");
    // Nothing else can take what the dead-letter topic refuses: it is tried again (an operator
    // creates the topic or grants access), with its partition's commits waiting.
    let letter = job(Kind::DeadLetter(note()), 1);
    let step = refused(DLQ).next_step(&letter, DLQ);
    assert!(matches!(step, Step::Retry(_)), "{step:?}");
    let fallback = job(Kind::ReplyFallback(note()), 1);
    let step = refused(DLQ).next_step(&fallback, DLQ);
    assert!(matches!(step, Step::Retry(_)), "{step:?}");
}

#[test]
fn a_too_large_dead_letter_is_trimmed_once() {
    let too_large = RDKafkaErrorCode::MessageSizeTooLarge;
    let letter = job(Kind::DeadLetter(note()), 1);
    let step = failure(too_large, DLQ, false).next_step(&letter, DLQ);
    assert!(matches!(step, Step::Trim(_)), "{step:?}");
    let step = failure(too_large, DLQ, true).next_step(&letter, DLQ);
    assert!(matches!(step, Step::GiveUp(_)), "trimmed twice: {step:?}");
    // A reply too large for its own topic falls back instead (and may be trimmed there).
    let step = failure(too_large, "replies", false).next_step(&job(reply(), 1), DLQ);
    assert!(matches!(step, Step::Fallback(..)), "{step:?}");
}

#[test]
fn a_failure_without_the_message_is_given_up() {
    let lost = Failure {
        error: RdError::Canceled,
        message: None,
    };
    let step = lost.next_step(&job(reply(), 1), DLQ);
    assert!(matches!(step, Step::GiveUp(RdError::Canceled)), "{step:?}");
}

#[test]
fn a_follow_up_keeps_its_job_unfinished() {
    let origin = Origin {
        topic_tier: Tier::High,
        partition: 2,
        offset: 3,
        epoch: 1,
    };
    let a = crate::pipeline::fixtures::admitted(
        "p-1",
        (Tier::High, 2, 3),
        Tier::High,
        tokio::time::Instant::now(),
    );
    let then = Outcome::error(a, Status::ModelError, "boom".into(), 0);
    let pending = Pending {
        origin,
        kind: Kind::DeadLetter(note()),
    };
    let mut first = Job::first(pending, Some(Box::new(then)));
    assert!(!first.finishes);
    first.then.take();
    assert!(
        !first.finishes,
        "taking the follow-up must not finish the job"
    );
    assert!(Job::first(pending, None).finishes);
}
