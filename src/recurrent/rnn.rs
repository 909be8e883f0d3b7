//! The Elman cell.

use serde::{Deserialize, Serialize};

use super::cell::{BackwardStep, Cell, ForwardStep, view2, view2_mut};
use crate::{Activation, Float};

/// The Elman (simple RNN) cell, PyTorch's `nn.RNN`:
///
/// ```text
/// h_t = φ(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh)        (G = 1)
/// ```
///
/// with φ = tanh (default) or relu. Backward: with a = the pre-activation,
/// ∂L/∂a = ∂L/∂h_t ⊙ φ′ (taken from h_t: 1 − h_t² for tanh), ∂L/∂h_{t−1} = ∂L/∂a · W_hh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimpleRnnCell {
    /// φ: [`Activation::Tanh`] or [`Activation::Relu`] as in PyTorch; any [`Activation`] works.
    pub activation: Activation,
}

impl Default for SimpleRnnCell {
    fn default() -> Self {
        SimpleRnnCell {
            activation: Activation::Tanh,
        }
    }
}

impl SimpleRnnCell {
    /// A cell with activation φ.
    pub fn new(activation: Activation) -> Self {
        SimpleRnnCell { activation }
    }
}

impl Cell for SimpleRnnCell {
    fn name(&self) -> &'static str {
        "simple_rnn"
    }

    fn gates(&self) -> usize {
        1
    }

    fn forward_step<F: Float>(&self, step: ForwardStep<'_, '_, F>) {
        let (b, h) = (step.batch, step.hidden);
        step.kernel.project(
            view2(step.h_prev, b, h),
            0..h,
            view2_mut(step.scratch, b, h),
        );
        // h_t = φ(x-side + h-side); the gates buffer keeps nothing the backward needs (it uses h_t).
        forward_pass(self.activation, step.gates, step.scratch, step.h);
    }

    fn backward_step<F: Float>(&self, step: BackwardStep<'_, '_, F>) {
        let (b, h) = (step.batch, step.hidden);
        // ∂L/∂a = ∂L/∂h_t ⊙ φ′(a), φ′ read off h_t.
        backward_pass(self.activation, step.gates, step.d_h, step.h);
        // ∂L/∂h_{t−1} = ∂L/∂a · W_hh
        step.kernel.back_project(
            view2(step.gates, b, h),
            0..h,
            view2_mut(step.d_h_prev, b, h),
            false,
        );
    }
}

simd_fn! {
    /// h_t = φ(x-side + h-side) over one step's `[B, H]`.
    fn forward_pass<F: Float>(act: Activation, x_side: &[F], h_side: &[F], h_out: &mut [F]) {
        let n = h_out.len();
        let (x_side, h_side) = (&x_side[..n], &h_side[..n]);
        for j in 0..n {
            h_out[j] = act.apply(x_side[j] + h_side[j]);
        }
    }
}

simd_fn! {
    /// ∂L/∂a = ∂L/∂h_t ⊙ φ′ (read off h_t), written over `d_a` (the cached gates).
    fn backward_pass<F: Float>(act: Activation, d_a: &mut [F], d_h: &[F], h_t: &[F]) {
        let n = d_a.len();
        let (d_h, h_t) = (&d_h[..n], &h_t[..n]);
        for j in 0..n {
            d_a[j] = d_h[j] * act.derivative_from_output(h_t[j]);
        }
    }
}
