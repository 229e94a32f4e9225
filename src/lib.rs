//! kbatch: serves ONNX models over Kafka with a dynamic batcher.
//!
//! Layers, each owning one thing: `config` (figment-based settings), `wire` (the Avro contract),
//! `kafka` (consumer, replier, offsets), `batcher` (request queues and batch formation),
//! `inference` (ONNX Runtime backends and worker threads), `app` (wiring and ordered shutdown),
//! `bench` (load generator), `demo` (self-contained demonstration), `launcher` (local broker
//! processes for the demo and the benchmarks).

pub mod app;
pub mod batcher;
pub mod bench;
pub mod config;
pub mod demo;
pub mod inference;
pub mod kafka;
pub mod launcher;
pub mod pipeline;
pub mod resources;
pub mod telemetry;
pub mod tier;
pub mod wire;
