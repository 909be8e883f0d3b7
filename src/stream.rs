//! Streaming inference: a stateful predictor fed one observation at a time.

use ndarray::{Array2, ArrayView2, Axis};

use crate::{Error, Float, Layer, Result};

/// Feeds a model one observation per call, carrying every recurrent layer's state from call
/// to call ([`Layer::step`]), for online forecasting.
///
/// After T calls with the rows x₀ … x_{T−1} of a sequence, the outputs are those of one
/// [`Layer::predict`] over `[B, T, I]` at steps 0 … T−1 (a model that keeps only its last step
/// gives, at each call, what it would give for the sequence so far). Memory is constant per
/// step: only the current state is kept.
///
/// ```
/// use ndarray::{Array3, array, s};
/// use recurrent::{Layer, Sequential};
/// use recurrent::stream::Streamer;
///
/// let mut model = Sequential::<f64>::builder(1).gru(8).dense(1).build(0)?;
/// let series = [0.1, 0.4, -0.2, 0.3];
/// let whole = model.predict(Array3::from_shape_fn((1, 4, 1), |(_, t, _)| series[t]).view())?;
/// let mut stream = Streamer::new(&mut model);
/// let mut last = Vec::new();
/// for &x in &series {
///     last = stream.step_one(&[x])?; // one observation in, the forecast so far out
/// }
/// assert!((last[0] - whole[[0, 0, 0]]).abs() < 1e-12);
/// # Ok::<(), recurrent::Error>(())
/// ```
#[derive(Debug)]
pub struct Streamer<'a, F: Float> {
    model: &'a mut dyn Layer<F>,
    batch: Option<usize>,
    steps: usize,
}

impl<'a, F: Float> Streamer<'a, F> {
    /// Starts a stream on `model` from the zero state (any state the model carried is reset).
    pub fn new(model: &'a mut dyn Layer<F>) -> Self {
        model.reset_state();
        Streamer {
            model,
            batch: None,
            steps: 0,
        }
    }

    /// One observation of each of B series, `x` `[B, input_size]` → `[B, output_size]`.
    ///
    /// The batch size is fixed by the first call until [`reset_state`](Self::reset_state);
    /// a different one is a shape error and leaves the state as it was.
    pub fn step(&mut self, x: ArrayView2<'_, F>) -> Result<Array2<F>> {
        let (b, i) = x.dim();
        if let Some(batch) = self.batch
            && batch != b
        {
            return Err(Error::shape(
                "streaming step input (the stream's batch is fixed until reset_state)",
                &[batch, self.model.input_size()],
                x.shape(),
            ));
        }
        if i != self.model.input_size() {
            return Err(Error::shape(
                "streaming step input",
                &[b, self.model.input_size()],
                x.shape(),
            ));
        }
        if let Some(at) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: "streaming step input".into(),
                index: vec![at / i.max(1), at % i.max(1)],
            });
        }
        let y = self.model.step(x.insert_axis(Axis(1)))?;
        self.batch = Some(b);
        self.steps += 1;
        Ok(y.index_axis_move(Axis(1), 0))
    }

    /// One observation of a single series, `x` of length input_size → the output row.
    pub fn step_one(&mut self, x: &[F]) -> Result<Vec<F>> {
        let row = ArrayView2::from_shape((1, x.len()), x)
            .map_err(|e| Error::config("streaming step input", e.to_string()))?;
        Ok(self.step(row)?.into_iter().collect())
    }

    /// Forgets the state: the next step starts a new sequence (and may change the batch).
    pub fn reset_state(&mut self) {
        self.model.reset_state();
        self.batch = None;
        self.steps = 0;
    }

    /// Steps taken since the start or the last reset.
    pub fn steps(&self) -> usize {
        self.steps
    }
}
