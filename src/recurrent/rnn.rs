//! The Elman cell.

use serde::{Deserialize, Serialize};

use super::cell::{BackwardStep, Cell, ForwardStep, elementwise, view2, view2_mut};
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
        let act = self.activation;
        elementwise(|| {
            for ((out, &x_side), &h_side) in step
                .h
                .iter_mut()
                .zip(step.gates.iter())
                .zip(step.scratch.iter())
            {
                *out = act.apply(x_side + h_side);
            }
        });
    }

    fn backward_step<F: Float>(&self, step: BackwardStep<'_, '_, F>) {
        let (b, h) = (step.batch, step.hidden);
        // ∂L/∂a = ∂L/∂h_t ⊙ φ′(a), φ′ read off h_t.
        let act = self.activation;
        elementwise(|| {
            for ((d_a, &d_h), &h_t) in step.gates.iter_mut().zip(step.d_h).zip(step.h) {
                *d_a = d_h * act.derivative_from_output(h_t);
            }
        });
        // ∂L/∂h_{t−1} = ∂L/∂a · W_hh
        step.kernel.back_project(
            view2(step.gates, b, h),
            0..h,
            view2_mut(step.d_h_prev, b, h),
            false,
        );
    }
}
