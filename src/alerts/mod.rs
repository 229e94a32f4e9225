//! `kbatch alert-rules`: the Prometheus alert rules of a configuration. The latency and error
//! rate thresholds come from `performance_monitoring.alert_threshold_latency_ms` and
//! `.alert_threshold_error_rate`; the rest of the rules (`template.yml`) are operational choices
//! documented in the file itself.
//!
//! Invariant: `deploy/prometheus/kbatch-alerts.yml` is exactly `render` of the built-in defaults
//! (tests/deploy_monitoring.rs), so the shipped rules and the configuration cannot drift apart.

use kbatch_core::config::Config;

const TEMPLATE: &str = include_str!("template.yml");

/// The rules for `cfg`; `source` says where its values came from (written into the header).
pub fn render(cfg: &Config, source: &str) -> String {
    let m = &cfg.performance_monitoring;
    TEMPLATE
        .replace("@SOURCE@", source)
        .replace("@LATENCY_MS@", &number(m.alert_threshold_latency_ms))
        .replace("@ERROR_RATE@", &number(m.alert_threshold_error_rate))
        .replace(
            "@ERROR_PERCENT@",
            &number(m.alert_threshold_error_rate * 100.0),
        )
}

/// `x` as PromQL and people write it: no float noise (0.005 x 100 is 0.5, not
/// 0.5000000000000001), no trailing zeros (100, not 100.0).
fn number(x: f64) -> String {
    let fixed = format!("{x:.9}");
    let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
    trimmed.to_owned()
}

/// The source line for the built-in defaults (what `deploy/` ships).
pub const DEFAULTS: &str = "the built-in defaults (config/default.yaml)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_come_from_the_configuration() {
        let mut cfg = Config::default();
        cfg.performance_monitoring.alert_threshold_latency_ms = 50.0;
        cfg.performance_monitoring.alert_threshold_error_rate = 0.005;
        let rules = render(&cfg, "profile market_hours");
        assert!(rules.contains("[5m]))) > 50\n"), "{rules}");
        assert!(rules.contains("> 0.005\n"));
        assert!(rules.contains("is over 0.5 %"));
        assert!(rules.contains("from profile market_hours"));
        assert!(
            !rules.contains("@ERROR") && !rules.contains("@LATENCY") && !rules.contains("@SOURCE")
        );
        assert_eq!(number(100.0), "100");
        assert_eq!(number(0.05 * 100.0), "5");
        let parsed: serde_yaml::Value = serde_yaml::from_str(&rules).expect("valid YAML");
        assert!(parsed["groups"]
            .as_sequence()
            .is_some_and(|g| !g.is_empty()));
    }
}
