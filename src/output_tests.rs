//! Unit tests of `output`.

use clap::Parser;

use super::*;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    output: ReportArgs,
}

#[test]
fn json_is_a_switch_and_report_takes_a_path() {
    let a = Cli::try_parse_from(["x", "--json", "--report", "r.json"])
        .unwrap()
        .output;
    assert!(a.json);
    assert_eq!(a.report, Some(PathBuf::from("r.json")));
    let none = Cli::try_parse_from(["x"]).unwrap().output;
    assert!(!none.json && none.report.is_none());
    assert!(
        Cli::try_parse_from(["x", "--report"]).is_err(),
        "--report needs a path"
    );
}

#[test]
fn report_file_holds_the_json_document() {
    #[derive(Serialize)]
    struct R {
        answered: u64,
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.json");
    let args = ReportArgs {
        json: false,
        report: Some(path.clone()),
    };
    args.emit(&Table::new(), &R { answered: 7 }).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(v["answered"], 7);
}
