//! Element-wise activations with their derivatives.

use serde::{Deserialize, Serialize};

use crate::Float;

/// An element-wise activation φ, applied by [`Dense`](crate::Dense) and
/// [`SimpleRnn`](crate::SimpleRnn).
///
/// | variant | φ(x) | φ′ written with y = φ(x) |
/// | --- | --- | --- |
/// | `Identity` | x | 1 |
/// | `Tanh` | tanh x | 1 − y² |
/// | `Sigmoid` | 1 / (1 + e^{−x}) | y (1 − y) |
/// | `Relu` | max(0, x) | 1 if y > 0 else 0 |
///
/// Each derivative can be taken from the output y, which is what a layer caches: backward then
/// needs no copy of the pre-activation.
///
/// ```
/// use recurrent::Activation;
/// let y = Activation::Tanh.apply(0.5f64);
/// assert!((Activation::Tanh.derivative_from_output(y) - (1.0 - y * y)).abs() < 1e-15);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// φ(x) = x.
    #[default]
    Identity,
    /// φ(x) = tanh x ([`Float::gate_tanh`]: libm in f64, a tested 3-ulp approximation in f32).
    Tanh,
    /// φ(x) = σ(x), never overflowing ([`Float::gate_sigmoid`]: libm in f64, a tested 3-ulp
    /// approximation in f32).
    Sigmoid,
    /// φ(x) = max(0, x); its derivative at 0 is taken as 0.
    Relu,
}

impl Activation {
    /// φ(x).
    #[inline(always)]
    pub fn apply<F: Float>(self, x: F) -> F {
        match self {
            Activation::Identity => x,
            Activation::Tanh => x.gate_tanh(),
            Activation::Sigmoid => x.gate_sigmoid(),
            Activation::Relu => {
                if x > F::zero() {
                    x
                } else {
                    F::zero()
                }
            }
        }
    }

    /// φ′(x), from the input x.
    #[inline]
    pub fn derivative<F: Float>(self, x: F) -> F {
        self.derivative_from_output(self.apply(x))
    }

    /// φ′ expressed through the output y = φ(x).
    #[inline(always)]
    pub fn derivative_from_output<F: Float>(self, y: F) -> F {
        match self {
            Activation::Identity => F::one(),
            Activation::Tanh => F::one() - y * y,
            Activation::Sigmoid => y * (F::one() - y),
            Activation::Relu => {
                if y > F::zero() {
                    F::one()
                } else {
                    F::zero()
                }
            }
        }
    }

    /// Applies φ to every element of `values` in place.
    pub fn apply_slice<F: Float>(self, values: &mut [F]) {
        if self == Activation::Identity {
            return;
        }
        for v in values {
            *v = self.apply(*v);
        }
    }

    /// The lower-case name (`"tanh"`).
    pub fn name(self) -> &'static str {
        match self {
            Activation::Identity => "identity",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Relu => "relu",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Activation;

    const ALL: [Activation; 4] = [
        Activation::Identity,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Relu,
    ];

    #[test]
    fn derivatives_match_central_differences() {
        for act in ALL {
            for i in -30..=30 {
                let x = i as f64 * 0.137 + 0.01; // stays off relu's kink at 0
                let h = 1e-6;
                let numeric = (act.apply(x + h) - act.apply(x - h)) / (2.0 * h);
                let analytic = act.derivative(x);
                assert!(
                    (numeric - analytic).abs() < 1e-8,
                    "{act:?} at {x}: {analytic} vs {numeric}"
                );
            }
        }
    }

    #[test]
    fn activations_stay_finite_for_extreme_inputs() {
        for act in [Activation::Tanh, Activation::Sigmoid] {
            for x in [-1e4f32, -100.0, 100.0, 1e4] {
                assert!(act.apply(x).is_finite());
                assert!(act.derivative(x).is_finite());
            }
        }
    }
}
