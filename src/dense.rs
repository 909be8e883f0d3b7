//! The fully connected layer.

use ndarray::{Array1, Array2, Array3, ArrayView2, ArrayView3, Ix1, Ix2, linalg::general_mat_mul};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::layer::{Layer, check_sequence, check_step};
use crate::{Activation, Error, Float, Init, Param, ParamMut, ParamView, Result, init};

/// A dense layer's weights in PyTorch's layout: `weight` `[out, in]`, `bias` `[out]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenseWeights<F> {
    /// `[out, in]`
    pub weight: Array2<F>,
    /// `[out]`
    pub bias: Array1<F>,
}

#[derive(Debug, Clone)]
struct DenseCache<F> {
    /// `[N, in]`
    x: Array2<F>,
    /// `[N, out]`, after the activation (its derivative is read off it).
    y: Array2<F>,
    /// `(B, T)` when the forward was on a `[B, T, in]` sequence (N = B·T).
    sequence: Option<(usize, usize)>,
}

/// A fully connected layer, `y = φ(x Wᵀ + b)` with `weight` W `[out, in]` (PyTorch's layout)
/// and `bias` b `[out]`.
///
/// On 2-D input `[N, in]` ([`forward_2d`](Self::forward_2d)) it maps every row; as a [`Layer`]
/// on `[batch, steps, in]` it maps every step. Backward, with ∂a = ∂L/∂y ⊙ φ′(a):
/// ∂W += ∂aᵀ x, ∂b += Σ_rows ∂a, ∂L/∂x = ∂a W.
///
/// ```
/// use ndarray::array;
/// use recurrent::{Activation, Dense, DenseWeights};
///
/// let weights = DenseWeights { weight: array![[1.0, 2.0], [0.0, -1.0]], bias: array![0.5, 0.0] };
/// let mut dense = Dense::<f64>::from_weights(weights, Activation::Identity)?;
/// let y = dense.forward_2d(array![[1.0, 1.0]].view())?;
/// assert_eq!(y, array![[3.5, -1.0]]);
/// # Ok::<(), recurrent::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Dense<F: Float = f32> {
    weight: Param<F, Ix2>,
    bias: Param<F, Ix1>,
    activation: Activation,
    cache: Option<DenseCache<F>>,
}

impl<F: Float> Dense<F> {
    /// A layer from `input_size` to `output_size` features with activation φ, initialized by
    /// Glorot uniform weights and zero biases ([`Init::Glorot`]).
    pub fn new<R: Rng + ?Sized>(
        input_size: usize,
        output_size: usize,
        activation: Activation,
        rng: &mut R,
    ) -> Result<Self> {
        Self::with_init(input_size, output_size, activation, Init::Glorot, rng)
    }

    /// As [`new`](Self::new), with the initialization scheme `init` ([`Init::Torch`]:
    /// U(−1/√in, 1/√in) for weight and bias).
    pub fn with_init<R: Rng + ?Sized>(
        input_size: usize,
        output_size: usize,
        activation: Activation,
        init: Init,
        rng: &mut R,
    ) -> Result<Self> {
        check_dense_sizes(input_size, output_size)?;
        let weights = match init {
            Init::Glorot => DenseWeights {
                weight: init::glorot_uniform(output_size, input_size, rng)?,
                bias: Array1::zeros(output_size),
            },
            Init::Torch => {
                let k = 1.0 / (input_size as f64).sqrt();
                DenseWeights {
                    weight: init::uniform(output_size, input_size, k, rng)?,
                    bias: init::uniform_vector(output_size, k, rng)?,
                }
            }
        };
        Self::from_weights(weights, activation)
    }

    /// A layer holding `weights` (`weight` `[out, in]`, `bias` `[out]`).
    pub fn from_weights(weights: DenseWeights<F>, activation: Activation) -> Result<Self> {
        let (out, input) = weights.weight.dim();
        check_dense_sizes(input, out)?;
        if weights.bias.len() != out {
            return Err(Error::shape("dense bias", &[out], weights.bias.shape()));
        }
        Ok(Dense {
            weight: Param::new("weight", weights.weight),
            bias: Param::new("bias", weights.bias),
            activation,
            cache: None,
        })
    }

    /// A copy of the weights.
    pub fn weights(&self) -> DenseWeights<F> {
        DenseWeights {
            weight: self.weight.value.clone(),
            bias: self.bias.value.clone(),
        }
    }

    /// A copy of the accumulated gradients, in the layout of [`weights`](Self::weights).
    pub fn gradients(&self) -> DenseWeights<F> {
        DenseWeights {
            weight: self.weight.grad.clone(),
            bias: self.bias.grad.clone(),
        }
    }

    /// φ.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    fn check_rows(&self, x: &ArrayView2<'_, F>) -> Result<()> {
        let (n, i) = x.dim();
        let input = self.weight.value.ncols();
        if i != input {
            return Err(Error::shape("dense input", &[n, input], x.shape()));
        }
        if n == 0 {
            return Err(Error::Empty {
                what: "dense input".into(),
                axis: "rows".into(),
                shape: x.shape().to_vec(),
            });
        }
        Ok(())
    }

    fn compute(&self, x: &ArrayView2<'_, F>) -> Array2<F> {
        let n = x.nrows();
        let out = self.weight.value.nrows();
        let mut y = Array2::zeros((n, out));
        y.assign(
            &self
                .bias
                .value
                .broadcast((n, out))
                .expect("bias matches output width"),
        );
        general_mat_mul(F::one(), x, &self.weight.value.t(), F::one(), &mut y);
        if let Some(values) = y.as_slice_mut() {
            self.activation.apply_slice(values);
        }
        y
    }

    /// Training forward on rows: `x` `[N, in]` → `y` `[N, out]`, keeping x and y for the backward.
    pub fn forward_2d(&mut self, x: ArrayView2<'_, F>) -> Result<Array2<F>> {
        self.check_rows(&x)?;
        let y = self.compute(&x);
        self.cache = Some(DenseCache {
            x: x.to_owned(),
            y: y.clone(),
            sequence: None,
        });
        Ok(y)
    }

    /// Inference on rows: `x` `[N, in]` → `y` `[N, out]`.
    pub fn predict_2d(&self, x: ArrayView2<'_, F>) -> Result<Array2<F>> {
        self.check_rows(&x)?;
        Ok(self.compute(&x))
    }

    /// Backward on rows: ∂L/∂y `[N, out]` → ∂L/∂x `[N, in]`, adding into ∂W and ∂b.
    pub fn backward_2d(&mut self, d_y: ArrayView2<'_, F>) -> Result<Array2<F>> {
        let cache = self
            .cache
            .take()
            .ok_or_else(|| Error::BackwardBeforeForward {
                layer: "dense".into(),
            })?;
        if d_y.shape() != cache.y.shape() {
            let expected = cache.y.shape().to_vec();
            self.cache = Some(cache);
            return Err(Error::shape(
                "dense output gradient",
                &expected,
                d_y.shape(),
            ));
        }
        // ∂a = ∂y ⊙ φ′(a), φ′ read off the cached output y.
        let mut d_a = d_y.to_owned();
        if self.activation != Activation::Identity {
            d_a.zip_mut_with(&cache.y, |d, &y| {
                *d *= self.activation.derivative_from_output(y)
            });
        }
        // ∂W += ∂aᵀ x;  ∂b += Σ_rows ∂a;  ∂x = ∂a W
        general_mat_mul(
            F::one(),
            &d_a.t(),
            &cache.x,
            F::one(),
            &mut self.weight.grad,
        );
        for row in d_a.rows() {
            self.bias.grad += &row;
        }
        let mut d_x = Array2::zeros(cache.x.raw_dim());
        general_mat_mul(F::one(), &d_a, &self.weight.value, F::zero(), &mut d_x);
        Ok(d_x)
    }
}

fn check_dense_sizes(input_size: usize, output_size: usize) -> Result<()> {
    if input_size == 0 {
        return Err(Error::config(
            "dense input_size",
            "must be at least 1, got 0",
        ));
    }
    if output_size == 0 {
        return Err(Error::config(
            "dense output_size",
            "must be at least 1, got 0",
        ));
    }
    Ok(())
}

/// `[B, T, F]` → `[B·T, F]` rows (a copy only when `x` is not contiguous).
fn rows_of<F: Float>(x: ArrayView3<'_, F>) -> Array2<F> {
    let (b, t, f) = x.dim();
    x.as_standard_layout()
        .into_owned()
        .into_shape_with_order((b * t, f))
        .expect("a standard-layout array reshapes")
}

fn sequence_of<F: Float>(y: Array2<F>, b: usize, t: usize) -> Array3<F> {
    let f = y.ncols();
    y.into_shape_with_order((b, t, f)).expect("[B·T, F] rows")
}

impl<F: Float> Layer<F> for Dense<F> {
    fn name(&self) -> &'static str {
        "dense"
    }

    fn input_size(&self) -> usize {
        self.weight.value.ncols()
    }

    fn output_size(&self) -> usize {
        self.weight.value.nrows()
    }

    fn forward(&mut self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let (b, t) = check_sequence("dense", &x, self.input_size())?;
        let y = self.forward_2d(rows_of(x).view())?;
        if let Some(cache) = &mut self.cache {
            cache.sequence = Some((b, t));
        }
        Ok(sequence_of(y, b, t))
    }

    fn predict(&self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let (b, t) = check_sequence("dense", &x, self.input_size())?;
        let y = self.predict_2d(rows_of(x).view())?;
        Ok(sequence_of(y, b, t))
    }

    fn step(&mut self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        // No state: a step is a prediction on one step.
        check_step("dense", &x, self.input_size())?;
        self.predict(x)
    }

    fn backward(&mut self, d_out: ArrayView3<'_, F>) -> Result<Array3<F>> {
        // The gradient must have the forward output's [B, T, out] shape, not just as many rows.
        let (b, t) = match &self.cache {
            Some(cache) => cache.sequence.unwrap_or((cache.y.nrows(), 1)),
            None => {
                return Err(Error::BackwardBeforeForward {
                    layer: "dense".into(),
                });
            }
        };
        let expected = [b, t, self.output_size()];
        if d_out.shape() != expected {
            return Err(Error::shape(
                "dense output gradient",
                &expected,
                d_out.shape(),
            ));
        }
        let d_x = self.backward_2d(rows_of(d_out).view())?;
        Ok(sequence_of(d_x, b, t))
    }

    fn visit_params(&self, visit: &mut dyn FnMut(ParamView<'_, F>)) {
        visit(self.weight.view());
        visit(self.bias.view());
    }

    fn visit_params_mut(&mut self, visit: &mut dyn FnMut(ParamMut<'_, F>)) {
        visit(self.weight.view_mut());
        visit(self.bias.view_mut());
    }
}
