//! The LSTM cell.

use serde::{Deserialize, Serialize};

use super::cell::{BackwardStep, Cell, ForwardStep, elementwise, view2, view2_mut};
use crate::Float;

/// The long short-term memory cell, PyTorch's `nn.LSTM` (gate blocks in the order i, f, g, o):
///
/// ```text
/// a = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh,  split into a_i, a_f, a_g, a_o   (G = 4)
/// i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
/// c_t = f ⊙ c_{t−1} + i ⊙ g
/// h_t = o ⊙ tanh(c_t)
/// ```
///
/// Backward, with ∂c = ∂L/∂c_t + ∂L/∂h_t ⊙ o ⊙ (1 − tanh²c_t):
/// ∂a_i = ∂c ⊙ g ⊙ i(1−i), ∂a_f = ∂c ⊙ c_{t−1} ⊙ f(1−f), ∂a_g = ∂c ⊙ i ⊙ (1−g²),
/// ∂a_o = ∂L/∂h_t ⊙ tanh c_t ⊙ o(1−o); ∂L/∂c_{t−1} = ∂c ⊙ f; ∂L/∂h_{t−1} = ∂a · W_hh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LstmCell;

impl Cell for LstmCell {
    fn name(&self) -> &'static str {
        "lstm"
    }

    fn gates(&self) -> usize {
        4
    }

    fn has_cell_state(&self) -> bool {
        true
    }

    /// tanh(c_t), kept for the backward.
    fn extra_blocks(&self) -> usize {
        1
    }

    /// The forget gate's `bias_ih` block starts at 1 (Jozefowicz et al. 2015; Keras's
    /// `unit_forget_bias`).
    fn init_bias_ih<F: Float>(&self, hidden: usize, bias_ih: &mut [F]) {
        for v in &mut bias_ih[hidden..2 * hidden] {
            *v = F::one();
        }
    }

    fn forward_step<F: Float>(&self, step: ForwardStep<'_, '_, F>) {
        let ForwardStep {
            batch: b,
            hidden: h,
            gates,
            extra,
            scratch,
            h_prev,
            h: h_out,
            c_prev,
            c,
            kernel,
        } = step;
        let g4 = 4 * h;
        // scratch = W_hh h_{t−1} + b_hh, all four gates in one product
        kernel.project(view2(h_prev, b, h), 0..g4, view2_mut(scratch, b, g4));
        elementwise(|| {
            for row in 0..b {
                let gates = &mut gates[row * g4..(row + 1) * g4];
                let (ig, rest) = gates.split_at_mut(h);
                let (fg, rest) = rest.split_at_mut(h);
                let (gg, og) = rest.split_at_mut(h);
                let rec = &scratch[row * g4..(row + 1) * g4];
                let (ri, rest) = rec.split_at(h);
                let (rf, rest) = rest.split_at(h);
                let (rg, ro) = rest.split_at(h);
                let c_prev = &c_prev[row * h..(row + 1) * h];
                let c = &mut c[row * h..(row + 1) * h];
                let tanh_c = &mut extra[row * h..(row + 1) * h];
                let h_out = &mut h_out[row * h..(row + 1) * h];
                for j in 0..h {
                    let i = (ig[j] + ri[j]).gate_sigmoid();
                    let f = (fg[j] + rf[j]).gate_sigmoid();
                    let g = (gg[j] + rg[j]).gate_tanh();
                    let o = (og[j] + ro[j]).gate_sigmoid();
                    ig[j] = i;
                    fg[j] = f;
                    gg[j] = g;
                    og[j] = o;
                    let c_t = f * c_prev[j] + i * g;
                    let tc = c_t.gate_tanh();
                    c[j] = c_t;
                    tanh_c[j] = tc;
                    h_out[j] = o * tc;
                }
            }
        });
    }

    fn backward_step<F: Float>(&self, step: BackwardStep<'_, '_, F>) {
        let BackwardStep {
            batch: b,
            hidden: h,
            gates,
            extra,
            c_prev,
            d_h,
            d_c,
            d_h_prev,
            kernel,
            ..
        } = step;
        let g4 = 4 * h;
        let one = F::one();
        elementwise(|| {
            for row in 0..b {
                // The activated gates are read, then overwritten by their pre-activations' gradient.
                let gates = &mut gates[row * g4..(row + 1) * g4];
                let (ig, rest) = gates.split_at_mut(h);
                let (fg, rest) = rest.split_at_mut(h);
                let (gg, og) = rest.split_at_mut(h);
                let c_prev = &c_prev[row * h..(row + 1) * h];
                let tanh_c = &extra[row * h..(row + 1) * h];
                let d_h = &d_h[row * h..(row + 1) * h];
                let d_c = &mut d_c[row * h..(row + 1) * h];
                for j in 0..h {
                    let (i, f, g, o) = (ig[j], fg[j], gg[j], og[j]);
                    let tc = tanh_c[j];
                    // h_t = o ⊙ tanh c_t: ∂c_t gains ∂h_t ⊙ o ⊙ (1 − tanh² c_t)
                    let dc = d_c[j] + d_h[j] * o * (one - tc * tc);
                    // gate derivatives through σ′ = s(1 − s) and tanh′ = 1 − g²
                    ig[j] = dc * g * i * (one - i);
                    fg[j] = dc * c_prev[j] * f * (one - f);
                    gg[j] = dc * i * (one - g * g);
                    og[j] = d_h[j] * tc * o * (one - o);
                    // c_t = f ⊙ c_{t−1} + …: ∂c_{t−1} = ∂c_t ⊙ f
                    d_c[j] = dc * f;
                }
            }
        });
        // ∂L/∂h_{t−1} = ∂a · W_hh (all four gates in one product)
        kernel.back_project(view2(gates, b, g4), 0..g4, view2_mut(d_h_prev, b, h), false);
    }
}
