//! Config tests: inherited defaults, bundled profiles, every layer's precedence, and errors that name
//! the field and where its value came from.

use std::path::PathBuf;

use figment::providers::Serialized;
use figment::Figment;

use super::load::InheritedEnv;
use super::*;
use crate::tier::Tier;

/// A file of the repository (the workspace root, one level above this crate).
fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn opts(profile: Option<&str>) -> LoadOptions {
    LoadOptions {
        file: Some(repo("config/default.yaml")),
        profile: profile.map(str::to_string),
        ..LoadOptions::default()
    }
}

fn issues(err: ConfigError) -> Vec<Issue> {
    match err {
        ConfigError::Invalid(i) => i,
        other => panic!("expected validation issues, got {other}"),
    }
}

#[test]
fn built_in_defaults_are_the_inherited_ones_and_valid() {
    let c = Config::default();
    assert_eq!(c.batch_processing.max_batch_size, 32);
    assert_eq!(c.batch_processing.max_wait_time_seconds, 0.01);
    assert_eq!(c.batch_processing.batch_timeout_seconds, 0.05);
    assert_eq!(c.adaptive_batching.adaptive_scaling_factor, 1.5);
    assert_eq!(c.adaptive_batching.adaptive_adjustment_interval, 100);
    assert_eq!(c.priority_queueing.wait_seconds(Tier::Low), 0.02);
    assert_eq!(c.priority_queueing.priority_boost_threshold, 10);
    assert_eq!(c.resource_management.thread_pool_size, 4);
    assert_eq!(c.performance_monitoring.alert_threshold_error_rate, 0.01);
    assert_eq!(validate(&c, None), vec![]);
}

#[test]
fn the_default_file_says_what_the_built_in_defaults_say() {
    let loaded = load(&opts(None)).unwrap();
    assert_eq!(loaded.config, Config::default());
}

#[test]
fn bundled_profiles_load_with_the_seed_values() {
    let m = load(&opts(Some("market_hours"))).unwrap().config;
    assert_eq!(
        (
            m.batch_processing.max_batch_size,
            m.batch_processing.batch_timeout_seconds
        ),
        (64, 0.02)
    );
    assert_eq!(m.priority_queueing.priority_boost_threshold, 5);
    assert_eq!(m.resource_management.thread_pool_size, 8);
    let o = load(&opts(Some("off_hours"))).unwrap().config;
    assert_eq!(
        (
            o.batch_processing.max_batch_size,
            o.adaptive_batching.adaptive_scaling_factor
        ),
        (128, 2.0)
    );
    assert_eq!(o.performance_monitoring.alert_threshold_latency_ms, 200.0);
    let s = load(&opts(Some("stress_test"))).unwrap().config;
    assert_eq!(
        (
            s.batch_processing.max_batch_size,
            s.batch_processing.min_batch_size
        ),
        (256, 32)
    );
    assert!(!s.adaptive_batching.enable_adaptive_batching);
    assert!(!s.priority_queueing.enable_priority_queueing);
    // A profile only replaces what it names.
    assert_eq!(s.kafka, KafkaConfig::default());
    for p in PROFILES {
        assert!(repo(&format!("config/profiles/{p}.yaml")).exists(), "{p}");
    }
}

#[test]
fn unknown_profile_is_an_error_listing_the_known_ones() {
    let err = load(&opts(Some("weekend"))).err().unwrap();
    assert!(matches!(&err, ConfigError::UnknownProfile { name, .. } if name == "weekend"));
    assert!(err.to_string().contains("market_hours"), "{err}");
}

#[test]
fn an_empty_profile_name_means_no_profile() {
    let plain = load(&opts(None)).unwrap().config;
    for blank in ["", "  "] {
        let loaded = load(&opts(Some(blank))).expect("an empty profile is no profile");
        assert_eq!(loaded.config, plain);
    }
}

#[test]
fn out_of_range_values_name_the_field_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, "batch_processing:\n  max_batch_size: 2048\nperformance_monitoring:\n  alert_threshold_error_rate: 1.5\n").unwrap();
    let err = load(&LoadOptions {
        file: Some(file.clone()),
        ..LoadOptions::default()
    })
    .err()
    .unwrap();
    let text = err.to_string();
    let found = issues(err);
    let fields: Vec<&str> = found.iter().map(|i| i.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "batch_processing.max_batch_size",
            "batch_processing.max_queue_size",
            "performance_monitoring.alert_threshold_error_rate"
        ],
        "{text}"
    );
    assert!(
        found[0].source.as_deref().unwrap().contains("bad.yaml"),
        "{text}"
    );
    assert_eq!(
        found[1].source.as_deref(),
        Some("built-in default"),
        "{text}"
    );
    assert!(text.contains("between 0 and 1, got 1.5"), "{text}");
}

#[test]
fn unknown_keys_and_wrong_types_are_rejected_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.yaml");
    std::fs::write(&file, "batch_processing:\n  max_batch_sise: 8\n").unwrap();
    let err = load(&LoadOptions {
        file: Some(file.clone()),
        ..LoadOptions::default()
    })
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("max_batch_sise") && err.contains("typo.yaml"),
        "{err}"
    );
    std::fs::write(&file, "kafka:\n  session_timeout_ms: soon\n").unwrap();
    let err = load(&LoadOptions {
        file: Some(file.clone()),
        ..LoadOptions::default()
    })
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("session_timeout_ms") && err.contains("typo.yaml"),
        "{err}"
    );
}

#[test]
fn cross_field_rules() {
    let mut c = Config::default();
    c.batch_processing.min_batch_size = 64;
    c.priority_queueing.high_priority_wait_time = 0.03;
    c.priority_queueing.low_priority_wait_time = 0.2;
    c.replies.default_topic = c.kafka.topics.low.clone();
    c.adaptive_batching.gpu_utilization_threshold_low = 0.9;
    c.batch_processing.max_wait_time_seconds = 0.06;
    let fields: Vec<String> = validate(&c, None).into_iter().map(|i| i.field).collect();
    for expected in [
        "batch_processing.min_batch_size",
        "batch_processing.batch_timeout_seconds",
        "priority_queueing.normal_priority_wait_time",
        "priority_queueing.low_priority_wait_time",
        "replies.default_topic",
        "adaptive_batching.gpu_utilization_threshold_low",
    ] {
        assert!(
            fields.iter().any(|f| f == expected),
            "missing {expected} in {fields:?}"
        );
    }
}

#[test]
fn nan_is_never_in_range() {
    let mut c = Config::default();
    c.adaptive_batching.memory_utilization_threshold = f64::NAN;
    assert_eq!(
        validate(&c, None)[0].field,
        "adaptive_batching.memory_utilization_threshold"
    );
}

#[test]
fn inherited_environment_variables_map_onto_keys_with_units() {
    let env = InheritedEnv::from_vars(&vars(&[
        ("MAX_BATCH_SIZE", "64"),
        ("BATCH_TIMEOUT_MS", "20"),
        ("MODEL_REGISTRY_PATH", "/srv/models"),
        ("DEVICE", "CUDA"),
        ("LOG_LEVEL", "DEBUG"),
        ("PATH", "/usr/bin"),
    ]));
    let c: Config = Figment::from(Serialized::defaults(Config::default()))
        .merge(env)
        .extract()
        .unwrap();
    assert_eq!(c.batch_processing.max_batch_size, 64);
    assert_eq!(c.batch_processing.batch_timeout_seconds, 0.02);
    assert_eq!(c.model_registry.path, PathBuf::from("/srv/models"));
    assert_eq!(c.model.device, Device::Cuda);
    assert_eq!(c.logging.level, "debug");
    let bad = InheritedEnv::from_vars(&vars(&[("BATCH_TIMEOUT_MS", "soon")]));
    let err = Figment::from(Serialized::defaults(Config::default()))
        .merge(bad)
        .extract::<Config>()
        .unwrap_err();
    assert!(err.to_string().contains("BATCH_TIMEOUT_MS"), "{err}");
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn layers_apply_in_order_and_errors_name_the_variable() {
    let mut o = opts(Some("market_hours"));
    o.overrides = vec!["priority_queueing.priority_boost_threshold=7".into()];
    o.env = Some(vars(&[
        ("KBATCH_KAFKA__BROKERS", "kafka-1:9092,kafka-2:9092"),
        ("KBATCH_KAFKA__TOPICS__LOW", "requests.bulk"),
        ("KBATCH_CONFIG", "not a section, ignored"),
        ("MAX_BATCH_SIZE", "48"),
    ]));
    let c = load(&o).unwrap().config;
    assert_eq!(c.kafka.brokers, "kafka-1:9092,kafka-2:9092");
    assert_eq!(c.kafka.topics.low, "requests.bulk");
    assert_eq!(
        c.batch_processing.max_batch_size, 48,
        "the inherited variable beats the profile's 64"
    );
    assert_eq!(
        c.batch_processing.batch_timeout_seconds, 0.02,
        "profile beats the file"
    );
    assert_eq!(
        c.priority_queueing.priority_boost_threshold, 7,
        "--set beats everything"
    );

    o.env = Some(vars(&[(
        "KBATCH_RESOURCE_MANAGEMENT__THREAD_POOL_SIZE",
        "100",
    )]));
    let found = issues(load(&o).err().unwrap());
    assert_eq!(found[0].field, "resource_management.thread_pool_size");
    assert!(
        found[0]
            .source
            .as_deref()
            .unwrap()
            .contains("KBATCH_RESOURCE_MANAGEMENT__THREAD_POOL_SIZE"),
        "{:?}",
        found[0]
    );
    o.overrides = vec!["kafka.session_timeout_ms=5".into()];
    let found = issues(load(&o).err().unwrap());
    assert_eq!(
        found.last().unwrap().source.as_deref(),
        Some("command line --set kafka.session_timeout_ms")
    );
    o.overrides.clear();
    o.env = Some(vars(&[("MAX_BATCH_SIZE", "0")]));
    let found = issues(load(&o).err().unwrap());
    assert!(
        found[0]
            .source
            .as_deref()
            .unwrap()
            .contains("MAX_BATCH_SIZE"),
        "{:?}",
        found[0]
    );
}

#[test]
fn bad_override_syntax_is_an_error() {
    let mut o = opts(None);
    o.overrides = vec!["no-equals-sign".into()];
    assert!(matches!(load(&o), Err(ConfigError::BadOverride(_))));
}

#[test]
fn librdkafka_property_names_keep_their_dots() {
    let mut o = opts(None);
    o.overrides = vec!["kafka.properties.queued.max.messages.kbytes=4096".into()];
    o.env = Some(vars(&[(
        "KBATCH_KAFKA__PROPERTIES__SECURITY_PROTOCOL",
        "ssl",
    )]));
    let c = load(&o).unwrap().config;
    let p = &c.kafka.properties;
    assert_eq!(
        p.get("queued.max.messages.kbytes").map(String::as_str),
        Some("4096")
    );
    assert_eq!(p.get("security.protocol").map(String::as_str), Some("ssl"));
}

#[test]
fn retry_settings_have_bounds() {
    let mut c = Config::default();
    c.batch_processing.max_retries = 11;
    c.batch_processing.retry_delay = -1.0;
    let fields: Vec<String> = validate(&c, None).into_iter().map(|i| i.field).collect();
    assert_eq!(
        fields,
        [
            "batch_processing.retry_delay",
            "batch_processing.max_retries"
        ]
    );
    c.batch_processing.max_retries = 10;
    c.batch_processing.retry_delay = 10.0;
    assert!(validate(&c, None).is_empty());
}

#[test]
fn classic_only_properties_are_rejected_under_the_consumer_protocol() {
    let mut c = Config::default();
    c.kafka
        .properties
        .insert("session.timeout.ms".into(), "45000".into());
    assert!(validate(&c, None).is_empty(), "fine for a classic group");
    c.kafka.group_protocol = GroupProtocol::Consumer;
    let found = validate(&c, None);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].field, "kafka.properties");
    assert!(found[0].message.contains("session.timeout.ms"), "{found:?}");
    c.kafka.properties.clear();
    c.kafka
        .properties
        .insert("group.protocol".into(), "classic".into());
    assert_eq!(
        validate(&c, None)[0].field,
        "kafka.properties",
        "owned by kbatch"
    );
}

/// Loads the bundled `config/default.yaml` under exactly `env`.
fn load_with_env(env: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    load(&LoadOptions {
        env: Some(vars(env)),
        ..opts(None)
    })
}

#[test]
fn the_seeds_own_batch_timeout_is_valid_and_bounds_every_wait() {
    // Without the cap, 10 ms is below the default low tier wait (20 ms): an invalid configuration.
    let loaded = load_with_env(&[("BATCH_TIMEOUT_MS", "10")]).expect("valid");
    let c = &loaded.config;
    assert_eq!(c.batch_processing.batch_timeout_seconds, 0.01);
    assert_eq!(c.priority_queueing.low_priority_wait_time, 0.01);
    assert_eq!(c.priority_queueing.normal_priority_wait_time, 0.01);
    assert_eq!(
        c.priority_queueing.critical_priority_wait_time, 0.002,
        "below: kept"
    );
    assert_eq!(
        loaded.notes,
        [
            "priority_queueing.low_priority_wait_time lowered from 0.02 s to 0.01 s: \
          BATCH_TIMEOUT_MS bounds every wait"
        ]
    );
    // Without the variable nothing is adjusted, and the same bound from a file is still an error.
    assert!(load_with_env(&[]).expect("valid").notes.is_empty());
    let err = load(&LoadOptions {
        overrides: vec!["batch_processing.batch_timeout_seconds=0.01".into()],
        env: Some(Vec::new()),
        ..opts(None)
    })
    .err()
    .expect("a tier wait above the batch timeout");
    assert!(err.to_string().contains("low_priority_wait_time"), "{err}");
}

#[test]
fn device_accepts_gpu_and_auto_and_the_cache_ttl_has_its_variable() {
    let device = |v: &str| load_with_env(&[("DEVICE", v)]).map(|l| l.config.model.device);
    assert_eq!(device("gpu").unwrap(), Device::Cuda);
    assert_eq!(device("GPU").unwrap(), Device::Cuda);
    assert_eq!(device("auto").unwrap(), Device::Auto);
    assert_eq!(device("cpu").unwrap(), Device::Cpu);
    assert!(device("tpu").is_err());
    let ttl = load_with_env(&[("CACHE_TTL_SECONDS", "5.5")]).unwrap();
    assert_eq!(ttl.config.deduplication.deduplication_ttl, 5.5);
    let err = load_with_env(&[("CACHE_TTL_SECONDS", "later")])
        .err()
        .unwrap();
    assert!(err.to_string().contains("CACHE_TTL_SECONDS"), "{err}");
}
