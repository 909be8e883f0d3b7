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
}

impl Float for f32 {
    const NAME: &'static str = "f32";
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

#[cfg(test)]
mod tests {
    use super::Float;

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

    #[test]
    fn sigmoid_is_symmetric() {
        for i in -200..=200 {
            let x = i as f64 * 0.173;
            assert!((x.sigmoid() + (-x).sigmoid() - 1.0).abs() < 1e-15);
        }
    }
}
