//! Invertible transforms, fitted on training rows only, applied per column.

use ndarray::{Array2, ArrayView2, Axis, s};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One transform of a [`Pipeline`].
///
/// | transform | forward | inverse | fitted on the training rows |
/// | --- | --- | --- | --- |
/// | `Standardize` | (x − μ) / σ | y σ + μ | μ, σ per column (σ = 1 for a constant column) |
/// | `MinMax` | (x − min) / (max − min) | y (max − min) + min | min, max (range 1 if constant) |
/// | `Log` | ln x (x > 0) | eʸ | — |
/// | `Sqrt` | √x (x ≥ 0) | max(y, 0)² | — |
/// | `Difference { lag }` | x_t − x_{t−lag} | x_t = y_t + x_{t−lag} | — (drops `lag` rows) |
///
/// `Difference { lag: 1 }` is the first difference, `Difference { lag: 12 }` a seasonal one for
/// monthly data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Transform {
    /// Zero mean, unit variance.
    Standardize,
    /// Training range onto [0, 1].
    MinMax,
    /// Natural logarithm (values must be > 0).
    Log,
    /// Square root (values must be ≥ 0; keeps zeros, unlike the log).
    Sqrt,
    /// Differences at `lag` ≥ 1.
    Difference {
        /// The lag.
        lag: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Fitted {
    Standardize { mean: Vec<f64>, std: Vec<f64> },
    MinMax { min: Vec<f64>, range: Vec<f64> },
    Log,
    Sqrt,
    Difference { lag: usize },
}

/// Transforms fitted on training rows, applied in order and inverted in reverse order (for
/// whole series and for forecasts). Columns are transformed independently.
///
/// ```
/// use ndarray::array;
/// use recurrent::data::{Pipeline, Transform};
///
/// let train = array![[112.0], [118.0], [132.0], [129.0]];
/// let pipeline = Pipeline::fit(&[Transform::Log, Transform::Difference { lag: 1 }, Transform::Standardize], train.view())?;
/// let z = pipeline.transform(train.view())?; // 3 rows: the difference drops one
/// // Back to passengers: the rows before the transformed ones anchor the differences.
/// let back = pipeline.inverse(z.view(), train.slice(ndarray::s![..1, ..]), &[0])?;
/// assert!((back[[2, 0]] - 129.0).abs() < 1e-9);
/// # Ok::<(), recurrent::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    transforms: Vec<Transform>,
    steps: Vec<Fitted>,
    columns: usize,
}

impl Pipeline {
    /// Fits `transforms` on `train` `[rows, columns]`: each step is fitted on the training rows
    /// as transformed by the steps before it.
    pub fn fit(transforms: &[Transform], train: ArrayView2<'_, f64>) -> Result<Self> {
        let columns = train.ncols();
        if train.nrows() == 0 || columns == 0 {
            return Err(Error::Empty {
                what: "pipeline training rows".into(),
                axis: if train.nrows() == 0 {
                    "rows"
                } else {
                    "columns"
                }
                .into(),
                shape: train.shape().to_vec(),
            });
        }
        let mut stage = train.to_owned();
        let mut steps = Vec::with_capacity(transforms.len());
        for t in transforms {
            let fitted = match *t {
                Transform::Standardize => {
                    let mean = stage
                        .mean_axis(Axis(0))
                        .map(|m| m.to_vec())
                        .unwrap_or_default();
                    let std = stage
                        .std_axis(Axis(0), 0.0)
                        .iter()
                        .map(|&s| if s > 0.0 && s.is_finite() { s } else { 1.0 })
                        .collect();
                    Fitted::Standardize { mean, std }
                }
                Transform::MinMax => {
                    let min: Vec<f64> = stage
                        .columns()
                        .into_iter()
                        .map(|c| c.fold(f64::INFINITY, |m, &x| m.min(x)))
                        .collect();
                    let max: Vec<f64> = stage
                        .columns()
                        .into_iter()
                        .map(|c| c.fold(f64::NEG_INFINITY, |m, &x| m.max(x)))
                        .collect();
                    let range = min
                        .iter()
                        .zip(&max)
                        .map(|(lo, hi)| if hi > lo { hi - lo } else { 1.0 })
                        .collect();
                    Fitted::MinMax { min, range }
                }
                Transform::Log => Fitted::Log,
                Transform::Sqrt => Fitted::Sqrt,
                Transform::Difference { lag } => {
                    if lag == 0 {
                        return Err(Error::config("difference lag", "must be at least 1, got 0"));
                    }
                    Fitted::Difference { lag }
                }
            };
            let all: Vec<usize> = (0..columns).collect();
            stage = apply(&fitted, stage.view(), &all)?;
            if stage.nrows() == 0 {
                return Err(Error::config(
                    "pipeline",
                    format!(
                        "the differences leave no training rows of {}",
                        train.nrows()
                    ),
                ));
            }
            steps.push(fitted);
        }
        Ok(Pipeline {
            transforms: transforms.to_vec(),
            steps,
            columns,
        })
    }

    /// Checks a pipeline read from a file is whole: a fitted step per transform, of the same
    /// kind, with one finite parameter per column (and non-zero scales).
    pub(crate) fn check(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::config("pipeline", reason));
        if self.columns == 0 {
            return bad("has no columns".into());
        }
        if self.steps.len() != self.transforms.len() {
            return bad(format!(
                "{} transforms but {} fitted steps",
                self.transforms.len(),
                self.steps.len()
            ));
        }
        for (i, (t, step)) in self.transforms.iter().zip(&self.steps).enumerate() {
            let per_column: &[(&str, &Vec<f64>)] = match (t, step) {
                (Transform::Standardize, Fitted::Standardize { mean, std }) => {
                    &[("mean", mean), ("std", std)]
                }
                (Transform::MinMax, Fitted::MinMax { min, range }) => {
                    &[("min", min), ("range", range)]
                }
                (Transform::Log, Fitted::Log) | (Transform::Sqrt, Fitted::Sqrt) => &[],
                (Transform::Difference { lag }, Fitted::Difference { lag: fitted })
                    if lag == fitted && (1..=crate::persist::MAX_DIMENSION).contains(lag) =>
                {
                    &[]
                }
                _ => return bad(format!("step {i} does not match its transform {t:?}")),
            };
            for (name, values) in per_column {
                if values.len() != self.columns {
                    return bad(format!(
                        "step {i} has {} {name} values for {} columns",
                        values.len(),
                        self.columns
                    ));
                }
                if values.iter().any(|v| !v.is_finite()) {
                    return bad(format!("step {i} has a non-finite {name}"));
                }
            }
            if let Fitted::Standardize { std: scale, .. } | Fitted::MinMax { range: scale, .. } =
                step
                && scale.iter().any(|&v| v <= 0.0)
            {
                return bad(format!("step {i} has a scale ≤ 0"));
            }
        }
        Ok(())
    }

    /// The transforms, in order.
    pub fn transforms(&self) -> &[Transform] {
        &self.transforms
    }

    /// The number of columns the pipeline was fitted on.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// The number of leading rows the differences consume (Σ lags): row j of a transformed
    /// series is row j + `lost_rows()` of the original.
    pub fn lost_rows(&self) -> usize {
        self.steps
            .iter()
            .map(|s| match s {
                Fitted::Difference { lag } => *lag,
                _ => 0,
            })
            .sum()
    }

    /// Transforms `values` `[rows, columns]` (all the pipeline's columns): `rows − lost_rows()`
    /// rows come back.
    pub fn transform(&self, values: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
        let all: Vec<usize> = (0..self.columns).collect();
        self.transform_columns(values, &all)
    }

    /// Transforms `values` whose columns are the pipeline's columns `columns` (in that order).
    pub fn transform_columns(
        &self,
        values: ArrayView2<'_, f64>,
        columns: &[usize],
    ) -> Result<Array2<f64>> {
        self.check_columns(values.ncols(), columns, "values")?;
        if values.nrows() <= self.lost_rows() {
            return Err(Error::config(
                "pipeline transform",
                format!(
                    "{} rows are too few for differences of total lag {}",
                    values.nrows(),
                    self.lost_rows()
                ),
            ));
        }
        let mut stage = values.to_owned();
        for step in &self.steps {
            stage = apply(step, stage.view(), columns)?;
        }
        Ok(stage)
    }

    /// Maps transformed rows `transformed` `[h, k]` back to original units. `columns` names
    /// the pipeline columns of its k columns; `history` `[m, k]` holds the original values of
    /// those columns in the rows right before (m ≥ [`lost_rows`](Self::lost_rows); what the
    /// differences are undone from). Works for forecasts (history = the data up to the origin)
    /// and whole series (history = the first `lost_rows()` rows).
    pub fn inverse(
        &self,
        transformed: ArrayView2<'_, f64>,
        history: ArrayView2<'_, f64>,
        columns: &[usize],
    ) -> Result<Array2<f64>> {
        self.check_columns(transformed.ncols(), columns, "transformed values")?;
        self.check_columns(history.ncols(), columns, "history")?;
        let needed = self.lost_rows();
        if history.nrows() < needed {
            return Err(Error::config(
                "pipeline inverse",
                format!(
                    "needs at least {needed} history rows to undo the differences, got {}",
                    history.nrows()
                ),
            ));
        }
        // The history as each step saw it: stages[i] is step i's input.
        let mut stages = Vec::with_capacity(self.steps.len());
        let mut stage = history.to_owned();
        for step in &self.steps {
            let next = if stage.nrows() > 0 {
                let needs = match step {
                    Fitted::Difference { lag } => *lag,
                    _ => 0,
                };
                if stage.nrows() > needs {
                    Some(apply(step, stage.view(), columns)?)
                } else {
                    None
                }
            } else {
                None
            };
            stages.push(stage);
            stage = next.unwrap_or_else(|| Array2::zeros((0, columns.len())));
        }
        let mut z = transformed.to_owned();
        for (step, before) in self.steps.iter().zip(&stages).rev() {
            z = invert(step, z.view(), before.view(), columns);
        }
        Ok(z)
    }

    fn check_columns(&self, ncols: usize, columns: &[usize], what: &str) -> Result<()> {
        if ncols != columns.len() {
            return Err(Error::config(
                format!("pipeline {what}"),
                format!(
                    "{ncols} columns given for {} selected columns",
                    columns.len()
                ),
            ));
        }
        if let Some(&c) = columns.iter().find(|&&c| c >= self.columns) {
            return Err(Error::config(
                "pipeline columns",
                format!(
                    "column {c} is out of range: the pipeline was fitted on {} columns",
                    self.columns
                ),
            ));
        }
        Ok(())
    }
}

/// Applies one fitted step to `x` whose columns are the pipeline columns `cols`.
fn apply(step: &Fitted, x: ArrayView2<'_, f64>, cols: &[usize]) -> Result<Array2<f64>> {
    let mut y = x.to_owned();
    match step {
        Fitted::Standardize { mean, std } => {
            for (k, mut col) in y.columns_mut().into_iter().enumerate() {
                let (m, s) = (mean[cols[k]], std[cols[k]]);
                col.mapv_inplace(|v| (v - m) / s);
            }
        }
        Fitted::MinMax { min, range } => {
            for (k, mut col) in y.columns_mut().into_iter().enumerate() {
                let (lo, r) = (min[cols[k]], range[cols[k]]);
                col.mapv_inplace(|v| (v - lo) / r);
            }
        }
        Fitted::Log => {
            if let Some(((r, c), v)) = y.indexed_iter().find(|(_, v)| **v <= 0.0) {
                return Err(Error::config(
                    "log transform",
                    format!("needs values > 0, got {v} at row {r}, column {}", cols[c]),
                ));
            }
            y.mapv_inplace(f64::ln);
        }
        Fitted::Sqrt => {
            if let Some(((r, c), v)) = y.indexed_iter().find(|(_, v)| **v < 0.0) {
                return Err(Error::config(
                    "square-root transform",
                    format!("needs values ≥ 0, got {v} at row {r}, column {}", cols[c]),
                ));
            }
            y.mapv_inplace(f64::sqrt);
        }
        Fitted::Difference { lag } => {
            let n = x.nrows();
            if n <= *lag {
                return Ok(Array2::zeros((0, x.ncols())));
            }
            y = &x.slice(s![*lag.., ..]) - &x.slice(s![..n - lag, ..]);
        }
    }
    Ok(y)
}

/// Undoes one step; `before` holds the step's input rows that precede `z`.
fn invert(
    step: &Fitted,
    z: ArrayView2<'_, f64>,
    before: ArrayView2<'_, f64>,
    cols: &[usize],
) -> Array2<f64> {
    let mut x = z.to_owned();
    match step {
        Fitted::Standardize { mean, std } => {
            for (k, mut col) in x.columns_mut().into_iter().enumerate() {
                let (m, s) = (mean[cols[k]], std[cols[k]]);
                col.mapv_inplace(|v| v * s + m);
            }
        }
        Fitted::MinMax { min, range } => {
            for (k, mut col) in x.columns_mut().into_iter().enumerate() {
                let (lo, r) = (min[cols[k]], range[cols[k]]);
                col.mapv_inplace(|v| v * r + lo);
            }
        }
        Fitted::Log => x.mapv_inplace(f64::exp),
        Fitted::Sqrt => x.mapv_inplace(|v| v.max(0.0) * v.max(0.0)),
        Fitted::Difference { lag } => {
            let m = before.nrows();
            for t in 0..x.nrows() {
                for k in 0..x.ncols() {
                    // x_t = y_t + x_{t−lag}, reaching into the rows before for t < lag
                    let prev = if t >= *lag {
                        x[[t - lag, k]]
                    } else {
                        before[[m + t - lag, k]]
                    };
                    x[[t, k]] += prev;
                }
            }
        }
    }
    x
}
