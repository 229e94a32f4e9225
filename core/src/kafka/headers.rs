//! A consumed record's headers, read without assuming anything about their names.
//!
//! Invariant: reading the headers of any record a producer can write never panics. Kafka does
//! not check header names, and C clients write raw bytes, so a name is handed on as bytes; the
//! one header API of rdkafka (`BorrowedHeaders`) converts each name with `to_str().unwrap()`
//! and would take the consumer thread (and then every instance that reads the record) down.

use std::ffi::CStr;
use std::ptr;

use rdkafka::message::BorrowedMessage;
use rdkafka_sys as rdsys;
use rdkafka_sys::types::RDKafkaRespErr;

/// One header of a consumed record, borrowed from it: the name as the producer wrote it (up to
/// its first NUL byte, where librdkafka ends names) and the value, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader<'a> {
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

/// The headers of `msg` in record order.
pub fn headers_of<'a>(msg: &'a BorrowedMessage<'a>) -> Vec<RawHeader<'a>> {
    let mut headers: *mut rdsys::rd_kafka_headers_t = ptr::null_mut();
    // SAFETY: `msg.ptr()` is a live message for as long as `msg` is borrowed; librdkafka returns
    // a pointer to headers owned by that message (never freed by the caller), or an error when
    // the record has none.
    let err = unsafe { rdsys::rd_kafka_message_headers(msg.ptr(), &mut headers) };
    if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for idx in 0.. {
        let mut name: *const std::os::raw::c_char = ptr::null();
        let mut value: *const std::os::raw::c_void = ptr::null();
        let mut size: usize = 0;
        // SAFETY: `headers` belongs to `msg` (see above); an index past the last header is
        // answered with an error, which ends the loop.
        let err = unsafe {
            rdsys::rd_kafka_header_get_all(headers, idx, &mut name, &mut value, &mut size)
        };
        if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            break;
        }
        // SAFETY: librdkafka stores each name NUL-terminated and each value as `size` bytes, both
        // inside the message's header list, which lives as long as `msg`.
        let key = unsafe { CStr::from_ptr(name) }.to_bytes();
        let value = (!value.is_null())
            .then(|| unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) });
        out.push(RawHeader { key, value });
    }
    out
}
