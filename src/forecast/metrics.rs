//! Forecast accuracy metrics and the classical baselines.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

fn check_pair(actual: &[f64], predicted: &[f64]) -> Result<()> {
    if actual.len() != predicted.len() {
        return Err(Error::shape(
            "predictions (must match the actual values)",
            &[actual.len()],
            &[predicted.len()],
        ));
    }
    if actual.is_empty() {
        return Err(Error::Empty {
            what: "actual values".into(),
            axis: "values".into(),
            shape: vec![0],
        });
    }
    for (what, values) in [("actual values", actual), ("predictions", predicted)] {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: what.into(),
                index: vec![i],
            });
        }
    }
    Ok(())
}

/// Mean squared error, 1/n Σ (y − ŷ)².
pub fn mse(actual: &[f64], predicted: &[f64]) -> Result<f64> {
    check_pair(actual, predicted)?;
    Ok(actual
        .iter()
        .zip(predicted)
        .map(|(y, p)| (y - p) * (y - p))
        .sum::<f64>()
        / actual.len() as f64)
}

/// Root mean squared error, √MSE.
pub fn rmse(actual: &[f64], predicted: &[f64]) -> Result<f64> {
    mse(actual, predicted).map(f64::sqrt)
}

/// Mean absolute error, 1/n Σ |y − ŷ|.
pub fn mae(actual: &[f64], predicted: &[f64]) -> Result<f64> {
    check_pair(actual, predicted)?;
    Ok(actual
        .iter()
        .zip(predicted)
        .map(|(y, p)| (y - p).abs())
        .sum::<f64>()
        / actual.len() as f64)
}

/// Mean absolute percentage error in percent, 100/n Σ |y − ŷ| / |y|; an error when an actual
/// value is 0.
pub fn mape(actual: &[f64], predicted: &[f64]) -> Result<f64> {
    check_pair(actual, predicted)?;
    if let Some(i) = actual.iter().position(|&y| y == 0.0) {
        return Err(Error::config(
            "MAPE",
            format!("undefined: the actual value at index {i} is 0 (use sMAPE or MASE)"),
        ));
    }
    Ok(100.0
        * actual
            .iter()
            .zip(predicted)
            .map(|(y, p)| ((y - p) / y).abs())
            .sum::<f64>()
        / actual.len() as f64)
}

/// Symmetric MAPE in percent: mean of 200 · |y − ŷ| / (|y| + |ŷ|), a term being 0 when
/// y = ŷ = 0.
pub fn smape(actual: &[f64], predicted: &[f64]) -> Result<f64> {
    check_pair(actual, predicted)?;
    let sum: f64 = actual
        .iter()
        .zip(predicted)
        .map(|(y, p)| {
            let d = y.abs() + p.abs();
            if d == 0.0 {
                0.0
            } else {
                200.0 * (y - p).abs() / d
            }
        })
        .sum();
    Ok(sum / actual.len() as f64)
}

/// Mean absolute scaled error: MAE divided by the in-sample MAE of the seasonal naive forecast
/// of period `season` (1: the naive forecast) on `training`.
pub fn mase(actual: &[f64], predicted: &[f64], training: &[f64], season: usize) -> Result<f64> {
    if season == 0 {
        return Err(Error::config("MASE season", "must be at least 1, got 0"));
    }
    if training.len() <= season {
        return Err(Error::config(
            "MASE",
            format!(
                "needs more than {season} training values, got {}",
                training.len()
            ),
        ));
    }
    let scale = training
        .windows(season + 1)
        .map(|w| (w[season] - w[0]).abs())
        .sum::<f64>()
        / (training.len() - season) as f64;
    if scale == 0.0 || !scale.is_finite() {
        return Err(Error::config(
            "MASE",
            "the training series' seasonal naive error is 0: MASE is undefined",
        ));
    }
    Ok(mae(actual, predicted)? / scale)
}

/// The usual metrics of one forecast.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Mean squared error.
    pub mse: f64,
    /// Root mean squared error.
    pub rmse: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// MAPE in percent, when no actual value is 0.
    pub mape: Option<f64>,
    /// sMAPE in percent.
    pub smape: f64,
}

impl Metrics {
    /// All metrics of `predicted` against `actual`.
    pub fn compute(actual: &[f64], predicted: &[f64]) -> Result<Self> {
        let mse = mse(actual, predicted)?;
        Ok(Metrics {
            mse,
            rmse: mse.sqrt(),
            mae: mae(actual, predicted)?,
            mape: mape(actual, predicted).ok(),
            smape: smape(actual, predicted)?,
        })
    }
}

/// A classical forecast from a univariate history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Baseline {
    /// Repeat the last value.
    Naive,
    /// Repeat the last season: ŷ_{T+i} = y_{T+i−s·⌈i/s⌉}.
    SeasonalNaive {
        /// The season length s.
        period: usize,
    },
    /// The line through the first and last values, extended.
    Drift,
    /// The mean of the history.
    Mean,
}

impl Baseline {
    /// The name used in summary lines (`"seasonal_naive"`).
    pub fn name(&self) -> &'static str {
        match self {
            Baseline::Naive => "naive",
            Baseline::SeasonalNaive { .. } => "seasonal_naive",
            Baseline::Drift => "drift",
            Baseline::Mean => "mean",
        }
    }

    /// The forecast of the `horizon` values after `history`.
    pub fn forecast(&self, history: &[f64], horizon: usize) -> Result<Vec<f64>> {
        if history.is_empty() {
            return Err(Error::Empty {
                what: format!("{} baseline history", self.name()),
                axis: "values".into(),
                shape: vec![0],
            });
        }
        if horizon == 0 {
            return Err(Error::config(
                "baseline horizon",
                "must be at least 1, got 0",
            ));
        }
        let n = history.len();
        let last = history[n - 1];
        Ok(match *self {
            Baseline::Naive => vec![last; horizon],
            Baseline::SeasonalNaive { period } => {
                if period == 0 || period > n {
                    return Err(Error::config(
                        "seasonal naive period",
                        format!("must lie in 1..={n} (the history's length), got {period}"),
                    ));
                }
                (1..=horizon)
                    .map(|i| history[n - period + (i - 1) % period])
                    .collect()
            }
            Baseline::Drift => {
                let slope = if n > 1 {
                    (last - history[0]) / (n - 1) as f64
                } else {
                    0.0
                };
                (1..=horizon).map(|i| last + slope * i as f64).collect()
            }
            Baseline::Mean => vec![history.iter().sum::<f64>() / n as f64; horizon],
        })
    }

    /// One-step-ahead forecasts of `series[start..]`, each from the values before it.
    pub fn one_step(&self, series: &[f64], start: usize) -> Result<Vec<f64>> {
        if start == 0 || start >= series.len() {
            return Err(Error::config(
                "one-step baseline start",
                format!("must lie in 1..{}, got {start}", series.len()),
            ));
        }
        (start..series.len())
            .map(|t| self.forecast(&series[..t], 1).map(|f| f[0]))
            .collect()
    }
}
