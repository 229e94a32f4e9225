//! Tests of the `security` section: secret references resolved at load (files, variables, and
//! errors that name the key but never the value), redaction, and the section's rules.

use std::io::Write;

use super::*;
use crate::config::{load, ConfigError, LoadOptions};

const SECRET: &str = "pa55-w0rd-do-not-print";

fn write_yaml(dir: &tempfile::TempDir, yaml: &str) -> std::path::PathBuf {
    let path = dir.path().join("kbatch.yaml");
    std::fs::write(&path, yaml).expect("write config");
    path
}

fn load_with(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_yaml(&dir, yaml);
    let opts = LoadOptions {
        file: Some(file),
        env: Some(
            env.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..LoadOptions::default()
    };
    load(&opts).map(|l| l.config)
}

fn issues(r: Result<Config, ConfigError>) -> Vec<Issue> {
    match r {
        Err(ConfigError::Invalid(i)) => i,
        Err(other) => panic!("expected validation issues, got {other}"),
        Ok(c) => panic!("expected validation issues, got {:?}", redacted(&c)),
    }
}

#[test]
fn defaults_are_open() {
    let s = SecurityConfig::default();
    assert!(s.api_keys.is_empty());
    assert_eq!(s.api_key_header, "X-API-Key");
    assert!(!s.tier_access.is_restricted());
    assert_eq!(s.max_tracked_clients, 10_000);
}

#[test]
fn file_and_env_references_are_resolved_at_load() {
    let mut secret_file = tempfile::NamedTempFile::new().expect("temp file");
    writeln!(secret_file, "{SECRET}").expect("write secret");
    let yaml = format!(
        "kafka:\n  properties:\n    sasl.password: \"file:{}\"\n    sasl.username: svc\n\
         security:\n  api_keys: [\"env:KBATCH_TEST_KEY\", literal-key]\n",
        secret_file.path().display()
    );
    let c = load_with(&yaml, &[("KBATCH_TEST_KEY", "from-env")]).expect("loads");
    // The trailing newline `echo` and editors add is not part of the secret.
    assert_eq!(c.kafka.properties["sasl.password"], SECRET);
    assert_eq!(c.kafka.properties["sasl.username"], "svc");
    let keys: Vec<&str> = c.security.api_keys.iter().map(Secret::expose).collect();
    assert_eq!(keys, ["from-env", "literal-key"]);
}

#[test]
fn a_file_keeps_inner_whitespace_and_loses_only_trailing_line_breaks() {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    write!(f, " a b\r\n\n").expect("write");
    let mut c = Config::default();
    c.kafka.properties.insert(
        "ssl.key.password".into(),
        format!("file:{}", f.path().display()),
    );
    assert_eq!(resolve_secrets(&mut c, &[]), vec![]);
    assert_eq!(c.kafka.properties["ssl.key.password"], " a b");
}

#[test]
fn a_missing_file_or_variable_is_a_validation_error_naming_the_key() {
    let yaml = "kafka:\n  properties:\n    sasl.password: \"file:/nonexistent/kbatch/secret\"\n\
                security:\n  api_keys: [\"env:KBATCH_NOT_SET\"]\n";
    let found = issues(load_with(yaml, &[]));
    let fields: Vec<&str> = found.iter().map(|i| i.field.as_str()).collect();
    assert_eq!(
        fields,
        ["kafka.properties.sasl.password", "security.api_keys[0]"]
    );
    let text: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert!(
        text[0].contains("file:/nonexistent/kbatch/secret"),
        "{}",
        text[0]
    );
    assert!(
        text[1].contains("environment variable KBATCH_NOT_SET is not set"),
        "{}",
        text[1]
    );
}

#[test]
fn an_empty_secret_is_an_error_and_no_message_holds_a_secret() {
    let empty = tempfile::NamedTempFile::new().expect("temp file");
    let mut c = Config::default();
    c.kafka.properties.insert(
        "sasl.password".into(),
        format!("file:{}", empty.path().display()),
    );
    c.security.api_keys = vec![Secret::new("env:EMPTY"), Secret::new("env:FULL")];
    let env = [
        ("EMPTY".to_string(), String::new()),
        ("FULL".to_string(), SECRET.to_string()),
    ];
    let found = resolve_secrets(&mut c, &env);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().all(|i| i.message.contains("empty value")));
    assert_eq!(c.security.api_keys[1].expose(), SECRET);

    // A resolved secret that breaks a rule is reported without its value either.
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = "security:\n  api_keys: [\"env:K\"]\n  api_key_header: \"bad header\"\n";
    let opts = LoadOptions {
        file: Some(write_yaml(&dir, yaml)),
        env: Some(vec![("K".into(), SECRET.into())]),
        ..LoadOptions::default()
    };
    let err = load(&opts).err().expect("invalid header name");
    let text = err.to_string();
    assert!(text.contains("security.api_key_header"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
}

#[test]
fn values_that_are_not_references_are_left_alone() {
    let mut c = Config::default();
    c.kafka
        .properties
        .insert("security.protocol".into(), "SASL_SSL".into());
    c.kafka
        .properties
        .insert("ssl.ca.location".into(), "/etc/ssl/ca.pem".into());
    let before = c.clone();
    assert_eq!(resolve_secrets(&mut c, &[]), vec![]);
    assert_eq!(c, before);
}

#[test]
fn sensitive_properties_are_passwords_tokens_keys_and_secrets_not_usernames() {
    for name in [
        "sasl.password",
        "ssl.key.password",
        "ssl.keystore.password",
        "ssl.key.pem",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "sasl.oauthbearer.assertion.private.key.pem",
        "SASL.PASSWORD",
        "sasl.jaas.config",
        "some.api.token",
        "aws.credentials",
    ] {
        assert!(is_sensitive_property(name), "{name}");
    }
    for name in [
        "sasl.username",
        "sasl.mechanism",
        "security.protocol",
        "ssl.ca.location",
        "ssl.certificate.location",
        "ssl.key.location",
        "bootstrap.servers",
    ] {
        assert!(!is_sensitive_property(name), "{name}");
    }
}

#[test]
fn redaction_masks_api_keys_and_sensitive_properties_only() {
    let mut c = Config::default();
    c.kafka
        .properties
        .insert("sasl.password".into(), SECRET.into());
    c.kafka
        .properties
        .insert("sasl.oauthbearer.client.secret".into(), SECRET.into());
    c.kafka
        .properties
        .insert("sasl.username".into(), "svc".into());
    c.security.api_keys = vec![Secret::new(SECRET), Secret::new("another")];
    let r = redacted(&c);
    assert_eq!(r.kafka.properties["sasl.password"], REDACTED);
    assert_eq!(
        r.kafka.properties["sasl.oauthbearer.client.secret"],
        REDACTED
    );
    assert_eq!(r.kafka.properties["sasl.username"], "svc");
    assert!(r.security.api_keys.iter().all(|k| k.expose() == REDACTED));
    assert_eq!(r.security.api_keys.len(), 2);
    let yaml = serde_yaml::to_string(&r).expect("yaml");
    assert!(!yaml.contains(SECRET), "{yaml}");
    assert!(!format!("{r:?}").contains(SECRET));
    // The original is untouched.
    assert_eq!(c.security.api_keys[0].expose(), SECRET);
}

#[test]
fn a_secret_never_shows_in_debug_but_round_trips_through_serde() {
    let mut c = Config::default();
    c.security.api_keys = vec![Secret::new(SECRET)];
    let debug = format!("{:?}", c.security);
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(debug.contains("Secret(***)"), "{debug}");
    // Reload merges configurations through JSON: the key must survive it.
    let back: Config =
        serde_json::from_value(serde_json::to_value(&c).expect("json")).expect("back");
    assert_eq!(back.security.api_keys[0].expose(), SECRET);
}

#[test]
fn the_section_loads_from_yaml_and_its_rules_name_the_field() {
    let yaml = "security:\n  api_key_header: X-Kbatch-Key\n  tier_access:\n    critical:\n      \
                allowed_clients: [trusted]\n    low:\n      rate_limit: {rate_per_second: 5, burst: 10}\n";
    let c = load_with(yaml, &[]).expect("loads");
    let s = &c.security;
    assert_eq!(s.api_key_header, "X-Kbatch-Key");
    assert_eq!(
        s.tier_access.critical.allowed_clients.as_deref(),
        Some(&["trusted".to_string()][..])
    );
    assert_eq!(
        s.tier_access.low.rate_limit,
        Some(RateLimit {
            rate_per_second: 5.0,
            burst: 10
        })
    );
    assert!(s.tier_access.is_restricted());
    assert_eq!(s.tier_access.high, TierAccess::default());

    let yaml = "security:\n  api_keys: [\"  \", \" padded\", \"tab\\tkey\", ok-key]\n  max_tracked_clients: 0\n  tier_access:\n    \
                high:\n      allowed_clients: [\"\"]\n      rate_limit: {rate_per_second: 0, burst: 0}\n";
    let found = issues(load_with(yaml, &[]));
    let fields: Vec<&str> = found.iter().map(|i| i.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "security.api_keys[0]",
            "security.api_keys[1]",
            "security.api_keys[2]",
            "security.max_tracked_clients",
            "security.tier_access.high.allowed_clients",
            "security.tier_access.high.rate_limit.rate_per_second",
            "security.tier_access.high.rate_limit.burst",
        ]
    );
}

#[test]
fn the_section_is_set_from_kbatch_variables_too() {
    let c = load_with(
        "{}\n",
        &[
            ("KBATCH_SECURITY__API_KEYS", "[env:KEY_VAR]"),
            ("KEY_VAR", SECRET),
            ("KBATCH_SECURITY__API_KEY_HEADER", "X-Other"),
        ],
    )
    .expect("loads");
    assert_eq!(c.security.api_keys[0].expose(), SECRET);
    assert_eq!(c.security.api_key_header, "X-Other");
}
