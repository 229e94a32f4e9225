//! The chart of raw ONNX Runtime throughput per batch size (`kbatch bench-model` reports), with
//! what a drain through Kafka achieved as a horizontal line: how far the serving pipeline is
//! from the model's ceiling, and at which batch sizes.
//!
//! Invariant: one line per raw report, labelled with its thread count, through its points in
//! batch-size order on a log2 axis; the drain line, when given, spans the whole axis at its
//! `throughput.between_replies` and is labelled "drain through Kafka".

use std::path::Path;

use plotters::prelude::*;
use serde::Deserialize;

use super::{legend, render, PlotError, FONT};

/// The fields of a `kbatch bench-model` JSON report the chart uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RawModelReport {
    /// The model file.
    #[serde(default)]
    pub model: Option<String>,
    /// `cpu` or `cuda`.
    #[serde(default)]
    pub device: Option<String>,
    pub intra_op_threads: usize,
    pub points: Vec<RawPoint>,
}

/// One batch size of a raw report.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct RawPoint {
    pub batch: u64,
    pub items_per_s: f64,
}

impl RawModelReport {
    /// The legend label: thread count, and the device when it is not the CPU.
    pub fn label(&self) -> String {
        let n = self.intra_op_threads;
        let threads = if n == 1 {
            "1 thread".to_owned()
        } else {
            format!("{n} threads")
        };
        match self.device.as_deref() {
            Some(d) if d != "cpu" => format!("raw ONNX Runtime, {threads} ({d})"),
            _ => format!("raw ONNX Runtime, {threads}"),
        }
    }
}

/// The fields of a `kbatch bench` JSON report (of a drain) the chart uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DrainReport {
    pub throughput: Option<DrainThroughput>,
}

/// `throughput` of a `kbatch bench` report.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct DrainThroughput {
    pub between_replies: Option<f64>,
}

impl DrainReport {
    /// The drain's rate (requests/s, first to last reply); an error naming `path` when the
    /// report has none (a step load, or a run with fewer than two replies).
    pub fn between_replies(&self, path: &Path) -> Result<f64, PlotError> {
        self.throughput
            .and_then(|t| t.between_replies)
            .ok_or_else(|| {
                PlotError::NoData(format!(
                    "{} has no throughput.between_replies (a `kbatch bench --backlog` report \
                     with replies is needed)",
                    path.display()
                ))
            })
    }
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
];
const DRAIN: RGBColor = RGBColor(214, 39, 40);

/// The chart of `raw` (one line each) and `drain` (req/s) as an SVG document.
pub fn batch_sizes_svg(raw: &[RawModelReport], drain: Option<f64>) -> Result<String, PlotError> {
    let batches = raw.iter().flat_map(|r| r.points.iter().map(|p| p.batch));
    let (min, max) = batches
        .filter(|&b| b > 0)
        .fold((u64::MAX, 0), |(lo, hi), b| (lo.min(b), hi.max(b)));
    if max == 0 {
        return Err(PlotError::NoData(
            "the raw reports have no batch sizes".into(),
        ));
    }
    // Half a step of the log2 axis beyond the outer points.
    let (x_lo, x_hi) = (min as f64 / 2f64.sqrt(), max as f64 * 2f64.sqrt());
    let top = raw
        .iter()
        .flat_map(|r| r.points.iter().map(|p| p.items_per_s))
        .chain(drain)
        .fold(1.0, f64::max)
        * 1.15;
    let model = raw
        .iter()
        .find_map(|r| r.model.as_deref())
        .and_then(|m| Path::new(m).file_name())
        .map(|m| format!(" ({})", m.to_string_lossy()))
        .unwrap_or_default();
    let title = format!("items/s per batch size{model}");
    render((1000, 640), |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .margin(16)
            .caption(&title, (FONT, 24))
            .x_label_area_size(44)
            .y_label_area_size(80)
            .build_cartesian_2d((x_lo..x_hi).log_scale().base(2.0), 0f64..top)?;
        chart
            .configure_mesh()
            .x_desc("batch size (log2)")
            .y_desc("items/s")
            .x_label_formatter(&|b| format!("{}", b.round()))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style((FONT, 15))
            .draw()?;
        for (i, r) in raw.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let mut points: Vec<(f64, f64)> = r
                .points
                .iter()
                .filter(|p| p.batch > 0)
                .map(|p| (p.batch as f64, p.items_per_s))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let style = color.stroke_width(2);
            chart
                .draw_series(LineSeries::new(points.iter().copied(), style))?
                .label(r.label())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        if let Some(rate) = drain {
            let style = DRAIN.stroke_width(2);
            chart
                .draw_series(LineSeries::new([(x_lo, rate), (x_hi, rate)], style))?
                .label(format!("drain through Kafka ({rate:.0} req/s)"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        Ok(())
    })
}

#[cfg(test)]
#[path = "batch_sizes_tests.rs"]
mod tests;
