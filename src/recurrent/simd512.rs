//! AVX-512F element-wise math for the `f32` gate passes: σ and tanh on 16 lanes, with fused
//! multiply-adds (plain Rust cannot contract `a·b + c` into one) and `vscalefps` for the 2^n
//! scaling of e^x. The LSTM's forward pass spends most of its element-wise time here: five
//! activations per hidden unit and step.
//!
//! Accuracy, checked over the whole f32 range by this module's test: σ within 3 ulp (within
//! `f32::MIN_POSITIVE` absolutely where it is smaller), like the scalar
//! [`gate_sigmoid`](crate::Float::gate_sigmoid); tanh within 5 ulp (see [`tanh`]). NaN in, NaN
//! out (the clamps keep NaN: `vmaxps`/`vminps` return their second operand when one is NaN, and
//! the input is always that operand).

use std::arch::x86_64::*;

/// `e^y` for `y ∈ [−88.7, 88.7]` (callers clamp): `y = n·ln 2 + r`, `|r| ≤ ½ ln 2`, Cephes'
/// `expf` polynomial in `r`, scaled by `2^n` with `vscalefps`.
#[inline]
#[target_feature(enable = "avx512f")]
fn exp_clamped(y: __m512) -> __m512 {
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(y, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    // r = y − n·ln 2 with ln 2 = 0.693359375 − 2.12194440e-4 (the first part exact in n·c).
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), y);
    let r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.121_944_4e-4), r);
    let z = _mm512_mul_ps(r, r);
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.398_199_9e-3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.333_452e-3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.166_579_6e-2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.166_666_65));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5));
    p = _mm512_fmadd_ps(p, z, r);
    p = _mm512_add_ps(p, _mm512_set1_ps(1.0));
    _mm512_scalef_ps(p, n)
}

/// σ(x) = 1 / (1 + e^{−x}) on 16 lanes; `x` clamped to ±88 (σ is 1 in f32 above, and below
/// e^{−x} would overflow; σ(−88) ≈ 6·10⁻³⁹ is under `f32::MIN_POSITIVE`).
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn sigmoid(x: __m512) -> __m512 {
    let x = _mm512_min_ps(
        _mm512_set1_ps(88.0),
        _mm512_max_ps(_mm512_set1_ps(-88.0), x),
    );
    let e = exp_clamped(_mm512_sub_ps(_mm512_setzero_ps(), x));
    _mm512_div_ps(_mm512_set1_ps(1.0), _mm512_add_ps(_mm512_set1_ps(1.0), e))
}

/// tanh x on 16 lanes as one rational function, no branch to blend: x clamped to ±7.905 (where
/// this approximation reaches ±1), `x·P(x²)/Q(x²)` with the degree-13/6 minimax coefficients Eigen
/// and ONNX Runtime use, and x itself for |x| < 4·10⁻⁴ (where x·P/Q would lose the tiny and
/// subnormal inputs). About half the work of the exp-based form the scalar
/// [`gate_tanh`](crate::Float::gate_tanh) uses, at a slightly larger error: within 5 ulp over
/// the whole f32 range (4.8 at worst, near |x| = 5.9 where tanh is 1 − 1.5·10⁻⁵) against 3.
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::excessive_precision)]
pub(crate) fn tanh(x: __m512) -> __m512 {
    let c = 7.905_311_107_635_498;
    let x0 = x;
    let x = _mm512_min_ps(_mm512_set1_ps(c), _mm512_max_ps(_mm512_set1_ps(-c), x));
    let z = _mm512_mul_ps(x, x);
    let mut p = _mm512_set1_ps(-2.760_768_477_423_55e-16);
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(2.000_187_904_824_77e-13));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-8.604_671_522_137_35e-11));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(5.122_297_090_371_14e-8));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.485_722_357_179_79e-5));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(6.372_619_288_754_36e-4));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(4.893_524_558_917_86e-3));
    p = _mm512_mul_ps(p, x);
    let mut q = _mm512_set1_ps(1.198_258_394_667_02e-6);
    q = _mm512_fmadd_ps(q, z, _mm512_set1_ps(1.185_347_056_866_54e-4));
    q = _mm512_fmadd_ps(q, z, _mm512_set1_ps(2.268_434_632_439_00e-3));
    q = _mm512_fmadd_ps(q, z, _mm512_set1_ps(4.893_525_185_543_85e-3));
    let tiny = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(_mm512_abs_ps(x0), _mm512_set1_ps(0.0004));
    _mm512_mask_blend_ps(tiny, _mm512_div_ps(p, q), x0)
}

/// The small-input backward in one pass over ∂A (`[N, G·H]`, `N` = T·B rows), for `I` =
/// `x.len() / N` < 16 inputs: ∂X `[N, I]` = ∂A · W_ih (`w_t` = W_ihᵀ `[I, G·H]`), ∂W_ihᵀ
/// `[I, G·H]` += Σ_r x_r ⊗ ∂A_r and ∂b `[G·H]` += Σ_r ∂A_r. Rows go in blocks of 8: each
/// 16-wide slice of a row is loaded once per input and feeds the three sums in registers (the
/// separate passes cost several times more at I = 1, mostly in horizontal reductions and in
/// accumulator rows stored and reloaded per row).
///
/// Returns `false` (doing nothing) unless `F` is `f32` and the AVX-512 passes are available.
pub(crate) fn input_side_small<F: crate::Float>(
    gh: usize,
    d_a: &[F],
    x: &[F],
    w_t: &[F],
    d_x: &mut [F],
    d_w_t: &mut [F],
    d_bias: &mut [F],
) -> bool {
    if !available() || gh == 0 {
        return false;
    }
    let (Some(d_a), Some(x), Some(w_t), Some(d_x), Some(d_w_t), Some(d_bias)) = (
        as_f32(d_a),
        as_f32(x),
        as_f32(w_t),
        as_f32_mut(d_x),
        as_f32_mut(d_w_t),
        as_f32_mut(d_bias),
    ) else {
        return false;
    };
    let rows = d_a.len() / gh;
    let i = w_t.len() / gh;
    assert!(
        d_a.len() == rows * gh
            && x.len() == rows * i
            && d_x.len() == rows * i
            && d_w_t.len() == i * gh
            && d_bias.len() == gh,
        "input_side_small: sizes agree"
    );
    // SAFETY: the CPU has AVX-512F (`available`); sizes checked above.
    unsafe { input_side_small_f32(gh, i, rows, d_a, x, w_t, d_x, d_w_t, d_bias) };
    true
}

#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
fn input_side_small_f32(
    gh: usize,
    i: usize,
    rows: usize,
    d_a: &[f32],
    x: &[f32],
    w_t: &[f32],
    d_x: &mut [f32],
    d_w_t: &mut [f32],
    d_bias: &mut [f32],
) {
    const R: usize = 8;
    let mut r0 = 0;
    while r0 < rows {
        let nr = R.min(rows - r0);
        for q in 0..i {
            let mut acc = [_mm512_setzero_ps(); R];
            let mut xq = [_mm512_setzero_ps(); R];
            for (rr, v) in xq.iter_mut().enumerate().take(nr) {
                *v = _mm512_set1_ps(x[(r0 + rr) * i + q]);
            }
            let mut j = 0;
            while j < gh {
                let m = lanes(j, gh);
                // SAFETY: lanes j .. j + 16 masked to the row's gh values; rows r0 .. r0 + nr
                // of ∂A, row q of W_ihᵀ and ∂W_ihᵀ and the bias are inside the slices (sizes
                // checked by the caller). Masked-off lanes are not accessed.
                unsafe {
                    let wv = _mm512_maskz_loadu_ps(m, w_t.as_ptr().add(q * gh + j));
                    let dw_ptr = d_w_t.as_mut_ptr().add(q * gh + j);
                    let mut dw = _mm512_maskz_loadu_ps(m, dw_ptr);
                    let mut db = _mm512_setzero_ps();
                    let row =
                        |rr: usize| _mm512_maskz_loadu_ps(m, d_a.as_ptr().add((r0 + rr) * gh + j));
                    // ∂X[r, q] partial sums; ∂W_ihᵀ[q] += x[r, q]·∂A_r; ∂b += ∂A_r (once,
                    // with the first input)
                    if q == 0 {
                        for rr in 0..nr {
                            let v = row(rr);
                            acc[rr] = _mm512_fmadd_ps(v, wv, acc[rr]);
                            dw = _mm512_fmadd_ps(xq[rr], v, dw);
                            db = _mm512_add_ps(db, v);
                        }
                    } else {
                        for rr in 0..nr {
                            let v = row(rr);
                            acc[rr] = _mm512_fmadd_ps(v, wv, acc[rr]);
                            dw = _mm512_fmadd_ps(xq[rr], v, dw);
                        }
                    }
                    _mm512_mask_storeu_ps(dw_ptr, m, dw);
                    if q == 0 {
                        let db_ptr = d_bias.as_mut_ptr().add(j);
                        let sum = _mm512_add_ps(db, _mm512_maskz_loadu_ps(m, db_ptr));
                        _mm512_mask_storeu_ps(db_ptr, m, sum);
                    }
                }
                j += 16;
            }
            for (rr, a) in acc.iter().enumerate().take(nr) {
                d_x[(r0 + rr) * i + q] = _mm512_reduce_add_ps(*a);
            }
        }
        r0 += nr;
    }
}

/// The first `n` of 16 lanes (all 16 for `n` ≥ 16).
#[inline(always)]
pub(crate) fn first_lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        0xFFFF
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// The lanes of a 16-wide block starting at `j` of a row of `n` values.
#[inline(always)]
pub(crate) fn lanes(j: usize, n: usize) -> __mmask16 {
    first_lanes(n - j)
}

/// Whether this CPU runs the functions here (AVX-512F) and the element-wise passes may use
/// them (not forced portable, `RECURRENT_NO_AVX512` unset).
#[inline]
pub(crate) fn available() -> bool {
    super::kernels::avx512_elementwise()
}

/// `&mut [F]` as `&mut [f32]` when `F` is `f32`.
#[inline(always)]
pub(crate) fn as_f32_mut<F: crate::Float>(s: &mut [F]) -> Option<&mut [f32]> {
    if std::any::TypeId::of::<F>() == std::any::TypeId::of::<f32>() {
        // SAFETY: F is f32.
        Some(unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast(), s.len()) })
    } else {
        None
    }
}

/// `&[F]` as `&[f32]` when `F` is `f32`.
#[inline(always)]
pub(crate) fn as_f32<F: crate::Float>(s: &[F]) -> Option<&[f32]> {
    if std::any::TypeId::of::<F>() == std::any::TypeId::of::<f32>() {
        // SAFETY: F is f32.
        Some(unsafe { std::slice::from_raw_parts(s.as_ptr().cast(), s.len()) })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Float;
    use crate::float::ulp_check;

    /// Runs `f` over the shared f32 samples (NaNs included) 16 at a time and checks the same
    /// bound as the scalar activations' test.
    fn check(name: &str, f: unsafe fn(__m512) -> __m512, truth: fn(f64) -> f64, max_ulps: f64) {
        let mut xs: Vec<f32> = ulp_check::f32_patterns().collect();
        while !xs.len().is_multiple_of(16) {
            xs.push(0.5);
        }
        let mut worst = ulp_check::Worst::default();
        let mut out = [0.0f32; 16];
        for chunk in xs.chunks_exact(16) {
            // SAFETY: the caller checked for AVX-512F.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr(), f(_mm512_loadu_ps(chunk.as_ptr()))) };
            for (&x, &got) in chunk.iter().zip(&out) {
                if x.is_nan() {
                    assert!(got.is_nan(), "{name}(NaN) = {got}");
                    continue;
                }
                worst.record(name, x, got, truth);
            }
        }
        worst.assert_within(name, max_ulps);
    }

    /// The fused small-input backward against the three sums written out in f64.
    #[test]
    fn input_side_small_matches_the_plain_sums() {
        if !std::arch::is_x86_feature_detected!("avx512f") || !available() {
            eprintln!("no AVX-512F passes here: nothing to check");
            return;
        }
        for &(rows, i, gh) in &[
            (1, 1, 16),
            (7, 3, 40),
            (9, 1, 128),
            (50, 8, 96),
            (17, 15, 20),
        ] {
            let val = |k: usize, m: usize| ((k * 37 + m * 11) % 23) as f32 / 11.5 - 1.0;
            let d_a: Vec<f32> = (0..rows * gh).map(|k| val(k, 1)).collect();
            let x: Vec<f32> = (0..rows * i).map(|k| val(k, 2)).collect();
            let w_t: Vec<f32> = (0..i * gh).map(|k| val(k, 3)).collect();
            let mut d_x = vec![9.0f32; rows * i];
            let mut d_w_t = vec![0.25f32; i * gh];
            let mut d_bias = vec![0.5f32; gh];
            assert!(input_side_small(
                gh,
                &d_a,
                &x,
                &w_t,
                &mut d_x,
                &mut d_w_t,
                &mut d_bias
            ));
            let close =
                |got: f32, want: f64| (f64::from(got) - want).abs() < 1e-4 * (1.0 + want.abs());
            for r in 0..rows {
                for q in 0..i {
                    let want: f64 = (0..gh)
                        .map(|j| f64::from(d_a[r * gh + j]) * f64::from(w_t[q * gh + j]))
                        .sum();
                    assert!(close(d_x[r * i + q], want), "∂X[{r},{q}] {rows}x{i}x{gh}");
                }
            }
            for j in 0..gh {
                let want: f64 = 0.5 + (0..rows).map(|r| f64::from(d_a[r * gh + j])).sum::<f64>();
                assert!(close(d_bias[j], want), "∂b[{j}] {rows}x{i}x{gh}");
                for q in 0..i {
                    let want: f64 = 0.25
                        + (0..rows)
                            .map(|r| f64::from(x[r * i + q]) * f64::from(d_a[r * gh + j]))
                            .sum::<f64>();
                    assert!(
                        close(d_w_t[q * gh + j], want),
                        "∂W[{q},{j}] {rows}x{i}x{gh}"
                    );
                }
            }
        }
    }

    #[test]
    fn avx512_sigmoid_and_tanh_are_within_a_few_ulp_over_the_whole_range() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("no AVX-512F on this CPU: nothing to check");
            return;
        }
        check("avx512 sigmoid", sigmoid, f64::sigmoid, 3.0);
        check("avx512 tanh", tanh, f64::tanh, 5.0);
        // Signed zeros and the centre exactly.
        let mut out = [0.0f32; 16];
        let xs = [
            0.0f32, -0.0, 0.0, -0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
        ];
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), tanh(_mm512_loadu_ps(xs.as_ptr()))) };
        assert_eq!(out[0].to_bits(), 0.0f32.to_bits());
        assert_eq!(out[1].to_bits(), (-0.0f32).to_bits());
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), sigmoid(_mm512_loadu_ps(xs.as_ptr()))) };
        assert_eq!(out[0], 0.5);
    }
}
