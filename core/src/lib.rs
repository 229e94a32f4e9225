//! kbatch-core: serves ONNX models over Kafka with a dynamic batcher.
//!
//! Layers, each owning one thing (docs/architecture.md draws them and the data path):
//! `config` (figment-based settings), `wire` (the Avro contract), `kafka` (consumer, replier,
//! offsets, topic administration), `batcher` (request queues and batch formation), `inference`
//! (ONNX Runtime backends and worker threads), `telemetry` (metrics, health, statistics, HTTP),
//! `pipeline` (what flows between the stages), and `app` (wiring and ordered shutdown).
//!
//! The load generator, the demo and the broker launcher are tools around this crate (the
//! `kbatch` package); nothing here depends on them.

pub mod affinity;
pub mod app;
pub mod batcher;
pub mod config;
pub mod inference;
pub mod kafka;
pub mod model;
pub mod pipeline;
pub mod registry;
pub mod resources;
pub mod telemetry;
pub mod tensor;
pub mod tier;
pub mod wire;
