//! Unit tests of `args`.

use clap::Parser;

use super::*;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
}

fn parse(args: &[&str]) -> BenchArgs {
    Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
        .unwrap()
        .bench
}

#[test]
fn plan_size_follows_count_rate_and_duration() {
    let secs = |s| Some(Duration::from_secs(s));
    assert_eq!(plan_size(100.0, None, None).unwrap(), 1000);
    assert_eq!(plan_size(100.0, None, secs(3)).unwrap(), 300);
    assert_eq!(plan_size(100.0, Some(50), secs(3)).unwrap(), 50);
    assert_eq!(plan_size(100.0, Some(500), secs(3)).unwrap(), 300);
    assert_eq!(plan_size(0.0, Some(7), secs(3)).unwrap(), 7);
    assert_eq!(plan_size(0.0, None, None).unwrap(), DEFAULT_BACKLOG);
    assert!(plan_size(0.1, None, secs(1)).is_err());
}

#[test]
fn arguments_build_a_run_spec_with_config_defaults() {
    let cfg = Config::default();
    let a = parse(&["--rate", "200", "--duration", "2s", "--tier-mix", "1,1,1,1"]);
    let s = a.run_spec(&cfg).unwrap();
    assert_eq!((s.total, s.rate), (400, 200.0));
    assert_eq!(s.brokers, cfg.kafka.brokers);
    assert_eq!(s.format.framing, Framing::Confluent);
    assert_eq!(s.format.contract, SchemaVersion::V1);
    assert_eq!(
        s.reply_topic,
        format!("inference.replies.bench-{}", s.run_id)
    );
    assert!(s.reply_from_start);
    assert_eq!(s.run_id.len(), 8);

    let b = parse(&[
        "--backlog",
        "-n",
        "5000",
        "--brokers",
        "k:1",
        "--reply-topic",
        "shared",
        "--framing",
        "single-object",
        "--contract",
        "v2",
    ]);
    let s = b.run_spec(&cfg).unwrap();
    assert_eq!((s.total, s.rate), (5000, 0.0));
    assert_eq!(s.brokers, "k:1");
    assert_eq!(s.reply_topic, "shared");
    assert!(!s.reply_from_start, "a shared topic is read from its end");
    assert_eq!(s.format.framing, Framing::SingleObject);
    assert_eq!(s.format.contract, SchemaVersion::V2);
}

#[test]
fn json_prints_the_report_and_report_writes_it() {
    let a = parse(&["--json"]);
    assert!(a.output.json && a.output.report.is_none());
    let b = parse(&["--report", "/tmp/r.json"]);
    assert!(!b.output.json);
    assert_eq!(
        b.output.report.as_deref(),
        Some(std::path::Path::new("/tmp/r.json"))
    );
    assert!(
        Cli::try_parse_from(["bench", "--json", "r.json"]).is_err(),
        "--json takes no path: the file is --report's"
    );
}

#[test]
fn bad_arguments_are_rejected() {
    let cfg = Config::default();
    assert!(parse(&["--bad-fraction", "1.5"]).run_spec(&cfg).is_err());
    assert!(parse(&["--timeout-ms=-1"]).run_spec(&cfg).is_err());
    assert!(Cli::try_parse_from(["bench", "--tier-mix", "1,2"]).is_err());
    assert!(Cli::try_parse_from(["bench", "--framing", "xml"]).is_err());
    assert!(Cli::try_parse_from(["bench", "--contract", "v3"]).is_err());
    assert!(Cli::try_parse_from(["bench", "--duration", "soon"]).is_err());
}

#[test]
fn steps_make_one_run_per_rate_with_its_own_ids_and_reply_topic() {
    let cfg = Config::default();
    let a = parse(&["--steps", "500,1000,2000", "--step-secs", "3"]);
    assert_eq!((a.step_secs, a.max_p99_ms), (3, 50.0));
    let specs = a.step_specs(&cfg).unwrap();
    assert_eq!(
        specs.iter().map(|s| (s.rate, s.total)).collect::<Vec<_>>(),
        [(500.0, 1500), (1000.0, 3000), (2000.0, 6000)]
    );
    let ids: std::collections::BTreeSet<&str> = specs.iter().map(|s| s.run_id.as_str()).collect();
    assert_eq!(ids.len(), 3, "each step matches only its own replies");
    for s in &specs {
        assert_eq!(
            s.reply_topic,
            format!("inference.replies.bench-{}", s.run_id)
        );
        assert!(s.reply_from_start);
    }
    let shared = parse(&["--steps", "10,20", "--reply-topic", "shared"]);
    assert!(shared
        .step_specs(&cfg)
        .unwrap()
        .iter()
        .all(|s| s.reply_topic == "shared" && !s.reply_from_start));
    assert_eq!(
        parse(&["--steps", "100"]).step_specs(&cfg).unwrap()[0].total,
        1000
    );
}

#[test]
fn bad_steps_are_rejected() {
    let cfg = Config::default();
    let err = |args: &[&str]| parse(args).step_specs(&cfg).unwrap_err().to_string();
    assert!(err(&["--steps", "1000,500"]).contains("rise"));
    assert!(err(&["--steps", "500,500"]).contains("rise"));
    assert!(err(&["--steps", "0,500"]).contains("> 0"));
    assert!(err(&["--steps", "500", "--step-secs", "0"]).contains("--step-secs"));
    assert!(err(&["--steps", "500", "--max-p99-ms", "0"]).contains("--max-p99-ms"));
    assert!(err(&["--steps", "0.01"]).contains("no requests"));
    for other in [&["--backlog"][..], &["-n", "5"], &["-d", "5s"]] {
        let args: Vec<&str> = ["bench", "--steps", "500"]
            .iter()
            .chain(other)
            .copied()
            .collect();
        assert!(Cli::try_parse_from(args).is_err(), "--steps with {other:?}");
    }
}

#[test]
fn plot_takes_a_path() {
    let a = parse(&["--plot", "/tmp/x.svg"]);
    assert_eq!(a.plot.as_deref(), Some(std::path::Path::new("/tmp/x.svg")));
    assert_eq!(parse(&[]).plot, None);
}
