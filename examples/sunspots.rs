//! Sunspots: a GRU on the square root of yearly sunspot activity, one year ahead.
//!
//! `cargo run --release --example sunspots [-- --seeds N] [-- --search]`
//!
//! Data: yearly mean sunspot activity (examples/data/sunspots.csv, quoted header). Protocol
//! (data README): years 1700–1987 only (288 values); train on 1700–1920 (221 values), then
//! forecast each of the 67 years 1921–1987 one step ahead from the true values before it.
//!
//! Model: √x, standardized on the fitted years; a window of the last 12 years; GRU(16) →
//! dense(1), trained with Adam (lr 0.003, batch 16) on the MSE, with early stopping (patience
//! 10, best weights restored) on the last 20 training years.
//!
//! Every choice was made on the validation part, the last 20 training years (1901–1920): the
//! model is fitted on 1700–1900 (transforms fitted on those years too), stopped early on the
//! validation windows, and scored by the MSE of its one-step forecasts of 1901–1920. The final
//! model is that same fit — it is **not** refitted on all 221 years: early stopping keeps the
//! last 20 training years as its validation part. `-- --search` reruns the search and prints its
//! table (validation MSE, median of seeds 0–4, with the median epoch early stopping kept in
//! brackets); [`CHOSEN`] is its best cell. The test years are used only to report.
//!
//! The search (persistence validation MSE 383.4; Adam, batch 16, at most 1 000 epochs):
//!
//! | transform | skip | lookback | hidden | lr | patience 10 | patience 30 |
//! | --- | --- | --- | --- | --- | --- | --- |
//! | std | no | 9 | 8 | 0.003 | 171.7 (17) | 166.7 (17) |
//! | std | no | 9 | 8 | 0.01 | 173.5 (6) | 173.2 (7) |
//! | std | no | 9 | 16 | 0.003 | 165.8 (12) | 165.8 (12) |
//! | std | no | 9 | 16 | 0.01 | 177.9 (3) | 177.9 (3) |
//! | std | no | 12 | 8 | 0.003 | 170.9 (14) | 170.9 (14) |
//! | std | no | 12 | 8 | 0.01 | 172.5 (5) | 172.5 (5) |
//! | std | no | 12 | 16 | 0.003 | 161.3 (10) | 161.3 (10) |
//! | std | no | 12 | 16 | 0.01 | 178.7 (4) | 173.4 (5) |
//! | std | yes | 9 | 8 | 0.003 | 185.6 (18) | 181.6 (22) |
//! | std | yes | 9 | 8 | 0.01 | 180.5 (6) | 180.5 (6) |
//! | std | yes | 9 | 16 | 0.003 | 206.0 (16) | 206.0 (16) |
//! | std | yes | 9 | 16 | 0.01 | 203.2 (5) | 198.8 (5) |
//! | std | yes | 12 | 8 | 0.003 | 213.9 (22) | 213.9 (22) |
//! | std | yes | 12 | 8 | 0.01 | 213.3 (8) | 209.9 (10) |
//! | std | yes | 12 | 16 | 0.003 | 154.6 (10) | 154.6 (10) |
//! | std | yes | 12 | 16 | 0.01 | 157.3 (3) | 157.3 (3) |
//! | sqrt, std | no | 9 | 8 | 0.003 | 161.3 (18) | 161.3 (18) |
//! | sqrt, std | no | 9 | 8 | 0.01 | 172.9 (8) | 172.9 (40) |
//! | sqrt, std | no | 9 | 16 | 0.003 | 153.4 (13) | 155.6 (13) |
//! | sqrt, std | no | 9 | 16 | 0.01 | 174.2 (4) | 169.0 (5) |
//! | sqrt, std | no | 12 | 8 | 0.003 | 147.1 (21) | 147.1 (21) |
//! | sqrt, std | no | 12 | 8 | 0.01 | 160.2 (6) | 160.3 (8) |
//! | sqrt, std | no | 12 | 16 | 0.003 | **138.5** (11) | 138.5 (11) |
//! | sqrt, std | no | 12 | 16 | 0.01 | 174.1 (5) | 174.1 (6) |
//! | sqrt, std | yes | 9 | 8 | 0.003 | 164.7 (25) | 164.7 (25) |
//! | sqrt, std | yes | 9 | 8 | 0.01 | 164.3 (6) | 164.3 (8) |
//! | sqrt, std | yes | 9 | 16 | 0.003 | 163.2 (17) | 163.2 (17) |
//! | sqrt, std | yes | 9 | 16 | 0.01 | 176.2 (6) | 176.2 (10) |
//! | sqrt, std | yes | 12 | 8 | 0.003 | 200.3 (23) | 200.3 (23) |
//! | sqrt, std | yes | 12 | 8 | 0.01 | 199.8 (14) | 199.8 (14) |
//! | sqrt, std | yes | 12 | 16 | 0.003 | 154.8 (7) | 154.8 (7) |
//! | sqrt, std | yes | 12 | 16 | 0.01 | 156.8 (4) | 156.8 (4) |
//!
//! "skip" is the data README's linear skip: a `parallel` of a GRU branch and a flatten branch
//! (the window's lags), concatenated into one dense(1), so ŷ = w·h_T + v·lags + b. The square
//! root helps throughout; the skip does not help on these 20 quiet validation years (peaks near
//! 100), although the test years hold the three highest cycles of the record, where a linear
//! part should extrapolate better. The choice stays the validation's.
//!
//! How the test part was touched, honestly: while the example was written, the test part was
//! scored three times before the final choice — a draft recipe (√, skip, lookback 9, GRU(8),
//! lr 0.005, 150 epochs, refitted on all 221 years: median MSE ≈ 309), the placeholder
//! (√, skip, lookback 9, GRU(8), lr 0.01, patience 30: median 296), and the first protocol's
//! choice: fixed epochs chosen on the validation years and a refit on all 221 years selected
//! √, GRU(16), lookback 12, lr 0.001, 20 epochs, whose test median MSE was 537 (seeds gave
//! 310–552: 20 epochs is too few to settle). That protocol was dropped for the data README's
//! early stopping on the last 20 training years, searched above, whose best cell is reported
//! as is (median test MSE ≈ 330: well under the plain GRU's 410, above AR(9)'s 305).

mod common;

use ndarray::{Array2, ArrayView2, s};
use plotters::style::RGBColor;
use recurrent::data::{CsvOptions, Pipeline, Series, Transform, WindowSpec, windows};
use recurrent::forecast::{Baseline, Forecaster, Metrics};
use recurrent::{Adam, EarlyStopping, Mse, Sequential, SequentialBuilder, Trainer};

/// The first year of the file.
const FIRST_YEAR: usize = 1700;
/// Years 1700 … 1987.
const USED: usize = 288;
/// Years 1700 … 1920.
const TRAIN: usize = 221;
/// The last 20 training years, 1901 … 1920.
const VALIDATION: usize = 20;

/// At most this many epochs; early stopping ends training well before.
const MAX_EPOCHS: usize = 1000;

/// One candidate recipe.
#[derive(Debug, Clone, Copy)]
struct Recipe {
    /// Square root before standardizing.
    sqrt: bool,
    /// A linear skip from the lags beside the GRU.
    skip: bool,
    /// Years per input window (and lags in the skip).
    lookback: usize,
    /// GRU units.
    hidden: usize,
    /// Adam's learning rate.
    lr: f64,
    /// Early stopping's patience, in epochs.
    patience: usize,
}

/// The recipe chosen by `--search` on the validation part.
const CHOSEN: Recipe = Recipe {
    sqrt: true,
    skip: false,
    lookback: 12,
    hidden: 16,
    lr: 0.003,
    patience: 10,
};

fn build(recipe: Recipe, seed: u64) -> Result<Sequential, recurrent::Error> {
    if recipe.skip {
        // The GRU's last state and the flattened window side by side, then one linear layer:
        // ŷ = w·h_T + v·(x_{t−L+1} … x_t) + b.
        Sequential::builder(1)
            .parallel(vec![
                SequentialBuilder::branch().gru(recipe.hidden),
                SequentialBuilder::branch().flatten(),
            ])
            .dense(1)
            .build_for_steps(seed, Some(recipe.lookback))
    } else {
        Sequential::builder(1)
            .gru(recipe.hidden)
            .dense(1)
            .build(seed)
    }
}

/// One fitted model's scores.
struct Run {
    /// One-step forecasts of the validation years.
    validation: Metrics,
    /// One-step forecasts of the test years.
    test: Metrics,
    /// The test forecasts.
    forecast: Vec<f64>,
    /// The epoch whose weights were kept (from 1).
    epoch: usize,
}

/// One-step forecasts of rows `from..to`, each from the true values before it.
fn one_step(
    model: &Sequential,
    pipeline: &Pipeline,
    spec: &WindowSpec,
    values: ArrayView2<'_, f64>,
    from: usize,
    to: usize,
) -> Result<(Metrics, Vec<f64>), recurrent::Error> {
    let origins: Vec<usize> = (from - 1..to - 1).collect();
    let forecast = Forecaster::new(model, pipeline, spec)?
        .one_step(values, &origins)?
        .column(0)
        .to_vec();
    let actual = values.slice(s![from..to, 0]).to_vec();
    Ok((Metrics::compute(&actual, &forecast)?, forecast))
}

/// Fits `recipe` on the years before the validation part, stopping early on the validation
/// part, and scores one-step forecasts of the validation and the test years.
fn fit(values: ArrayView2<'_, f64>, recipe: Recipe, seed: u64) -> Result<Run, recurrent::Error> {
    let fit_end = TRAIN - VALIDATION;
    let transforms: &[Transform] = if recipe.sqrt {
        &[Transform::Sqrt, Transform::Standardize]
    } else {
        &[Transform::Standardize]
    };
    // Transforms fitted on the rows the model is fitted on, never later ones.
    let pipeline = Pipeline::fit(transforms, values.slice(s![..fit_end, ..]))?;
    let table = pipeline.transform(values)?;
    let spec = WindowSpec::new(recipe.lookback, 1);
    let train = windows::<f32>(table.view(), &spec, 0..fit_end)?;
    let val = windows::<f32>(table.view(), &spec, fit_end..TRAIN)?;

    let mut model = build(recipe, seed)?;
    let mut trainer = Trainer::new(Mse, Adam::new(recipe.lr)?)
        .epochs(MAX_EPOCHS)
        .batch_size(16)
        .seed(seed)
        .early_stopping(EarlyStopping::new(recipe.patience));
    let history = trainer.fit_with_validation(
        &mut model,
        train.x.view(),
        train.y.view(),
        val.x.view(),
        val.y.view(),
    )?;
    let (validation, _) = one_step(&model, &pipeline, &spec, values, fit_end, TRAIN)?;
    let (test, forecast) = one_step(&model, &pipeline, &spec, values, TRAIN, USED)?;
    Ok(Run {
        validation,
        test,
        forecast,
        epoch: history.best_epoch.map_or(0, |e| e + 1),
    })
}

fn search(values: ArrayView2<'_, f64>) -> Result<(), recurrent::Error> {
    let series = values.column(0).to_vec();
    let naive = Baseline::Naive.one_step(&series[..TRAIN], TRAIN - VALIDATION)?;
    let naive = Metrics::compute(&series[TRAIN - VALIDATION..TRAIN], &naive)?;
    println!("validation part: persistence MSE {:.1}", naive.mse);
    println!("| transform | skip | lookback | hidden | lr | patience 10 | patience 30 |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for sqrt in [false, true] {
        for skip in [false, true] {
            for lookback in [9, 12] {
                for hidden in [8, 16] {
                    for lr in [0.003, 0.01] {
                        let mut cells = Vec::new();
                        for patience in [10, 30] {
                            let recipe = Recipe {
                                sqrt,
                                skip,
                                lookback,
                                hidden,
                                lr,
                                patience,
                            };
                            let runs: Vec<Run> = (0..5)
                                .map(|seed| fit(values, recipe, seed))
                                .collect::<Result<_, _>>()?;
                            let mse: Vec<f64> = runs.iter().map(|r| r.validation.mse).collect();
                            let epochs: Vec<f64> = runs.iter().map(|r| r.epoch as f64).collect();
                            cells.push(format!(
                                "{:.1} ({:.0})",
                                common::median(&mse),
                                common::median(&epochs)
                            ));
                        }
                        println!(
                            "| {} | {} | {lookback} | {hidden} | {lr} | {} |",
                            if sqrt { "sqrt, std" } else { "std" },
                            if skip { "yes" } else { "no" },
                            cells.join(" | "),
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/sunspots.csv");
    let series = Series::from_csv(path, &CsvOptions::new().columns(&["SUNACTIVITY"]))?;
    let values: Array2<f64> = series.values().slice(s![..USED, ..]).to_owned();
    if std::env::args().any(|a| a == "--search") {
        search(values.view())?;
        return Ok(());
    }
    let seeds = common::seeds_from_args();
    println!("recipe: {CHOSEN:?}");
    let mut runs = Vec::new();
    for seed in 0..seeds as u64 {
        let started = std::time::Instant::now();
        let run = fit(values.view(), CHOSEN, seed)?;
        println!(
            "seed {seed}: best epoch {}, validation MSE {:.2}, test MSE {:.2} RMSE {:.2} MAE {:.2} ({:.1} s)",
            run.epoch,
            run.validation.mse,
            run.test.mse,
            run.test.rmse,
            run.test.mae,
            started.elapsed().as_secs_f64()
        );
        runs.push(run);
    }

    let sunspots = values.column(0).to_vec();
    let actual = &sunspots[TRAIN..];
    let naive = Baseline::Naive.one_step(&sunspots, TRAIN)?;
    let naive_m = Metrics::compute(actual, &naive)?;

    // Chart: history from 1880, the test truth, the model's and the persistence forecasts.
    let year = |i: usize| (FIRST_YEAR + i) as f64;
    let lines = [
        common::Line {
            label: "sunspots (history)",
            points: (1880 - FIRST_YEAR..=TRAIN)
                .map(|i| (year(i), sunspots[i]))
                .collect(),
            color: RGBColor(120, 120, 120),
        },
        common::Line {
            label: "actual (test)",
            points: (TRAIN..USED).map(|i| (year(i), sunspots[i])).collect(),
            color: RGBColor(20, 20, 20),
        },
        common::Line {
            label: "GRU, one year ahead (seed 0)",
            points: runs[0]
                .forecast
                .iter()
                .enumerate()
                .map(|(k, &v)| (year(TRAIN + k), v))
                .collect(),
            color: RGBColor(200, 60, 30),
        },
        common::Line {
            label: "persistence",
            points: naive
                .iter()
                .enumerate()
                .map(|(k, &v)| (year(TRAIN + k), v))
                .collect(),
            color: RGBColor(60, 120, 200),
        },
    ];
    let chart = common::plot(
        "sunspots",
        "Yearly sunspot activity: one year ahead",
        "year",
        "sunspot activity",
        &lines,
    )?;
    println!("chart: {}", chart.display());

    let med = |f: fn(&Metrics) -> f64| {
        common::median(&runs.iter().map(|r| f(&r.test)).collect::<Vec<_>>())
    };
    println!();
    println!(
        "{}",
        common::summary_line(
            "sunspots",
            "gru_sqrt",
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
            "sunspots",
            "persistence",
            None,
            false,
            &[
                ("MSE", naive_m.mse),
                ("RMSE", naive_m.rmse),
                ("MAE", naive_m.mae)
            ]
        )
    );
    println!(
        "{}",
        common::summary_line(
            "sunspots",
            "persistence",
            None,
            true,
            &[("MSE", 920.73), ("RMSE", 30.34), ("MAE", 22.97)]
        )
    );
    println!(
        "{}",
        common::summary_line(
            "sunspots",
            "ar9",
            None,
            true,
            &[("MSE", 305.25), ("RMSE", 17.47), ("MAE", 12.75)]
        )
    );
    Ok(())
}
