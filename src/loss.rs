//! Losses: a scalar of a prediction and a target of the same shape, and its gradient.

use std::fmt::Debug;

use ndarray::{Array3, ArrayView3, Zip};
use serde::{Deserialize, Serialize};

use crate::{Error, Float, Result};

/// A loss J(ŷ, y) over predictions and targets of the same shape `[batch, horizon, targets]`.
///
/// Object-safe, so a trainer holds a `Box<dyn Loss<F>>` and users can bring their own.
/// Shapes must be equal: a mismatch is [`Error::Shape`], never a silent broadcast.
pub trait Loss<F: Float>: Debug + Send + Sync {
    /// Short lower-case name (`"mse"`).
    fn name(&self) -> &'static str;

    /// J(ŷ, y).
    fn loss(&self, prediction: ArrayView3<'_, F>, target: ArrayView3<'_, F>) -> Result<F>;

    /// J(ŷ, y) and ∂J/∂ŷ (the prediction's shape).
    fn loss_and_gradient(
        &self,
        prediction: ArrayView3<'_, F>,
        target: ArrayView3<'_, F>,
    ) -> Result<(F, Array3<F>)>;
}

/// Checks `prediction` and `target` have the same non-empty shape; returns the element count.
pub fn check_same_shape<F>(
    loss: &str,
    prediction: &ArrayView3<'_, F>,
    target: &ArrayView3<'_, F>,
) -> Result<usize> {
    if prediction.shape() != target.shape() {
        return Err(Error::shape(
            format!("{loss} target (must match the prediction)"),
            prediction.shape(),
            target.shape(),
        ));
    }
    if prediction.is_empty() {
        return Err(Error::Empty {
            what: format!("{loss} prediction"),
            axis: "elements".into(),
            shape: prediction.shape().to_vec(),
        });
    }
    Ok(prediction.len())
}

/// Mean squared error over all N elements: J = 1/N Σ (ŷ − y)², ∂J/∂ŷ = 2 (ŷ − y) / N.
///
/// ```
/// use ndarray::Array3;
/// use recurrent::{Loss, Mse};
/// let p = Array3::from_elem((1, 2, 1), 1.0f64);
/// let y = Array3::from_elem((1, 2, 1), 3.0f64);
/// assert_eq!(Mse.loss(p.view(), y.view())?, 4.0);
/// # Ok::<(), recurrent::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Mse;

/// Mean absolute error: J = 1/N Σ |ŷ − y|, ∂J/∂ŷ = sign(ŷ − y) / N (0 where ŷ = y).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Mae;

/// Huber loss with threshold δ > 0, mean over elements (PyTorch's `HuberLoss`): with e = ŷ − y,
/// ℓ = ½ e² where |e| ≤ δ, δ (|e| − ½ δ) elsewhere; ∂ℓ/∂ŷ = e clipped to [−δ, δ].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Huber {
    delta: f64,
}

impl Huber {
    /// A Huber loss with threshold `delta`; errors unless δ is finite and positive.
    pub fn new(delta: f64) -> Result<Self> {
        if !(delta.is_finite() && delta > 0.0) {
            return Err(Error::config(
                "huber delta",
                format!("must be finite and > 0, got {delta}"),
            ));
        }
        Ok(Huber { delta })
    }

    /// δ.
    pub fn delta(&self) -> f64 {
        self.delta
    }
}

impl<F: Float> Loss<F> for Mse {
    fn name(&self) -> &'static str {
        "mse"
    }

    fn loss(&self, prediction: ArrayView3<'_, F>, target: ArrayView3<'_, F>) -> Result<F> {
        let n = check_same_shape("mse", &prediction, &target)?;
        let mut sum = F::zero();
        Zip::from(&prediction)
            .and(&target)
            .for_each(|&p, &y| sum += (p - y) * (p - y));
        Ok(sum / F::from_usize(n))
    }

    fn loss_and_gradient(
        &self,
        prediction: ArrayView3<'_, F>,
        target: ArrayView3<'_, F>,
    ) -> Result<(F, Array3<F>)> {
        let n = check_same_shape("mse", &prediction, &target)?;
        let scale = F::from_f64(2.0) / F::from_usize(n);
        let mut sum = F::zero();
        let grad = Zip::from(&prediction).and(&target).map_collect(|&p, &y| {
            let e = p - y;
            sum += e * e;
            scale * e
        });
        Ok((sum / F::from_usize(n), grad))
    }
}

impl<F: Float> Loss<F> for Mae {
    fn name(&self) -> &'static str {
        "mae"
    }

    fn loss(&self, prediction: ArrayView3<'_, F>, target: ArrayView3<'_, F>) -> Result<F> {
        Ok(self.loss_and_gradient(prediction, target)?.0)
    }

    fn loss_and_gradient(
        &self,
        prediction: ArrayView3<'_, F>,
        target: ArrayView3<'_, F>,
    ) -> Result<(F, Array3<F>)> {
        let n = check_same_shape("mae", &prediction, &target)?;
        let inv_n = F::one() / F::from_usize(n);
        let mut sum = F::zero();
        let grad = Zip::from(&prediction).and(&target).map_collect(|&p, &y| {
            let e = p - y;
            sum += e.abs();
            if e > F::zero() {
                inv_n
            } else if e < F::zero() {
                -inv_n
            } else {
                F::zero()
            }
        });
        Ok((sum * inv_n, grad))
    }
}

impl<F: Float> Loss<F> for Huber {
    fn name(&self) -> &'static str {
        "huber"
    }

    fn loss(&self, prediction: ArrayView3<'_, F>, target: ArrayView3<'_, F>) -> Result<F> {
        Ok(self.loss_and_gradient(prediction, target)?.0)
    }

    fn loss_and_gradient(
        &self,
        prediction: ArrayView3<'_, F>,
        target: ArrayView3<'_, F>,
    ) -> Result<(F, Array3<F>)> {
        let n = check_same_shape("huber", &prediction, &target)?;
        let delta = F::from_f64(self.delta);
        let half = F::from_f64(0.5);
        let inv_n = F::one() / F::from_usize(n);
        let mut sum = F::zero();
        let grad = Zip::from(&prediction).and(&target).map_collect(|&p, &y| {
            let e = p - y;
            if e.abs() <= delta {
                sum += half * e * e;
                e * inv_n
            } else {
                sum += delta * (e.abs() - half * delta);
                delta * e.signum() * inv_n
            }
        });
        Ok((sum * inv_n, grad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn pair() -> (Array3<f64>, Array3<f64>) {
        (
            array![[[1.0], [2.0], [-3.0]]],
            array![[[0.5], [2.0], [1.0]]],
        )
    }

    #[test]
    fn losses_match_hand_computed_values() {
        let (p, y) = pair();
        // errors 0.5, 0, −4
        let mse: f64 = Mse.loss(p.view(), y.view()).unwrap();
        assert!((mse - (0.25 + 16.0) / 3.0).abs() < 1e-15);
        let mae: f64 = Mae.loss(p.view(), y.view()).unwrap();
        assert!((mae - 4.5 / 3.0).abs() < 1e-15);
        let huber: f64 = Huber::new(1.0).unwrap().loss(p.view(), y.view()).unwrap();
        assert!((huber - (0.125 + 3.5) / 3.0).abs() < 1e-15);
    }

    #[test]
    fn loss_gradients_match_central_differences() {
        let (p, y) = pair();
        let losses: Vec<Box<dyn Loss<f64>>> = vec![
            Box::new(Mse),
            Box::new(Mae),
            Box::new(Huber::new(1.0).unwrap()),
        ];
        for loss in losses {
            let (_, grad) = loss.loss_and_gradient(p.view(), y.view()).unwrap();
            for idx in [[0, 0, 0], [0, 2, 0]] {
                let mut plus = p.clone();
                plus[idx] += 1e-6;
                let mut minus = p.clone();
                minus[idx] -= 1e-6;
                let numeric = (loss.loss(plus.view(), y.view()).unwrap()
                    - loss.loss(minus.view(), y.view()).unwrap())
                    / 2e-6;
                assert!(
                    (numeric - grad[idx]).abs() < 1e-8,
                    "{} at {idx:?}",
                    loss.name()
                );
            }
        }
    }

    #[test]
    fn mismatched_shapes_are_an_error_not_a_broadcast() {
        let p = Array3::<f64>::zeros((2, 1, 1));
        let y = Array3::<f64>::zeros((2, 3, 1));
        assert!(matches!(
            Mse.loss(p.view(), y.view()),
            Err(Error::Shape { .. })
        ));
        assert!(Huber::new(0.0).is_err());
        assert!(Huber::new(f64::NAN).is_err());
    }
}
