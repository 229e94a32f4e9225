//! SVG charts of the benchmarks: a `kbatch bench` run second by second (`kbatch bench --plot`,
//! or `kbatch plot timeline` from its JSON report) and raw ONNX Runtime items/s per batch size
//! from `kbatch bench-model` reports beside a drain's rate (`kbatch plot batch-sizes`).
//!
//! Invariant: every chart is drawn from a report's JSON form alone (a `--plot` chart is the one
//! `kbatch plot` redraws from `--report`), by pure functions from data to SVG text; only
//! [`write_svg`] and the readers touch files. Text goes into the SVG as `<text>` elements, set in
//! the viewer's sans-serif font: nothing here reads a font file (the `plotters` entry in
//! Cargo.toml says how).

mod batch_sizes;
mod timeline;

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use plotters::coord::Shift;
use plotters::prelude::{DrawingArea, DrawingAreaErrorKind, IntoDrawingArea, SVGBackend};
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

pub use batch_sizes::{batch_sizes_svg, DrainReport, RawModelReport, RawPoint};
pub use timeline::{timeline_svg, BenchJson};

/// Errors of drawing and of reading the reports drawn.
#[derive(Debug, Error)]
pub enum PlotError {
    #[error("drawing the chart: {0}")]
    Draw(#[from] DrawingAreaErrorKind<std::io::Error>),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not the report expected ({what}): {source}")]
    Json {
        path: PathBuf,
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("cannot turn the report into JSON: {0}")]
    Serialize(serde_json::Error),
    #[error("nothing to draw: {0}")]
    NoData(String),
}

/// `kbatch plot`: draws a chart from JSON reports.
#[derive(Debug, Clone, Args)]
pub struct PlotArgs {
    #[command(subcommand)]
    pub chart: Chart,
}

/// The charts `kbatch plot` draws.
#[derive(Debug, Clone, Subcommand)]
pub enum Chart {
    /// Raw ONNX Runtime items/s per batch size (log2 axis), one line per `kbatch bench-model
    /// --json` report (labelled with its thread count), and a drain's rate as a horizontal line.
    BatchSizes {
        /// A `kbatch bench-model` JSON report (repeatable).
        #[arg(long = "raw", value_name = "JSON", required = true)]
        raw: Vec<PathBuf>,
        /// A `kbatch bench --backlog` JSON report: its `throughput.between_replies` is drawn as
        /// "drain through Kafka".
        #[arg(long, value_name = "JSON")]
        drain: Option<PathBuf>,
        /// The SVG file to write.
        #[arg(long, short, value_name = "PATH.svg")]
        output: PathBuf,
    },
    /// A `kbatch bench` run (or step load) second by second, from its JSON report (`--report`):
    /// the chart `kbatch bench --plot` draws.
    Timeline {
        /// The `kbatch bench` JSON report.
        #[arg(long, value_name = "JSON")]
        report: PathBuf,
        /// The SVG file to write.
        #[arg(long, short, value_name = "PATH.svg")]
        output: PathBuf,
    },
}

/// `kbatch plot`: reads the reports, draws, writes the SVG and says where.
pub fn run(args: &PlotArgs) -> Result<(), PlotError> {
    let (svg, output) = match &args.chart {
        Chart::BatchSizes { raw, drain, output } => {
            let raws = raw
                .iter()
                .map(|p| read_json::<RawModelReport>(p, "a kbatch bench-model JSON report"))
                .collect::<Result<Vec<_>, _>>()?;
            let drain = match drain {
                Some(p) => Some(
                    read_json::<DrainReport>(p, "a kbatch bench JSON report")?
                        .between_replies(p)?,
                ),
                None => None,
            };
            (batch_sizes_svg(&raws, drain)?, output)
        }
        Chart::Timeline { report, output } => {
            let bench = read_json::<BenchJson>(report, "a kbatch bench JSON report")?;
            (timeline_svg(&bench)?, output)
        }
    };
    write_svg(output, &svg)?;
    eprintln!("wrote {}", output.display());
    Ok(())
}

/// `kbatch bench --plot`: draws `report` (a `kbatch bench` report) from its JSON form and writes
/// it to `path`.
pub fn write_bench_chart<R: Serialize + ?Sized>(report: &R, path: &Path) -> Result<(), PlotError> {
    let json = serde_json::to_value(report).map_err(PlotError::Serialize)?;
    let bench: BenchJson = serde_json::from_value(json).map_err(|source| PlotError::Json {
        path: path.to_owned(),
        what: "a kbatch bench report",
        source,
    })?;
    write_svg(path, &timeline_svg(&bench)?)
}

/// Writes `svg` to `path`.
pub fn write_svg(path: &Path, svg: &str) -> Result<(), PlotError> {
    std::fs::write(path, svg).map_err(|source| PlotError::Write {
        path: path.to_owned(),
        source,
    })
}

fn read_json<T: DeserializeOwned>(path: &Path, what: &'static str) -> Result<T, PlotError> {
    let text = std::fs::read_to_string(path).map_err(|source| PlotError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| PlotError::Json {
        path: path.to_owned(),
        what,
        source,
    })
}

/// The font of every text: a generic CSS family, which any SVG viewer resolves to a font of its
/// own.
const FONT: &str = "sans-serif";

/// A part of an SVG canvas.
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Draws the legend of `chart`'s labelled series at `position`, in the charts' one style.
fn legend<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut plotters::chart::ChartContext<'a, SVGBackend<'a>, CT>,
    position: plotters::chart::SeriesLabelPosition,
) -> Result<(), PlotError> {
    use plotters::style::{Color, BLACK, WHITE};
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 15))
        .draw()?;
    Ok(())
}

/// Draws on a `size` canvas with `draw` and returns the SVG document.
fn render(
    size: (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> Result<(), PlotError>,
) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw(&root)?;
        root.present()?;
    }
    Ok(svg)
}
