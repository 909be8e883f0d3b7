//! Layers without weights that reshape or regularize: dropout, repeat, flatten, unflatten.

use ndarray::{Array3, ArrayView3, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::layer::{Layer, check_sequence, check_step};
use crate::{Error, Float, ParamMut, ParamView, Result};

/// Inverted dropout: in training each activation is kept with probability 1 − p and scaled by
/// 1 / (1 − p), so [`predict`](Layer::predict) (the identity) needs no rescaling. Seeded: the
/// same seed drops the same units.
#[derive(Debug, Clone)]
pub struct Dropout<F: Float = f32> {
    rate: f64,
    features: usize,
    rng: ChaCha8Rng,
    /// `[B, T, F]`: 0 or 1/(1−p), from the last training forward.
    mask: Option<Array3<F>>,
}

impl<F: Float> Dropout<F> {
    /// Dropout of `rate` p ∈ [0, 1) over `features` features, its mask drawn from `seed`.
    pub fn new(features: usize, rate: f64, seed: u64) -> Result<Self> {
        if !(rate.is_finite() && (0.0..1.0).contains(&rate)) {
            return Err(Error::config(
                "dropout rate",
                format!("must lie in [0, 1), got {rate}"),
            ));
        }
        if features == 0 {
            return Err(Error::config(
                "dropout features",
                "must be at least 1, got 0",
            ));
        }
        Ok(Dropout {
            rate,
            features,
            rng: ChaCha8Rng::seed_from_u64(seed),
            mask: None,
        })
    }

    /// p.
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

impl<F: Float> Layer<F> for Dropout<F> {
    fn name(&self) -> &'static str {
        "dropout"
    }
    fn input_size(&self) -> usize {
        self.features
    }
    fn output_size(&self) -> usize {
        self.features
    }
    fn forward(&mut self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        check_sequence("dropout", &x, self.features)?;
        let keep = F::from_f64(1.0 / (1.0 - self.rate));
        let rate = self.rate;
        let rng = &mut self.rng;
        let mask = Array3::from_shape_simple_fn(x.raw_dim(), || {
            if rng.random::<f64>() < rate {
                F::zero()
            } else {
                keep
            }
        });
        let y = &x * &mask;
        self.mask = Some(mask);
        Ok(y)
    }
    fn predict(&self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        check_sequence("dropout", &x, self.features)?;
        Ok(x.to_owned())
    }
    fn backward(&mut self, d_out: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let mask = self
            .mask
            .take()
            .ok_or_else(|| Error::BackwardBeforeForward {
                layer: "dropout".into(),
            })?;
        if d_out.shape() != mask.shape() {
            return Err(Error::shape(
                "dropout output gradient",
                mask.shape(),
                d_out.shape(),
            ));
        }
        // y = x ⊙ m  ⇒  ∂x = ∂y ⊙ m
        Ok(&d_out * &mask)
    }
    fn step(&mut self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        // Inference: the identity, one step at a time.
        check_step("dropout", &x, self.features)?;
        Ok(x.to_owned())
    }
    fn visit_rngs(&self, visit: &mut dyn FnMut(&ChaCha8Rng)) {
        visit(&self.rng);
    }
    fn visit_rngs_mut(&mut self, visit: &mut dyn FnMut(&mut ChaCha8Rng)) {
        visit(&mut self.rng);
    }
    fn visit_params(&self, _: &mut dyn FnMut(ParamView<'_, F>)) {}
    fn visit_params_mut(&mut self, _: &mut dyn FnMut(ParamMut<'_, F>)) {}
}

/// Repeats a one-step input `[B, 1, F]` `times` times along the time axis: `[B, times, F]`
/// (Keras's `RepeatVector`), the input of a one-to-many decoder. Backward sums over the copies.
#[derive(Debug, Clone)]
pub struct Repeat {
    features: usize,
    times: usize,
    batch: Option<usize>,
}

impl Repeat {
    /// Repeats `features`-wide vectors `times` times.
    pub fn new(features: usize, times: usize) -> Result<Self> {
        if times == 0 || features == 0 {
            return Err(Error::config(
                "repeat",
                format!("features and times must be at least 1, got {features} and {times}"),
            ));
        }
        Ok(Repeat {
            features,
            times,
            batch: None,
        })
    }

    fn check<F>(&self, x: &ArrayView3<'_, F>) -> Result<usize> {
        let (b, t) = check_sequence("repeat", x, self.features)?;
        if t != 1 {
            return Err(Error::shape(
                "repeat input (one step)",
                &[b, 1, self.features],
                x.shape(),
            ));
        }
        Ok(b)
    }
}

impl<F: Float> Layer<F> for Repeat {
    fn name(&self) -> &'static str {
        "repeat"
    }
    fn input_size(&self) -> usize {
        self.features
    }
    fn output_size(&self) -> usize {
        self.features
    }
    fn output_steps(&self, _: usize) -> usize {
        self.times
    }
    fn forward(&mut self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let y = self.predict(x)?;
        self.batch = Some(y.shape()[0]);
        Ok(y)
    }
    fn predict(&self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let b = self.check(&x)?;
        Ok(x.broadcast((b, self.times, self.features))
            .expect("one step broadcasts")
            .to_owned())
    }
    fn backward(&mut self, d_out: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let b = self
            .batch
            .take()
            .ok_or_else(|| Error::BackwardBeforeForward {
                layer: "repeat".into(),
            })?;
        let expected = [b, self.times, self.features];
        if d_out.shape() != expected {
            return Err(Error::shape(
                "repeat output gradient",
                &expected,
                d_out.shape(),
            ));
        }
        Ok(d_out.sum_axis(Axis(1)).insert_axis(Axis(1)))
    }
    fn visit_params(&self, _: &mut dyn FnMut(ParamView<'_, F>)) {}
    fn visit_params_mut(&mut self, _: &mut dyn FnMut(ParamMut<'_, F>)) {}
}

/// Flattens a window `[B, T, F]` into one step `[B, 1, T·F]` (step-major), e.g. for a dense
/// branch on lag features. The step count is fixed at construction.
#[derive(Debug, Clone)]
pub struct Flatten {
    steps: usize,
    features: usize,
    batch: Option<usize>,
}

impl Flatten {
    /// Flattens windows of `steps` steps of `features` features.
    pub fn new(steps: usize, features: usize) -> Result<Self> {
        if steps == 0 || features == 0 {
            return Err(Error::config(
                "flatten",
                format!("steps and features must be at least 1, got {steps} and {features}"),
            ));
        }
        Ok(Flatten {
            steps,
            features,
            batch: None,
        })
    }
}

impl<F: Float> Layer<F> for Flatten {
    fn name(&self) -> &'static str {
        "flatten"
    }
    fn input_size(&self) -> usize {
        self.features
    }
    fn output_size(&self) -> usize {
        self.steps * self.features
    }
    fn output_steps(&self, _: usize) -> usize {
        1
    }
    fn forward(&mut self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let y = self.predict(x)?;
        self.batch = Some(y.shape()[0]);
        Ok(y)
    }
    fn predict(&self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let (b, t) = check_sequence("flatten", &x, self.features)?;
        if t != self.steps {
            return Err(Error::shape(
                "flatten input",
                &[b, self.steps, self.features],
                x.shape(),
            ));
        }
        Ok(x.as_standard_layout()
            .into_owned()
            .into_shape_with_order((b, 1, t * self.features))
            .expect("standard layout reshapes"))
    }
    fn backward(&mut self, d_out: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let b = self
            .batch
            .take()
            .ok_or_else(|| Error::BackwardBeforeForward {
                layer: "flatten".into(),
            })?;
        let expected = [b, 1, self.steps * self.features];
        if d_out.shape() != expected {
            return Err(Error::shape(
                "flatten output gradient",
                &expected,
                d_out.shape(),
            ));
        }
        Ok(d_out
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((b, self.steps, self.features))
            .expect("standard layout reshapes"))
    }
    fn visit_params(&self, _: &mut dyn FnMut(ParamView<'_, F>)) {}
    fn visit_params_mut(&mut self, _: &mut dyn FnMut(ParamMut<'_, F>)) {}
}

/// Turns one step of `horizon·k` values `[B, 1, horizon·k]` into `[B, horizon, k]`: the shape
/// of a direct multi-step forecast. The inverse of [`Flatten`].
#[derive(Debug, Clone)]
pub struct Unflatten {
    horizon: usize,
    targets: usize,
    batch: Option<usize>,
}

impl Unflatten {
    /// Splits `horizon·targets` features into `horizon` steps of `targets`.
    pub fn new(horizon: usize, targets: usize) -> Result<Self> {
        if horizon == 0 || targets == 0 {
            return Err(Error::config(
                "unflatten",
                format!("horizon and targets must be at least 1, got {horizon} and {targets}"),
            ));
        }
        Ok(Unflatten {
            horizon,
            targets,
            batch: None,
        })
    }
}

impl<F: Float> Layer<F> for Unflatten {
    fn name(&self) -> &'static str {
        "unflatten"
    }
    fn input_size(&self) -> usize {
        self.horizon * self.targets
    }
    fn output_size(&self) -> usize {
        self.targets
    }
    fn output_steps(&self, _: usize) -> usize {
        self.horizon
    }
    fn forward(&mut self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let y = self.predict(x)?;
        self.batch = Some(y.shape()[0]);
        Ok(y)
    }
    fn predict(&self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let width = self.horizon * self.targets;
        let (b, t) = check_sequence("unflatten", &x, width)?;
        if t != 1 {
            return Err(Error::shape(
                "unflatten input (one step)",
                &[b, 1, width],
                x.shape(),
            ));
        }
        Ok(x.as_standard_layout()
            .into_owned()
            .into_shape_with_order((b, self.horizon, self.targets))
            .expect("standard layout reshapes"))
    }
    fn backward(&mut self, d_out: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let b = self
            .batch
            .take()
            .ok_or_else(|| Error::BackwardBeforeForward {
                layer: "unflatten".into(),
            })?;
        let expected = [b, self.horizon, self.targets];
        if d_out.shape() != expected {
            return Err(Error::shape(
                "unflatten output gradient",
                &expected,
                d_out.shape(),
            ));
        }
        Ok(d_out
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((b, 1, self.horizon * self.targets))
            .expect("standard layout reshapes"))
    }
    fn visit_params(&self, _: &mut dyn FnMut(ParamView<'_, F>)) {}
    fn visit_params_mut(&mut self, _: &mut dyn FnMut(ParamMut<'_, F>)) {}
}
