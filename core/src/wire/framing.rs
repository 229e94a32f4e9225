//! Record framing: which of Confluent, Avro single-object or JSON a value uses, and the schema
//! identity it claims. The bundled schemas in `schemas/` are the only writer schemas we read.
//!
//! Invariant: a body is handed to the Avro reader only after its schema id or fingerprint has
//! been checked against the schema that reader implements.

use std::sync::LazyLock;

use apache_avro::rabin::Rabin;
use apache_avro::Schema;

use super::error::WireError;
pub use crate::config::Framing;

pub const REQUEST_SCHEMA: &str = include_str!("../../../schemas/request.avsc");
pub const REQUEST_V2_SCHEMA: &str = include_str!("../../../schemas/request_v2.avsc");
pub const REPLY_SCHEMA: &str = include_str!("../../../schemas/reply.avsc");
pub const REPLY_V2_SCHEMA: &str = include_str!("../../../schemas/reply_v2.avsc");
pub const DEAD_LETTER_SCHEMA: &str = include_str!("../../../schemas/dead_letter.avsc");

const CONFLUENT_MAGIC: u8 = 0x00;
const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xc3, 0x01];

/// CRC-64-AVRO (Rabin) fingerprints of the bundled schemas' canonical forms.
pub struct Fingerprints {
    pub request: u64,
    pub request_v2: u64,
    pub reply: u64,
    pub reply_v2: u64,
    pub dead_letter: u64,
}

/// The bundled schemas are compile-time constants checked by tests, so parsing cannot fail at
/// run time unless the binary itself is broken.
pub static FINGERPRINTS: LazyLock<Fingerprints> = LazyLock::new(|| Fingerprints {
    request: fingerprint(REQUEST_SCHEMA),
    request_v2: fingerprint(REQUEST_V2_SCHEMA),
    reply: fingerprint(REPLY_SCHEMA),
    reply_v2: fingerprint(REPLY_V2_SCHEMA),
    dead_letter: fingerprint(DEAD_LETTER_SCHEMA),
});

fn fingerprint(schema: &str) -> u64 {
    let schema = Schema::parse_str(schema).expect("bundled schema is valid Avro");
    let fp = schema.fingerprint::<Rabin>();
    u64::from_le_bytes(
        fp.bytes[..8]
            .try_into()
            .expect("Rabin fingerprint is 8 bytes"),
    )
}

/// One schema (version) a frame may carry: the Confluent ids and the fingerprint that name it.
pub struct Expect<'a, V> {
    pub version: V,
    pub confluent_ids: &'a [u32],
    pub fingerprint: u64,
}

/// The payload of a frame: Avro in the version its header names, or JSON (which names none).
pub enum Body<'a, V> {
    Avro(&'a [u8], V),
    Json(&'a [u8]),
}

/// Strips and checks the framing header against the versions of record `schema` we read;
/// returns the body with the version its header names.
pub fn split<'a, V: Copy>(
    value: &'a [u8],
    schema: &'static str,
    versions: &[Expect<'_, V>],
) -> Result<Body<'a, V>, WireError> {
    match value {
        [] => Err(WireError::Empty),
        [CONFLUENT_MAGIC, rest @ ..] => {
            let Some((id, body)) = rest.split_first_chunk::<4>() else {
                return Err(WireError::Truncated {
                    field: "confluent header",
                });
            };
            let id = u32::from_be_bytes(*id);
            match versions.iter().find(|v| v.confluent_ids.contains(&id)) {
                Some(v) => Ok(Body::Avro(body, v.version)),
                None => Err(WireError::UnknownSchemaId {
                    id,
                    accepted: versions
                        .iter()
                        .flat_map(|v| v.confluent_ids.iter().copied())
                        .collect(),
                    schema,
                }),
            }
        }
        [0xc3, 0x01, rest @ ..] => {
            let Some((fp, body)) = rest.split_first_chunk::<8>() else {
                return Err(WireError::Truncated {
                    field: "single-object header",
                });
            };
            let fingerprint = u64::from_le_bytes(*fp);
            match versions.iter().find(|v| v.fingerprint == fingerprint) {
                Some(v) => Ok(Body::Avro(body, v.version)),
                None => Err(WireError::UnknownFingerprint {
                    fingerprint,
                    expected: versions.iter().map(|v| v.fingerprint).collect(),
                    schema,
                }),
            }
        }
        _ => match value.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Ok(Body::Json(value)),
            _ => Err(WireError::UnknownFraming {
                first_byte: value[0],
            }),
        },
    }
}

/// Writes the header for `framing` (nothing for JSON).
pub fn write_header(framing: Framing, confluent_id: u32, fingerprint: u64, out: &mut Vec<u8>) {
    match framing {
        Framing::Confluent => {
            out.push(CONFLUENT_MAGIC);
            out.extend_from_slice(&confluent_id.to_be_bytes());
        }
        Framing::SingleObject => {
            out.extend_from_slice(&SINGLE_OBJECT_MAGIC);
            out.extend_from_slice(&fingerprint.to_le_bytes());
        }
        Framing::Json => {}
    }
}
