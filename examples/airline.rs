//! The crate's main job: forecast two years of airline passengers from one origin.
//!
//! `cargo run --release --example airline [-- --seeds N] [-- --search]`
//!
//! Data: monthly international airline passengers (thousands), 1949-01 … 1960-12
//! (examples/data/airline.csv, 144 rows): a trend and a yearly season that grows with it.
//! Protocol (data README): train on the first 120 months (1949–1958), then forecast the last
//! 24 months (1959–1960) from one origin, 1958-12, 24 steps ahead without seeing any of them.
//!
//! Model: the passengers go through log → first difference → standardize (fitted on the
//! training months only), windows of the last 24 months feed an LSTM(32), dropout 0.2 and a
//! direct head that emits all 24 months at once; trained in f64 with Adam (lr 0.01, batch 16)
//! on the MSE for 100 epochs. [`Forecaster::direct`] maps the block back to passengers: it
//! undoes the standardization, integrates the differences from the last training month and
//! exponentiates. The differenced log series is nearly stationary, so the LSTM only has to
//! learn the season and the mean growth; the dropout before the head is what makes runs agree
//! across seeds.
//!
//! Every choice was made on validation folds cut from the end of the training part: fit on
//! months ..84 and forecast months 84..108 (1956–1957) from 1955-12, and fit on months ..96 and
//! forecast months 96..120 (1957–1958) from 1956-12, each 24 steps from one origin as the test.
//! The score is the mean MAPE of the two folds, median of seeds 0–4. `-- --search` reruns that
//! search and prints its table; the choice in [`CHOSEN`] is its best row. The final model is
//! then fitted on all 120 training months and the test part is used once, to report.
//!
//! The search (validation MAPE %, seasonal naive 15.15; Adam lr 0.01, batch 16):
//!
//! | lookback | hidden | epochs 100, dropout 0 / 0.2 | epochs 200, dropout 0 / 0.2 | epochs 400, dropout 0 / 0.2 |
//! | --- | --- | --- | --- | --- |
//! | 12 | 16 | 5.58 / 5.38 | 5.42 / 5.76 | 5.81 / 5.70 |
//! | 12 | 32 | 5.17 / 5.29 | 4.74 / 4.55 | 6.32 / 5.47 |
//! | 24 | 16 | 5.44 / 4.80 | 4.93 / 4.64 | 5.92 / 4.53 |
//! | 24 | 32 | 4.97 / **4.50** | 5.39 / 4.55 | 5.71 / 4.85 |
//!
//! A first, coarser search on one fold or both (lookback 12–36, hidden 16–64, lr 0.001–0.03,
//! 50–800 epochs, cosine schedule, AdamW weight decay, GRU) found lookback 24 and 32 units
//! best, but without dropout the seeds lay far apart (2.4 % to 15.6 % on the 1956–1957 fold
//! with one recipe); dropout 0.2 before the head narrowed them more than weight decay or a
//! schedule did. lr 0.01 was the best rate with dropout.
//!
//! The model runs in f64 so that the table does not depend on how the kernels round: in f32
//! the rows without dropout moved by up to 1.6 points between two builds of the library that
//! sum in a different order, enough to reorder the close rows at the top.
//!
//! For the record: two candidates rejected on the way were also run on the test months (f32,
//! 200 epochs: 4.57 %; f64, 200 epochs: 4.64 %, median of seeds 0–4) before the f64 search
//! above was redone and chose 100 epochs; that choice used the validation folds only.

mod common;

use ndarray::Array2;
use plotters::style::RGBColor;
use recurrent::data::{CsvOptions, Pipeline, Series, Transform, WindowSpec, windows};
use recurrent::forecast::{Baseline, Forecaster, Metrics};
use recurrent::{Adam, Mse, Sequential, Trainer};

/// Months forecast, from one origin, in the test part and in each validation fold.
const HORIZON: usize = 24;
/// Months in the training part (1949–1958).
const TRAIN: usize = 120;
/// The validation folds: (fitted on months `..end`, forecast months `end..end + 24`).
const FOLDS: [usize; 2] = [84, 96];
/// Adam's learning rate.
const LR: f64 = 0.01;
/// Mini-batch size.
const BATCH: usize = 16;

/// One candidate recipe.
#[derive(Debug, Clone, Copy)]
struct Recipe {
    /// Months per input window.
    lookback: usize,
    /// LSTM units.
    hidden: usize,
    /// Dropout rate between the LSTM and the head (0: none).
    dropout: f64,
    /// Epochs of training.
    epochs: usize,
}

/// The recipe chosen by `--search` on the validation folds.
const CHOSEN: Recipe = Recipe {
    lookback: 24,
    hidden: 32,
    dropout: 0.2,
    epochs: 100,
};

/// Fits `recipe` on months `..fit_end` and forecasts months `fit_end..fit_end + 24` from
/// the origin `fit_end − 1`, reading no later month.
fn evaluate(
    passengers: &[f64],
    recipe: Recipe,
    seed: u64,
    fit_end: usize,
    summary: bool,
) -> Result<(Metrics, Vec<f64>), recurrent::Error> {
    let values = Array2::from_shape_fn((fit_end, 1), |(r, _)| passengers[r]);
    // Fitted on the rows the model is fitted on, never later ones.
    let pipeline = Pipeline::fit(
        &[
            Transform::Log,
            Transform::Difference { lag: 1 },
            Transform::Standardize,
        ],
        values.view(),
    )?;
    let table = pipeline.transform(values.view())?; // fit_end − 1 rows
    let spec = WindowSpec::new(recipe.lookback, HORIZON);
    let train = windows::<f64>(table.view(), &spec, 0..table.nrows())?;

    let mut builder = Sequential::<f64>::builder(1).lstm(recipe.hidden);
    if recipe.dropout > 0.0 {
        builder = builder.dropout(recipe.dropout);
    }
    let mut model = builder.direct_head(HORIZON, 1).build(seed)?;
    if summary {
        println!("{}", model.summary());
    }
    let mut trainer = Trainer::new(Mse, Adam::new(LR)?)
        .epochs(recipe.epochs)
        .batch_size(BATCH)
        .seed(seed);
    trainer.fit(&mut model, train.x.view(), train.y.view())?;

    let forecaster = Forecaster::new(&model, &pipeline, &spec)?;
    let forecast = forecaster
        .direct(values.view(), fit_end - 1)?
        .column(0)
        .to_vec();
    let actual = &passengers[fit_end..fit_end + HORIZON];
    Ok((Metrics::compute(actual, &forecast)?, forecast))
}

/// MAPE in percent (the passengers are never 0).
fn mape(m: &Metrics) -> f64 {
    m.mape.unwrap_or(f64::NAN)
}

/// The validation score of `recipe` with one seed: the mean MAPE of the folds.
fn validation_mape(passengers: &[f64], recipe: Recipe, seed: u64) -> Result<f64, recurrent::Error> {
    let mut total = 0.0;
    for end in FOLDS {
        total += mape(&evaluate(passengers, recipe, seed, end, false)?.0);
    }
    Ok(total / FOLDS.len() as f64)
}

fn search(passengers: &[f64]) -> Result<(), recurrent::Error> {
    let mut seasonal = 0.0;
    for end in FOLDS {
        let f = Baseline::SeasonalNaive { period: 12 }.forecast(&passengers[..end], HORIZON)?;
        seasonal += mape(&Metrics::compute(&passengers[end..end + HORIZON], &f)?);
    }
    println!(
        "validation folds {FOLDS:?}: seasonal naive MAPE {:.2}",
        seasonal / FOLDS.len() as f64
    );
    println!("| lookback | hidden | epochs | dropout | validation MAPE |");
    println!("| --- | --- | --- | --- | --- |");
    for lookback in [12, 24] {
        for hidden in [16, 32] {
            for epochs in [100, 200, 400] {
                for dropout in [0.0, 0.2] {
                    let recipe = Recipe {
                        lookback,
                        hidden,
                        dropout,
                        epochs,
                    };
                    let scores: Vec<f64> = (0..5)
                        .map(|seed| validation_mape(passengers, recipe, seed))
                        .collect::<Result<_, _>>()?;
                    println!(
                        "| {lookback} | {hidden} | {epochs} | {dropout} | {:.2} |",
                        common::median(&scores)
                    );
                }
            }
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/airline.csv");
    let series = Series::from_csv(path, &CsvOptions::new().label("Date"))?;
    let passengers = series.column("Passengers")?.to_vec();
    if std::env::args().any(|a| a == "--search") {
        search(&passengers)?;
        return Ok(());
    }
    let n = passengers.len();
    let seeds = common::seeds_from_args();
    println!(
        "airline: {n} months; train 1949–1958 ({TRAIN}), test 1959–1960 ({HORIZON}, one origin)"
    );
    println!("recipe: {CHOSEN:?}, Adam lr {LR}, batch {BATCH}");
    let mut runs = Vec::new();
    for seed in 0..seeds as u64 {
        let started = std::time::Instant::now();
        let (metrics, forecast) = evaluate(&passengers, CHOSEN, seed, TRAIN, seed == 0)?;
        println!(
            "seed {seed}: test MAPE {:.2} % RMSE {:.2} MAE {:.2} ({:.1} s)",
            mape(&metrics),
            metrics.rmse,
            metrics.mae,
            started.elapsed().as_secs_f64()
        );
        runs.push((metrics, forecast));
    }

    let actual = &passengers[TRAIN..];
    let naive = Baseline::Naive.forecast(&passengers[..TRAIN], HORIZON)?;
    let seasonal =
        Baseline::SeasonalNaive { period: 12 }.forecast(&passengers[..TRAIN], HORIZON)?;
    let naive_m = Metrics::compute(actual, &naive)?;
    let seasonal_m = Metrics::compute(actual, &seasonal)?;

    // Chart: history from 1955, the test truth, the model's and the seasonal naive forecasts.
    let x = |i: usize| 1949.0 + i as f64 / 12.0;
    let from = |start: usize, v: &[f64]| -> Vec<(f64, f64)> {
        v.iter()
            .enumerate()
            .map(|(k, &y)| (x(start + k), y))
            .collect()
    };
    let start = 72; // 1955-01
    let lines = [
        common::Line {
            label: "passengers (history)",
            points: from(start, &passengers[start..TRAIN]),
            color: RGBColor(120, 120, 120),
        },
        common::Line {
            label: "actual (test)",
            points: from(TRAIN - 1, &passengers[TRAIN - 1..]),
            color: RGBColor(20, 20, 20),
        },
        common::Line {
            label: "LSTM, direct 24 months (seed 0)",
            points: from(TRAIN, &runs[0].1),
            color: RGBColor(200, 60, 30),
        },
        common::Line {
            label: "seasonal naive",
            points: from(TRAIN, &seasonal),
            color: RGBColor(60, 120, 200),
        },
    ];
    let chart = common::plot(
        "airline",
        "Airline passengers: 1959–1960 forecast from December 1958",
        "year",
        "passengers (thousands)",
        &lines,
    )?;
    println!("chart: {}", chart.display());

    let med = |f: fn(&Metrics) -> f64| {
        common::median(&runs.iter().map(|(m, _)| f(m)).collect::<Vec<_>>())
    };
    let line = |model: &str, seeds: Option<usize>, published: bool, m: [f64; 3]| {
        common::summary_line(
            "airline",
            model,
            seeds,
            published,
            &[("MAPE", m[0]), ("RMSE", m[1]), ("MAE", m[2])],
        )
    };
    let row = |m: &Metrics| [mape(m), m.rmse, m.mae];
    println!();
    println!(
        "{}",
        line(
            "lstm_logdiff",
            (seeds > 1).then_some(seeds),
            false,
            [med(mape), med(|m| m.rmse), med(|m| m.mae)]
        )
    );
    println!("{}", line("naive", None, false, row(&naive_m)));
    println!("{}", line("seasonal_naive", None, false, row(&seasonal_m)));
    println!("{}", line("sarima", None, true, [8.52, 43.19, 39.45]));
    println!("{}", line("holt_winters", None, true, [6.39, 32.49, 28.98]));
    println!(
        "{}",
        common::summary_line(
            "airline",
            "pytorch_lstm_logdiff",
            Some(5),
            true,
            &[("MAPE", 4.99)]
        )
    );
    Ok(())
}
