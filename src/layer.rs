//! The object-safe [`Layer`] trait every building block implements.

use std::fmt::Debug;

use ndarray::{Array3, ArrayView3};
use rand_chacha::ChaCha8Rng;

use crate::{Error, Float, ParamMut, ParamView, Result};

/// A differentiable layer over 3-D activations `[batch, steps, features]`.
///
/// Activations between layers are always 3-D: a layer that keeps only the last step returns
/// `[batch, 1, features]`. The trait is object-safe, so a model is a list of `Box<dyn Layer<F>>`
/// and a user can add their own layer by implementing it.
///
/// Contract:
/// * [`forward`](Self::forward) is the training pass: it keeps what [`backward`](Self::backward)
///   needs; [`predict`](Self::predict) is the same function and keeps nothing.
/// * [`backward`](Self::backward) takes ∂L/∂output (the forward output's shape), returns
///   ∂L/∂input, and *adds* ∂L/∂θ into the gradients of the parameters; without a preceding
///   forward it returns [`Error::BackwardBeforeForward`].
/// * [`visit_params`](Self::visit_params) and [`visit_params_mut`](Self::visit_params_mut) visit
///   every parameter in one fixed order, which optimizers rely on.
pub trait Layer<F: Float>: Debug + Send + Sync {
    /// Short lower-case name of the kind of layer (`"lstm"`, `"dense"`).
    fn name(&self) -> &'static str;

    /// The feature count of the input, the last axis.
    fn input_size(&self) -> usize;

    /// The feature count of the output, the last axis.
    fn output_size(&self) -> usize;

    /// The number of output steps for `input_steps` input steps (the identity unless the
    /// layer keeps only the last step, or otherwise changes the time axis).
    fn output_steps(&self, input_steps: usize) -> usize {
        input_steps
    }

    /// Training forward: `x` `[B, T, input_size]` → `[B, output_steps(T), output_size]`.
    fn forward(&mut self, x: ArrayView3<'_, F>) -> Result<Array3<F>>;

    /// Inference forward: the same function as [`forward`](Self::forward), no cache kept.
    fn predict(&self, x: ArrayView3<'_, F>) -> Result<Array3<F>>;

    /// Backward for the last training forward: ∂L/∂output → ∂L/∂input, adding into the
    /// parameter gradients.
    fn backward(&mut self, d_out: ArrayView3<'_, F>) -> Result<Array3<F>>;

    /// Visits every parameter (value and gradient) in a fixed order.
    fn visit_params(&self, visit: &mut dyn FnMut(ParamView<'_, F>));

    /// Visits every parameter mutably, in the same order as [`visit_params`](Self::visit_params).
    fn visit_params_mut(&mut self, visit: &mut dyn FnMut(ParamMut<'_, F>));

    /// The number of trainable scalars.
    fn param_count(&self) -> usize {
        let mut n = 0;
        self.visit_params(&mut |p| n += p.value.len());
        n
    }

    /// Sets every parameter gradient to zero.
    fn zero_grad(&mut self) {
        self.visit_params_mut(&mut |p| p.grad.iter_mut().for_each(|g| *g = F::zero()));
    }

    /// Stateful mode (for truncated BPTT and streaming): a recurrent layer then starts each
    /// training forward from the final state of the previous one (detached: no gradient flows
    /// back across the boundary) and [`predict`](Self::predict) starts from it too. Layers
    /// without state ignore this.
    fn set_stateful(&mut self, _stateful: bool) {}

    /// Forgets any carried state (stateful mode and [`step`](Self::step)).
    fn reset_state(&mut self) {}

    /// Streaming inference, one observation at a time: `x` `[B, 1, input_size]` →
    /// `[B, 1, output_size]`, starting from the state the previous `step` left (zeros after
    /// [`reset_state`](Self::reset_state)) and keeping the new one, so memory stays constant
    /// however long the stream.
    ///
    /// T calls give the outputs at steps 0…T−1 of one [`predict`](Self::predict) over the whole
    /// sequence (for a layer that returns only its last step, the last call's output is the
    /// predict's; in a [`Sequential`](crate::Sequential), the layers after such a layer run
    /// as `predict` on its one-step output, as they do in a whole-sequence predict). Layers
    /// that need the whole window at once (bidirectional, encoder–decoder, flatten, unflatten,
    /// repeat) return [`Error::Unsupported`], as does the default.
    fn step(&mut self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let _ = x;
        Err(Error::Unsupported(format!(
            "{}: streaming one observation at a time (the layer needs the whole window)",
            self.name()
        )))
    }

    /// Visits the random-number generators the layer draws from during training (dropout
    /// masks), in a fixed order: checkpoints save them so a resumed run draws the same masks.
    fn visit_rngs(&self, _visit: &mut dyn FnMut(&ChaCha8Rng)) {}

    /// Visits the same generators as [`visit_rngs`](Self::visit_rngs) mutably, in the same
    /// order (to restore them).
    fn visit_rngs_mut(&mut self, _visit: &mut dyn FnMut(&mut ChaCha8Rng)) {}

    /// ‖∂L/∂h_t‖ for every step t of the last backward (the norm over batch and units), one list
    /// per recurrent layer inside, outermost first; empty for layers without hidden state.
    fn hidden_gradient_norms(&self) -> Vec<Vec<F>> {
        Vec::new()
    }
}

/// Checks `x` is `[B, T, features]` with B, T ≥ 1; returns (B, T).
pub(crate) fn check_sequence<F>(
    layer: &str,
    x: &ArrayView3<'_, F>,
    features: usize,
) -> Result<(usize, usize)> {
    let (b, t, i) = x.dim();
    if i != features {
        return Err(Error::shape(
            format!("{layer} input"),
            &[b, t, features],
            x.shape(),
        ));
    }
    for (axis, n) in [("batch", b), ("steps", t)] {
        if n == 0 {
            return Err(Error::Empty {
                what: format!("{layer} input"),
                axis: axis.to_string(),
                shape: x.shape().to_vec(),
            });
        }
    }
    Ok((b, t))
}

/// Checks `x` is one step `[B, 1, features]` with B ≥ 1 (the input of [`Layer::step`]).
pub(crate) fn check_step<F>(layer: &str, x: &ArrayView3<'_, F>, features: usize) -> Result<()> {
    let (b, _) = check_sequence(layer, x, features)?;
    if x.shape()[1] != 1 {
        return Err(Error::shape(
            format!("{layer} streaming step"),
            &[b, 1, features],
            x.shape(),
        ));
    }
    Ok(())
}
