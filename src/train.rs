//! Training: [`Trainer::fit`] runs epochs of mini-batch gradient descent with optional
//! validation, clipping, early stopping, learning-rate schedules, truncated BPTT and callbacks.

use std::fmt::Debug;

use ndarray::{Array3, ArrayView3, Axis, s};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use std::path::{Path, PathBuf};

use crate::optim::{Clip, Optimizer, OptimizerState, clip_grad_norm, clip_grad_value, grad_norm};
use crate::persist::{self, Format, Kind, SavedParam};
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
    #[serde(with = "crate::persist::tagged::option")]
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
        if (r.epoch + 1).is_multiple_of(every) || r.epoch + 1 == r.epochs || r.epoch == 0 {
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
    #[serde(with = "crate::persist::tagged::one")]
    pub train_loss: f64,
    /// Validation loss, if any.
    #[serde(with = "crate::persist::tagged::option")]
    pub val_loss: Option<f64>,
    /// Mean pre-clip gradient norm.
    #[serde(with = "crate::persist::tagged::one")]
    pub grad_norm: f64,
    /// The learning rate used.
    pub learning_rate: f64,
    /// The [`Trainer::metric`] values, by name.
    #[serde(default, with = "crate::persist::tagged::named")]
    pub metrics: Vec<(String, f64)>,
}

/// What [`Trainer::fit`] returns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// One record per epoch run.
    pub epochs: Vec<EpochRecord>,
    /// The pre-clip global gradient norm of every optimizer step, in order.
    #[serde(with = "crate::persist::tagged::list")]
    pub step_grad_norms: Vec<f64>,
    /// The epoch with the best monitored loss (validation if any, else training).
    pub best_epoch: Option<usize>,
    /// The best monitored loss.
    #[serde(with = "crate::persist::tagged::option")]
    pub best_loss: Option<f64>,
    /// Whether early stopping, a callback or a divergence ended training before the planned
    /// epochs.
    pub stopped_early: bool,
    /// Where training diverged, when [`OnDivergence::RestoreBestAndStop`] caught it.
    #[serde(default)]
    pub diverged: Option<Divergence>,
}

/// Where a training run met a non-finite loss or gradient norm.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Divergence {
    /// The epoch, from 0.
    pub epoch: usize,
    /// The batch within the epoch, from 0.
    pub batch: usize,
}

/// What [`Trainer::fit`] does when a batch gives a non-finite loss or gradient norm (the
/// optimizer step is skipped either way, so the weights never take a NaN from it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDivergence {
    /// Return [`Error::Diverged`] naming the epoch and batch (the default).
    #[default]
    Error,
    /// Restore the weights of the best epoch so far (the current ones if no epoch finished),
    /// record the place in [`History::diverged`] and stop.
    RestoreBestAndStop,
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
    checkpoints: Option<CheckpointConfig>,
    resume: Option<Checkpoint>,
    on_divergence: OnDivergence,
}

/// Where and how often [`Trainer::fit`] writes checkpoints.
#[derive(Debug, Clone, PartialEq)]
struct CheckpointConfig {
    every: usize,
    path: PathBuf,
    format: Format,
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
            .field("checkpoints", &self.checkpoints)
            .field("resume", &self.resume.as_ref().map(|c| c.epochs_done))
            .field("on_divergence", &self.on_divergence)
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
            checkpoints: None,
            resume: None,
            on_divergence: OnDivergence::Error,
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

    /// Writes a [`Checkpoint`] to `path` (atomically, in `format`) before the first epoch and
    /// after every `every` epochs (≥ 1), overwriting the previous one: everything needed to
    /// resume bit for bit (weights, optimizer state, shuffling generator, epoch, early-stopping
    /// and schedule state, history).
    pub fn checkpoint_every(
        mut self,
        every: usize,
        path: impl Into<PathBuf>,
        format: Format,
    ) -> Self {
        self.checkpoints = Some(CheckpointConfig {
            every,
            path: path.into(),
            format,
        });
        self
    }

    /// Resumes the next [`fit`](Self::fit) from `checkpoint`: the model's weights, the
    /// optimizer's state and every piece of training state are restored, and training goes on
    /// from the epoch after the checkpoint's. With the same data, settings, seed and thread
    /// count, the result is bit-identical to a run that was never interrupted.
    pub fn resume_from(mut self, checkpoint: Checkpoint) -> Self {
        self.resume = Some(checkpoint);
        self
    }

    /// What to do when a batch's loss or gradient norm is not finite.
    pub fn on_divergence(mut self, policy: OnDivergence) -> Self {
        self.on_divergence = policy;
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
        if let Some(c) = &self.checkpoints
            && c.every == 0
        {
            return Err(Error::config(
                "checkpoint interval",
                "must be at least 1 epoch, got 0",
            ));
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
        // The checkpoint is used up only once it has been restored: after a failed resume the
        // same trainer still holds it (and writes no fresh start over the user's file).
        let fresh = self.resume.is_none();
        let mut run = match &self.resume {
            Some(checkpoint) => checkpoint.restore(model, self.optimizer.as_mut(), n)?,
            None => RunState::new(self.optimizer.learning_rate(), self.seed, n),
        };
        self.resume = None;
        if fresh {
            // A checkpoint of the untouched start, so even a crash in the first epochs resumes.
            // It is also where an optimizer that cannot export its state is refused, before any
            // training (a resumed run's optimizer has just loaded one, so it can).
            self.write_checkpoint(&run, model)?;
        }
        let restore_at_end = self.early_stopping.is_some_and(|e| e.restore_best_weights);
        let keep_best = restore_at_end || self.on_divergence == OnDivergence::RestoreBestAndStop;
        let outcome = self.run_epochs(model, x, y, validation.as_ref(), &mut run, keep_best);
        // The base rate goes back into the optimizer however the epochs ended.
        self.optimizer.set_learning_rate(run.base_lr)?;
        let diverged = outcome?;
        if (restore_at_end || diverged.is_some())
            && let Some(weights) = &run.best_weights
        {
            restore(model, weights);
        }
        let mut history = run.history;
        history.best_epoch = run.best.map(|(_, e)| e);
        history.best_loss = run.best.map(|(l, _)| l);
        Ok(history)
    }

    /// The epochs from `run.epochs_done` on; returns where training diverged if
    /// [`OnDivergence::RestoreBestAndStop`] caught it.
    fn run_epochs(
        &mut self,
        model: &mut dyn Layer<F>,
        x: ArrayView3<'_, F>,
        y: ArrayView3<'_, F>,
        validation: Option<&(ArrayView3<'_, F>, ArrayView3<'_, F>)>,
        run: &mut RunState<F>,
        keep_best: bool,
    ) -> Result<Option<Divergence>> {
        let n = x.shape()[0];
        let mut diverged = None;
        for epoch in run.epochs_done..self.epochs {
            let lr = run.schedule.rate_for(&self.schedule, run.base_lr, epoch);
            self.optimizer.set_learning_rate(lr)?;
            if self.shuffle {
                run.order.shuffle(&mut run.rng);
            }
            let mut loss_sum = 0.0;
            let mut norm_sum = 0.0;
            let mut steps = 0usize;
            for (batch_index, rows) in run.order.chunks(self.batch_size).enumerate() {
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
                        run.history.step_grad_norms.push(norm);
                        steps += 1;
                        start = end;
                    }
                    Ok(())
                })();
                if self.tbptt.is_some() {
                    model.set_stateful(false);
                }
                match result {
                    Ok(()) => {}
                    Err(Error::Diverged { epoch, batch, .. })
                        if self.on_divergence == OnDivergence::RestoreBestAndStop =>
                    {
                        diverged = Some(Divergence { epoch, batch });
                        break;
                    }
                    Err(e) => return Err(e),
                }
                loss_sum += batch_loss * rows.len() as f64;
            }
            if let Some(place) = diverged {
                run.history.diverged = Some(place);
                run.history.stopped_early = true;
                break;
            }
            let train_loss = loss_sum / n as f64;
            let val_loss = match validation {
                Some((xv, yv)) => {
                    let prediction = model.predict(xv.view())?;
                    Some(self.loss.loss(prediction.view(), yv.view())?.to_f64())
                }
                None => None,
            };
            let monitored = val_loss.unwrap_or(train_loss);
            run.schedule.observe(&self.schedule, monitored);
            let grad_norm = if steps > 0 {
                norm_sum / steps as f64
            } else {
                0.0
            };
            let mut metrics = Vec::with_capacity(self.metrics.len());
            for (name, metric) in &mut self.metrics {
                metrics.push((name.clone(), metric(&*model)?));
            }
            run.history.epochs.push(EpochRecord {
                train_loss,
                val_loss,
                grad_norm,
                learning_rate: lr,
                metrics: metrics.clone(),
            });

            // Best epoch and early stopping.
            let min_delta = self.early_stopping.map_or(0.0, |e| e.min_delta);
            let improved = match run.best {
                None => monitored.is_finite(),
                Some((b, _)) => monitored < b - min_delta,
            };
            if improved {
                run.best = Some((monitored, epoch));
                run.since_best = 0;
                if keep_best {
                    run.best_weights = Some(snapshot(model));
                }
            } else {
                run.since_best += 1;
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
                && run.since_best >= es.patience
            {
                stop = true;
            }
            if stop {
                run.history.stopped_early = epoch + 1 < self.epochs;
                break;
            }
            run.epochs_done = epoch + 1;
            if let Some(c) = &self.checkpoints
                && run.epochs_done.is_multiple_of(c.every)
            {
                self.write_checkpoint(run, model)?;
            }
        }
        Ok(diverged)
    }

    /// Writes the configured checkpoint file (atomically), if any.
    fn write_checkpoint(&self, run: &RunState<F>, model: &dyn Layer<F>) -> Result<()> {
        let Some(config) = &self.checkpoints else {
            return Ok(());
        };
        Checkpoint::capture(run, model, self.optimizer.as_ref())?.save(&config.path, config.format)
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

/// Everything [`Trainer::fit`] carries from epoch to epoch.
#[derive(Debug)]
struct RunState<F: Float> {
    /// Epochs finished.
    epochs_done: usize,
    /// The optimizer's rate before any schedule.
    base_lr: f64,
    schedule: ScheduleState,
    /// The shuffling generator and the current order of the samples (shuffled in place).
    rng: ChaCha8Rng,
    order: Vec<usize>,
    history: History,
    /// The best monitored loss and its epoch.
    best: Option<(f64, usize)>,
    best_weights: Option<Vec<Vec<F>>>,
    since_best: usize,
}

impl<F: Float> RunState<F> {
    fn new(base_lr: f64, seed: u64, n: usize) -> Self {
        RunState {
            epochs_done: 0,
            base_lr,
            schedule: ScheduleState::new(base_lr),
            rng: ChaCha8Rng::seed_from_u64(seed),
            order: (0..n).collect(),
            history: History::default(),
            best: None,
            best_weights: None,
            since_best: 0,
        }
    }
}

/// A training checkpoint: the model's weights (and dropout generators), the optimizer's state,
/// the shuffling generator and sample order, the epoch, the early-stopping state (best loss,
/// its epoch and weights, epochs since), the learning-rate schedule's state and the history.
///
/// [`Trainer::checkpoint_every`] writes them; [`Trainer::resume_from`] goes on from one. The
/// model itself (its architecture) is not in the file: resume into the same architecture.
///
/// ```
/// use ndarray::Array3;
/// use recurrent::persist::Format;
/// use recurrent::train::{Checkpoint, Trainer};
/// use recurrent::{Adam, Mse, Sequential};
///
/// let x = Array3::<f64>::from_shape_fn((32, 6, 1), |(b, t, _)| ((b + t) % 5) as f64 / 5.0);
/// let y = x.sum_axis(ndarray::Axis(1)).insert_axis(ndarray::Axis(1));
/// let path = std::env::temp_dir().join(format!("recurrent-doc-ckpt-{}", std::process::id()));
/// let mut model = Sequential::<f64>::builder(1).gru(4).dense(1).build(0)?;
/// let mut trainer = Trainer::new(Mse, Adam::new(0.01)?)
///     .epochs(2)
///     .checkpoint_every(1, &path, Format::Binary);
/// trainer.fit(&mut model, x.view(), y.view())?;
///
/// // Later, perhaps after a crash: same model architecture, same settings, four epochs in all.
/// let checkpoint = Checkpoint::load(&path)?;
/// assert_eq!(checkpoint.epochs_done(), 2);
/// let mut trainer = Trainer::new(Mse, Adam::new(0.01)?).epochs(4).resume_from(checkpoint);
/// let history = trainer.fit(&mut model, x.view(), y.view())?;
/// assert_eq!(history.epochs.len(), 4);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), recurrent::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    epochs_done: usize,
    base_lr: f64,
    schedule: ScheduleState,
    shuffle_rng: ChaCha8Rng,
    order: Vec<usize>,
    history: History,
    #[serde(with = "crate::persist::tagged::option")]
    best_loss: Option<f64>,
    best_epoch: Option<usize>,
    best_weights: Option<Vec<SavedParam>>,
    since_best: usize,
    params: Vec<SavedParam>,
    rngs: Vec<ChaCha8Rng>,
    optimizer: OptimizerState,
}

impl Checkpoint {
    fn capture<F: Float>(
        run: &RunState<F>,
        model: &dyn Layer<F>,
        optimizer: &dyn Optimizer<F>,
    ) -> Result<Self> {
        let optimizer = optimizer.state().ok_or_else(|| {
            Error::Unsupported(format!(
                "checkpoints: the {} optimizer cannot export its state",
                optimizer.name()
            ))
        })?;
        Ok(Checkpoint {
            epochs_done: run.epochs_done,
            base_lr: run.base_lr,
            schedule: run.schedule,
            shuffle_rng: run.rng.clone(),
            order: run.order.clone(),
            history: run.history.clone(),
            best_loss: run.best.map(|(l, _)| l),
            best_epoch: run.best.map(|(_, e)| e),
            best_weights: run
                .best_weights
                .as_ref()
                .map(|w| persist::saved_from_values(model, w)),
            since_best: run.since_best,
            params: persist::save_params(model)?,
            rngs: persist::save_rngs(model),
            optimizer,
        })
    }

    /// Puts the checkpoint's state into `model` and `optimizer` (after checking it fits them
    /// and `n` training samples) and returns the run state to go on from.
    fn restore<F: Float>(
        &self,
        model: &mut dyn Layer<F>,
        optimizer: &mut dyn Optimizer<F>,
        n: usize,
    ) -> Result<RunState<F>> {
        let what = "checkpoint";
        let corrupt = |reason: String| Error::CorruptFile {
            what: what.into(),
            reason,
        };
        // Everything is checked before anything is changed: a failed resume leaves the model
        // and the optimizer as they were.
        let mut seen = vec![false; n];
        let is_permutation = self.order.len() == n
            && self
                .order
                .iter()
                .all(|&i| i < n && !std::mem::replace(&mut seen[i], true));
        if !is_permutation {
            return Err(Error::config(
                "resume",
                format!(
                    "the checkpoint's sample order covers {} samples, the training data has {n}",
                    self.order.len()
                ),
            ));
        }
        let best = match (self.best_loss, self.best_epoch) {
            (Some(l), Some(e)) => Some((l, e)),
            (None, None) => None,
            _ => return Err(corrupt("a best loss without its epoch".into())),
        };
        let best_weights = self
            .best_weights
            .as_ref()
            .map(|w| persist::values_from_saved(model, w, what))
            .transpose()?;
        let weights = persist::values_from_saved(model, &self.params, what)?;
        let mut generators = 0;
        model.visit_rngs(&mut |_| generators += 1);
        if generators != self.rngs.len() {
            return Err(corrupt(format!(
                "the model has {generators} random generators (dropout), the checkpoint holds {}",
                self.rngs.len()
            )));
        }
        // The optimizer checks its state before taking it; after it nothing can fail.
        optimizer.load_state(&self.optimizer)?;
        persist::load_rngs(model, &self.rngs, what)?;
        restore(model, &weights);
        Ok(RunState {
            epochs_done: self.epochs_done,
            base_lr: self.base_lr,
            schedule: self.schedule,
            rng: self.shuffle_rng.clone(),
            order: self.order.clone(),
            history: self.history.clone(),
            best,
            best_weights,
            since_best: self.since_best,
        })
    }

    /// The number of epochs finished when the checkpoint was written.
    pub fn epochs_done(&self) -> usize {
        self.epochs_done
    }

    /// The history up to the checkpoint.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Writes the checkpoint to `out` in `format`.
    pub fn write_to(&self, out: &mut dyn std::io::Write, format: Format) -> Result<()> {
        persist::encode(Kind::Checkpoint, "f64", self, format, out)
    }

    /// The checkpoint as the bytes of a file in `format`.
    pub fn to_bytes(&self, format: Format) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.write_to(&mut bytes, format)?;
        Ok(bytes)
    }

    /// Saves the checkpoint to `path` atomically ([`persist::atomic_write`]).
    pub fn save(&self, path: impl AsRef<Path>, format: Format) -> Result<()> {
        persist::atomic_write(path, |out| self.write_to(out, format))
    }

    /// A checkpoint from the bytes of a checkpoint file (either format).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Ok(persist::decode::<Checkpoint>(bytes, Kind::Checkpoint)?.0)
    }

    /// Loads a checkpoint file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_bytes(&persist::read_file(path.as_ref())?)
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
