//! The element type: `f32` (the default everywhere) or `f64` (gradient checks, users who want it).

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

use ndarray::{LinalgScalar, ScalarOperand};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A floating-point element type the crate computes in: implemented for `f32` and `f64`.
///
/// Besides the usual arithmetic it carries the numerically stable scalar activations the
/// cells use, so a cell is written once for both precisions.
pub trait Float:
    num_traits::Float
    + LinalgScalar
    + ScalarOperand
    + Sum
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + Serialize
    + DeserializeOwned
    + 'static
{
    /// `"f32"` or `"f64"`.
    const NAME: &'static str;

    /// Converts from `f64`, rounding to nearest for `f32`.
    fn from_f64(x: f64) -> Self;

    /// Converts to `f64` exactly.
    fn to_f64(self) -> f64;

    /// Converts a count or size.
    fn from_usize(n: usize) -> Self {
        Self::from_f64(n as f64)
    }

    /// The logistic sigmoid σ(x) = 1 / (1 + e^{−x}), computed so that it never overflows:
    /// for x ≥ 0 as 1 / (1 + e^{−x}), for x < 0 as e^{x} / (1 + e^{x}).
    #[inline]
    fn sigmoid(self) -> Self {
        if self >= Self::zero() {
            Self::one() / (Self::one() + (-self).exp())
        } else {
            let e = self.exp();
            e / (Self::one() + e)
        }
    }

    /// σ(x) as the recurrent cells and activations compute it: [`sigmoid`](Self::sigmoid)
    /// (libm's `exp`) for `f64`; for `f32` a branch-free approximation that vectorizes
    /// (`e^{−|x|}` by a Cephes-style polynomial, then 1/(1 + e) or e/(1 + e)), within 3 ulp of σ wherever σ(x) ≥ `f32::MIN_POSITIVE`
    /// and within `f32::MIN_POSITIVE` (absolutely) below.
    #[inline(always)]
    fn gate_sigmoid(self) -> Self {
        self.sigmoid()
    }

    /// tanh x as the recurrent cells and activations compute it: libm's `tanh` for `f64`; for
    /// `f32` a branch-free approximation that vectorizes (an odd polynomial for |x| < 0.625,
    /// else (1 − e)/(1 + e) with e = e^{−2|x|}), within 3 ulp of tanh x. (The LSTM's f32 gate
    /// passes on AVX-512 CPUs use a cheaper rational approximation instead, within 5 ulp, and
    /// the same σ within 3 ulp; both tested over the whole f32 range.)
    #[inline(always)]
    fn gate_tanh(self) -> Self {
        self.tanh()
    }
}

/// ln(`f32::MIN_POSITIVE`): below it e^x is subnormal.
const LN_MIN_POSITIVE: f32 = -87.336_55;

/// e^x for x ≤ 0 in f32, branch-free (Cephes `expf`: x = n·ln 2 + r, |r| ≤ ½ ln 2, a degree-7
/// polynomial in r, scaled by 2^n through the exponent bits); 0 where e^x < `f32::MIN_POSITIVE`
/// (x < ln `MIN_POSITIVE`), NaN for NaN.
#[inline(always)]
fn exp_nonpositive_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // 1.5·2^23: adding it rounds to an integer held in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let xc = if x < LN_MIN_POSITIVE {
        LN_MIN_POSITIVE
    } else {
        x
    };
    let t = xc * LOG2E + MAGIC;
    let n_f = t - MAGIC;
    let n = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    // r = x − n·ln 2, ln 2 split in two so the product is exact enough.
    let r = xc - n_f * 0.693_359_4 + n_f * 2.121_944_4e-4;
    let z = r * r;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 0.166_666_65)
        * r
        + 0.5)
        * z
        + r
        + 1.0;
    // n ∈ [−126, 0]: 2^n is a normal number.
    let scale = f32::from_bits((n.wrapping_add(127) as u32) << 23);
    let y = p * scale;
    if x < LN_MIN_POSITIVE { 0.0 } else { y }
}

/// σ(x) = 1 / (1 + e^{−x}) in f32, branch-free so loops over slices vectorize: with
/// e = e^{−|x|} (never overflowing), σ = 1 / (1 + e) for x ≥ 0 and e / (1 + e) for x < 0.
///
/// Error (tested over the whole f32 range against f64 libm): a few ulp where σ(x) ≥
/// `f32::MIN_POSITIVE`, at most `f32::MIN_POSITIVE` absolute below (where it returns 0).
#[inline(always)]
pub(crate) fn fast_sigmoid_f32(x: f32) -> f32 {
    let e = exp_nonpositive_f32(-x.abs());
    let s = 1.0 / (1.0 + e);
    if x >= 0.0 { s } else { e * s }
}

/// tanh x in f32, branch-free so loops over slices vectorize: an odd polynomial
/// x + x³·P(x²) (Cephes `tanhf`) for |x| < 0.625, else sign(x)·(1 − e)/(1 + e) with
/// e = e^{−2|x|}.
///
/// Error (tested over the whole f32 range against f64 libm): a few ulp; 0 maps to 0 and the
/// sign is kept.
#[inline(always)]
#[allow(clippy::excessive_precision)] // Cephes's coefficients as published
pub(crate) fn fast_tanh_f32(x: f32) -> f32 {
    let a = x.abs();
    let z = x * x;
    let small =
        ((((-5.704_988_7e-3 * z + 2.063_908_9e-2) * z - 5.373_971_6e-2) * z + 0.133_314_42) * z
            - 0.333_332_82)
            * z
            * x
            + x;
    let e = exp_nonpositive_f32(-2.0 * a);
    let large = ((1.0 - e) / (1.0 + e)).copysign(x);
    if a < 0.625 { small.copysign(x) } else { large }
}

impl Float for f32 {
    const NAME: &'static str = "f32";
    #[inline(always)]
    fn gate_sigmoid(self) -> Self {
        fast_sigmoid_f32(self)
    }
    #[inline(always)]
    fn gate_tanh(self) -> Self {
        fast_tanh_f32(self)
    }
    #[inline]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Float for f64 {
    const NAME: &'static str = "f64";
    #[inline]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
}

/// Whole-range accuracy checks of f32 activations against f64 truths, shared by the scalar
/// and the vector versions' tests.
#[cfg(test)]
pub(crate) mod ulp_check {
    /// Distance in ulp between an f32 result and the f64 truth.
    fn ulps(got: f32, truth: f64) -> f64 {
        let t = truth as f32;
        let ulp = (f64::from(f32::from_bits(t.abs().to_bits() + 1)) - f64::from(t.abs())).abs();
        (f64::from(got) - truth).abs() / ulp
    }

    /// Every 61st f32 bit pattern (every 997th with debug assertions, which run unoptimized):
    /// all binades, both signs, NaNs included; plus the edges.
    pub(crate) fn f32_patterns() -> impl Iterator<Item = f32> {
        (0..=u32::MAX)
            .step_by(if cfg!(debug_assertions) { 997 } else { 61 })
            .chain([
                0,
                0x8000_0000,
                0x7f7f_ffff,
                0xff7f_ffff,
                0x7f80_0000,
                0xff80_0000,
            ])
            .map(f32::from_bits)
    }

    /// The worst error seen, in ulp, and where.
    #[derive(Default)]
    pub(crate) struct Worst(f64, f32);

    impl Worst {
        /// Checks one result: counted in ulp where the truth is at least `f32::MIN_POSITIVE`,
        /// else within `f32::MIN_POSITIVE` absolutely (asserted).
        pub(crate) fn record(&mut self, name: &str, x: f32, got: f32, truth: fn(f64) -> f64) {
            let want = truth(f64::from(x));
            if want.abs() >= f64::from(f32::MIN_POSITIVE) {
                let u = ulps(got, want);
                if u > self.0 {
                    *self = Worst(u, x);
                }
            } else {
                assert!(
                    (f64::from(got) - want).abs() <= f64::from(f32::MIN_POSITIVE),
                    "{name}({x:e}) = {got:e}, want {want:e}"
                );
            }
        }

        /// Prints the worst error and asserts it is within `max_ulps`.
        pub(crate) fn assert_within(&self, name: &str, max_ulps: f64) {
            eprintln!("{name}: worst error {:.2} ulp at x = {:e}", self.0, self.1);
            assert!(
                self.0 <= max_ulps,
                "{name}: {:.2} ulp at x = {:e}",
                self.0,
                self.1
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Float, ulp_check};

    #[test]
    fn sigmoid_is_finite_and_saturates_for_huge_inputs() {
        for &x in &[
            -1e4f64,
            -100.0,
            -1.0,
            0.0,
            1.0,
            100.0,
            1e4,
            f64::MAX,
            -f64::MAX,
        ] {
            let y = x.sigmoid();
            assert!(
                y.is_finite() && (0.0..=1.0).contains(&y),
                "sigmoid({x}) = {y}"
            );
            let y32 = (x as f32).sigmoid();
            assert!(
                y32.is_finite() && (0.0..=1.0).contains(&y32),
                "sigmoid({x}) = {y32}"
            );
        }
        assert_eq!(0.0f64.sigmoid(), 0.5);
        assert_eq!(1e4f32.sigmoid(), 1.0);
        assert_eq!((-1e4f32).sigmoid(), 0.0);
    }

    fn check_bound(name: &str, f: fn(f32) -> f32, truth: fn(f64) -> f64, max_ulps: f64) {
        let mut worst = ulp_check::Worst::default();
        for x in ulp_check::f32_patterns().filter(|x| !x.is_nan()) {
            worst.record(name, x, f(x), truth);
        }
        worst.assert_within(name, max_ulps);
        assert!(f(f32::NAN).is_nan(), "{name}(NaN) is NaN");
    }

    #[test]
    fn fast_f32_sigmoid_is_within_a_few_ulp_over_the_whole_range() {
        check_bound(
            "fast_sigmoid_f32",
            super::fast_sigmoid_f32,
            f64::sigmoid,
            3.0,
        );
        assert_eq!(super::fast_sigmoid_f32(0.0), 0.5);
    }

    #[test]
    fn fast_f32_tanh_is_within_a_few_ulp_over_the_whole_range() {
        check_bound("fast_tanh_f32", super::fast_tanh_f32, f64::tanh, 3.0);
        assert_eq!(super::fast_tanh_f32(0.0).to_bits(), 0.0f32.to_bits());
        assert_eq!(super::fast_tanh_f32(-0.0).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn sigmoid_is_symmetric() {
        for i in -200..=200 {
            let x = i as f64 * 0.173;
            assert!((x.sigmoid() + (-x).sigmoid() - 1.0).abs() < 1e-15);
        }
    }
}
