//! The GRU cell, in both of its published forms.

use ndarray::{ArrayView2, ArrayViewMut2, s};
use serde::{Deserialize, Serialize};

use super::cell::{
    BackwardStep, Cell, ForwardStep, add_at_b_threaded, elementwise, view2, view2_mut,
};
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
            GruCell::ResetAfter => add_at_b_threaded(d_recurrent, h_prev, d_weight_hh),
            GruCell::ResetBefore => {
                let h2 = 2 * hidden;
                // r and z rows multiply h_{t−1}; the n rows multiply r ⊙ h_{t−1}.
                add_at_b_threaded(
                    d_recurrent.slice(s![.., ..h2]),
                    h_prev,
                    d_weight_hh.slice_mut(s![..h2, ..]),
                );
                add_at_b_threaded(
                    d_recurrent.slice(s![.., h2..]),
                    extra,
                    d_weight_hh.slice_mut(s![h2.., ..]),
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
    after_forward_pass(h, step.gates, step.scratch, step.extra, step.h_prev, step.h);
}

fn backward_reset_after<F: Float>(step: BackwardStep<'_, '_, F>) {
    let (b, h) = (step.batch, step.hidden);
    let g3 = 3 * h;
    after_backward_pass(
        h,
        step.gates,
        step.extra,
        step.h_prev,
        step.d_h,
        step.d_recurrent,
        step.d_h_prev,
    );
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

simd_fn! {
    /// Reset-after forward, element-wise over one step's rows: `gates` `[B, 3H]` input side in,
    /// (r, z, n) out; `v` `[B, 3H]` = W_hh h_{t−1} + b_hh; `v_n_out` keeps v_n for the backward.
    fn after_forward_pass<F: Float>(
        h: usize,
        gates: &mut [F],
        v: &[F],
        v_n_out: &mut [F],
        h_prev: &[F],
        h_out: &mut [F],
    ) {
        let g3 = 3 * h;
        let rows = gates
            .chunks_exact_mut(g3)
            .zip(v.chunks_exact(g3))
            .zip(v_n_out.chunks_exact_mut(h))
            .zip(h_prev.chunks_exact(h))
            .zip(h_out.chunks_exact_mut(h));
        for ((((gates, v), v_n_out), h_prev), h_out) in rows {
            let (rg, rest) = gates.split_at_mut(h);
            let (zg, ng) = rest.split_at_mut(h);
            let (vr, rest) = v.split_at(h);
            let (vz, vn) = rest.split_at(h);
            after_forward_row(rg, zg, ng, vr, vz, vn, v_n_out, h_prev, h_out);
        }
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn after_forward_row<F: Float>(
    rg: &mut [F],
    zg: &mut [F],
    ng: &mut [F],
    vr: &[F],
    vz: &[F],
    vn: &[F],
    v_n_out: &mut [F],
    h_prev: &[F],
    h_out: &mut [F],
) {
    let n = rg.len();
    let (zg, ng, vr, vz, vn) = (&mut zg[..n], &mut ng[..n], &vr[..n], &vz[..n], &vn[..n]);
    let (v_n_out, h_prev, h_out) = (&mut v_n_out[..n], &h_prev[..n], &mut h_out[..n]);
    for j in 0..n {
        let r = (rg[j] + vr[j]).gate_sigmoid();
        let z = (zg[j] + vz[j]).gate_sigmoid();
        let v_n = vn[j];
        let nv = (ng[j] + r * v_n).gate_tanh();
        rg[j] = r;
        zg[j] = z;
        ng[j] = nv;
        v_n_out[j] = v_n;
        h_out[j] = (F::one() - z) * nv + z * h_prev[j];
    }
}

simd_fn! {
    /// Reset-after backward, element-wise over one step's rows: `gates` (r, z, n) in,
    /// ∂L/∂(W_ih x + b_ih) out; `d_v` ∂L/∂(W_hh h + b_hh); `d_h_prev` the direct path z ⊙ ∂h.
    fn after_backward_pass<F: Float>(
        h: usize,
        gates: &mut [F],
        v_n: &[F],
        h_prev: &[F],
        d_h: &[F],
        d_v: &mut [F],
        d_h_prev: &mut [F],
    ) {
        let g3 = 3 * h;
        let rows = gates
            .chunks_exact_mut(g3)
            .zip(v_n.chunks_exact(h))
            .zip(h_prev.chunks_exact(h))
            .zip(d_h.chunks_exact(h))
            .zip(d_v.chunks_exact_mut(g3))
            .zip(d_h_prev.chunks_exact_mut(h));
        for (((((gates, v_n), h_prev), d_h), d_v), d_h_prev) in rows {
            let (rg, rest) = gates.split_at_mut(h);
            let (zg, ng) = rest.split_at_mut(h);
            let (dvr, rest) = d_v.split_at_mut(h);
            let (dvz, dvn) = rest.split_at_mut(h);
            after_backward_row(rg, zg, ng, v_n, h_prev, d_h, dvr, dvz, dvn, d_h_prev);
        }
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn after_backward_row<F: Float>(
    rg: &mut [F],
    zg: &mut [F],
    ng: &mut [F],
    v_n: &[F],
    h_prev: &[F],
    d_h: &[F],
    dvr: &mut [F],
    dvz: &mut [F],
    dvn: &mut [F],
    d_h_prev: &mut [F],
) {
    let one = F::one();
    let n = rg.len();
    let (zg, ng, v_n, h_prev, d_h) = (
        &mut zg[..n],
        &mut ng[..n],
        &v_n[..n],
        &h_prev[..n],
        &d_h[..n],
    );
    let (dvr, dvz, dvn, d_h_prev) = (
        &mut dvr[..n],
        &mut dvz[..n],
        &mut dvn[..n],
        &mut d_h_prev[..n],
    );
    for j in 0..n {
        let (r, z, nv) = (rg[j], zg[j], ng[j]);
        // h_t = (1 − z) n + z h_{t−1}
        let d_n = d_h[j] * (one - z);
        let d_z = d_h[j] * (h_prev[j] - nv);
        // n = tanh(a_n), a_n = x_n + r ⊙ v_n
        let d_an = d_n * (one - nv * nv);
        let d_r = d_an * v_n[j];
        let d_ar = d_r * r * (one - r);
        let d_az = d_z * z * (one - z);
        rg[j] = d_ar;
        zg[j] = d_az;
        ng[j] = d_an;
        dvr[j] = d_ar;
        dvz[j] = d_az;
        dvn[j] = d_an * r; // ∂v_n = ∂a_n ⊙ r
        d_h_prev[j] = d_h[j] * z; // the direct path z ⊙ h_{t−1}
    }
}
