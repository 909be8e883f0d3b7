//! Walk-forward backtests.

use std::ops::Range;

use ndarray::{Array2, ArrayView2, s};
use serde::{Deserialize, Serialize};

use super::Metrics;
use crate::{Error, Result};

/// Which rows the model is (re)fitted on at an origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainingWindow {
    /// Every row up to the origin.
    Expanding,
    /// The last `n` rows up to the origin.
    Sliding(usize),
}

/// The settings of a walk-forward backtest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BacktestConfig {
    /// The first origin (the row of the last value the first forecast may see).
    pub first_origin: usize,
    /// Steps forecast from each origin.
    pub horizon: usize,
    /// Rows between origins.
    pub stride: usize,
    /// Expanding or sliding training rows.
    pub window: TrainingWindow,
    /// Refit every k origins (`None`: fit once, at the first origin).
    pub refit_every: Option<usize>,
}

/// A backtest's forecasts and their errors.
#[derive(Debug, Clone, PartialEq)]
pub struct Backtest {
    /// The origins.
    pub origins: Vec<usize>,
    /// Each origin's forecast `[horizon, targets]`.
    pub forecasts: Vec<Array2<f64>>,
    /// The actual values it is scored against, same shape.
    pub actuals: Vec<Array2<f64>>,
    /// Each origin's metrics.
    pub per_origin: Vec<Metrics>,
    /// Metrics over every forecast value.
    pub aggregate: Metrics,
}

/// Walks the origin forward through `values` `[rows, columns]` (original units).
///
/// At each origin o (from `first_origin`, every `stride` rows, while o + horizon < rows),
/// `fit(training_rows)` is called when a refit is due (training rows end at o, inclusive), then
/// `forecast(&model, values[..=o], o)` must return `[horizon, targets.len()]` values; they are
/// scored against `values[o+1..=o+horizon, targets]`. The forecast never sees rows past o.
pub fn backtest<M>(
    values: ArrayView2<'_, f64>,
    targets: &[usize],
    config: &BacktestConfig,
    mut fit: impl FnMut(Range<usize>) -> Result<M>,
    mut forecast: impl FnMut(&M, ArrayView2<'_, f64>, usize) -> Result<Array2<f64>>,
) -> Result<Backtest> {
    let rows = values.nrows();
    if config.horizon == 0 || config.stride == 0 {
        return Err(Error::config(
            "backtest",
            "horizon and stride must be at least 1",
        ));
    }
    if config.refit_every == Some(0) {
        return Err(Error::config(
            "backtest refit_every",
            "must be at least 1, got 0",
        ));
    }
    if let TrainingWindow::Sliding(0) = config.window {
        return Err(Error::config(
            "backtest sliding window",
            "must be at least 1 row, got 0",
        ));
    }
    if let Some(&c) = targets.iter().find(|&&c| c >= values.ncols()) {
        return Err(Error::config(
            "backtest targets",
            format!("column {c} is out of range"),
        ));
    }
    let origins: Vec<usize> = (config.first_origin..)
        .step_by(config.stride)
        .take_while(|o| o + config.horizon < rows)
        .collect();
    if origins.is_empty() {
        return Err(Error::config(
            "backtest",
            format!(
                "no origin from row {} leaves {} rows to forecast in a table of {rows}",
                config.first_origin, config.horizon
            ),
        ));
    }
    let mut model: Option<M> = None;
    let (mut forecasts, mut actuals, mut per_origin) = (Vec::new(), Vec::new(), Vec::new());
    let (mut all_actual, mut all_forecast) = (Vec::new(), Vec::new());
    for (i, &o) in origins.iter().enumerate() {
        let due = match config.refit_every {
            None => i == 0,
            Some(k) => i % k == 0,
        };
        if due || model.is_none() {
            let start = match config.window {
                TrainingWindow::Expanding => 0,
                TrainingWindow::Sliding(n) => (o + 1).saturating_sub(n),
            };
            model = Some(fit(start..o + 1)?);
        }
        let Some(m) = model.as_ref() else {
            unreachable!("fitted above")
        };
        let f = forecast(m, values.slice(s![..=o, ..]), o)?;
        let expected = [config.horizon, targets.len()];
        if f.shape() != expected {
            return Err(Error::shape("backtest forecast", &expected, f.shape()));
        }
        let a = Array2::from_shape_fn((config.horizon, targets.len()), |(t, k)| {
            values[[o + 1 + t, targets[k]]]
        });
        per_origin.push(Metrics::compute(
            a.as_slice().unwrap_or(&[]),
            f.as_slice().unwrap_or(&[]),
        )?);
        all_actual.extend(a.iter().copied());
        all_forecast.extend(f.iter().copied());
        forecasts.push(f);
        actuals.push(a);
    }
    let aggregate = Metrics::compute(&all_actual, &all_forecast)?;
    Ok(Backtest {
        origins,
        forecasts,
        actuals,
        per_origin,
        aggregate,
    })
}
