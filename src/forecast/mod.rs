//! Forecasting with a trained model: one-step, recursive multi-step, direct multi-step (and
//! encoder–decoder, a direct model), walk-forward backtests, metrics and baselines.
//!
//! Everything takes and returns values in original units: a [`Forecaster`] transforms the
//! history with the fitted [`Pipeline`], cuts the input window, predicts, and inverts the
//! prediction using the history up to the origin (which undoes differences). Only rows up to
//! the origin are ever read.

mod backtest;
mod metrics;

pub use backtest::{Backtest, BacktestConfig, TrainingWindow, backtest};
pub use metrics::{Baseline, Metrics, mae, mape, mase, mse, rmse, smape};

use ndarray::{Array2, ArrayView2, Axis, s};

use crate::data::{Pipeline, WindowSpec};
use crate::{Error, Float, Layer, Result};

/// A trained model with the pipeline and window spec it was trained with.
///
/// The model reads `[1, lookback, inputs]` windows of the transformed table and emits a block
/// `[1, m, targets]` of m ≥ 1 steps (m = 1 for one-step models, m = h for direct and
/// encoder–decoder models).
#[derive(Debug, Clone, Copy)]
pub struct Forecaster<'a, F: Float> {
    model: &'a dyn Layer<F>,
    pipeline: &'a Pipeline,
    spec: &'a WindowSpec,
}

impl<'a, F: Float> Forecaster<'a, F> {
    /// Checks that the model reads the spec's input columns and emits its target columns.
    pub fn new(
        model: &'a dyn Layer<F>,
        pipeline: &'a Pipeline,
        spec: &'a WindowSpec,
    ) -> Result<Self> {
        spec.validate(pipeline.columns())?;
        if model.input_size() != spec.inputs.len() {
            return Err(Error::config(
                "forecaster",
                format!(
                    "the model reads {} features, the window spec has {} input columns",
                    model.input_size(),
                    spec.inputs.len()
                ),
            ));
        }
        if model.output_size() != spec.targets.len() {
            return Err(Error::config(
                "forecaster",
                format!(
                    "the model emits {} targets, the window spec has {} target columns",
                    model.output_size(),
                    spec.targets.len()
                ),
            ));
        }
        Ok(Forecaster {
            model,
            pipeline,
            spec,
        })
    }

    /// The number of steps the model emits at once.
    pub fn block_steps(&self) -> usize {
        self.model.output_steps(self.spec.lookback)
    }

    fn check_values(&self, values: &ArrayView2<'_, f64>) -> Result<()> {
        if values.ncols() != self.pipeline.columns() {
            return Err(Error::config(
                "forecast values",
                format!(
                    "{} columns given, the pipeline was fitted on {}",
                    values.ncols(),
                    self.pipeline.columns()
                ),
            ));
        }
        Ok(())
    }

    /// The model's output block from each origin in `origins` (rows of `values`, the table in
    /// original units): one `[m, targets]` array per origin, in original units. Each reads only
    /// rows ≤ its origin. One batched prediction.
    pub fn predict_origins(
        &self,
        values: ArrayView2<'_, f64>,
        origins: &[usize],
    ) -> Result<Vec<Array2<f64>>> {
        self.check_values(&values)?;
        if origins.is_empty() {
            return Ok(Vec::new());
        }
        let lost = self.pipeline.lost_rows();
        let last = *origins.iter().max().unwrap_or(&0);
        if last >= values.nrows() {
            return Err(Error::config(
                "forecast origin",
                format!("row {last} is past the table's {} rows", values.nrows()),
            ));
        }
        // The transforms are causal (row j depends on rows ≤ j), so transforming up to the
        // last origin once equals transforming each origin's prefix.
        let transformed = self.pipeline.transform(values.slice(s![..=last, ..]))?;
        let (lookback, n_in) = (self.spec.lookback, self.spec.inputs.len());
        // Every origin is checked before the inputs are allocated.
        for &origin in origins {
            if origin + 1 < lost.saturating_add(lookback) {
                return Err(Error::config(
                    "forecast origin",
                    format!(
                        "row {origin} leaves fewer than {lookback} transformed rows before it (the transforms use {lost} rows)"
                    ),
                ));
            }
        }
        let mut x = ndarray::Array3::<F>::zeros((origins.len(), lookback, n_in));
        for (i, &origin) in origins.iter().enumerate() {
            let end = origin - lost; // row of `transformed` holding the origin
            for t in 0..lookback {
                for (c, &col) in self.spec.inputs.iter().enumerate() {
                    x[[i, t, c]] = F::from_f64(transformed[[end + 1 + t - lookback, col]]);
                }
            }
        }
        let prediction = self.model.predict(x.view())?;
        let targets: Vec<usize> = self.spec.targets.clone();
        origins
            .iter()
            .enumerate()
            .map(|(i, &origin)| {
                let block = prediction.index_axis(Axis(0), i).mapv(|v| v.to_f64());
                let history = values.slice(s![..=origin, ..]).select(Axis(1), &targets);
                self.pipeline
                    .inverse(block.view(), history.view(), &targets)
            })
            .collect()
    }

    /// One-step-ahead forecasts from every origin: `[origins, targets]` (the first step of each
    /// block).
    pub fn one_step(&self, values: ArrayView2<'_, f64>, origins: &[usize]) -> Result<Array2<f64>> {
        let blocks = self.predict_origins(values, origins)?;
        let k = self.spec.targets.len();
        let mut out = Array2::zeros((blocks.len(), k));
        for (i, b) in blocks.iter().enumerate() {
            out.row_mut(i).assign(&b.row(0));
        }
        Ok(out)
    }

    /// Direct multi-step: the model's whole block from `origin`, `[m, targets]`.
    pub fn direct(&self, values: ArrayView2<'_, f64>, origin: usize) -> Result<Array2<f64>> {
        Ok(self.predict_origins(values, &[origin])?.remove(0))
    }

    /// Recursive multi-step: `horizon` steps from `origin`, feeding each predicted block back
    /// as input. Allowed when every input column is a target; otherwise `future` must hold the
    /// future rows `[horizon, columns]` (original units; its target columns are ignored) for
    /// the other columns. The horizon may exceed, and need not be a multiple of, the model's
    /// block length.
    pub fn recursive(
        &self,
        values: ArrayView2<'_, f64>,
        origin: usize,
        horizon: usize,
        future: Option<ArrayView2<'_, f64>>,
    ) -> Result<Array2<f64>> {
        self.check_values(&values)?;
        if horizon == 0 {
            return Err(Error::config(
                "forecast horizon",
                "must be at least 1, got 0",
            ));
        }
        if origin >= values.nrows() {
            return Err(Error::config(
                "forecast origin",
                format!("row {origin} is past the table's {} rows", values.nrows()),
            ));
        }
        let exogenous: Vec<usize> = (0..values.ncols())
            .filter(|c| !self.spec.targets.contains(c))
            .collect();
        let needs_future = self
            .spec
            .inputs
            .iter()
            .any(|c| !self.spec.targets.contains(c));
        match (&future, needs_future) {
            (None, true) => {
                return Err(Error::Unsupported(format!(
                    "recursive forecasting feeds back only the target columns {:?}; the input columns {:?} \
                     need their future values",
                    self.spec.targets,
                    self.spec
                        .inputs
                        .iter()
                        .filter(|c| !self.spec.targets.contains(c))
                        .collect::<Vec<_>>()
                )));
            }
            (Some(f), _) if f.nrows() < horizon || f.ncols() != values.ncols() => {
                return Err(Error::shape(
                    "future values",
                    &[horizon, values.ncols()],
                    f.shape(),
                ));
            }
            _ => {}
        }
        let mut table = values.slice(s![..=origin, ..]).to_owned();
        let mut out = Array2::zeros((horizon, self.spec.targets.len()));
        let mut done = 0;
        while done < horizon {
            let last = table.nrows() - 1;
            let block = self.direct(table.view(), last)?;
            let take = block.nrows().min(horizon - done);
            for step in 0..take {
                out.row_mut(done + step).assign(&block.row(step));
                // The next row: predicted targets; other columns from `future`, or carried.
                let mut row = table.row(table.nrows() - 1).to_owned();
                for (k, &c) in self.spec.targets.iter().enumerate() {
                    row[c] = block[[step, k]];
                }
                if let Some(f) = &future {
                    for &c in &exogenous {
                        row[c] = f[[done + step, c]];
                    }
                }
                table
                    .push_row(row.view())
                    .map_err(|e| Error::config("forecast", e.to_string()))?;
            }
            done += take;
        }
        Ok(out)
    }
}
