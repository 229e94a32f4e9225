//! Range rules (each numeric key's allowed interval) and cross-field rules (e.g. a tier wait
//! within the batch timeout) over a whole `Config`.
//!
//! Invariant: every rule reports the dotted field it is about, and, when a figment is given,
//! the layer (file path or environment variable) that set that field.

use figment::{Figment, Profile};

use super::Config;
use crate::tier::Tier;

/// One broken rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    /// Dotted path, e.g. `batch_processing.max_batch_size`.
    pub field: String,
    pub message: String,
    /// Where the value came from, e.g. `YAML file config/x.yaml` or `MAX_BATCH_SIZE`.
    pub source: Option<String>,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)?;
        match &self.source {
            Some(s) => write!(f, " (set by {s})"),
            None => Ok(()),
        }
    }
}

struct Rules<'a> {
    issues: Vec<Issue>,
    figment: Option<&'a Figment>,
}

impl Rules<'_> {
    fn check(&mut self, ok: bool, field: &str, message: impl FnOnce() -> String) {
        if !ok {
            let source = self.figment.and_then(|f| provenance(f, field));
            self.issues.push(Issue {
                field: field.to_string(),
                message: message(),
                source,
            });
        }
    }

    fn range(&mut self, field: &str, v: f64, lo: f64, hi: f64) {
        self.check((lo..=hi).contains(&v), field, || {
            format!("must be between {lo} and {hi}, got {v}")
        });
    }

    fn positive(&mut self, field: &str, v: f64) {
        self.check(v > 0.0 && v.is_finite(), field, || {
            format!("must be positive, got {v}")
        });
    }

    fn non_empty(&mut self, field: &str, v: &str) {
        self.check(!v.trim().is_empty(), field, || "must not be empty".into());
    }
}

fn provenance(figment: &Figment, field: &str) -> Option<String> {
    let md = figment.find_metadata(field)?;
    let keys: Vec<&str> = field.split('.').collect();
    match &md.source {
        Some(figment::Source::Code(_)) => Some("built-in default".into()),
        Some(src) => Some(format!("{} {src}", md.name)),
        None => Some(format!(
            "{} {}",
            md.name,
            md.interpolate(&Profile::Default, &keys)
        )),
    }
}

/// Checks every rule; an empty list means the configuration is valid.
pub fn validate(c: &Config, figment: Option<&Figment>) -> Vec<Issue> {
    let mut r = Rules {
        issues: Vec::new(),
        figment,
    };
    batching(&mut r, c);
    adaptive_and_priority(&mut r, c);
    resources_and_monitoring(&mut r, c);
    kafka_and_wire(&mut r, c);
    security(&mut r, c);
    r.check(
        !c.http.enabled || c.http.addr().is_some(),
        "http.bind",
        || format!("must be an IP address, got {:?}", c.http.bind),
    );
    r.issues
}

fn batching(r: &mut Rules<'_>, c: &Config) {
    let b = &c.batch_processing;
    r.check(
        (1..=1024).contains(&b.max_batch_size),
        "batch_processing.max_batch_size",
        || format!("must be between 1 and 1024, got {}", b.max_batch_size),
    );
    r.check(
        b.min_batch_size >= 1,
        "batch_processing.min_batch_size",
        || "must be positive".into(),
    );
    r.check(
        b.min_batch_size <= b.max_batch_size,
        "batch_processing.min_batch_size",
        || {
            format!(
                "must be <= max_batch_size ({}), got {}",
                b.max_batch_size, b.min_batch_size
            )
        },
    );
    r.range(
        "batch_processing.max_wait_time_seconds",
        b.max_wait_time_seconds,
        0.0,
        1.0,
    );
    r.range(
        "batch_processing.batch_timeout_seconds",
        b.batch_timeout_seconds,
        0.0,
        10.0,
    );
    r.check(
        b.batch_timeout_seconds >= b.max_wait_time_seconds,
        "batch_processing.batch_timeout_seconds",
        || {
            format!(
                "must be >= max_wait_time_seconds ({}), got {}",
                b.max_wait_time_seconds, b.batch_timeout_seconds
            )
        },
    );
    r.range(
        "batch_processing.min_batch_interval",
        b.min_batch_interval,
        0.0,
        1.0,
    );
    r.range("batch_processing.retry_delay", b.retry_delay, 0.0, 10.0);
    r.check(b.max_retries <= 10, "batch_processing.max_retries", || {
        format!("must be between 0 and 10, got {}", b.max_retries)
    });
    r.positive(
        "batch_processing.max_batch_memory_mb",
        b.max_batch_memory_mb,
    );
    r.check(
        b.max_queue_size >= b.max_batch_size,
        "batch_processing.max_queue_size",
        || {
            format!(
                "must be >= max_batch_size ({}) or no full batch can form, got {}",
                b.max_batch_size, b.max_queue_size
            )
        },
    );
}

fn adaptive_and_priority(r: &mut Rules<'_>, c: &Config) {
    let a = &c.adaptive_batching;
    r.positive(
        "adaptive_batching.adaptive_scaling_factor",
        a.adaptive_scaling_factor,
    );
    r.range(
        "adaptive_batching.gpu_utilization_threshold_high",
        a.gpu_utilization_threshold_high,
        0.0,
        1.0,
    );
    r.range(
        "adaptive_batching.gpu_utilization_threshold_low",
        a.gpu_utilization_threshold_low,
        0.0,
        1.0,
    );
    r.check(
        a.gpu_utilization_threshold_low <= a.gpu_utilization_threshold_high,
        "adaptive_batching.gpu_utilization_threshold_low",
        || {
            format!(
                "must be <= gpu_utilization_threshold_high ({})",
                a.gpu_utilization_threshold_high
            )
        },
    );
    r.range(
        "adaptive_batching.memory_utilization_threshold",
        a.memory_utilization_threshold,
        0.0,
        1.0,
    );
    r.check(
        a.adaptive_adjustment_interval > 0,
        "adaptive_batching.adaptive_adjustment_interval",
        || "must be positive".into(),
    );
    let max = c.batch_processing.max_batch_size;
    r.check(
        a.initial_batch_size <= max,
        "adaptive_batching.initial_batch_size",
        || format!("must be <= batch_processing.max_batch_size ({max}), 0 for automatic"),
    );
    let d = &c.deduplication;
    r.check(
        (1..=1_000_000).contains(&d.deduplication_cache_size),
        "deduplication.deduplication_cache_size",
        || format!("must be in 1..=1000000, got {}", d.deduplication_cache_size),
    );
    r.positive("deduplication.deduplication_ttl", d.deduplication_ttl);
    r.range(
        "priority_queueing.starvation_bound_seconds",
        c.priority_queueing.starvation_bound_seconds,
        0.0,
        3600.0,
    );

    let p = &c.priority_queueing;
    let timeout = c.batch_processing.batch_timeout_seconds;
    let mut previous: Option<(Tier, f64)> = None;
    for tier in Tier::ALL {
        let field = format!("priority_queueing.{tier}_priority_wait_time");
        let wait = p.wait_seconds(tier);
        r.range(&field, wait, 0.0, 1.0);
        r.check(wait <= timeout, &field, || {
            format!("must be <= batch_processing.batch_timeout_seconds ({timeout}), got {wait}")
        });
        if let Some((higher, hw)) = previous {
            // A higher tier that waits longer than a lower one would make priority slower.
            r.check(!p.enable_priority_queueing || hw <= wait, &field, || {
                format!("must be >= {higher}_priority_wait_time ({hw}): higher tiers may not wait longer, got {wait}")
            });
        }
        previous = Some((tier, wait));
    }
    r.check(
        p.priority_boost_threshold > 0,
        "priority_queueing.priority_boost_threshold",
        || "must be positive".into(),
    );
}

fn resources_and_monitoring(r: &mut Rules<'_>, c: &Config) {
    let res = &c.resource_management;
    r.check(
        (1..=64).contains(&res.thread_pool_size),
        "resource_management.thread_pool_size",
        || format!("must be between 1 and 64, got {}", res.thread_pool_size),
    );
    r.check(
        res.cleanup_interval_seconds > 0,
        "resource_management.cleanup_interval_seconds",
        || "must be positive".into(),
    );
    let m = &c.performance_monitoring;
    r.check(
        m.log_interval_requests > 0,
        "performance_monitoring.log_interval_requests",
        || "must be positive".into(),
    );
    r.positive(
        "performance_monitoring.metrics_collection_interval",
        m.metrics_collection_interval,
    );
    r.check(
        m.health_check_interval > 0,
        "performance_monitoring.health_check_interval",
        || "must be positive".into(),
    );
    r.positive(
        "performance_monitoring.alert_threshold_latency_ms",
        m.alert_threshold_latency_ms,
    );
    r.range(
        "performance_monitoring.alert_threshold_error_rate",
        m.alert_threshold_error_rate,
        0.0,
        1.0,
    );
    let level_ok = tracing_subscriber::EnvFilter::try_new(&c.logging.level).is_ok();
    r.check(level_ok, "logging.level", || {
        format!(
            "`{}` is not a log level or tracing filter directive",
            c.logging.level
        )
    });
    let md = &c.model;
    r.non_empty("model.name", &md.name);
    r.check(is_path_segment(&md.name), "model.name", || {
        format!(
            "{:?} must be one directory name (no `/`, not `.` or `..`)",
            md.name
        )
    });
    if let Some(file) = &md.file {
        r.non_empty("model.file", file);
        r.non_empty("model.version", &md.version);
    }
    if let Some(shape) = &md.input_shape {
        r.check(
            !shape.is_empty() && shape.iter().all(|&d| d > 0),
            "model.input_shape",
            || format!("must have positive dimensions, got {shape:?}"),
        );
        let len: usize = shape.iter().product();
        r.check(
            len <= c.wire.max_tensor_elements,
            "model.input_shape",
            || {
                format!(
                    "needs {len} values per request, more than wire.max_tensor_elements ({})",
                    c.wire.max_tensor_elements
                )
            },
        );
    }
    if let Some(size) = md.output_size {
        r.check(size > 0, "model.output_size", || "must be positive".into());
    }
    r.check(
        (1..=64).contains(&md.intra_op_threads),
        "model.intra_op_threads",
        || format!("must be between 1 and 64, got {}", md.intra_op_threads),
    );
    let reg = &c.model_registry;
    r.check(
        !reg.path.as_os_str().is_empty(),
        "model_registry.path",
        || "must not be empty".into(),
    );
    r.check(
        reg.sync_interval_s.is_finite() && reg.sync_interval_s >= 1.0,
        "model_registry.sync_interval_s",
        || format!("must be at least 1 second, got {}", reg.sync_interval_s),
    );
}

/// A name usable as one directory of the registry.
fn is_path_segment(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\'])
}

fn kafka_and_wire(r: &mut Rules<'_>, c: &Config) {
    let k = &c.kafka;
    r.non_empty("kafka.brokers", &k.brokers);
    r.non_empty("kafka.group_id", &k.group_id);
    let mut seen: Vec<(String, &str)> = Vec::new();
    let names = Tier::ALL
        .iter()
        .map(|&t| (format!("kafka.topics.{t}"), k.topics.topic(t)))
        .chain([
            (
                "replies.default_topic".to_string(),
                c.replies.default_topic.as_str(),
            ),
            (
                "replies.dead_letter_topic".to_string(),
                c.replies.dead_letter_topic.as_str(),
            ),
        ]);
    for (field, name) in names {
        r.non_empty(&field, name);
        if let Some((other, _)) = seen.iter().find(|(_, n)| *n == name) {
            let other = other.clone();
            r.check(false, &field, || {
                format!(
                    "`{name}` is also {other}: request, reply and dead-letter topics must differ"
                )
            });
        }
        seen.push((field, name));
    }
    r.check(
        c.replies.max_reply_topics >= 1,
        "replies.max_reply_topics",
        || "must be at least 1 (set replies.allow_request_reply_topic = false to use only the default topic)".into(),
    );
    for pattern in &c.replies.allowed_reply_topics {
        r.check(!pattern.is_empty(), "replies.allowed_reply_topics", || {
            "an empty pattern matches no topic name".into()
        });
    }
    r.check(
        k.session_timeout_ms >= 1000,
        "kafka.session_timeout_ms",
        || "must be >= 1000".into(),
    );
    r.check(k.commit_interval_ms > 0, "kafka.commit_interval_ms", || {
        "must be positive".into()
    });
    if k.group_protocol == super::GroupProtocol::Consumer {
        for classic_only in [
            "session.timeout.ms",
            "heartbeat.interval.ms",
            "partition.assignment.strategy",
        ] {
            r.check(
                !k.properties.contains_key(classic_only),
                "kafka.properties",
                || {
                    format!(
                        "`{classic_only}` belongs to the classic group protocol; under \
                         kafka.group_protocol = consumer the broker sets it (group.consumer.*)"
                    )
                },
            );
        }
    }
    for owned in [
        "enable.auto.commit",
        "enable.auto.offset.store",
        "group.id",
        "group.protocol",
        "isolation.level",
        "transactional.id",
    ] {
        r.check(
            !k.properties.contains_key(owned),
            "kafka.properties",
            || {
                format!(
                    "`{owned}` must not be set here: kbatch sets it itself (delivery = {:?})",
                    k.delivery
                )
            },
        );
    }
    let w = &c.wire;
    r.check(
        !w.request_schema_ids.is_empty(),
        "wire.request_schema_ids",
        || "must list at least one id".into(),
    );
    r.check(
        !w.request_v2_schema_ids.is_empty(),
        "wire.request_v2_schema_ids",
        || "must list at least one id".into(),
    );
    // A Confluent id names exactly one schema, or a record could be read under the wrong one.
    let mut ids: Vec<(u32, &str)> = w
        .request_schema_ids
        .iter()
        .map(|&id| (id, "wire.request_schema_ids"))
        .chain(
            w.request_v2_schema_ids
                .iter()
                .map(|&id| (id, "wire.request_v2_schema_ids")),
        )
        .chain([
            (w.reply_schema_id, "wire.reply_schema_id"),
            (w.reply_v2_schema_id, "wire.reply_v2_schema_id"),
            (w.dead_letter_schema_id, "wire.dead_letter_schema_id"),
        ])
        .collect();
    ids.sort_unstable();
    for pair in ids.windows(2) {
        let [(a, first), (b, second)] = pair else {
            continue;
        };
        r.check(a != b, second, || {
            format!("schema id {a} is also used by {first}: each schema needs its own id")
        });
    }
    r.check(w.max_tensors >= 1, "wire.max_tensors", || {
        "must be >= 1".into()
    });
    r.check(w.max_request_bytes >= 64, "wire.max_request_bytes", || {
        "must be >= 64".into()
    });
    r.check(
        w.max_string_bytes >= super::super::wire::MAX_REQUEST_ID_BYTES,
        "wire.max_string_bytes",
        || "must be >= 128 (the longest request_id)".into(),
    );
}

fn security(r: &mut Rules<'_>, c: &Config) {
    let s = &c.security;
    let header = s.api_key_header.as_str();
    r.check(
        axum::http::HeaderName::from_bytes(header.as_bytes()).is_ok(),
        "security.api_key_header",
        || format!("`{header}` is not an HTTP header name"),
    );
    for (i, key) in s.api_keys.iter().enumerate() {
        // Never the value in a message: only where it is and what is wrong with it.
        let k = key.expose();
        let sendable =
            !k.is_empty() && k.trim() == k && k.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
        r.check(sendable, &format!("security.api_keys[{i}]"), || {
            "must be non-empty printable ASCII without leading or trailing spaces \
             (it travels in an HTTP header)"
                .into()
        });
    }
    r.check(
        (1..=10_000_000).contains(&s.max_tracked_clients),
        "security.max_tracked_clients",
        || format!("must be in 1..=10000000, got {}", s.max_tracked_clients),
    );
    for tier in Tier::ALL {
        let access = s.tier_access.tier(tier);
        if let Some(clients) = &access.allowed_clients {
            r.check(
                clients.iter().all(|c| !c.trim().is_empty()),
                &format!("security.tier_access.{tier}.allowed_clients"),
                || "must not contain an empty client id".into(),
            );
        }
        if let Some(limit) = &access.rate_limit {
            r.positive(
                &format!("security.tier_access.{tier}.rate_limit.rate_per_second"),
                limit.rate_per_second,
            );
            r.check(
                limit.burst >= 1,
                &format!("security.tier_access.{tier}.rate_limit.burst"),
                || "must be at least 1".into(),
            );
        }
    }
}
