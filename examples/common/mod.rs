//! Shared by the examples: command-line seeds, summary lines and charts.
#![allow(dead_code)]

use std::path::PathBuf;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

/// The number of seeds asked for with `-- --seeds N` (1 without it).
pub fn seeds_from_args() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|w| w[0] == "--seeds")
        .and_then(|w| w[1].parse().ok())
        .filter(|&n: &usize| n >= 1)
        .unwrap_or(1)
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One machine-readable summary line: `example: model=NAME[ seeds=N][ source=published] K v …`.
pub fn summary_line(
    example: &str,
    model: &str,
    seeds: Option<usize>,
    published: bool,
    metrics: &[(&str, f64)],
) -> String {
    let mut line = format!("{example}: model={model}");
    if let Some(n) = seeds {
        line.push_str(&format!(" seeds={n}"));
    }
    if published {
        line.push_str(" source=published");
    }
    for (name, value) in metrics {
        line.push_str(&format!(" {name} {}", number(*value)));
    }
    line
}

/// A bare number with about five significant digits (`5.8123`, `0.0011893`, `920.73`).
pub fn number(value: f64) -> String {
    let magnitude = value.abs();
    let decimals = if magnitude >= 100.0 {
        2
    } else if magnitude >= 1.0 || magnitude == 0.0 {
        4
    } else {
        (4.0 - magnitude.log10().floor()).min(12.0) as usize
    };
    format!("{value:.decimals$}")
}

/// One line of a chart: its label, its (x, y) points, and its colour.
pub struct Line<'a> {
    /// Legend label.
    pub label: &'a str,
    /// Points.
    pub points: Vec<(f64, f64)>,
    /// Colour.
    pub color: RGBColor,
}

fn register_bundled_font() {
    // DejaVu Sans (licence beside it in examples/fonts/), so charts need no system fonts.
    static FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
    let _ = register_font("sans-serif", FontStyle::Normal, FONT);
}

/// Draws `lines` into `target/plots/<name>.png` and returns the path.
pub fn plot(
    name: &str,
    title: &str,
    x_label: &str,
    y_label: &str,
    lines: &[Line<'_>],
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    register_bundled_font();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("plots");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.png"));
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for line in lines {
        for &(x, y) in &line.points {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    let pad = (y1 - y0).abs().max(1e-9) * 0.05;
    {
        let root = BitMapBackend::new(&path, (1000, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 24))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style(("sans-serif", 14))
            .draw()?;
        for line in lines {
            let color = line.color;
            chart
                .draw_series(LineSeries::new(
                    line.points.iter().copied(),
                    color.stroke_width(2),
                ))?
                .label(line.label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
        root.present()?;
    }
    Ok(path)
}
