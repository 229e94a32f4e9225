//! The log start and end of a partition as librdkafka last saw them, read without a broker
//! round trip: the end comes with every fetch response, the start with every statistics
//! interval.
//!
//! Invariant: never blocks and never asks the broker (it runs on the polling thread, up to every
//! millisecond); an unknown value is reported as unknown, never as zero.

use std::ffi::CString;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka_sys as rdsys;
use rdkafka_sys::types::RDKafkaRespErr;

use super::observe::Watermarks;
use super::offsets::PartitionKey;
use crate::config::TierTopics;
use crate::tier::Tier;

/// The four tier topic names as C strings, made once.
#[derive(Debug, Clone)]
pub struct CachedWatermarks {
    topics: [CString; 4],
}

impl CachedWatermarks {
    /// `None` when a topic name holds a NUL byte (no such topic can exist).
    pub fn new(topics: &TierTopics) -> Option<Self> {
        let names = Tier::ALL.map(|t| CString::new(topics.topic(t)).ok());
        let [a, b, c, d] = names;
        Some(Self {
            topics: [a?, b?, c?, d?],
        })
    }

    /// The cached watermarks of `key`, or `None` when librdkafka knows nothing of the partition.
    pub fn get<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        (tier, partition): PartitionKey,
    ) -> Option<Watermarks> {
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client pointer is valid while `consumer` is borrowed; the topic name is a
        // NUL-terminated string owned by `self`; librdkafka only writes the two out-parameters
        // (it reads its cached values under the partition's lock, without a broker request).
        let err = unsafe {
            rdsys::rd_kafka_get_watermark_offsets(
                consumer.client().native_ptr(),
                self.topics[tier.index()].as_ptr(),
                partition,
                &mut low,
                &mut high,
            )
        };
        (err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR).then_some(Watermarks { low, high })
    }
}
