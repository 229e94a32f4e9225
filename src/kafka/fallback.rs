//! Where a reply goes when its own topic refuses it: the dead-letter topic, wrapped in a
//! `DeadLetter` whose `error_kind` is [`REPLY_UNDELIVERABLE`].
//!
//! Invariant: a request's outcome is always delivered somewhere before its offset is committed.
//! A reply topic that does not exist (or refuses the record) must not hold its partition's
//! commits back forever, so after the replier gives up on the reply topic the same reply bytes,
//! key and headers go to the dead-letter topic, where operators already watch for failures.

use rdkafka::error::KafkaError as RdError;
use rdkafka::message::{Headers, Message, OwnedMessage};

use crate::config::Config;
use crate::pipeline::Origin;
use crate::wire::{DeadLetter, Header};

/// `error_kind` of a dead letter that carries an undeliverable reply.
pub const REPLY_UNDELIVERABLE: &str = "reply_undeliverable";

/// The dead letter for the reply `msg`, which could not be delivered to `msg.topic()`.
/// `source_*` name the request record; `value` is the encoded reply, unchanged.
pub fn reply_dead_letter(
    cfg: &Config,
    origin: &Origin,
    msg: &OwnedMessage,
    err: &RdError,
    now_ms: i64,
) -> DeadLetter {
    let headers = msg
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| Header {
                    key: h.key.to_owned(),
                    value: h.value.map(<[u8]>::to_vec),
                })
                .collect()
        })
        .unwrap_or_default();
    DeadLetter {
        source_topic: cfg.kafka.topics.topic(origin.topic_tier).to_owned(),
        source_partition: origin.partition,
        source_offset: origin.offset,
        key: msg.key().map(<[u8]>::to_vec),
        value: msg.payload().map(<[u8]>::to_vec),
        headers,
        error_kind: REPLY_UNDELIVERABLE.to_owned(),
        error: format!("reply topic '{}' refused the reply: {err}", msg.topic()),
        failed_at_ms: now_ms,
        processor: cfg.kafka.client_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tier::Tier;
    use crate::wire::WireCodec;
    use rdkafka::message::{Header as KHeader, OwnedHeaders, Timestamp};
    use rdkafka::types::RDKafkaErrorCode;

    #[test]
    fn the_dead_letter_names_the_request_and_keeps_the_reply_bytes() {
        let cfg = Config::default();
        let headers = OwnedHeaders::new().insert(KHeader {
            key: "request-id",
            value: Some("r-1".as_bytes()),
        });
        let msg = OwnedMessage::new(
            Some(b"reply bytes".to_vec()),
            Some(b"k".to_vec()),
            "no.such.topic".into(),
            Timestamp::NotAvailable,
            -1,
            -1,
            Some(headers),
        );
        let origin = Origin {
            topic_tier: Tier::High,
            partition: 3,
            offset: 77,
            epoch: 1,
        };
        let err = RdError::MessageProduction(RDKafkaErrorCode::UnknownTopic);
        let dl = reply_dead_letter(&cfg, &origin, &msg, &err, 1_000);
        assert_eq!(dl.source_topic, cfg.kafka.topics.high);
        assert_eq!((dl.source_partition, dl.source_offset), (3, 77));
        assert_eq!(dl.value.as_deref(), Some(&b"reply bytes"[..]));
        assert_eq!(dl.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(dl.headers[0].key, "request-id");
        assert_eq!(dl.error_kind, REPLY_UNDELIVERABLE);
        assert!(dl.error.contains("no.such.topic"), "{}", dl.error);
        // It must be encodable as any other dead letter.
        let codec = WireCodec::new(&cfg.wire);
        let mut buf = Vec::new();
        codec.encode_dead_letter(&dl, &mut buf);
        assert_eq!(codec.decode_dead_letter(&buf).unwrap(), dl);
    }
}
