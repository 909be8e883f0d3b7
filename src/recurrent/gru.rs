//! The GRU cell, in both of its published forms.

use ndarray::{ArrayView2, ArrayViewMut2, linalg::general_mat_mul, s};
use serde::{Deserialize, Serialize};

use super::cell::{BackwardStep, Cell, ForwardStep, elementwise, view2, view2_mut};
use crate::Float;

/// The gated recurrent unit (gate blocks in PyTorch's order r, z, n; G = 3), in two forms that
/// are different functions:
///
/// **Reset-after** ([`GruCell::ResetAfter`], the default; PyTorch `nn.GRU`, cuDNN, Keras's
/// default `reset_after=True`): the reset gate multiplies the recurrent product *after* it is
/// taken, bias included:
///
/// ```text
/// r = σ(W_ir x + b_ir + W_hr h + b_hr)
/// z = σ(W_iz x + b_iz + W_hz h + b_hz)
/// n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
/// h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}
/// ```
///
/// **Reset-before** ([`GruCell::ResetBefore`]; Cho et al. 2014, Keras `reset_after=False`):
/// the reset gate multiplies the state *before* the product, and `b_hn` stays outside it:
///
/// ```text
/// n = tanh(W_in x + b_in + W_hn (r ⊙ h_{t−1}) + b_hn)
/// ```
///
/// Backward (both forms): ∂n = ∂h_t ⊙ (1 − z), ∂z = ∂h_t ⊙ (h_{t−1} − n), ∂a_n = ∂n ⊙ (1 − n²),
/// ∂a_z = ∂z ⊙ z(1 − z), ∂a_r = ∂r ⊙ r(1 − r) with ∂r = ∂a_n ⊙ (W_hn h + b_hn) (after) or
/// ∂r = (∂a_n · W_hn) ⊙ h_{t−1} (before); ∂L/∂h_{t−1} = ∂h_t ⊙ z + the recurrent products' share.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GruCell {
    /// n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)): PyTorch, cuDNN, Keras default.
    #[default]
    ResetAfter,
    /// n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn): Cho et al. 2014, Keras `reset_after=False`.
    ResetBefore,
}

impl Cell for GruCell {
    fn name(&self) -> &'static str {
        match self {
            GruCell::ResetAfter => "gru",
            GruCell::ResetBefore => "gru_reset_before",
        }
    }

    fn gates(&self) -> usize {
        3
    }

    /// Reset-after keeps W_hn h + b_hn; reset-before keeps r ⊙ h_{t−1}.
    fn extra_blocks(&self) -> usize {
        1
    }

    fn separate_recurrent_grad(&self) -> bool {
        // Reset-after: ∂(W_hn h + b_hn) = ∂a_n ⊙ r, not ∂a_n. Reset-before: both sides see ∂a_n.
        matches!(self, GruCell::ResetAfter)
    }

    fn forward_step<F: Float>(&self, step: ForwardStep<'_, '_, F>) {
        match self {
            GruCell::ResetAfter => forward_reset_after(step),
            GruCell::ResetBefore => forward_reset_before(step),
        }
    }

    fn backward_step<F: Float>(&self, step: BackwardStep<'_, '_, F>) {
        match self {
            GruCell::ResetAfter => backward_reset_after(step),
            GruCell::ResetBefore => backward_reset_before(step),
        }
    }

    fn recurrent_weight_grad<F: Float>(
        &self,
        hidden: usize,
        d_recurrent: ArrayView2<'_, F>,
        h_prev: ArrayView2<'_, F>,
        extra: ArrayView2<'_, F>,
        mut d_weight_hh: ArrayViewMut2<'_, F>,
    ) {
        match self {
            GruCell::ResetAfter => general_mat_mul(
                F::one(),
                &d_recurrent.t(),
                &h_prev,
                F::one(),
                &mut d_weight_hh,
            ),
            GruCell::ResetBefore => {
                let h2 = 2 * hidden;
                // r and z rows multiply h_{t−1}; the n rows multiply r ⊙ h_{t−1}.
                let d_rz = d_recurrent.slice(s![.., ..h2]);
                general_mat_mul(
                    F::one(),
                    &d_rz.t(),
                    &h_prev,
                    F::one(),
                    &mut d_weight_hh.slice_mut(s![..h2, ..]),
                );
                let d_n = d_recurrent.slice(s![.., h2..]);
                general_mat_mul(
                    F::one(),
                    &d_n.t(),
                    &extra,
                    F::one(),
                    &mut d_weight_hh.slice_mut(s![h2.., ..]),
                );
            }
        }
    }
}

fn forward_reset_after<F: Float>(step: ForwardStep<'_, '_, F>) {
    let (b, h) = (step.batch, step.hidden);
    let g3 = 3 * h;
    // v = W_hh h_{t−1} + b_hh, all three blocks in one product
    step.kernel.project(
        view2(step.h_prev, b, h),
        0..g3,
        view2_mut(step.scratch, b, g3),
    );
    elementwise(|| {
        for row in 0..b {
            let gates = &mut step.gates[row * g3..(row + 1) * g3];
            let v = &step.scratch[row * g3..(row + 1) * g3];
            let v_n_out = &mut step.extra[row * h..(row + 1) * h];
            let h_prev = &step.h_prev[row * h..(row + 1) * h];
            let h_out = &mut step.h[row * h..(row + 1) * h];
            for j in 0..h {
                let r = (gates[j] + v[j]).gate_sigmoid();
                let z = (gates[h + j] + v[h + j]).gate_sigmoid();
                let v_n = v[2 * h + j];
                let n = (gates[2 * h + j] + r * v_n).gate_tanh();
                gates[j] = r;
                gates[h + j] = z;
                gates[2 * h + j] = n;
                v_n_out[j] = v_n;
                h_out[j] = (F::one() - z) * n + z * h_prev[j];
            }
        }
    });
}

fn backward_reset_after<F: Float>(step: BackwardStep<'_, '_, F>) {
    let (b, h) = (step.batch, step.hidden);
    let g3 = 3 * h;
    let one = F::one();
    elementwise(|| {
        for row in 0..b {
            // The activated gates are read, then overwritten by ∂L/∂(W_ih x_t + b_ih).
            let d_x = &mut step.gates[row * g3..(row + 1) * g3];
            let v_n = &step.extra[row * h..(row + 1) * h];
            let h_prev = &step.h_prev[row * h..(row + 1) * h];
            let d_h = &step.d_h[row * h..(row + 1) * h];
            let d_v = &mut step.d_recurrent[row * g3..(row + 1) * g3];
            let d_h_prev = &mut step.d_h_prev[row * h..(row + 1) * h];
            for j in 0..h {
                let (r, z, n) = (d_x[j], d_x[h + j], d_x[2 * h + j]);
                // h_t = (1 − z) n + z h_{t−1}
                let d_n = d_h[j] * (one - z);
                let d_z = d_h[j] * (h_prev[j] - n);
                // n = tanh(a_n), a_n = x_n + r ⊙ v_n
                let d_an = d_n * (one - n * n);
                let d_r = d_an * v_n[j];
                let d_ar = d_r * r * (one - r);
                let d_az = d_z * z * (one - z);
                d_x[j] = d_ar;
                d_x[h + j] = d_az;
                d_x[2 * h + j] = d_an;
                d_v[j] = d_ar;
                d_v[h + j] = d_az;
                d_v[2 * h + j] = d_an * r; // ∂v_n = ∂a_n ⊙ r
                d_h_prev[j] = d_h[j] * z; // the direct path z ⊙ h_{t−1}
            }
        }
    });
    // ∂L/∂h_{t−1} += ∂v · W_hh
    step.kernel.back_project(
        view2(step.d_recurrent, b, g3),
        0..g3,
        view2_mut(step.d_h_prev, b, h),
        true,
    );
}

fn forward_reset_before<F: Float>(step: ForwardStep<'_, '_, F>) {
    let (b, h) = (step.batch, step.hidden);
    let (g2, g3) = (2 * h, 3 * h);
    let (rz_side, n_side) = step.scratch.split_at_mut(b * g2);
    // [r|z] recurrent pre-activations: W_h{r,z} h_{t−1} + b_h{r,z}
    step.kernel
        .project(view2(step.h_prev, b, h), 0..g2, view2_mut(rz_side, b, g2));
    elementwise(|| {
        for row in 0..b {
            let gates = &mut step.gates[row * g3..(row + 1) * g3];
            let v = &rz_side[row * g2..(row + 1) * g2];
            let rh = &mut step.extra[row * h..(row + 1) * h];
            let h_prev = &step.h_prev[row * h..(row + 1) * h];
            for j in 0..h {
                let r = (gates[j] + v[j]).gate_sigmoid();
                let z = (gates[h + j] + v[h + j]).gate_sigmoid();
                gates[j] = r;
                gates[h + j] = z;
                rh[j] = r * h_prev[j];
            }
        }
    });
    // W_hn (r ⊙ h_{t−1}) + b_hn
    step.kernel
        .project(view2(step.extra, b, h), g2..g3, view2_mut(n_side, b, h));
    elementwise(|| {
        for row in 0..b {
            let gates = &mut step.gates[row * g3..(row + 1) * g3];
            let v_n = &n_side[row * h..(row + 1) * h];
            let h_prev = &step.h_prev[row * h..(row + 1) * h];
            let h_out = &mut step.h[row * h..(row + 1) * h];
            for j in 0..h {
                let z = gates[h + j];
                let n = (gates[2 * h + j] + v_n[j]).gate_tanh();
                gates[2 * h + j] = n;
                h_out[j] = (F::one() - z) * n + z * h_prev[j];
            }
        }
    });
}

fn backward_reset_before<F: Float>(step: BackwardStep<'_, '_, F>) {
    let (b, h) = (step.batch, step.hidden);
    let (g2, g3) = (2 * h, 3 * h);
    let one = F::one();
    // First the n and z blocks, which need only this step's values.
    elementwise(|| {
        for row in 0..b {
            // z and n are read, then overwritten by their pre-activations' gradient.
            let d_a = &mut step.gates[row * g3..(row + 1) * g3];
            let h_prev = &step.h_prev[row * h..(row + 1) * h];
            let d_h = &step.d_h[row * h..(row + 1) * h];
            let d_h_prev = &mut step.d_h_prev[row * h..(row + 1) * h];
            for j in 0..h {
                let (z, n) = (d_a[h + j], d_a[2 * h + j]);
                let d_n = d_h[j] * (one - z);
                let d_z = d_h[j] * (h_prev[j] - n);
                d_a[h + j] = d_z * z * (one - z);
                d_a[2 * h + j] = d_n * (one - n * n);
                // the direct path z ⊙ h_{t−1} (z is about to be gone)
                d_h_prev[j] = d_h[j] * z;
            }
        }
    });
    // ∂(r ⊙ h_{t−1}) = ∂a_n · W_hn, into scratch [B, H]
    let d_gates_view = view2(step.gates, b, g3);
    step.kernel.back_project(
        d_gates_view.slice(s![.., g2..]),
        g2..g3,
        view2_mut(step.scratch, b, h),
        false,
    );
    elementwise(|| {
        for row in 0..b {
            let d_a = &mut step.gates[row * g3..(row + 1) * g3];
            let h_prev = &step.h_prev[row * h..(row + 1) * h];
            let d_rh = &step.scratch[row * h..(row + 1) * h];
            let d_h_prev = &mut step.d_h_prev[row * h..(row + 1) * h];
            for j in 0..h {
                let r = d_a[j];
                // r ⊙ h_{t−1}: ∂r = ∂(rh) ⊙ h_{t−1}; σ′ = r(1 − r)
                d_a[j] = d_rh[j] * h_prev[j] * r * (one - r);
                // the reset path ∂(rh) ⊙ r, after the direct path written above
                d_h_prev[j] += d_rh[j] * r;
            }
        }
    });
    // … plus the r and z recurrent products: ∂a_{r,z} · W_h{r,z}
    let d_gates_view = view2(step.gates, b, g3);
    step.kernel.back_project(
        d_gates_view.slice(s![.., ..g2]),
        0..g2,
        view2_mut(step.d_h_prev, b, h),
        true,
    );
}
