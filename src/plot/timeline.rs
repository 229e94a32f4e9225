//! The chart of a `kbatch bench` run second by second: end-to-end p50 and p99 per tier by send
//! time (log scale) above, requests sent and replies received per second below, on one time
//! axis; a step load's steps are marked where each starts.
//!
//! Invariant: one latency line per tier and percentile that has data, labelled `<tier> p50` /
//! `<tier> p99` in the legend, and exactly two rate lines (`sent/s`, `replies/s`); a point is
//! drawn at the middle of its one-second bucket.

use plotters::prelude::*;
use serde::Deserialize;

use super::{legend, render, Area, PlotError, FONT};
use crate::bench::{SecondLatency, Timeline, TimelinePoint};
use kbatch_core::tier::Tier;

/// The fields of a `kbatch bench` JSON report (a run or a step load) the chart uses.
#[derive(Debug, Clone, Deserialize)]
pub struct BenchJson {
    pub timeline: Timeline,
    /// A run's id (absent for a step load).
    pub run_id: Option<String>,
    /// A run's offered rate; 0 for a backlog.
    pub rate: Option<f64>,
    /// A run's request count.
    pub planned: Option<u64>,
    /// A step load's steps.
    pub steps: Option<Vec<StepRate>>,
    pub saturation_rps: Option<f64>,
    pub max_p99_ms: Option<f64>,
    pub step_secs: Option<u64>,
}

/// The offered rate of one step.
#[derive(Debug, Clone, Deserialize)]
pub struct StepRate {
    pub rate: f64,
}

impl BenchJson {
    /// The chart's title: what was run, and for a step load its saturation rate.
    pub fn title(&self) -> String {
        if let Some(steps) = &self.steps {
            let rates = steps
                .iter()
                .map(|s| s.rate.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let bound = self.max_p99_ms.unwrap_or(f64::NAN);
            let saturation = match self.saturation_rps {
                Some(r) => format!("saturation {r}/s at p99 ≤ {bound} ms"),
                None => format!("no step within p99 ≤ {bound} ms"),
            };
            return format!(
                "kbatch bench: steps of {rates}/s, {} s each; {saturation}",
                self.step_secs.unwrap_or(0)
            );
        }
        let load = match (self.rate, self.planned) {
            (Some(r), Some(n)) if r > 0.0 => format!("{n} requests at {r}/s"),
            (_, Some(n)) => format!("a backlog of {n} requests"),
            _ => "a run".to_owned(),
        };
        match &self.run_id {
            Some(id) => format!("kbatch bench {id}: {load}"),
            None => format!("kbatch bench: {load}"),
        }
    }
}

/// The line colour of a tier (p99 full, p50 lighter).
fn tier_color(t: Tier) -> RGBColor {
    match t {
        Tier::Critical => RGBColor(214, 39, 40),
        Tier::High => RGBColor(255, 127, 14),
        Tier::Normal => RGBColor(44, 160, 44),
        Tier::Low => RGBColor(31, 119, 180),
    }
}

const SENT: RGBColor = RGBColor(90, 90, 90);
const REPLIES: RGBColor = RGBColor(148, 103, 189);
const MARK: RGBColor = RGBColor(160, 160, 160);

/// A rate line: name, colour, the count per point.
type RateSeries = (&'static str, RGBColor, fn(&TimelinePoint) -> u64);

/// The two percentiles drawn: name, value, stroke width, opacity.
type Percentile = (&'static str, fn(&SecondLatency) -> u64, u32, f64);
const PERCENTILES: [Percentile; 2] = [
    ("p50", |l| l.p50_us, 1, 0.55),
    ("p99", |l| l.p99_us, 2, 1.0),
];

/// Powers of ten around `[min, max]` (ms), at least one decade apart.
fn log_range(min: f64, max: f64) -> (f64, f64) {
    let lo = 10f64.powf(min.max(1e-3).log10().floor());
    let hi = 10f64.powf(max.max(lo).log10().ceil());
    if hi > lo {
        (lo, hi)
    } else {
        (lo, lo * 10.0)
    }
}

/// The chart of `report` as an SVG document.
pub fn timeline_svg(report: &BenchJson) -> Result<String, PlotError> {
    let t = &report.timeline;
    if t.points.is_empty() {
        return Err(PlotError::NoData(
            "the report's timeline is empty (nothing was sent)".into(),
        ));
    }
    let title = report.title();
    render((1200, 860), |root| {
        root.fill(&WHITE)?;
        let root = root.titled(&title, (FONT, 24))?;
        let (top, bottom) = root.split_vertically(500);
        latency_panel(&top, t)?;
        rate_panel(&bottom, t)?;
        Ok(())
    })
}

fn latency_panel(area: &Area<'_>, t: &Timeline) -> Result<(), PlotError> {
    let x_end = t.end_s().max(1.0);
    let half = t.bucket_s / 2.0;
    let ms = |us: u64| (us.max(1)) as f64 / 1000.0;
    let values = t.points.iter().flat_map(|p| {
        Tier::ALL
            .into_iter()
            .filter_map(|tier| *p.latency.get(tier))
            .flat_map(|l| [ms(l.p50_us), ms(l.p99_us)])
    });
    let (min, max) = values.fold((f64::INFINITY, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if min.is_finite() {
        log_range(min, max)
    } else {
        (1.0, 10.0)
    };
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .caption(
            format!(
                "end-to-end latency by {} second (ms, log scale)",
                t.latency_by.as_str()
            ),
            (FONT, 19),
        )
        .build_cartesian_2d(0f64..x_end, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("seconds since the first send")
        .y_desc("ms")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|v| format!("{v}"))
        .label_style((FONT, 15))
        .draw()?;
    for tier in t.tiers() {
        let color = tier_color(tier);
        for (name, value, width, opacity) in PERCENTILES {
            let style = color.mix(opacity).stroke_width(width);
            let points = t.points.iter().filter_map(|p| {
                p.latency
                    .get(tier)
                    .map(|l| (p.t_s + half, ms(value(&l)).clamp(lo, hi)))
            });
            chart
                .draw_series(LineSeries::new(points, style))?
                .label(format!("{} {name}", tier.as_str()))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        }
    }
    for m in &t.marks {
        chart.draw_series(LineSeries::new([(m.t_s, lo), (m.t_s, hi)], MARK))?;
        chart.draw_series(std::iter::once(Text::new(
            m.label.clone(),
            (m.t_s, hi),
            (FONT, 15).into_font().color(&BLACK),
        )))?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    Ok(())
}

fn rate_panel(area: &Area<'_>, t: &Timeline) -> Result<(), PlotError> {
    let x_end = t.end_s().max(1.0);
    let per_s = |n: u64| n as f64 / t.bucket_s;
    let top = t
        .points
        .iter()
        .map(|p| per_s(p.sent.max(p.replies)))
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .caption("throughput (per second)", (FONT, 19))
        .build_cartesian_2d(0f64..x_end, 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the first send")
        .y_desc("per second")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 15))
        .draw()?;
    let half = t.bucket_s / 2.0;
    let series: [RateSeries; 2] = [
        ("sent/s", SENT, |p| p.sent),
        ("replies/s", REPLIES, |p| p.replies),
    ];
    for (name, color, value) in series {
        let style = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(
                t.points.iter().map(|p| (p.t_s + half, per_s(value(p)))),
                style,
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
    }
    for m in &t.marks {
        chart.draw_series(LineSeries::new([(m.t_s, 0.0), (m.t_s, top)], MARK))?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    Ok(())
}

#[cfg(test)]
#[path = "timeline_tests.rs"]
mod tests;
