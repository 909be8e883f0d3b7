//! Forecasting: metrics against hand-computed values, the baselines against the figures of
//! `examples/data/README.md`, the forecaster's one-step, direct and recursive modes (reading
//! only rows up to the origin, horizons longer than the model's block), walk-forward backtests,
//! and validation metrics in original units during `fit`.

use std::path::PathBuf;

use approx::assert_abs_diff_eq;
use ndarray::{Array2, Axis, s};
use recurrent::data::{CsvOptions, Pipeline, Series, Transform, WindowSpec, windows};
use recurrent::forecast::{
    BacktestConfig, Baseline, Forecaster, Metrics, TrainingWindow, backtest, mae, mape, mase, mse,
    rmse, smape,
};
use recurrent::{Adam, Error, Mse, RecurrentKind, Sequential, Trainer};

fn data(file: &str, options: &CsvOptions) -> Series {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join("data")
        .join(file);
    Series::from_csv(&path, options).expect("the example data loads")
}

/// Rounds to `decimals` places, as the data README prints its figures.
fn rounded(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

// ---------------------------------------------------------------------------------------------
// Metrics

#[test]
fn metrics_match_hand_computed_values() {
    let actual = [1.0, 2.0, 4.0];
    let predicted = [2.0, 2.0, 1.0];
    // Errors 1, 0, 3.
    assert_abs_diff_eq!(
        mse(&actual, &predicted).unwrap(),
        10.0 / 3.0,
        epsilon = 1e-15
    );
    assert_abs_diff_eq!(
        rmse(&actual, &predicted).unwrap(),
        (10.0f64 / 3.0).sqrt(),
        epsilon = 1e-15
    );
    assert_abs_diff_eq!(
        mae(&actual, &predicted).unwrap(),
        4.0 / 3.0,
        epsilon = 1e-15
    );
    // 100/3 · (1/1 + 0/2 + 3/4).
    assert_abs_diff_eq!(
        mape(&actual, &predicted).unwrap(),
        100.0 * 1.75 / 3.0,
        epsilon = 1e-12
    );
    // 1/3 · (200·1/3 + 0 + 200·3/5).
    assert_abs_diff_eq!(
        smape(&actual, &predicted).unwrap(),
        (200.0 / 3.0 + 120.0) / 3.0,
        epsilon = 1e-12
    );
    // In-sample naive errors of [1, 3, 2, 5]: 2, 1, 3 → scale 2; seasonal (s = 2): 1, 2 → 1.5.
    let training = [1.0, 3.0, 2.0, 5.0];
    assert_abs_diff_eq!(
        mase(&actual, &predicted, &training, 1).unwrap(),
        (4.0 / 3.0) / 2.0,
        epsilon = 1e-15
    );
    assert_abs_diff_eq!(
        mase(&actual, &predicted, &training, 2).unwrap(),
        (4.0 / 3.0) / 1.5,
        epsilon = 1e-15
    );

    let all = Metrics::compute(&actual, &predicted).unwrap();
    assert_eq!(all.mse, mse(&actual, &predicted).unwrap());
    assert_eq!(all.mape, Some(mape(&actual, &predicted).unwrap()));
}

#[test]
fn mape_with_a_zero_actual_value_is_an_error_and_smape_counts_zero_over_zero_as_zero() {
    let err = mape(&[1.0, 0.0], &[1.0, 1.0]).unwrap_err();
    assert!(err.to_string().contains("index 1 is 0"), "{err}");
    assert_eq!(smape(&[0.0, 2.0], &[0.0, 2.0]).unwrap(), 0.0);
    // Metrics::compute still works and leaves MAPE out.
    assert_eq!(
        Metrics::compute(&[0.0, 2.0], &[1.0, 2.0]).unwrap().mape,
        None
    );
}

#[test]
fn metrics_reject_mismatched_empty_and_non_finite_inputs() {
    assert!(matches!(mse(&[1.0], &[1.0, 2.0]), Err(Error::Shape { .. })));
    assert!(matches!(mae(&[], &[]), Err(Error::Empty { .. })));
    assert!(matches!(
        rmse(&[1.0, f64::NAN], &[1.0, 2.0]),
        Err(Error::NonFinite { .. })
    ));
    assert!(mase(&[1.0], &[1.0], &[2.0, 2.0, 2.0], 1).is_err()); // a flat training series
    assert!(mase(&[1.0], &[1.0], &[1.0, 2.0], 0).is_err());
    assert!(mase(&[1.0], &[1.0], &[1.0, 2.0], 2).is_err()); // too short for the season
}

// ---------------------------------------------------------------------------------------------
// Baselines

#[test]
fn baselines_forecast_as_defined() {
    let history = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    assert_eq!(Baseline::Naive.forecast(&history, 2).unwrap(), [6.0, 6.0]);
    assert_eq!(
        Baseline::SeasonalNaive { period: 3 }
            .forecast(&history, 5)
            .unwrap(),
        [4.0, 5.0, 6.0, 4.0, 5.0]
    );
    assert_eq!(Baseline::Drift.forecast(&history, 2).unwrap(), [7.0, 8.0]);
    assert_eq!(Baseline::Mean.forecast(&history, 1).unwrap(), [3.5]);
    assert_eq!(
        Baseline::Naive.one_step(&history, 4).unwrap(),
        [4.0, 5.0] // each from the values before it
    );
    assert!(
        Baseline::SeasonalNaive { period: 7 }
            .forecast(&history, 1)
            .is_err()
    );
    assert!(Baseline::Naive.forecast(&[], 1).is_err());
    assert!(Baseline::Naive.forecast(&history, 0).is_err());
    assert!(Baseline::Naive.one_step(&history, 0).is_err());
    assert!(Baseline::Naive.one_step(&history, 6).is_err());
}

#[test]
fn airline_baselines_reproduce_the_data_readme() {
    let series = data("airline.csv", &CsvOptions::new().label("Date"));
    let passengers = series.column("Passengers").unwrap().to_vec();
    let (train, test) = passengers.split_at(120);
    assert_eq!(test.len(), 24);

    let naive = Metrics::compute(test, &Baseline::Naive.forecast(train, 24).unwrap()).unwrap();
    assert_eq!(rounded(naive.rmse, 2), 137.33);
    assert_eq!(rounded(naive.mae, 2), 115.25);
    assert_eq!(rounded(naive.mape.unwrap(), 2), 23.58);

    let seasonal = Baseline::SeasonalNaive { period: 12 }
        .forecast(train, 24)
        .unwrap();
    let seasonal = Metrics::compute(test, &seasonal).unwrap();
    assert_eq!(rounded(seasonal.rmse, 2), 76.99);
    assert_eq!(rounded(seasonal.mae, 2), 71.25);
    assert_eq!(rounded(seasonal.mape.unwrap(), 2), 15.52);
}

#[test]
fn sunspots_persistence_reproduces_the_data_readme() {
    let series = data("sunspots.csv", &CsvOptions::new());
    let years = series.column("YEAR").unwrap().to_vec();
    let activity = series.column("SUNACTIVITY").unwrap().to_vec();
    // 1700–1987: 288 values, train 1700–1920 (221), then 67 one-step forecasts.
    let end = years.iter().position(|&y| y == 1987.0).unwrap() + 1;
    assert_eq!(end, 288);
    let activity = &activity[..end];
    let persistence = Baseline::Naive.one_step(activity, 221).unwrap();
    assert_eq!(persistence.len(), 67);
    let m = Metrics::compute(&activity[221..], &persistence).unwrap();
    assert_eq!(rounded(m.mse, 2), 920.73);
    assert_eq!(rounded(m.rmse, 2), 30.34);
    assert_eq!(rounded(m.mae, 2), 22.97);
}

#[test]
fn uschange_baselines_reproduce_the_data_readme() {
    let series = data("uschange.csv", &CsvOptions::new().label("Quarter"));
    let consumption = series.column("Consumption").unwrap().to_vec();
    let n = consumption.len();
    let test = &consumption[n - 40..];

    let naive = Baseline::Naive.one_step(&consumption, n - 40).unwrap();
    let naive = Metrics::compute(test, &naive).unwrap();
    assert_eq!(rounded(naive.rmse, 4), 0.4150);
    assert_eq!(rounded(naive.mae, 4), 0.3405);

    let mean = Baseline::Mean.forecast(&consumption[..n - 40], 40).unwrap();
    let mean = Metrics::compute(test, &mean).unwrap();
    assert_eq!(rounded(mean.rmse, 4), 0.6457);
    assert_eq!(rounded(mean.mae, 4), 0.4852);
}

// ---------------------------------------------------------------------------------------------
// The forecaster

/// A trending, seasonal, positive series of `n` rows in one column.
fn seasonal_series(n: usize) -> Array2<f64> {
    Array2::from_shape_fn((n, 1), |(t, _)| {
        let t = t as f64;
        50.0 + 0.8 * t + 10.0 * (std::f64::consts::TAU * t / 12.0).sin()
    })
}

#[test]
fn forecasts_read_only_rows_up_to_the_origin() {
    let values = seasonal_series(80);
    let pipeline = Pipeline::fit(
        &[
            Transform::Log,
            Transform::Difference { lag: 1 },
            Transform::Standardize,
        ],
        values.slice(s![..60, ..]),
    )
    .unwrap();
    let spec = WindowSpec::new(12, 3);
    let model = Sequential::<f64>::direct_multi_step(RecurrentKind::Gru, 1, 6, 3, 1)
        .build(3)
        .unwrap();
    let forecaster = Forecaster::new(&model, &pipeline, &spec).unwrap();
    assert_eq!(forecaster.block_steps(), 3);

    let origin = 59;
    let direct = forecaster.direct(values.view(), origin).unwrap();
    let one_step = forecaster.one_step(values.view(), &[origin]).unwrap();
    assert_eq!(direct.shape(), &[3, 1]);
    assert_eq!(one_step.row(0), direct.row(0));

    // Change every row after the origin: nothing moves.
    let mut altered = values.clone();
    altered.slice_mut(s![origin + 1.., ..]).fill(1e6);
    assert_eq!(forecaster.direct(altered.view(), origin).unwrap(), direct);
    assert_eq!(
        forecaster
            .recursive(altered.view(), origin, 7, None)
            .unwrap(),
        forecaster
            .recursive(values.view(), origin, 7, None)
            .unwrap()
    );
    // Truncating the table at the origin gives the same forecast too.
    assert_eq!(
        forecaster
            .direct(values.slice(s![..=origin, ..]), origin)
            .unwrap(),
        direct
    );
}

#[test]
fn a_forecast_in_original_units_inverts_the_pipeline() {
    // With differencing, the first forecast is the last value plus the predicted change: check it
    // against the model's raw output undone by hand.
    let values = seasonal_series(60);
    let pipeline = Pipeline::fit(
        &[Transform::Difference { lag: 1 }, Transform::Standardize],
        values.slice(s![..48, ..]),
    )
    .unwrap();
    let spec = WindowSpec::new(8, 1);
    let model = Sequential::<f64>::many_to_one(RecurrentKind::Lstm, 1, 4, 1)
        .build(1)
        .unwrap();
    let origin = 47;
    let forecast = Forecaster::new(&model, &pipeline, &spec)
        .unwrap()
        .direct(values.view(), origin)
        .unwrap()[[0, 0]];

    let table = pipeline.transform(values.slice(s![..=origin, ..])).unwrap();
    let x = recurrent::data::input_window::<f64>(table.view(), &spec, table.nrows() - 1).unwrap();
    let raw = recurrent::Layer::predict(&model, x.view()).unwrap()[[0, 0, 0]];
    let diffs: Vec<f64> = (1..48)
        .map(|t| values[[t, 0]] - values[[t - 1, 0]])
        .collect();
    let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
    let std =
        (diffs.iter().map(|d| (d - mean) * (d - mean)).sum::<f64>() / diffs.len() as f64).sqrt();
    let by_hand = values[[origin, 0]] + raw * std + mean;
    assert!(
        (forecast - by_hand).abs() <= 1e-9 * by_hand.abs(),
        "forecast {forecast}, by hand {by_hand}"
    );
}

#[test]
fn recursive_forecasts_feed_blocks_back_for_horizons_longer_than_and_not_a_multiple_of_the_block() {
    let values = seasonal_series(70);
    let pipeline = Pipeline::fit(
        &[Transform::Difference { lag: 1 }, Transform::Standardize],
        values.slice(s![..60, ..]),
    )
    .unwrap();
    let spec = WindowSpec::new(10, 2);
    // A model that emits 2 steps at once; horizon 5 = 2 + 2 + 1.
    let model = Sequential::<f64>::direct_multi_step(RecurrentKind::Lstm, 1, 5, 2, 1)
        .build(11)
        .unwrap();
    let forecaster = Forecaster::new(&model, &pipeline, &spec).unwrap();
    let origin = 59;
    let recursive = forecaster
        .recursive(values.view(), origin, 5, None)
        .unwrap();
    assert_eq!(recursive.shape(), &[5, 1]);

    // By hand: predict a block, append it to the history, predict again from its end.
    let mut table = values.slice(s![..=origin, ..]).to_owned();
    let mut expected = Vec::new();
    while expected.len() < 5 {
        let block = forecaster.direct(table.view(), table.nrows() - 1).unwrap();
        for row in block.axis_iter(Axis(0)) {
            if expected.len() < 5 {
                expected.push(row[0]);
            }
            table.push_row(row.view()).unwrap();
        }
    }
    assert_eq!(recursive.column(0).to_vec(), expected);
    // The first block is the direct forecast itself.
    let direct = forecaster.direct(values.view(), origin).unwrap();
    assert_eq!(recursive.slice(s![..2, ..]), direct);

    assert!(
        forecaster
            .recursive(values.view(), origin, 0, None)
            .is_err()
    );
    assert!(forecaster.recursive(values.view(), 70, 3, None).is_err());
}

#[test]
fn recursive_forecasting_needs_the_future_of_input_columns_that_are_not_targets() {
    // Column 0 is the target, column 1 an exogenous input.
    let values = Array2::from_shape_fn((40, 2), |(t, c)| {
        (t as f64 / 5.0).sin() * (c as f64 + 1.0) + 3.0
    });
    let pipeline = Pipeline::fit(&[Transform::Standardize], values.slice(s![..30, ..])).unwrap();
    let spec = WindowSpec::new(6, 1).inputs(&[0, 1]).targets(&[0]);
    let model = Sequential::<f64>::many_to_one(RecurrentKind::Gru, 2, 4, 1)
        .build(5)
        .unwrap();
    let forecaster = Forecaster::new(&model, &pipeline, &spec).unwrap();

    let err = forecaster
        .recursive(values.view(), 29, 4, None)
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("future"), "{err}");

    // With the future rows given, the second step reads the given exogenous value.
    let future = values.slice(s![30..34, ..]);
    let with_future = forecaster
        .recursive(values.view(), 29, 4, Some(future))
        .unwrap();
    assert_eq!(with_future.shape(), &[4, 1]);
    let mut table = values.slice(s![..30, ..]).to_owned();
    let first = forecaster.direct(table.view(), 29).unwrap()[[0, 0]];
    table
        .push_row(ndarray::aview1(&[first, values[[30, 1]]]))
        .unwrap();
    let second = forecaster.direct(table.view(), 30).unwrap()[[0, 0]];
    assert_eq!(with_future[[0, 0]], first);
    assert_eq!(with_future[[1, 0]], second);

    // Too few future rows is a shape error.
    assert!(matches!(
        forecaster.recursive(values.view(), 29, 4, Some(values.slice(s![30..32, ..]))),
        Err(Error::Shape { .. })
    ));
}

#[test]
fn a_forecaster_checks_the_model_against_the_window_spec_and_the_table() {
    let values = seasonal_series(40);
    let pipeline = Pipeline::fit(&[Transform::Standardize], values.slice(s![..30, ..])).unwrap();
    let spec = WindowSpec::new(6, 1);
    let two_inputs = Sequential::<f64>::many_to_one(RecurrentKind::Gru, 2, 4, 1)
        .build(0)
        .unwrap();
    assert!(Forecaster::new(&two_inputs, &pipeline, &spec).is_err());
    let two_targets = Sequential::<f64>::many_to_one(RecurrentKind::Gru, 1, 4, 2)
        .build(0)
        .unwrap();
    assert!(Forecaster::new(&two_targets, &pipeline, &spec).is_err());

    let model = Sequential::<f64>::many_to_one(RecurrentKind::Gru, 1, 4, 1)
        .build(0)
        .unwrap();
    let forecaster = Forecaster::new(&model, &pipeline, &spec).unwrap();
    // Too early an origin (fewer than 6 rows before it), past the table, wrong column count.
    assert!(forecaster.direct(values.view(), 4).is_err());
    assert!(forecaster.direct(values.view(), 40).is_err());
    let wide = Array2::<f64>::ones((40, 2));
    assert!(forecaster.direct(wide.view(), 20).is_err());
    assert!(forecaster.one_step(values.view(), &[]).unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Backtests

#[test]
fn an_expanding_backtest_with_a_naive_model_scores_every_origin() {
    let values = Array2::from_shape_fn((20, 1), |(t, _)| (t * t) as f64);
    let config = BacktestConfig {
        first_origin: 9,
        horizon: 3,
        stride: 2,
        window: TrainingWindow::Expanding,
        refit_every: Some(2),
    };
    let mut fits = Vec::new();
    let result = backtest(
        values.view(),
        &[0],
        &config,
        |rows| {
            fits.push(rows.clone());
            Ok(rows.end) // the "model" is the row count it was fitted on
        },
        |&fitted_rows, seen, origin| {
            // The forecast sees exactly the rows up to its origin.
            assert_eq!(seen.nrows(), origin + 1);
            assert!(fitted_rows <= origin + 1);
            Ok(Array2::from_elem((3, 1), seen[[origin, 0]]))
        },
    )
    .unwrap();
    // Origins 9, 11, 13, 15 (15 + 3 < 20; 17 + 3 is not).
    assert_eq!(result.origins, [9, 11, 13, 15]);
    // Refit at the first origin and every second one after it, on every row up to the origin.
    assert_eq!(fits, [0..10, 0..14]);
    for (i, &o) in result.origins.iter().enumerate() {
        let actual: Vec<f64> = (o + 1..=o + 3).map(|t| (t * t) as f64).collect();
        assert_eq!(result.actuals[i].column(0).to_vec(), actual);
        let naive = vec![(o * o) as f64; 3];
        assert_eq!(
            result.per_origin[i],
            Metrics::compute(&actual, &naive).unwrap()
        );
    }
    let all_actual: Vec<f64> = result
        .actuals
        .iter()
        .flat_map(|a| a.iter().copied())
        .collect();
    let all_forecast: Vec<f64> = result
        .forecasts
        .iter()
        .flat_map(|a| a.iter().copied())
        .collect();
    assert_eq!(
        result.aggregate,
        Metrics::compute(&all_actual, &all_forecast).unwrap()
    );
}

#[test]
fn a_sliding_backtest_fits_on_the_last_rows_and_refits_when_due() {
    let values = Array2::from_shape_fn((30, 1), |(t, _)| t as f64);
    let config = BacktestConfig {
        first_origin: 11,
        horizon: 1,
        stride: 5,
        window: TrainingWindow::Sliding(8),
        refit_every: Some(1),
    };
    let mut fits = Vec::new();
    backtest(
        values.view(),
        &[0],
        &config,
        |rows| {
            fits.push(rows);
            Ok(())
        },
        |_, seen, origin| Ok(Array2::from_elem((1, 1), seen[[origin, 0]] + 1.0)),
    )
    .unwrap();
    // Origins 11, 16, 21, 26: the 8 rows ending at each.
    assert_eq!(fits, [4..12, 9..17, 14..22, 19..27]);

    // Fitting once (refit_every None) fits at the first origin only.
    let mut count = 0;
    let config = BacktestConfig {
        refit_every: None,
        ..config
    };
    backtest(
        values.view(),
        &[0],
        &config,
        |_| {
            count += 1;
            Ok(())
        },
        |_, seen, origin| Ok(Array2::from_elem((1, 1), seen[[origin, 0]])),
    )
    .unwrap();
    assert_eq!(count, 1);
}

#[test]
fn backtest_settings_and_forecast_shapes_are_checked() {
    let values = Array2::from_shape_fn((20, 1), |(t, _)| t as f64);
    let good = BacktestConfig {
        first_origin: 5,
        horizon: 2,
        stride: 1,
        window: TrainingWindow::Expanding,
        refit_every: None,
    };
    let run = |config: &BacktestConfig, rows: usize| {
        backtest(
            values.view(),
            &[0],
            config,
            |_| Ok(()),
            move |_, _, _| Ok(Array2::zeros((rows, 1))),
        )
    };
    assert!(run(&good, 2).is_ok());
    assert!(matches!(run(&good, 3), Err(Error::Shape { .. })));
    for bad in [
        BacktestConfig {
            horizon: 0,
            ..good.clone()
        },
        BacktestConfig {
            stride: 0,
            ..good.clone()
        },
        BacktestConfig {
            refit_every: Some(0),
            ..good.clone()
        },
        BacktestConfig {
            window: TrainingWindow::Sliding(0),
            ..good.clone()
        },
        BacktestConfig {
            first_origin: 18,
            ..good.clone()
        },
    ] {
        assert!(run(&bad, 2).is_err(), "{bad:?} was accepted");
    }
    let targets_out_of_range = backtest(
        values.view(),
        &[1],
        &good,
        |_| Ok(()),
        |_, _, _| Ok(Array2::zeros((2, 1))),
    );
    assert!(targets_out_of_range.is_err());
}

// ---------------------------------------------------------------------------------------------
// Validation metrics in original units during fit

#[test]
fn fit_reports_validation_metrics_in_original_units_every_epoch() {
    let values = seasonal_series(120);
    let (fit_end, eval_end) = (96, 120);
    let pipeline = Pipeline::fit(
        &[Transform::Difference { lag: 1 }, Transform::Standardize],
        values.slice(s![..fit_end, ..]),
    )
    .unwrap();
    let table = pipeline.transform(values.view()).unwrap();
    let spec = WindowSpec::new(12, 1);
    // The transformed table is one row shorter (the first difference).
    let train = windows::<f64>(table.view(), &spec, 0..fit_end - 1).unwrap();

    let (metric_values, metric_pipeline, metric_spec) =
        (values.clone(), pipeline.clone(), spec.clone());
    let mut model = Sequential::<f64>::many_to_one(RecurrentKind::Gru, 1, 8, 1)
        .build(0)
        .unwrap();
    let mut trainer = Trainer::new(Mse, Adam::new(0.01).unwrap())
        .epochs(4)
        .batch_size(16)
        .seed(0)
        .metric("val_mape", move |model| {
            let forecaster = Forecaster::new(model, &metric_pipeline, &metric_spec)?;
            let origins: Vec<usize> = (fit_end - 1..eval_end - 1).collect();
            let forecast = forecaster.one_step(metric_values.view(), &origins)?;
            let actual = metric_values.slice(s![fit_end..eval_end, 0]).to_vec();
            mape(&actual, &forecast.column(0).to_vec())
        });
    let history = trainer
        .fit(&mut model, train.x.view(), train.y.view())
        .unwrap();
    assert_eq!(history.epochs.len(), 4);

    // The last epoch's value is the MAPE of the trained model, in original units.
    let forecaster = Forecaster::new(&model, &pipeline, &spec).unwrap();
    let origins: Vec<usize> = (fit_end - 1..eval_end - 1).collect();
    let forecast = forecaster.one_step(values.view(), &origins).unwrap();
    let actual = values.slice(s![fit_end..eval_end, 0]).to_vec();
    let expected = mape(&actual, &forecast.column(0).to_vec()).unwrap();
    for epoch in &history.epochs {
        assert_eq!(epoch.metrics.len(), 1);
        assert_eq!(epoch.metrics[0].0, "val_mape");
        assert!(epoch.metrics[0].1.is_finite() && epoch.metrics[0].1 > 0.0);
    }
    assert_eq!(history.epochs[3].metrics[0].1, expected);
}
