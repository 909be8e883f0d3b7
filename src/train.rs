//! Training: [`Trainer::fit`] runs epochs of mini-batch gradient descent with optional
//! validation, clipping, early stopping, learning-rate schedules, truncated BPTT and callbacks.

use std::fmt::Debug;

use ndarray::{Array3, ArrayView3, Axis, s};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::optim::{Clip, Optimizer, clip_grad_norm, clip_grad_value, grad_norm};
use crate::{Error, Float, Layer, Loss, Result};

/// Where the validation data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Validation {
    /// No validation.
    None,
    /// The last fraction f ∈ (0, 1) of the samples, in their given (chronological) order;
    /// never shuffled into training.
    LastFraction(f64),
}

/// Early stopping on the validation loss (the training loss without validation data).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// Epochs without improvement before stopping (≥ 1).
    pub patience: usize,
    /// An improvement must lower the best loss by more than this (≥ 0).
    pub min_delta: f64,
    /// Restore the weights of the best epoch when training ends.
    pub restore_best_weights: bool,
}

impl EarlyStopping {
    /// Stop after `patience` epochs without improvement; min_delta 0; restores the best weights.
    pub fn new(patience: usize) -> Self {
        EarlyStopping {
            patience,
            min_delta: 0.0,
            restore_best_weights: true,
        }
    }

    /// Sets min_delta.
    pub fn min_delta(mut self, min_delta: f64) -> Self {
        self.min_delta = min_delta;
        self
    }

    /// Sets whether the best weights are restored.
    pub fn restore_best_weights(mut self, restore: bool) -> Self {
        self.restore_best_weights = restore;
        self
    }

    fn validate(&self) -> Result<()> {
        if self.patience == 0 {
            return Err(Error::config(
                "early stopping patience",
                "must be at least 1, got 0",
            ));
        }
        if !(self.min_delta.is_finite() && self.min_delta >= 0.0) {
            return Err(Error::config(
                "early stopping min_delta",
                format!("must be finite and ≥ 0, got {}", self.min_delta),
            ));
        }
        Ok(())
    }
}

/// A learning-rate schedule, applied at the start of every epoch (epochs count from 0) to the
/// optimizer's initial rate lr₀.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LrSchedule {
    /// lr = lr₀.
    Constant,
    /// lr = lr₀ · γ^⌊epoch / step_size⌋ (`StepLR`).
    Step {
        /// Epochs between decays.
        step_size: usize,
        /// Decay factor γ ∈ (0, 1].
        gamma: f64,
    },
    /// lr = lr₀ · γ^epoch (`ExponentialLR`).
    Exponential {
        /// Decay factor γ ∈ (0, 1].
        gamma: f64,
    },
    /// lr = η_min + (lr₀ − η_min)(1 + cos(π · min(epoch, T) / T)) / 2 (`CosineAnnealingLR`).
    Cosine {
        /// T, the epochs of one half cosine.
        t_max: usize,
        /// η_min ≥ 0.
        eta_min: f64,
    },
    /// Multiplies the rate by `factor` when the monitored loss has not improved by more than
    /// `threshold` (relative) for `patience` epochs, down to `min_lr` (`ReduceLROnPlateau`).
    ReduceOnPlateau {
        /// Factor ∈ (0, 1).
        factor: f64,
        /// Epochs without improvement before a reduction.
        patience: usize,
        /// Relative improvement needed: loss < best · (1 − threshold).
        threshold: f64,
        /// The floor.
        min_lr: f64,
    },
}

impl LrSchedule {
    fn validate(&self) -> Result<()> {
        let bad = |what: &str, why: String| Err(Error::config(format!("lr schedule {what}"), why));
        match *self {
            LrSchedule::Constant => Ok(()),
            LrSchedule::Step { step_size, gamma } => {
                if step_size == 0 {
                    return bad("step_size", "must be at least 1, got 0".into());
                }
                check_gamma(gamma)
            }
            LrSchedule::Exponential { gamma } => check_gamma(gamma),
            LrSchedule::Cosine { t_max, eta_min } => {
                if t_max == 0 {
                    return bad("t_max", "must be at least 1, got 0".into());
                }
                if !(eta_min.is_finite() && eta_min >= 0.0) {
                    return bad("eta_min", format!("must be finite and ≥ 0, got {eta_min}"));
                }
                Ok(())
            }
            LrSchedule::ReduceOnPlateau {
                factor,
                threshold,
                min_lr,
                ..
            } => {
                if !(factor > 0.0 && factor < 1.0) {
                    return bad("factor", format!("must lie in (0, 1), got {factor}"));
                }
                if !(threshold.is_finite() && threshold >= 0.0) {
                    return bad(
                        "threshold",
                        format!("must be finite and ≥ 0, got {threshold}"),
                    );
                }
                if !(min_lr.is_finite() && min_lr >= 0.0) {
                    return bad("min_lr", format!("must be finite and ≥ 0, got {min_lr}"));
                }
                Ok(())
            }
        }
    }
}

fn check_gamma(gamma: f64) -> Result<()> {
    if gamma > 0.0 && gamma <= 1.0 {
        Ok(())
    } else {
        Err(Error::config(
            "lr schedule gamma",
            format!("must lie in (0, 1], got {gamma}"),
        ))
    }
}

/// The state a schedule carries between epochs (for reduce-on-plateau; kept so training can be
/// checkpointed and resumed).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// The rate in force.
    pub lr: f64,
    /// The best monitored loss so far (`None` before the first).
    pub best: Option<f64>,
    /// Epochs since the last improvement.
    pub bad_epochs: usize,
}

impl ScheduleState {
    fn new(lr: f64) -> Self {
        ScheduleState {
            lr,
            best: None,
            bad_epochs: 0,
        }
    }

    /// The rate for `epoch` (before it runs).
    fn rate_for(&self, schedule: &LrSchedule, base: f64, epoch: usize) -> f64 {
        match *schedule {
            LrSchedule::Constant => base,
            LrSchedule::Step { step_size, gamma } => base * gamma.powi((epoch / step_size) as i32),
            LrSchedule::Exponential { gamma } => base * gamma.powi(epoch as i32),
            LrSchedule::Cosine { t_max, eta_min } => {
                let t = epoch.min(t_max) as f64 / t_max as f64;
                eta_min + (base - eta_min) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
            }
            LrSchedule::ReduceOnPlateau { .. } => self.lr,
        }
    }

    /// Reduce-on-plateau bookkeeping after an epoch that monitored `loss`.
    fn observe(&mut self, schedule: &LrSchedule, loss: f64) {
        if let LrSchedule::ReduceOnPlateau {
            factor,
            patience,
            threshold,
            min_lr,
        } = *schedule
        {
            let improved = self.best.is_none_or(|best| loss < best * (1.0 - threshold));
            match self.best {
                Some(_) if !improved => {
                    self.bad_epochs += 1;
                    if self.bad_epochs > patience {
                        self.lr = (self.lr * factor).max(min_lr);
                        self.bad_epochs = 0;
                    }
                }
                _ => {
                    self.best = Some(loss);
                    self.bad_epochs = 0;
                }
            }
        }
    }
}

/// What a callback learns after each epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochReport {
    /// The epoch just finished, from 0.
    pub epoch: usize,
    /// The planned number of epochs.
    pub epochs: usize,
    /// Mean training loss over the epoch's samples.
    pub train_loss: f64,
    /// Validation loss, when there is validation data.
    pub val_loss: Option<f64>,
    /// Mean pre-clip global gradient norm over the epoch's optimizer steps.
    pub grad_norm: f64,
    /// The learning rate used in the epoch.
    pub learning_rate: f64,
    /// The values of the [`Trainer::metric`]s, by name, computed after the epoch.
    pub metrics: Vec<(String, f64)>,
}

/// A callback's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Go on training.
    Continue,
    /// Stop after this epoch.
    Stop,
}

/// A per-epoch callback.
pub type Callback = Box<dyn FnMut(&EpochReport) -> Control + Send>;

/// A per-epoch metric of the model (e.g. validation MAPE in original units, computed with a
/// [`Forecaster`](crate::forecast::Forecaster)).
pub type MetricFn<F> = Box<dyn FnMut(&dyn Layer<F>) -> Result<f64> + Send>;

/// A ready callback that prints one line every `every` epochs (and the last):
/// `epoch  10/100  loss 0.012345  val 0.023456  |g| 0.512  lr 1.00e-3`.
pub fn progress_printer(every: usize) -> Callback {
    let every = every.max(1);
    Box::new(move |r: &EpochReport| {
        if (r.epoch + 1) % every == 0 || r.epoch + 1 == r.epochs || r.epoch == 0 {
            let val = r
                .val_loss
                .map(|v| format!("  val {v:.6}"))
                .unwrap_or_default();
            let metrics: String = r
                .metrics
                .iter()
                .map(|(n, v)| format!("  {n} {v:.4}"))
                .collect();
            println!(
                "epoch {:>4}/{}  loss {:.6}{val}{metrics}  |g| {:.3}  lr {:.2e}",
                r.epoch + 1,
                r.epochs,
                r.train_loss,
                r.grad_norm,
                r.learning_rate
            );
        }
        Control::Continue
    })
}

/// One epoch in the [`History`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Mean training loss.
    pub train_loss: f64,
    /// Validation loss, if any.
    pub val_loss: Option<f64>,
    /// Mean pre-clip gradient norm.
    pub grad_norm: f64,
    /// The learning rate used.
    pub learning_rate: f64,
    /// The [`Trainer::metric`] values, by name.
    #[serde(default)]
    pub metrics: Vec<(String, f64)>,
}

/// What [`Trainer::fit`] returns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// One record per epoch run.
    pub epochs: Vec<EpochRecord>,
    /// The pre-clip global gradient norm of every optimizer step, in order.
    pub step_grad_norms: Vec<f64>,
    /// The epoch with the best monitored loss (validation if any, else training).
    pub best_epoch: Option<usize>,
    /// The best monitored loss.
    pub best_loss: Option<f64>,
    /// Whether early stopping or a callback ended training before the planned epochs.
    pub stopped_early: bool,
}

impl History {
    /// The last epoch's training loss.
    pub fn final_train_loss(&self) -> Option<f64> {
        self.epochs.last().map(|e| e.train_loss)
    }

    /// The last epoch's validation loss.
    pub fn final_val_loss(&self) -> Option<f64> {
        self.epochs.last().and_then(|e| e.val_loss)
    }
}

/// Trains a model: a loss, an optimizer, and the settings of [`fit`](Self::fit).
///
/// ```
/// use ndarray::Array3;
/// use recurrent::{Adam, Mse, Sequential, Layer};
/// use recurrent::train::{Trainer, Validation};
///
/// // Learn y = sum of a 5-step window.
/// let x = Array3::<f64>::from_shape_fn((64, 5, 1), |(b, t, _)| ((b * 7 + t * 3) % 11) as f64 / 11.0 - 0.5);
/// let y = x.sum_axis(ndarray::Axis(1)).insert_axis(ndarray::Axis(1));
/// let mut model = Sequential::<f64>::builder(1).gru(8).dense(1).build(0)?;
/// let before = recurrent::Mse.loss(model.predict(x.view())?.view(), y.view())?;
/// let mut trainer = Trainer::new(Mse, Adam::new(0.01)?)
///     .epochs(30)
///     .batch_size(16)
///     .validation(Validation::LastFraction(0.25));
/// let history = trainer.fit(&mut model, x.view(), y.view())?;
/// assert!(history.final_train_loss().unwrap() < before / 5.0);
/// # use recurrent::Loss;
/// # Ok::<(), recurrent::Error>(())
/// ```
pub struct Trainer<F: Float> {
    loss: Box<dyn Loss<F>>,
    optimizer: Box<dyn Optimizer<F>>,
    epochs: usize,
    batch_size: usize,
    shuffle: bool,
    seed: u64,
    validation: Validation,
    clip: Option<Clip>,
    early_stopping: Option<EarlyStopping>,
    schedule: LrSchedule,
    tbptt: Option<usize>,
    callbacks: Vec<Callback>,
    metrics: Vec<(String, MetricFn<F>)>,
}

impl<F: Float> Debug for Trainer<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("loss", &self.loss)
            .field("optimizer", &self.optimizer)
            .field("epochs", &self.epochs)
            .field("batch_size", &self.batch_size)
            .field("shuffle", &self.shuffle)
            .field("seed", &self.seed)
            .field("validation", &self.validation)
            .field("clip", &self.clip)
            .field("early_stopping", &self.early_stopping)
            .field("schedule", &self.schedule)
            .field("tbptt", &self.tbptt)
            .field("callbacks", &self.callbacks.len())
            .field(
                "metrics",
                &self.metrics.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Rows `rows` of a `[N, …]` array.
fn take_rows<F: Float>(a: &ArrayView3<'_, F>, rows: &[usize]) -> Array3<F> {
    a.select(Axis(0), rows)
}

/// The first non-finite entry of `a`, if any.
fn first_non_finite<F: Float>(a: &ArrayView3<'_, F>) -> Option<Vec<usize>> {
    a.indexed_iter()
        .find(|(_, v)| !v.is_finite())
        .map(|((i, j, k), _)| vec![i, j, k])
}

impl<F: Float> Trainer<F> {
    /// A trainer with `loss` and `optimizer`; 1 epoch, batch size 32, shuffling with seed 0, no
    /// validation, no clipping, constant learning rate.
    pub fn new(loss: impl Loss<F> + 'static, optimizer: impl Optimizer<F> + 'static) -> Self {
        Self::from_boxes(Box::new(loss), Box::new(optimizer))
    }

    /// As [`new`](Self::new), from boxed parts (e.g. chosen at run time).
    pub fn from_boxes(loss: Box<dyn Loss<F>>, optimizer: Box<dyn Optimizer<F>>) -> Self {
        Trainer {
            loss,
            optimizer,
            epochs: 1,
            batch_size: 32,
            shuffle: true,
            seed: 0,
            validation: Validation::None,
            clip: None,
            early_stopping: None,
            schedule: LrSchedule::Constant,
            tbptt: None,
            callbacks: Vec::new(),
            metrics: Vec::new(),
        }
    }

    /// The number of epochs (≥ 1).
    pub fn epochs(mut self, epochs: usize) -> Self {
        self.epochs = epochs;
        self
    }

    /// The mini-batch size (≥ 1; the last batch of an epoch may be smaller).
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Whether training samples are shuffled each epoch (default true).
    pub fn shuffle(mut self, shuffle: bool) -> Self {
        self.shuffle = shuffle;
        self
    }

    /// The shuffling seed (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Where validation data comes from when [`fit`](Self::fit) gets none explicitly.
    pub fn validation(mut self, validation: Validation) -> Self {
        self.validation = validation;
        self
    }

    /// Gradient clipping (off by default).
    pub fn clip(mut self, clip: Clip) -> Self {
        self.clip = Some(clip);
        self
    }

    /// Early stopping.
    pub fn early_stopping(mut self, early_stopping: EarlyStopping) -> Self {
        self.early_stopping = Some(early_stopping);
        self
    }

    /// A learning-rate schedule.
    pub fn schedule(mut self, schedule: LrSchedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// Truncated BPTT: each batch's sequences are cut into chunks of `steps` steps; the state
    /// is carried from chunk to chunk, the gradient is cut at each boundary, and each chunk
    /// takes one optimizer step. Needs aligned targets (`[B, T, k]` for inputs `[B, T, I]`).
    pub fn truncated_bptt(mut self, steps: usize) -> Self {
        self.tbptt = Some(steps);
        self
    }

    /// Adds a per-epoch callback; returning [`Control::Stop`] ends training.
    pub fn callback(mut self, callback: Callback) -> Self {
        self.callbacks.push(callback);
        self
    }

    /// Adds a metric computed on the model after every epoch, reported to callbacks and kept in
    /// the [`History`] (e.g. validation MAPE in original units).
    pub fn metric(
        mut self,
        name: &str,
        metric: impl FnMut(&dyn Layer<F>) -> Result<f64> + Send + 'static,
    ) -> Self {
        self.metrics.push((name.to_string(), Box::new(metric)));
        self
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &dyn Optimizer<F> {
        self.optimizer.as_ref()
    }

    /// The loss.
    pub fn loss(&self) -> &dyn Loss<F> {
        self.loss.as_ref()
    }

    fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::config("epochs", "must be at least 1, got 0"));
        }
        if self.batch_size == 0 {
            return Err(Error::config("batch size", "must be at least 1, got 0"));
        }
        if let Validation::LastFraction(f) = self.validation
            && !(f > 0.0 && f < 1.0)
        {
            return Err(Error::config(
                "validation fraction",
                format!("must lie in (0, 1), got {f}"),
            ));
        }
        if let Some(c) = &self.clip {
            c.validate()?;
        }
        if let Some(e) = &self.early_stopping {
            e.validate()?;
        }
        if self.tbptt == Some(0) {
            return Err(Error::config(
                "truncated BPTT steps",
                "must be at least 1, got 0",
            ));
        }
        self.schedule.validate()
    }

    /// Trains `model` on inputs `x` `[N, T, I]` and targets `y` `[N, h, k]` (the model's output
    /// shape), validating on the last fraction of samples if so configured.
    pub fn fit(
        &mut self,
        model: &mut dyn Layer<F>,
        x: ArrayView3<'_, F>,
        y: ArrayView3<'_, F>,
    ) -> Result<History> {
        self.validate()?;
        check_data("training", model, &x, &y)?;
        match self.validation {
            Validation::None => self.run(model, x, y, None),
            Validation::LastFraction(f) => {
                let n = x.shape()[0];
                let n_val = ((n as f64) * f).round() as usize;
                if n_val == 0 || n_val >= n {
                    return Err(Error::config(
                        "validation fraction",
                        format!(
                            "{f} of {n} samples leaves {n_val} for validation and {} for training",
                            n - n_val.min(n)
                        ),
                    ));
                }
                let split = n - n_val;
                self.run(
                    model,
                    x.slice(s![..split, .., ..]),
                    y.slice(s![..split, .., ..]),
                    Some((x.slice(s![split.., .., ..]), y.slice(s![split.., .., ..]))),
                )
            }
        }
    }

    /// Trains `model` on (`x`, `y`), validating on (`x_val`, `y_val`).
    pub fn fit_with_validation(
        &mut self,
        model: &mut dyn Layer<F>,
        x: ArrayView3<'_, F>,
        y: ArrayView3<'_, F>,
        x_val: ArrayView3<'_, F>,
        y_val: ArrayView3<'_, F>,
    ) -> Result<History> {
        self.validate()?;
        check_data("training", model, &x, &y)?;
        check_data("validation", model, &x_val, &y_val)?;
        self.run(model, x, y, Some((x_val, y_val)))
    }

    fn run(
        &mut self,
        model: &mut dyn Layer<F>,
        x: ArrayView3<'_, F>,
        y: ArrayView3<'_, F>,
        validation: Option<(ArrayView3<'_, F>, ArrayView3<'_, F>)>,
    ) -> Result<History> {
        if self.tbptt.is_some() && (x.shape()[1] != y.shape()[1]) {
            return Err(Error::config(
                "truncated BPTT",
                format!(
                    "needs a target at every input step, got {} input steps and {} target steps",
                    x.shape()[1],
                    y.shape()[1]
                ),
            ));
        }
        let n = x.shape()[0];
        let base_lr = self.optimizer.learning_rate();
        let mut schedule_state = ScheduleState::new(base_lr);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut order: Vec<usize> = (0..n).collect();
        let mut history = History::default();
        let mut best: Option<(f64, usize)> = None;
        let mut best_weights: Option<Vec<Vec<F>>> = None;
        let mut since_best = 0usize;

        for epoch in 0..self.epochs {
            let lr = schedule_state.rate_for(&self.schedule, base_lr, epoch);
            self.optimizer.set_learning_rate(lr)?;
            if self.shuffle {
                order.shuffle(&mut rng);
            }
            let mut loss_sum = 0.0;
            let mut norm_sum = 0.0;
            let mut steps = 0usize;
            for (batch_index, rows) in order.chunks(self.batch_size).enumerate() {
                let xb = take_rows(&x, rows);
                let yb = take_rows(&y, rows);
                let chunk = self.tbptt.unwrap_or(xb.shape()[1]);
                let t_total = xb.shape()[1];
                if self.tbptt.is_some() {
                    model.set_stateful(true);
                    model.reset_state();
                }
                let mut start = 0;
                let mut batch_loss = 0.0;
                let result = (|| -> Result<()> {
                    while start < t_total {
                        let end = (start + chunk).min(t_total);
                        let (xc, yc) = if self.tbptt.is_some() {
                            (
                                xb.slice(s![.., start..end, ..]),
                                yb.slice(s![.., start..end, ..]),
                            )
                        } else {
                            (xb.view(), yb.view())
                        };
                        let (loss, norm) = self.step(model, xc, yc, epoch, batch_index)?;
                        batch_loss += loss * (end - start) as f64 / t_total as f64;
                        norm_sum += norm;
                        history.step_grad_norms.push(norm);
                        steps += 1;
                        start = end;
                    }
                    Ok(())
                })();
                if self.tbptt.is_some() {
                    model.set_stateful(false);
                }
                result?;
                loss_sum += batch_loss * rows.len() as f64;
            }
            let train_loss = loss_sum / n as f64;
            let val_loss = match &validation {
                Some((xv, yv)) => {
                    let prediction = model.predict(xv.view())?;
                    Some(self.loss.loss(prediction.view(), yv.view())?.to_f64())
                }
                None => None,
            };
            let monitored = val_loss.unwrap_or(train_loss);
            schedule_state.observe(&self.schedule, monitored);
            let grad_norm = if steps > 0 {
                norm_sum / steps as f64
            } else {
                0.0
            };
            let mut metrics = Vec::with_capacity(self.metrics.len());
            for (name, metric) in &mut self.metrics {
                metrics.push((name.clone(), metric(&*model)?));
            }
            history.epochs.push(EpochRecord {
                train_loss,
                val_loss,
                grad_norm,
                learning_rate: lr,
                metrics: metrics.clone(),
            });

            // Best epoch and early stopping.
            let min_delta = self.early_stopping.map_or(0.0, |e| e.min_delta);
            let improved = match best {
                None => monitored.is_finite(),
                Some((b, _)) => monitored < b - min_delta,
            };
            if improved {
                best = Some((monitored, epoch));
                since_best = 0;
                if self.early_stopping.is_some_and(|e| e.restore_best_weights) {
                    best_weights = Some(snapshot(model));
                }
            } else {
                since_best += 1;
            }
            let report = EpochReport {
                epoch,
                epochs: self.epochs,
                train_loss,
                val_loss,
                grad_norm,
                learning_rate: lr,
                metrics,
            };
            let mut stop = false;
            for callback in &mut self.callbacks {
                if callback(&report) == Control::Stop {
                    stop = true;
                }
            }
            if let Some(es) = self.early_stopping
                && since_best >= es.patience
            {
                stop = true;
            }
            if stop {
                history.stopped_early = epoch + 1 < self.epochs;
                break;
            }
        }
        if let Some(weights) = &best_weights {
            restore(model, weights);
        }
        history.best_epoch = best.map(|(_, e)| e);
        history.best_loss = best.map(|(l, _)| l);
        self.optimizer.set_learning_rate(base_lr)?;
        Ok(history)
    }

    /// One optimizer step on one batch (or chunk): returns the loss and the pre-clip norm.
    fn step(
        &mut self,
        model: &mut dyn Layer<F>,
        x: ArrayView3<'_, F>,
        y: ArrayView3<'_, F>,
        epoch: usize,
        batch: usize,
    ) -> Result<(f64, f64)> {
        model.zero_grad();
        let prediction = model.forward(x)?;
        let (loss, d_prediction) = self.loss.loss_and_gradient(prediction.view(), y)?;
        model.backward(d_prediction.view())?;
        let norm = grad_norm(model);
        if !loss.is_finite() || !norm.is_finite() {
            model.zero_grad();
            return Err(Error::Diverged {
                epoch,
                batch,
                loss: loss.to_f64(),
                grad_norm: norm.to_f64(),
            });
        }
        match self.clip {
            Some(Clip::Norm(max_norm)) => {
                clip_grad_norm(model, max_norm)?;
            }
            Some(Clip::Value(limit)) => clip_grad_value(model, limit)?,
            None => {}
        }
        self.optimizer.step(model)?;
        Ok((loss.to_f64(), norm.to_f64()))
    }
}

/// Checks inputs and targets agree with each other and with the model, and are finite.
fn check_data<F: Float>(
    what: &str,
    model: &dyn Layer<F>,
    x: &ArrayView3<'_, F>,
    y: &ArrayView3<'_, F>,
) -> Result<()> {
    let (n, t, i) = x.dim();
    if n == 0 || t == 0 {
        return Err(Error::Empty {
            what: format!("{what} inputs"),
            axis: if n == 0 { "samples" } else { "steps" }.into(),
            shape: x.shape().to_vec(),
        });
    }
    if i != model.input_size() {
        return Err(Error::shape(
            format!("{what} inputs"),
            &[n, t, model.input_size()],
            x.shape(),
        ));
    }
    let expected = [n, model.output_steps(t), model.output_size()];
    if y.shape() != expected {
        return Err(Error::shape(
            format!("{what} targets (the model's output shape)"),
            &expected,
            y.shape(),
        ));
    }
    if let Some(index) = first_non_finite(x) {
        return Err(Error::NonFinite {
            what: format!("{what} inputs"),
            index,
        });
    }
    if let Some(index) = first_non_finite(y) {
        return Err(Error::NonFinite {
            what: format!("{what} targets"),
            index,
        });
    }
    Ok(())
}

/// A copy of every parameter value, in visiting order.
pub fn snapshot<F: Float>(model: &dyn Layer<F>) -> Vec<Vec<F>> {
    let mut values = Vec::new();
    model.visit_params(&mut |p| values.push(p.value.to_vec()));
    values
}

/// Writes values taken by [`snapshot`] back (same model).
pub fn restore<F: Float>(model: &mut dyn Layer<F>, values: &[Vec<F>]) {
    let mut it = values.iter();
    model.visit_params_mut(&mut |p| {
        if let Some(v) = it.next()
            && v.len() == p.value.len()
        {
            p.value.copy_from_slice(v);
        }
    });
}

/// ‖∂L/∂h_t‖ for every step t, for every recurrent layer of `model` (outermost first), on one
/// batch: how far back the loss's gradient reaches. Leaves the gradients zeroed.
pub fn hidden_gradient_profile<F: Float>(
    model: &mut dyn Layer<F>,
    loss: &dyn Loss<F>,
    x: ArrayView3<'_, F>,
    y: ArrayView3<'_, F>,
) -> Result<Vec<Vec<F>>> {
    check_data("profile", model, &x, &y)?;
    model.zero_grad();
    let prediction = model.forward(x)?;
    let (_, d) = loss.loss_and_gradient(prediction.view(), y)?;
    model.backward(d.view())?;
    model.zero_grad();
    Ok(model.hidden_gradient_norms())
}
