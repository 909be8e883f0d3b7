//! Sliding windows: `[samples, lookback, features]` inputs and `[samples, horizon, targets]`
//! targets.

use std::ops::Range;

use ndarray::{Array3, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::{Error, Float, Result};

/// How windows are cut from a `[rows, columns]` table.
///
/// A window's *origin* is the row of its last input: inputs are rows
/// `origin − lookback + 1 ..= origin` of the `inputs` columns, targets are rows
/// `origin + 1 ..= origin + horizon` of the `targets` columns, so a target never lies inside
/// its own input window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    /// Input steps per window (≥ 1).
    pub lookback: usize,
    /// Target steps per window (≥ 1).
    pub horizon: usize,
    /// Rows between consecutive origins (≥ 1).
    pub stride: usize,
    /// Input columns.
    pub inputs: Vec<usize>,
    /// Target columns.
    pub targets: Vec<usize>,
}

impl WindowSpec {
    /// Windows of `lookback` inputs and `horizon` targets of column 0, stride 1.
    pub fn new(lookback: usize, horizon: usize) -> Self {
        WindowSpec {
            lookback,
            horizon,
            stride: 1,
            inputs: vec![0],
            targets: vec![0],
        }
    }

    /// Sets the stride.
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    /// Sets the input columns.
    pub fn inputs(mut self, columns: &[usize]) -> Self {
        self.inputs = columns.to_vec();
        self
    }

    /// Sets the target columns.
    pub fn targets(mut self, columns: &[usize]) -> Self {
        self.targets = columns.to_vec();
        self
    }

    /// Checks the spec against a table of `columns` columns.
    pub fn validate(&self, columns: usize) -> Result<()> {
        for (what, n) in [
            ("lookback", self.lookback),
            ("horizon", self.horizon),
            ("stride", self.stride),
        ] {
            if n == 0 {
                return Err(Error::config(
                    format!("window {what}"),
                    "must be at least 1, got 0",
                ));
            }
            if n > crate::persist::MAX_DIMENSION {
                return Err(Error::config(
                    format!("window {what}"),
                    format!("{n} is above the limit {}", crate::persist::MAX_DIMENSION),
                ));
            }
        }
        for (what, cols) in [("input", &self.inputs), ("target", &self.targets)] {
            if cols.is_empty() {
                return Err(Error::config(
                    format!("window {what} columns"),
                    "none selected",
                ));
            }
            if let Some(&c) = cols.iter().find(|&&c| c >= columns) {
                return Err(Error::config(
                    format!("window {what} columns"),
                    format!("column {c} is out of range for a table of {columns} columns"),
                ));
            }
        }
        Ok(())
    }
}

/// Windows cut from a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Windows<F> {
    /// `[samples, lookback, inputs]`.
    pub x: Array3<F>,
    /// `[samples, horizon, targets]`.
    pub y: Array3<F>,
    /// Each window's origin row (its last input), ascending.
    pub origins: Vec<usize>,
}

/// Every window of `values` `[rows, columns]` whose targets all lie in the rows `targets_in`
/// (inputs may reach back before it, never past the origin). Origins are counted back from the
/// last possible one, so the last window's last target is row `targets_in.end − 1`.
///
/// ```
/// use ndarray::Array2;
/// use recurrent::data::{WindowSpec, windows};
/// let values = Array2::from_shape_fn((10, 1), |(r, _)| r as f64);
/// let w = windows::<f32>(values.view(), &WindowSpec::new(3, 2), 0..10)?;
/// assert_eq!(w.x.shape(), &[6, 3, 1]);              // origins 2..=7
/// assert_eq!(w.y[[5, 1, 0]], 9.0);                   // the last target is the last value
/// # Ok::<(), recurrent::Error>(())
/// ```
pub fn windows<F: Float>(
    values: ArrayView2<'_, f64>,
    spec: &WindowSpec,
    targets_in: Range<usize>,
) -> Result<Windows<F>> {
    spec.validate(values.ncols())?;
    let rows = values.nrows();
    if targets_in.start >= targets_in.end || targets_in.end > rows {
        return Err(Error::config(
            "window target rows",
            format!("{targets_in:?} is not a non-empty range within the {rows} rows"),
        ));
    }
    // origin + horizon ≤ end − 1, origin + 1 ≥ start, origin + 1 ≥ lookback.
    let last = (targets_in.end - 1).checked_sub(spec.horizon);
    let first = spec
        .lookback
        .saturating_sub(1)
        .max(targets_in.start.saturating_sub(1));
    let origins: Vec<usize> = match last {
        Some(last) if last >= first => {
            let mut o: Vec<usize> = (first..=last).rev().step_by(spec.stride).collect();
            o.reverse();
            o
        }
        _ => {
            return Err(Error::config(
                "windows",
                format!(
                    "a window of {} inputs and {} targets does not fit: targets in rows {:?} of a series of {rows} values",
                    spec.lookback, spec.horizon, targets_in
                ),
            ));
        }
    };
    let x = Array3::from_shape_fn(
        (origins.len(), spec.lookback, spec.inputs.len()),
        |(i, t, c)| F::from_f64(values[[origins[i] + 1 + t - spec.lookback, spec.inputs[c]]]),
    );
    let y = Array3::from_shape_fn(
        (origins.len(), spec.horizon, spec.targets.len()),
        |(i, t, c)| F::from_f64(values[[origins[i] + 1 + t, spec.targets[c]]]),
    );
    Ok(Windows { x, y, origins })
}

/// The input window ending at row `origin`: `[1, lookback, inputs]`.
pub fn input_window<F: Float>(
    values: ArrayView2<'_, f64>,
    spec: &WindowSpec,
    origin: usize,
) -> Result<Array3<F>> {
    spec.validate(values.ncols())?;
    if origin >= values.nrows() || origin + 1 < spec.lookback {
        return Err(Error::config(
            "input window",
            format!(
                "a window of {} steps ending at row {origin} does not fit in {} rows",
                spec.lookback,
                values.nrows()
            ),
        ));
    }
    Ok(Array3::from_shape_fn(
        (1, spec.lookback, spec.inputs.len()),
        |(_, t, c)| F::from_f64(values[[origin + 1 + t - spec.lookback, spec.inputs[c]]]),
    ))
}
