//! Optimizers with PyTorch's semantics and defaults, and gradient clipping.
//!
//! An optimizer walks a model's `(value, grad)` pairs ([`Layer::visit_params_mut`]) in their
//! fixed order and keeps its state (momentum buffers, moments) per visited parameter. Before
//! each step it checks that the model still has the parameters it saw first (count and shapes),
//! so an optimizer reused on a different model is an error, not a silent mismatch.

use std::fmt::Debug;

use serde::{Deserialize, Serialize};

use crate::{Error, Float, Layer, Result};

/// Updates a model's parameters from their gradients.
///
/// Object-safe: a trainer holds a `Box<dyn Optimizer<F>>`, and users can add their own.
pub trait Optimizer<F: Float>: Debug + Send {
    /// Short lower-case name (`"adam"`).
    fn name(&self) -> &'static str;

    /// The current learning rate.
    fn learning_rate(&self) -> f64;

    /// Sets the learning rate (schedules call this between epochs); errors unless finite and >= 0
    /// (0 is allowed, as in `torch.optim`: cosine annealing ends there).
    fn set_learning_rate(&mut self, lr: f64) -> Result<()>;

    /// One update of every parameter of `model` from its accumulated gradient.
    fn step(&mut self, model: &mut dyn Layer<F>) -> Result<()>;

    /// The state a checkpoint must keep to resume bit for bit (step counter, moments,
    /// momentum buffers); `None` for an optimizer that cannot export it (the default), which
    /// makes checkpointing an [`Error::Unsupported`].
    fn state(&self) -> Option<OptimizerState> {
        None
    }

    /// Restores a state taken by [`state`](Self::state) from an optimizer of the same kind.
    fn load_state(&mut self, state: &OptimizerState) -> Result<()> {
        Err(Error::Unsupported(format!(
            "the {} optimizer cannot restore a saved state (from {})",
            self.name(),
            state.optimizer
        )))
    }
}

/// An optimizer's state as checkpoints keep it: the optimizer's name, its step counter, the
/// parameter shapes it was used with and its state arrays (`buffers[k][p]`: state array k,
/// e.g. Adam's first moment, of parameter p, flat, as f64, which holds every f32 exactly).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizerState {
    /// [`Optimizer::name`] of the optimizer that wrote it.
    pub optimizer: String,
    /// Steps taken.
    pub step: u64,
    /// The shapes of the parameters (empty before the first step).
    pub shapes: Vec<Vec<usize>>,
    /// The state arrays.
    pub buffers: Vec<Vec<Vec<f64>>>,
}

impl<F: Float> ParamState<F> {
    fn export(&self, optimizer: &str, step: u64) -> OptimizerState {
        OptimizerState {
            optimizer: optimizer.to_string(),
            step,
            shapes: self.shapes.clone(),
            buffers: self
                .buffers
                .iter()
                .map(|b| {
                    b.iter()
                        .map(|p| p.iter().map(|&v| Float::to_f64(v)).collect())
                        .collect()
                })
                .collect(),
        }
    }

    /// The state in `saved`, checked for consistency: saved by `optimizer`, `n_buffers` state
    /// arrays once used (none before), each matching the shapes, every value finite.
    fn import(saved: &OptimizerState, optimizer: &str, n_buffers: usize) -> Result<Self> {
        let bad = |reason: String| {
            Err(Error::config(
                format!("{optimizer} optimizer state"),
                reason,
            ))
        };
        if saved.optimizer != optimizer {
            return bad(format!("was saved by the {} optimizer", saved.optimizer));
        }
        let expected = if saved.shapes.is_empty() {
            0
        } else {
            n_buffers
        };
        if saved.buffers.len() != expected {
            return bad(format!(
                "holds {} state arrays, this optimizer keeps {expected}",
                saved.buffers.len()
            ));
        }
        for (k, buffer) in saved.buffers.iter().enumerate() {
            let consistent = buffer.len() == saved.shapes.len()
                && buffer.iter().zip(&saved.shapes).all(|(b, s)| {
                    s.iter()
                        .try_fold(1usize, |n, &d| n.checked_mul(d))
                        .is_some_and(|n| n == b.len())
                });
            if !consistent {
                return bad(format!(
                    "state array {k} does not match the parameter shapes"
                ));
            }
            if buffer
                .iter()
                .flatten()
                .any(|v| !F::from_f64(*v).is_finite())
            {
                return bad(format!("state array {k} holds a non-finite value"));
            }
        }
        Ok(ParamState {
            shapes: saved.shapes.clone(),
            buffers: saved
                .buffers
                .iter()
                .map(|b| {
                    b.iter()
                        .map(|p| p.iter().map(|&v| F::from_f64(v)).collect())
                        .collect()
                })
                .collect(),
        })
    }
}

/// Per-parameter optimizer state: the shapes first seen, and `buffers` state arrays for each.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(bound = "F: Float")]
pub struct ParamState<F> {
    shapes: Vec<Vec<usize>>,
    /// `buffers[k][p]`: state array k (e.g. first moment) of parameter p, flat.
    buffers: Vec<Vec<Vec<F>>>,
}

impl<F: Float> ParamState<F> {
    /// Makes sure the state matches `model` (creating zero buffers on first use); an error if
    /// the model's parameters differ in count or shape from the ones first seen.
    fn prepare(&mut self, model: &dyn Layer<F>, optimizer: &str, n_buffers: usize) -> Result<()> {
        let mut shapes = Vec::new();
        model.visit_params(&mut |p| shapes.push(p.shape.to_vec()));
        if self.shapes.is_empty() && self.buffers.is_empty() {
            self.buffers = (0..n_buffers)
                .map(|_| {
                    shapes
                        .iter()
                        .map(|s| vec![F::zero(); s.iter().product()])
                        .collect()
                })
                .collect();
            self.shapes = shapes;
            return Ok(());
        }
        if shapes != self.shapes {
            return Err(Error::config(
                format!("{optimizer} optimizer"),
                format!(
                    "the model's parameters ({} arrays, shapes {:?}) differ from the ones this \
                     optimizer was first used with ({} arrays, shapes {:?}); use a new optimizer \
                     for a new model",
                    shapes.len(),
                    shapes,
                    self.shapes.len(),
                    self.shapes
                ),
            ));
        }
        Ok(())
    }
}

fn check_rate(what: &str, value: f64) -> Result<()> {
    // As torch.optim: a rate of 0 is allowed (cosine annealing ends there), a negative one not.
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(Error::config(
            what,
            format!("must be finite and >= 0, got {value}"),
        ))
    }
}

fn check_positive(what: &str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(Error::config(
            what,
            format!("must be finite and > 0, got {value}"),
        ))
    }
}

fn check_unit(what: &str, value: f64, closed_top: bool) -> Result<()> {
    let ok = value.is_finite()
        && value >= 0.0
        && if closed_top {
            value <= 1.0
        } else {
            value < 1.0
        };
    if ok {
        Ok(())
    } else {
        let range = if closed_top { "[0, 1]" } else { "[0, 1)" };
        Err(Error::config(
            what,
            format!("must lie in {range}, got {value}"),
        ))
    }
}

/// Stochastic gradient descent, as `torch.optim.SGD` (no dampening):
///
/// ```text
/// g ← g + λ p                         (weight decay λ)
/// b ← μ b + g                         (momentum μ; b starts at 0, so b₁ = g₁)
/// g ← g + μ b  (Nesterov)  or  g ← b
/// p ← p − lr · g
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "F: Float")]
pub struct Sgd<F> {
    lr: f64,
    momentum: f64,
    nesterov: bool,
    weight_decay: f64,
    state: ParamState<F>,
}

impl<F: Float> Sgd<F> {
    /// Plain SGD with learning rate `lr`.
    pub fn new(lr: f64) -> Result<Self> {
        check_rate("sgd learning rate", lr)?;
        Ok(Sgd {
            lr,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            state: ParamState::default(),
        })
    }

    /// With momentum μ ∈ [0, 1).
    pub fn with_momentum(mut self, momentum: f64) -> Result<Self> {
        check_unit("sgd momentum", momentum, false)?;
        self.momentum = momentum;
        Ok(self)
    }

    /// With Nesterov momentum (needs μ > 0).
    pub fn with_nesterov(mut self, nesterov: bool) -> Result<Self> {
        if nesterov && self.momentum == 0.0 {
            return Err(Error::config("sgd nesterov", "needs a momentum > 0"));
        }
        self.nesterov = nesterov;
        Ok(self)
    }

    /// With L2 weight decay λ ≥ 0 (added to the gradient).
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Result<Self> {
        if !(weight_decay.is_finite() && weight_decay >= 0.0) {
            return Err(Error::config(
                "sgd weight decay",
                format!("must be finite and ≥ 0, got {weight_decay}"),
            ));
        }
        self.weight_decay = weight_decay;
        Ok(self)
    }
}

impl<F: Float> Optimizer<F> for Sgd<F> {
    fn name(&self) -> &'static str {
        "sgd"
    }

    fn learning_rate(&self) -> f64 {
        self.lr
    }

    fn set_learning_rate(&mut self, lr: f64) -> Result<()> {
        check_rate("sgd learning rate", lr)?;
        self.lr = lr;
        Ok(())
    }

    fn state(&self) -> Option<OptimizerState> {
        Some(self.state.export("sgd", 0))
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<()> {
        self.state = ParamState::import(state, "sgd", usize::from(self.momentum != 0.0))?;
        Ok(())
    }

    fn step(&mut self, model: &mut dyn Layer<F>) -> Result<()> {
        let use_momentum = self.momentum != 0.0;
        self.state
            .prepare(model, "sgd", usize::from(use_momentum))?;
        let (lr, mu, wd) = (
            F::from_f64(self.lr),
            F::from_f64(self.momentum),
            F::from_f64(self.weight_decay),
        );
        let nesterov = self.nesterov;
        let mut buffers = self.state.buffers.iter_mut().flat_map(|b| b.iter_mut());
        model.visit_params_mut(&mut |p| {
            let mut buffer = if use_momentum { buffers.next() } else { None };
            for (j, (value, &grad)) in p.value.iter_mut().zip(p.grad.iter()).enumerate() {
                let mut g = grad;
                if wd != F::zero() {
                    g += wd * *value;
                }
                if let Some(b) = buffer.as_deref_mut() {
                    b[j] = mu * b[j] + g;
                    g = if nesterov { g + mu * b[j] } else { b[j] };
                }
                *value -= lr * g;
            }
        });
        Ok(())
    }
}

/// Adam (`torch.optim.Adam`, defaults β = (0.9, 0.999), ε = 1e-8), and AdamW
/// (`torch.optim.AdamW`: decoupled weight decay) through [`Adam::adamw`]:
///
/// ```text
/// t ← t + 1
/// p ← p (1 − lr λ)                    (AdamW only)
/// g ← g + λ p                         (Adam with L2 weight decay only)
/// m ← β₁ m + (1 − β₁) g
/// v ← β₂ v + (1 − β₂) g²
/// p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "F: Float")]
pub struct Adam<F> {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
    step: u64,
    state: ParamState<F>,
}

/// AdamW is [`Adam`] with decoupled weight decay; build it with [`Adam::adamw`].
pub type AdamW<F> = Adam<F>;

impl<F: Float> Adam<F> {
    /// Adam with learning rate `lr` and PyTorch's defaults.
    pub fn new(lr: f64) -> Result<Self> {
        check_rate("adam learning rate", lr)?;
        Ok(Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            step: 0,
            state: ParamState::default(),
        })
    }

    /// AdamW with learning rate `lr` and decoupled weight decay λ (PyTorch's default 0.01).
    pub fn adamw(lr: f64, weight_decay: f64) -> Result<Self> {
        let mut adam = Self::new(lr)?.with_weight_decay(weight_decay)?;
        adam.decoupled = true;
        Ok(adam)
    }

    /// With β₁, β₂ ∈ [0, 1).
    pub fn with_betas(mut self, beta1: f64, beta2: f64) -> Result<Self> {
        check_unit("adam beta1", beta1, false)?;
        check_unit("adam beta2", beta2, false)?;
        self.beta1 = beta1;
        self.beta2 = beta2;
        Ok(self)
    }

    /// With ε > 0.
    pub fn with_eps(mut self, eps: f64) -> Result<Self> {
        check_positive("adam eps", eps)?;
        self.eps = eps;
        Ok(self)
    }

    /// With weight decay λ ≥ 0: L2 (added to the gradient) for Adam, decoupled for AdamW.
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Result<Self> {
        if !(weight_decay.is_finite() && weight_decay >= 0.0) {
            return Err(Error::config(
                "adam weight decay",
                format!("must be finite and ≥ 0, got {weight_decay}"),
            ));
        }
        self.weight_decay = weight_decay;
        Ok(self)
    }

    /// The number of steps taken.
    pub fn steps_taken(&self) -> u64 {
        self.step
    }
}

impl<F: Float> Optimizer<F> for Adam<F> {
    fn name(&self) -> &'static str {
        if self.decoupled { "adamw" } else { "adam" }
    }

    fn learning_rate(&self) -> f64 {
        self.lr
    }

    fn set_learning_rate(&mut self, lr: f64) -> Result<()> {
        check_rate("adam learning rate", lr)?;
        self.lr = lr;
        Ok(())
    }

    fn state(&self) -> Option<OptimizerState> {
        Some(self.state.export(Optimizer::<F>::name(self), self.step))
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<()> {
        // The bias corrections take β^step with an i32 exponent; a larger count is no real run.
        if state.step > i32::MAX as u64 {
            return Err(Error::config(
                "adam optimizer state",
                format!("step count {} is out of range", state.step),
            ));
        }
        let state_arrays = ParamState::import(state, Optimizer::<F>::name(self), 2)?;
        if (state.step == 0) != state_arrays.shapes.is_empty() {
            return Err(Error::config(
                "adam optimizer state",
                format!(
                    "step count {} does not agree with {} parameter shapes",
                    state.step,
                    state_arrays.shapes.len()
                ),
            ));
        }
        self.state = state_arrays;
        self.step = state.step;
        Ok(())
    }

    fn step(&mut self, model: &mut dyn Layer<F>) -> Result<()> {
        self.state.prepare(model, self.name(), 2)?;
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.beta1, self.beta2);
        let bias_correction1 = 1.0 - b1.powi(t);
        let bias_correction2_sqrt = F::from_f64((1.0 - b2.powi(t)).sqrt());
        let step_size = F::from_f64(self.lr / bias_correction1);
        let (one_minus_b1, beta2, one_minus_b2) = (
            F::from_f64(1.0 - b1),
            F::from_f64(b2),
            F::from_f64(1.0 - b2),
        );
        let eps = F::from_f64(self.eps);
        let wd = F::from_f64(self.weight_decay);
        let decay_factor = F::from_f64(1.0 - self.lr * self.weight_decay);
        let decoupled = self.decoupled;
        let [first, second] = &mut self.state.buffers[..] else {
            unreachable!("prepare made two buffers")
        };
        let mut moments = first.iter_mut().zip(second.iter_mut());
        model.visit_params_mut(&mut |p| {
            let Some((m, v)) = moments.next() else { return };
            // One branch-free loop per weight-decay mode over zipped slices (no index
            // checks), so it vectorizes; the arithmetic per element is the same in each.
            let rows = p
                .value
                .iter_mut()
                .zip(p.grad.iter())
                .zip(m.iter_mut().zip(v.iter_mut()));
            let update = |value: &mut F, g: F, m: &mut F, v: &mut F| {
                // m ← m + (1 − β₁)(g − m), PyTorch's lerp form of β₁ m + (1 − β₁) g
                *m = *m + one_minus_b1 * (g - *m);
                *v = beta2 * *v + one_minus_b2 * g * g;
                let denom = v.sqrt() / bias_correction2_sqrt + eps;
                *value -= step_size * (*m / denom);
            };
            if wd == F::zero() {
                for ((value, &g), (m, v)) in rows {
                    update(value, g, m, v);
                }
            } else if decoupled {
                for ((value, &g), (m, v)) in rows {
                    *value *= decay_factor;
                    update(value, g, m, v);
                }
            } else {
                for ((value, &g), (m, v)) in rows {
                    update(value, g + wd * *value, m, v);
                }
            }
        });
        Ok(())
    }
}

/// The global L2 norm of every gradient of `model`: √(Σ_p ‖g_p‖²).
pub fn grad_norm<F: Float>(model: &dyn Layer<F>) -> F {
    let mut total = F::zero();
    model.visit_params(&mut |p| {
        // per-array norm first, then the norm of the norms (PyTorch's order of summation)
        let norm = p.grad.iter().fold(F::zero(), |s, &g| s + g * g).sqrt();
        total += norm * norm;
    });
    total.sqrt()
}

/// Clips the global gradient norm as `torch.nn.utils.clip_grad_norm_`: with n the norm over
/// every parameter, each gradient is scaled by min(1, max_norm / (n + 1e-6)). Returns n, the
/// norm before clipping.
///
/// Errors when `max_norm` is not finite and > 0, or when n is not finite; then weights and
/// gradients are left untouched.
pub fn clip_grad_norm<F: Float>(model: &mut dyn Layer<F>, max_norm: f64) -> Result<F> {
    check_positive("clip max_norm", max_norm)?;
    let norm = grad_norm(model);
    if !norm.is_finite() {
        return Err(Error::NonFinite {
            what: "gradient norm".into(),
            index: vec![],
        });
    }
    let coef = F::from_f64(max_norm) / (norm + F::from_f64(1e-6));
    if coef < F::one() {
        model.visit_params_mut(&mut |p| p.grad.iter_mut().for_each(|g| *g *= coef));
    }
    Ok(norm)
}

/// Clamps every gradient entry to [−limit, limit] (`torch.nn.utils.clip_grad_value_`).
pub fn clip_grad_value<F: Float>(model: &mut dyn Layer<F>, limit: f64) -> Result<()> {
    check_positive("clip value", limit)?;
    let (lo, hi) = (F::from_f64(-limit), F::from_f64(limit));
    model.visit_params_mut(&mut |p| {
        p.grad.iter_mut().for_each(|g| {
            if *g < lo {
                *g = lo
            } else if *g > hi {
                *g = hi
            }
        })
    });
    Ok(())
}

/// Gradient clipping as a trainer setting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Clip {
    /// [`clip_grad_norm`] with this `max_norm`.
    Norm(f64),
    /// [`clip_grad_value`] with this limit.
    Value(f64),
}

impl Clip {
    /// Errors unless the threshold is finite and > 0.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Clip::Norm(v) => check_positive("clip max_norm", v),
            Clip::Value(v) => check_positive("clip value", v),
        }
    }
}
