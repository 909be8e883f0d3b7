//! The LSTM cell.

use serde::{Deserialize, Serialize};

use super::cell::{BackwardStep, Cell, ForwardStep, view2, view2_mut};
#[cfg(all(target_arch = "x86_64", feature = "avx512"))]
use super::simd512;
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
        #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
        if simd512::available() {
            use simd512::{as_f32, as_f32_mut};
            if let (Some(gates), Some(rec), Some(c_prev), Some(c), Some(tanh_c), Some(h_out)) = (
                as_f32_mut(gates),
                as_f32(scratch),
                as_f32(c_prev),
                as_f32_mut(c),
                as_f32_mut(extra),
                as_f32_mut(h_out),
            ) {
                // SAFETY: the CPU has AVX-512F (checked by `available`).
                unsafe { avx512::forward_pass(h, gates, rec, c_prev, c, tanh_c, h_out) };
                return;
            }
        }
        forward_pass(h, gates, scratch, c_prev, c, extra, h_out);
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
        #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
        let done = simd512::available()
            && match (
                simd512::as_f32_mut(gates),
                simd512::as_f32(c_prev),
                simd512::as_f32(extra),
                simd512::as_f32(d_h),
                simd512::as_f32_mut(d_c),
            ) {
                (Some(gates), Some(c_prev), Some(tanh_c), Some(d_h), Some(d_c)) => {
                    // SAFETY: the CPU has AVX-512F (checked by `available`).
                    unsafe { avx512::backward_pass(h, gates, c_prev, tanh_c, d_h, d_c) };
                    true
                }
                _ => false,
            };
        #[cfg(not(all(target_arch = "x86_64", feature = "avx512")))]
        let done = false;
        if !done {
            backward_pass(h, gates, c_prev, extra, d_h, d_c);
        }
        // ∂L/∂h_{t−1} = ∂a · W_hh (all four gates in one product)
        kernel.back_project(view2(gates, b, g4), 0..g4, view2_mut(d_h_prev, b, h), false);
    }
}

simd_fn! {
    /// The forward's element-wise pass over one step's rows: `gates` `[B, 4H]` (input side in,
    /// activated gates out), `rec` `[B, 4H]` the recurrent side, c, tanh c and h `[B, H]`.
    fn forward_pass<F: Float>(
        h: usize,
        gates: &mut [F],
        rec: &[F],
        c_prev: &[F],
        c: &mut [F],
        tanh_c: &mut [F],
        h_out: &mut [F],
    ) {
        let g4 = 4 * h;
        let rows = gates
            .chunks_exact_mut(g4)
            .zip(rec.chunks_exact(g4))
            .zip(c_prev.chunks_exact(h))
            .zip(c.chunks_exact_mut(h))
            .zip(tanh_c.chunks_exact_mut(h))
            .zip(h_out.chunks_exact_mut(h));
        for (((((gates, rec), c_prev), c), tanh_c), h_out) in rows {
            let (ig, rest) = gates.split_at_mut(h);
            let (fg, rest) = rest.split_at_mut(h);
            let (gg, og) = rest.split_at_mut(h);
            let (ri, rest) = rec.split_at(h);
            let (rf, rest) = rest.split_at(h);
            let (rg, ro) = rest.split_at(h);
            forward_row(ig, fg, gg, og, ri, rf, rg, ro, c_prev, c, tanh_c, h_out);
        }
    }
}

simd_fn! {
    /// The backward's element-wise pass over one step's rows: `gates` `[B, 4H]` activated in,
    /// pre-activation gradients out; `d_c` `[B, H]` ∂L/∂c_t in, ∂L/∂c_{t−1} out.
    fn backward_pass<F: Float>(
        h: usize,
        gates: &mut [F],
        c_prev: &[F],
        tanh_c: &[F],
        d_h: &[F],
        d_c: &mut [F],
    ) {
        let g4 = 4 * h;
        let rows = gates
            .chunks_exact_mut(g4)
            .zip(c_prev.chunks_exact(h))
            .zip(tanh_c.chunks_exact(h))
            .zip(d_h.chunks_exact(h))
            .zip(d_c.chunks_exact_mut(h));
        for ((((gates, c_prev), tanh_c), d_h), d_c) in rows {
            let (ig, rest) = gates.split_at_mut(h);
            let (fg, rest) = rest.split_at_mut(h);
            let (gg, og) = rest.split_at_mut(h);
            backward_row(ig, fg, gg, og, c_prev, tanh_c, d_h, d_c);
        }
    }
}

// The per-row passes are functions of their own so that, inlined, their slice arguments keep
// their no-alias guarantee: the loops then vectorize without run-time overlap checks.

/// One row of the forward: activates the gates `[i, f, g, o]` (input-side pre-activations on
/// entry, `rec` the recurrent side), writes c_t, tanh c_t and h_t.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_row<F: Float>(
    ig: &mut [F],
    fg: &mut [F],
    gg: &mut [F],
    og: &mut [F],
    ri: &[F],
    rf: &[F],
    rg: &[F],
    ro: &[F],
    c_prev: &[F],
    c: &mut [F],
    tanh_c: &mut [F],
    h_out: &mut [F],
) {
    let n = ig.len();
    let (fg, gg, og) = (&mut fg[..n], &mut gg[..n], &mut og[..n]);
    let (ri, rf, rg, ro) = (&ri[..n], &rf[..n], &rg[..n], &ro[..n]);
    let (c_prev, c, tanh_c, h_out) = (&c_prev[..n], &mut c[..n], &mut tanh_c[..n], &mut h_out[..n]);
    for j in 0..n {
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

/// One row of the backward: the activated gates `[i, f, g, o]` on entry, their
/// pre-activations' gradient on exit; `d_c` ∂L/∂c_t on entry, ∂L/∂c_{t−1} on exit.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_row<F: Float>(
    ig: &mut [F],
    fg: &mut [F],
    gg: &mut [F],
    og: &mut [F],
    c_prev: &[F],
    tanh_c: &[F],
    d_h: &[F],
    d_c: &mut [F],
) {
    let one = F::one();
    let n = ig.len();
    let (fg, gg, og) = (&mut fg[..n], &mut gg[..n], &mut og[..n]);
    let (c_prev, tanh_c, d_h, d_c) = (&c_prev[..n], &tanh_c[..n], &d_h[..n], &mut d_c[..n]);
    for j in 0..n {
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

/// The f32 passes in AVX-512F intrinsics: the same arithmetic as [`forward_row`] and
/// [`backward_row`], 16 hidden units at a time (masked at a row's end), with fused
/// multiply-adds and the vector σ / tanh of [`simd512`].
#[cfg(all(target_arch = "x86_64", feature = "avx512"))]
mod avx512 {
    use std::arch::x86_64::*;

    use super::simd512::{lanes, sigmoid, tanh};

    /// [`forward_pass`](super::forward_pass) for f32.
    #[target_feature(enable = "avx512f")]
    pub(super) fn forward_pass(
        h: usize,
        gates: &mut [f32],
        rec: &[f32],
        c_prev: &[f32],
        c: &mut [f32],
        tanh_c: &mut [f32],
        h_out: &mut [f32],
    ) {
        let g4 = 4 * h;
        let rows = gates.len().checked_div(g4).unwrap_or(0);
        assert!(
            rec.len() >= rows * g4
                && c_prev.len() >= rows * h
                && c.len() >= rows * h
                && tanh_c.len() >= rows * h
                && h_out.len() >= rows * h,
            "buffers hold the rows"
        );
        // Two sweeps per row: the four gates of every column block first (independent
        // chains the core overlaps), then c_t, tanh c_t and h_t. One sweep doing both measured
        // slower: each block's tanh c_t waits on its gates, a chain too long to overlap.
        for r in 0..rows {
            let mut j = 0;
            while j < h {
                let m = lanes(j, h);
                let a = r * g4 + j;
                // SAFETY: lanes j .. j + 16 masked to the row's h values; the rows are inside
                // every buffer (asserted above). Masked-off lanes are neither read nor written.
                unsafe {
                    let gp = gates.as_mut_ptr().add(a);
                    let rp = rec.as_ptr().add(a);
                    let pre = |q: usize| {
                        _mm512_add_ps(
                            _mm512_maskz_loadu_ps(m, gp.add(q * h)),
                            _mm512_maskz_loadu_ps(m, rp.add(q * h)),
                        )
                    };
                    _mm512_mask_storeu_ps(gp, m, sigmoid(pre(0)));
                    _mm512_mask_storeu_ps(gp.add(h), m, sigmoid(pre(1)));
                    _mm512_mask_storeu_ps(gp.add(2 * h), m, tanh(pre(2)));
                    _mm512_mask_storeu_ps(gp.add(3 * h), m, sigmoid(pre(3)));
                }
                j += 16;
            }
            let mut j = 0;
            while j < h {
                let m = lanes(j, h);
                let (a, s) = (r * g4 + j, r * h + j);
                // SAFETY: as above.
                unsafe {
                    let gp = gates.as_ptr().add(a);
                    let i = _mm512_maskz_loadu_ps(m, gp);
                    let f = _mm512_maskz_loadu_ps(m, gp.add(h));
                    let g = _mm512_maskz_loadu_ps(m, gp.add(2 * h));
                    let o = _mm512_maskz_loadu_ps(m, gp.add(3 * h));
                    // c_t = f ⊙ c_{t−1} + i ⊙ g
                    let cp = _mm512_maskz_loadu_ps(m, c_prev.as_ptr().add(s));
                    let c_t = _mm512_fmadd_ps(f, cp, _mm512_mul_ps(i, g));
                    let tc = tanh(c_t);
                    _mm512_mask_storeu_ps(c.as_mut_ptr().add(s), m, c_t);
                    _mm512_mask_storeu_ps(tanh_c.as_mut_ptr().add(s), m, tc);
                    _mm512_mask_storeu_ps(h_out.as_mut_ptr().add(s), m, _mm512_mul_ps(o, tc));
                }
                j += 16;
            }
        }
    }

    /// [`backward_pass`](super::backward_pass) for f32.
    #[target_feature(enable = "avx512f")]
    pub(super) fn backward_pass(
        h: usize,
        gates: &mut [f32],
        c_prev: &[f32],
        tanh_c: &[f32],
        d_h: &[f32],
        d_c: &mut [f32],
    ) {
        let g4 = 4 * h;
        let rows = gates.len().checked_div(g4).unwrap_or(0);
        assert!(
            c_prev.len() >= rows * h
                && tanh_c.len() >= rows * h
                && d_h.len() >= rows * h
                && d_c.len() >= rows * h,
            "buffers hold the rows"
        );
        let one = _mm512_set1_ps(1.0);
        for r in 0..rows {
            let mut j = 0;
            while j < h {
                let m = lanes(j, h);
                let (a, s) = (r * g4 + j, r * h + j);
                // SAFETY: as in forward_pass.
                unsafe {
                    let gp = gates.as_mut_ptr().add(a);
                    let i = _mm512_maskz_loadu_ps(m, gp);
                    let f = _mm512_maskz_loadu_ps(m, gp.add(h));
                    let g = _mm512_maskz_loadu_ps(m, gp.add(2 * h));
                    let o = _mm512_maskz_loadu_ps(m, gp.add(3 * h));
                    let tc = _mm512_maskz_loadu_ps(m, tanh_c.as_ptr().add(s));
                    let dh = _mm512_maskz_loadu_ps(m, d_h.as_ptr().add(s));
                    let dcp = d_c.as_mut_ptr().add(s);
                    // ∂c_t += ∂h_t ⊙ o ⊙ (1 − tanh² c_t)
                    let dc = _mm512_fmadd_ps(
                        _mm512_mul_ps(dh, o),
                        _mm512_fnmadd_ps(tc, tc, one),
                        _mm512_maskz_loadu_ps(m, dcp),
                    );
                    // σ′ = s(1 − s), tanh′ = 1 − g²
                    let d_i = _mm512_mul_ps(
                        _mm512_mul_ps(dc, g),
                        _mm512_mul_ps(i, _mm512_sub_ps(one, i)),
                    );
                    let cp = _mm512_maskz_loadu_ps(m, c_prev.as_ptr().add(s));
                    let d_f = _mm512_mul_ps(
                        _mm512_mul_ps(dc, cp),
                        _mm512_mul_ps(f, _mm512_sub_ps(one, f)),
                    );
                    let d_g = _mm512_mul_ps(_mm512_mul_ps(dc, i), _mm512_fnmadd_ps(g, g, one));
                    let d_o = _mm512_mul_ps(
                        _mm512_mul_ps(dh, tc),
                        _mm512_mul_ps(o, _mm512_sub_ps(one, o)),
                    );
                    _mm512_mask_storeu_ps(gp, m, d_i);
                    _mm512_mask_storeu_ps(gp.add(h), m, d_f);
                    _mm512_mask_storeu_ps(gp.add(2 * h), m, d_g);
                    _mm512_mask_storeu_ps(gp.add(3 * h), m, d_o);
                    // ∂c_{t−1} = ∂c_t ⊙ f
                    _mm512_mask_storeu_ps(dcp, m, _mm512_mul_ps(dc, f));
                }
                j += 16;
            }
        }
    }
}
