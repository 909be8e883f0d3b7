//! Quick start: an LSTM learns to continue a noisy sine wave, one step ahead.
//!
//! `cargo run --release --example sine [-- --seeds N]` finishes in seconds. It makes 1 000
//! points of sin(2π t / 50) plus uniform noise of width 0.1, cuts them into windows of 24
//! steps whose target is the next value, trains an LSTM(16) → dense(1) on the first 80 % of the
//! windows (the last tenth of those for validation), and scores one-step forecasts of the last
//! 20 % against the naive forecast (next = last). The noise alone gives an MSE of about 0.00083.

mod common;

use ndarray::{Array2, s};
use plotters::style::RGBColor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recurrent::data::{Pipeline, WindowSpec, windows};
use recurrent::forecast::{Baseline, Forecaster, Metrics};
use recurrent::train::progress_printer;
use recurrent::{Adam, Mse, Sequential, Trainer, Validation};

const LOOKBACK: usize = 24;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let series: Vec<f64> = (0..1000)
        .map(|t| {
            (std::f64::consts::TAU * t as f64 / 50.0).sin() + 0.1 * (rng.random::<f64>() - 0.5)
        })
        .collect();
    let values = Array2::from_shape_vec((series.len(), 1), series.clone())?;
    let test_start = 800;

    // No transform is needed for a series in [−1.05, 1.05]: an empty pipeline.
    let pipeline = Pipeline::fit(&[], values.slice(s![..test_start, ..]))?;
    let spec = WindowSpec::new(LOOKBACK, 1);
    let train = windows::<f32>(values.view(), &spec, 0..test_start)?;

    let seeds = common::seeds_from_args();
    let mut results = Vec::new();
    for seed in 0..seeds as u64 {
        let mut model = Sequential::<f32>::builder(1)
            .lstm(16)
            .dense(1)
            .build(seed)?;
        if seed == 0 {
            println!("{}", model.summary());
        }
        let mut trainer = Trainer::new(Mse, Adam::new(0.01)?)
            .epochs(15)
            .batch_size(32)
            .seed(seed)
            .validation(Validation::LastFraction(0.1))
            .callback(progress_printer(5));
        trainer.fit(&mut model, train.x.view(), train.y.view())?;
        let origins: Vec<usize> = (test_start - 1..series.len() - 1).collect();
        let forecast =
            Forecaster::new(&model, &pipeline, &spec)?.one_step(values.view(), &origins)?;
        let forecast = forecast.column(0).to_vec();
        results.push((
            Metrics::compute(&series[test_start..], &forecast)?,
            forecast,
        ));
    }
    let naive = Baseline::Naive.one_step(&series, test_start)?;
    let naive = Metrics::compute(&series[test_start..], &naive)?;

    let lines = [
        common::Line {
            label: "series (history)",
            points: (700..=test_start).map(|t| (t as f64, series[t])).collect(),
            color: RGBColor(120, 120, 120),
        },
        common::Line {
            label: "truth",
            points: (test_start..series.len())
                .map(|t| (t as f64, series[t]))
                .collect(),
            color: RGBColor(20, 20, 20),
        },
        common::Line {
            label: "LSTM, one step ahead",
            points: results[0]
                .1
                .iter()
                .enumerate()
                .map(|(k, &v)| ((test_start + k) as f64, v))
                .collect(),
            color: RGBColor(200, 60, 30),
        },
    ];
    let chart = common::plot(
        "sine",
        "Noisy sine: one-step forecasts",
        "t",
        "value",
        &lines,
    )?;
    println!("chart: {}", chart.display());

    let med = |f: fn(&Metrics) -> f64| {
        common::median(&results.iter().map(|(m, _)| f(m)).collect::<Vec<_>>())
    };
    println!();
    println!(
        "{}",
        common::summary_line(
            "sine",
            "lstm16",
            (seeds > 1).then_some(seeds),
            false,
            &[
                ("MSE", med(|m| m.mse)),
                ("RMSE", med(|m| m.rmse)),
                ("MAE", med(|m| m.mae))
            ]
        )
    );
    println!(
        "{}",
        common::summary_line(
            "sine",
            "naive",
            None,
            false,
            &[("MSE", naive.mse), ("RMSE", naive.rmse), ("MAE", naive.mae)]
        )
    );
    Ok(())
}
