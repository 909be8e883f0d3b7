//! Multivariate forecasting: next quarter's US consumption change from five series.
//!
//! `cargo run --release --example uschange [-- --seeds N] [-- --search]`
//!
//! Data: quarterly percentage changes of US consumption, income, production, savings and
//! unemployment, 1970 Q1 … 2016 Q3 (examples/data/uschange.csv, 187 rows). Protocol (data
//! README): the last 40 quarters (2006 Q4 … 2016 Q3) are the test part, each forecast one step
//! ahead from the true values before it; the target is `Consumption`.
//!
//! Model: all five columns standardized on the training rows, a window of the last 8 quarters,
//! GRU(8) → dense(1), trained with AdamW (lr 0.005, weight decay 0.1) on the MSE for 10 epochs.
//! With ~100 training windows the GRU overfits quickly: more epochs or units score worse.
//!
//! Every choice was made on a validation part: the last 24 training quarters (2000 Q4 … 2006 Q3),
//! forecast one step ahead by a model fitted on the quarters before them. `-- --search` reruns
//! that search and prints its table (validation RMSE, median of seeds 0–2); the choice in
//! [`CHOSEN`] is its best row. The final model is then fitted on all 147 training quarters
//! and the test part is used once, to report.
//!
//! The search (naive validation RMSE 0.4910; AdamW lr 0.005, batch 16):
//!
//! | lookback | hidden | epochs 5, wd 0 / 0.1 | epochs 10, wd 0 / 0.1 | epochs 20, wd 0 / 0.1 |
//! | --- | --- | --- | --- | --- |
//! | 4 | 4 | 0.4129 / 0.4102 | 0.4299 / 0.4243 | 0.4936 / 0.4862 |
//! | 4 | 8 | 0.4490 / 0.4430 | 0.4263 / 0.4193 | 0.4801 / 0.4616 |
//! | 8 | 4 | 0.4297 / 0.4257 | 0.4469 / 0.4372 | 0.4606 / 0.4533 |
//! | 8 | 8 | 0.4545 / 0.4489 | 0.4053 / **0.4041** | 0.4263 / 0.4181 |
//!
//! An earlier, coarser search (Adam, lookback 4–12, hidden 8–16, 10–100 epochs) showed the
//! same overfitting: 100 epochs scored 0.73–1.03.

mod common;

use ndarray::s;
use plotters::style::RGBColor;
use recurrent::data::{CsvOptions, Pipeline, Series, Transform, WindowSpec, windows};
use recurrent::forecast::{Baseline, Forecaster, Metrics};
use recurrent::{Adam, Mse, RecurrentKind, Sequential, Trainer};

const TEST: usize = 40;
const VALIDATION: usize = 24;

/// One candidate recipe.
#[derive(Debug, Clone, Copy)]
struct Recipe {
    /// Quarters per input window.
    lookback: usize,
    /// GRU units.
    hidden: usize,
    /// Epochs of training.
    epochs: usize,
    /// AdamW's decoupled weight decay.
    weight_decay: f64,
}

/// The recipe chosen by `--search` on the validation part.
const CHOSEN: Recipe = Recipe {
    lookback: 8,
    hidden: 8,
    epochs: 10,
    weight_decay: 0.1,
};

/// Fits `recipe` on rows `..fit_end` and forecasts rows `fit_end..eval_end` one step ahead.
fn evaluate(
    series: &Series,
    recipe: Recipe,
    seed: u64,
    fit_end: usize,
    eval_end: usize,
) -> Result<(Metrics, Vec<f64>), recurrent::Error> {
    let values = series.values();
    let target = series.column_index("Consumption")?;
    let inputs: Vec<usize> = (0..series.names().len()).collect();
    // Transforms fitted on the rows the model is fitted on, never later ones.
    let pipeline = Pipeline::fit(&[Transform::Standardize], values.slice(s![..fit_end, ..]))?;
    let table = pipeline.transform(values)?;
    let spec = WindowSpec::new(recipe.lookback, 1)
        .inputs(&inputs)
        .targets(&[target]);
    let train = windows::<f32>(table.view(), &spec, 0..fit_end)?;

    let mut model =
        Sequential::many_to_one(RecurrentKind::Gru, inputs.len(), recipe.hidden, 1).build(seed)?;
    let mut trainer = Trainer::new(Mse, Adam::adamw(0.005, recipe.weight_decay)?)
        .epochs(recipe.epochs)
        .batch_size(16)
        .seed(seed);
    trainer.fit(&mut model, train.x.view(), train.y.view())?;

    let forecaster = Forecaster::new(&model, &pipeline, &spec)?;
    let origins: Vec<usize> = (fit_end - 1..eval_end - 1).collect();
    let forecast = forecaster.one_step(values, &origins)?.column(0).to_vec();
    let actual = values.slice(s![fit_end..eval_end, target]).to_vec();
    Ok((Metrics::compute(&actual, &forecast)?, forecast))
}

fn search(series: &Series) -> Result<(), recurrent::Error> {
    let n = series.len();
    let (fit_end, eval_end) = (n - TEST - VALIDATION, n - TEST);
    let consumption = series.column("Consumption")?.to_vec();
    let naive = Baseline::Naive.one_step(&consumption[..eval_end], fit_end)?;
    let naive = Metrics::compute(&consumption[fit_end..eval_end], &naive)?;
    println!("validation part: naive RMSE {:.4}", naive.rmse);
    println!("| lookback | hidden | epochs | weight decay | validation RMSE |");
    println!("| --- | --- | --- | --- | --- |");
    for lookback in [4, 8] {
        for hidden in [4, 8] {
            for epochs in [5, 10, 20] {
                for weight_decay in [0.0, 0.1] {
                    let recipe = Recipe {
                        lookback,
                        hidden,
                        epochs,
                        weight_decay,
                    };
                    let rmse: Vec<f64> = (0..3)
                        .map(|seed| {
                            evaluate(series, recipe, seed, fit_end, eval_end).map(|(m, _)| m.rmse)
                        })
                        .collect::<Result<_, _>>()?;
                    println!(
                        "| {lookback} | {hidden} | {epochs} | {weight_decay} | {:.4} |",
                        common::median(&rmse)
                    );
                }
            }
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/uschange.csv");
    let series = Series::from_csv(path, &CsvOptions::new().label("Quarter"))?;
    if std::env::args().any(|a| a == "--search") {
        search(&series)?;
        return Ok(());
    }
    let n = series.len();
    let seeds = common::seeds_from_args();
    println!("recipe: {CHOSEN:?}");
    let mut runs = Vec::new();
    for seed in 0..seeds as u64 {
        let started = std::time::Instant::now();
        let (metrics, forecast) = evaluate(&series, CHOSEN, seed, n - TEST, n)?;
        println!(
            "seed {seed}: test RMSE {:.4} MAE {:.4} ({:.1} s)",
            metrics.rmse,
            metrics.mae,
            started.elapsed().as_secs_f64()
        );
        runs.push((metrics, forecast));
    }

    let consumption = series.column("Consumption")?.to_vec();
    let actual = &consumption[n - TEST..];
    let naive = Baseline::Naive.one_step(&consumption, n - TEST)?;
    let mean = Baseline::Mean.forecast(&consumption[..n - TEST], TEST)?;
    let naive_m = Metrics::compute(actual, &naive)?;
    let mean_m = Metrics::compute(actual, &mean)?;

    // Chart: 20 quarters of history, the test truth, the model's and the naive forecasts.
    let x = |i: usize| 1970.0 + i as f64 / 4.0;
    let start = n - TEST - 20;
    let lines = [
        common::Line {
            label: "consumption (history)",
            points: (start..=n - TEST).map(|i| (x(i), consumption[i])).collect(),
            color: RGBColor(120, 120, 120),
        },
        common::Line {
            label: "actual (test)",
            points: (n - TEST..n).map(|i| (x(i), consumption[i])).collect(),
            color: RGBColor(20, 20, 20),
        },
        common::Line {
            label: "GRU, one step ahead (seed 0)",
            points: runs[0]
                .1
                .iter()
                .enumerate()
                .map(|(k, &v)| (x(n - TEST + k), v))
                .collect(),
            color: RGBColor(200, 60, 30),
        },
        common::Line {
            label: "naive",
            points: naive
                .iter()
                .enumerate()
                .map(|(k, &v)| (x(n - TEST + k), v))
                .collect(),
            color: RGBColor(60, 120, 200),
        },
    ];
    let chart = common::plot(
        "uschange",
        "US consumption, % change per quarter: one step ahead",
        "year",
        "% change",
        &lines,
    )?;
    println!("chart: {}", chart.display());

    let med = |f: fn(&Metrics) -> f64| {
        common::median(&runs.iter().map(|(m, _)| f(m)).collect::<Vec<_>>())
    };
    println!();
    println!(
        "{}",
        common::summary_line(
            "uschange",
            "gru_multivariate",
            (seeds > 1).then_some(seeds),
            false,
            &[("RMSE", med(|m| m.rmse)), ("MAE", med(|m| m.mae))]
        )
    );
    println!(
        "{}",
        common::summary_line(
            "uschange",
            "naive",
            None,
            false,
            &[("RMSE", naive_m.rmse), ("MAE", naive_m.mae)]
        )
    );
    println!(
        "{}",
        common::summary_line(
            "uschange",
            "training_mean",
            None,
            false,
            &[("RMSE", mean_m.rmse), ("MAE", mean_m.mae)]
        )
    );
    println!(
        "{}",
        common::summary_line(
            "uschange",
            "naive",
            None,
            true,
            &[("RMSE", 0.4150), ("MAE", 0.3405)]
        )
    );
    println!(
        "{}",
        common::summary_line(
            "uschange",
            "training_mean",
            None,
            true,
            &[("RMSE", 0.6457), ("MAE", 0.4852)]
        )
    );
    Ok(())
}
