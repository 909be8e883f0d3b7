//! Several RNNs together: bidirectional, parallel branches, encoder–decoder.

use ndarray::{Array3, ArrayView3, Axis, concatenate, s};
use serde::{Deserialize, Serialize};

use crate::layer::{Layer, check_sequence};
use crate::{Cell, Error, Float, ParamMut, ParamView, Recurrent, RecurrentState, Result};

/// How a [`Bidirectional`] layer merges its two directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Merge {
    /// `[forward, backward]` along features: width 2H.
    #[default]
    Concat,
    /// forward + backward: width H.
    Sum,
    /// (forward + backward) / 2: width H.
    Mean,
}

/// Time-reversed copy of `x` `[B, T, F]`.
fn reversed<F: Float>(x: ArrayView3<'_, F>) -> Array3<F> {
    x.slice(s![.., ..;-1, ..]).as_standard_layout().into_owned()
}

/// A bidirectional recurrent layer: one layer reads the sequence forward, a second (own weights)
/// reads it backward, and their outputs are merged ([`Merge`]).
///
/// With `return_sequences`, step t merges the forward output after x_0…x_t with the backward
/// output after x_{T−1}…x_t: `[B, T, W]`. Without, it merges the two final states (forward after
/// x_{T−1}, backward after x_0), as Keras does: `[B, 1, W]`. W is 2H for [`Merge::Concat`], else H.
#[derive(Debug, Clone)]
pub struct Bidirectional<C: Cell, F: Float = f32> {
    forward: Recurrent<C, F>,
    backward: Recurrent<C, F>,
    merge: Merge,
    return_sequences: bool,
}

impl<C: Cell, F: Float> Bidirectional<C, F> {
    /// Wraps two layers of the same sizes: `forward` reads x_0…x_{T−1}, `backward` reads
    /// x_{T−1}…x_0.
    pub fn new(
        forward: Recurrent<C, F>,
        backward: Recurrent<C, F>,
        merge: Merge,
        return_sequences: bool,
    ) -> Result<Self> {
        if forward.input_size() != backward.input_size()
            || forward.hidden_size() != backward.hidden_size()
        {
            return Err(Error::config(
                "bidirectional",
                format!(
                    "both directions need the same sizes, got (input {}, hidden {}) and (input {}, hidden {})",
                    forward.input_size(),
                    forward.hidden_size(),
                    backward.input_size(),
                    backward.hidden_size()
                ),
            ));
        }
        Ok(Bidirectional {
            forward,
            backward,
            merge,
            return_sequences,
        })
    }

    /// The forward-direction layer.
    pub fn forward_layer(&self) -> &Recurrent<C, F> {
        &self.forward
    }

    /// The backward-direction layer.
    pub fn backward_layer(&self) -> &Recurrent<C, F> {
        &self.backward
    }

    fn merged(&self, a: ArrayView3<'_, F>, b: ArrayView3<'_, F>) -> Array3<F> {
        match self.merge {
            Merge::Concat => concatenate(Axis(2), &[a, b]).expect("same batch and steps"),
            Merge::Sum => &a + &b,
            Merge::Mean => (&a + &b) * F::from_f64(0.5),
        }
    }

    /// Splits ∂L/∂merged into the two directions' output gradients.
    fn split(&self, d: ArrayView3<'_, F>) -> (Array3<F>, Array3<F>) {
        let h = self.forward.hidden_size();
        match self.merge {
            Merge::Concat => (
                d.slice(s![.., .., ..h]).to_owned(),
                d.slice(s![.., .., h..]).to_owned(),
            ),
            Merge::Sum => (d.to_owned(), d.to_owned()),
            Merge::Mean => {
                let half = d.mapv(|v| v * F::from_f64(0.5));
                (half.clone(), half)
            }
        }
    }

    /// Inference returning the merged output and both directions' final states
    /// (forward after x_{T−1}, backward after x_0).
    pub fn predict_with_states(
        &self,
        x: ArrayView3<'_, F>,
    ) -> Result<(Array3<F>, RecurrentState<F>, RecurrentState<F>)> {
        let (out_f, fin_f) = self.forward.predict_with_state(x, None)?;
        let (out_b, fin_b) = self.backward.predict_with_state(reversed(x).view(), None)?;
        let merged = self.merge_outputs(out_f, out_b, &fin_f, &fin_b);
        Ok((merged, fin_f, fin_b))
    }

    fn merge_outputs(
        &self,
        out_f: Array3<F>,
        out_b_reversed: Array3<F>,
        fin_f: &RecurrentState<F>,
        fin_b: &RecurrentState<F>,
    ) -> Array3<F> {
        if self.return_sequences {
            let out_b = reversed(out_b_reversed.view());
            self.merged(out_f.view(), out_b.view())
        } else {
            let last_f = fin_f.h.view().insert_axis(Axis(1));
            let last_b = fin_b.h.view().insert_axis(Axis(1));
            self.merged(last_f, last_b)
        }
    }
}

impl<C: Cell, F: Float> Layer<F> for Bidirectional<C, F> {
    fn name(&self) -> &'static str {
        "bidirectional"
    }
    fn input_size(&self) -> usize {
        self.forward.input_size()
    }
    fn output_size(&self) -> usize {
        match self.merge {
            Merge::Concat => 2 * self.forward.hidden_size(),
            Merge::Sum | Merge::Mean => self.forward.hidden_size(),
        }
    }
    fn output_steps(&self, input_steps: usize) -> usize {
        if self.return_sequences {
            input_steps
        } else {
            1
        }
    }
    fn forward(&mut self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let (out_f, fin_f) = self.forward.forward_with_state(x, None)?;
        let (out_b, fin_b) = self.backward.forward_with_state(reversed(x).view(), None)?;
        Ok(self.merge_outputs(out_f, out_b, &fin_f, &fin_b))
    }
    fn predict(&self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        Ok(self.predict_with_states(x)?.0)
    }
    fn backward(&mut self, d_out: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let width = Layer::<F>::output_size(self);
        if d_out.shape()[2] != width {
            let mut expected = d_out.shape().to_vec();
            expected[2] = width;
            return Err(Error::shape(
                "bidirectional output gradient",
                &expected,
                d_out.shape(),
            ));
        }
        let (d_f, d_b) = self.split(d_out);
        if self.return_sequences {
            let (d_x_f, _) = self.forward.backward_with_state(Some(d_f.view()), None)?;
            let (d_x_b, _) = self
                .backward
                .backward_with_state(Some(reversed(d_b.view()).view()), None)?;
            Ok(d_x_f + reversed(d_x_b.view()))
        } else {
            let state = |d: Array3<F>| RecurrentState {
                h: d.index_axis_move(Axis(1), 0),
                c: None,
            };
            let (d_x_f, _) = self.forward.backward_with_state(None, Some(&state(d_f)))?;
            let (d_x_b, _) = self.backward.backward_with_state(None, Some(&state(d_b)))?;
            Ok(d_x_f + reversed(d_x_b.view()))
        }
    }
    fn hidden_gradient_norms(&self) -> Vec<Vec<F>> {
        vec![
            self.forward.hidden_gradient_norms().to_vec(),
            self.backward.hidden_gradient_norms().to_vec(),
        ]
    }
    fn visit_params(&self, visit: &mut dyn FnMut(ParamView<'_, F>)) {
        self.forward.visit_params(visit);
        self.backward.visit_params(visit);
    }
    fn visit_params_mut(&mut self, visit: &mut dyn FnMut(ParamMut<'_, F>)) {
        self.forward.visit_params_mut(visit);
        self.backward.visit_params_mut(visit);
    }
}

/// Parallel branches over the same input, their outputs concatenated along features.
///
/// Every branch maps `[B, T, I]` to `[B, T_out, k_i]` with the same `T_out`; the output is
/// `[B, T_out, Σ k_i]`. E.g. a GRU branch (last step) beside a dense branch on the flattened
/// window. Backward splits the gradient by branch and sums the branches' input gradients.
#[derive(Debug)]
pub struct Parallel<F: Float = f32> {
    branches: Vec<Box<dyn Layer<F>>>,
}

impl<F: Float> Parallel<F> {
    /// Branches that all read `input_size` features; errors when there are none or they
    /// disagree on the input size.
    pub fn new(branches: Vec<Box<dyn Layer<F>>>) -> Result<Self> {
        let Some(first) = branches.first() else {
            return Err(Error::config("parallel", "needs at least one branch"));
        };
        let input = first.input_size();
        for (i, b) in branches.iter().enumerate() {
            if b.input_size() != input {
                return Err(Error::config(
                    "parallel",
                    format!(
                        "branch {i} reads {} features, branch 0 reads {input}",
                        b.input_size()
                    ),
                ));
            }
        }
        Ok(Parallel { branches })
    }

    /// The branches.
    pub fn branches(&self) -> &[Box<dyn Layer<F>>] {
        &self.branches
    }

    fn join(&self, outputs: Vec<Array3<F>>) -> Result<Array3<F>> {
        let views: Vec<_> = outputs.iter().map(|o| o.view()).collect();
        concatenate(Axis(2), &views).map_err(|_| {
            Error::config(
                "parallel",
                format!(
                    "branch outputs must agree in batch and steps, got shapes {:?}",
                    outputs
                        .iter()
                        .map(|o| o.shape().to_vec())
                        .collect::<Vec<_>>()
                ),
            )
        })
    }
}

impl<F: Float> Layer<F> for Parallel<F> {
    fn name(&self) -> &'static str {
        "parallel"
    }
    fn input_size(&self) -> usize {
        self.branches[0].input_size()
    }
    fn output_size(&self) -> usize {
        self.branches.iter().map(|b| b.output_size()).sum()
    }
    fn output_steps(&self, input_steps: usize) -> usize {
        self.branches[0].output_steps(input_steps)
    }
    fn forward(&mut self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let outputs = self
            .branches
            .iter_mut()
            .map(|b| b.forward(x))
            .collect::<Result<Vec<_>>>()?;
        self.join(outputs)
    }
    fn predict(&self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let outputs = self
            .branches
            .iter()
            .map(|b| b.predict(x))
            .collect::<Result<Vec<_>>>()?;
        self.join(outputs)
    }
    fn backward(&mut self, d_out: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let width = Layer::<F>::output_size(self);
        if d_out.shape()[2] != width {
            let mut expected = d_out.shape().to_vec();
            expected[2] = width;
            return Err(Error::shape(
                "parallel output gradient",
                &expected,
                d_out.shape(),
            ));
        }
        let mut d_x: Option<Array3<F>> = None;
        let mut start = 0;
        for branch in &mut self.branches {
            let k = branch.output_size();
            let d_branch = branch.backward(d_out.slice(s![.., .., start..start + k]))?;
            start += k;
            d_x = Some(match d_x {
                None => d_branch,
                Some(acc) => acc + d_branch,
            });
        }
        d_x.ok_or_else(|| Error::config("parallel", "needs at least one branch"))
    }
    fn set_stateful(&mut self, stateful: bool) {
        self.branches
            .iter_mut()
            .for_each(|b| b.set_stateful(stateful));
    }
    fn reset_state(&mut self) {
        self.branches.iter_mut().for_each(|b| b.reset_state());
    }
    fn step(&mut self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let outputs = self
            .branches
            .iter_mut()
            .map(|b| b.step(x))
            .collect::<Result<Vec<_>>>()?;
        self.join(outputs)
    }
    fn visit_rngs(&self, visit: &mut dyn FnMut(&rand_chacha::ChaCha8Rng)) {
        self.branches.iter().for_each(|b| b.visit_rngs(visit));
    }
    fn visit_rngs_mut(&mut self, visit: &mut dyn FnMut(&mut rand_chacha::ChaCha8Rng)) {
        self.branches
            .iter_mut()
            .for_each(|b| b.visit_rngs_mut(visit));
    }
    fn hidden_gradient_norms(&self) -> Vec<Vec<F>> {
        self.branches
            .iter()
            .flat_map(|b| b.hidden_gradient_norms())
            .collect()
    }
    fn visit_params(&self, visit: &mut dyn FnMut(ParamView<'_, F>)) {
        self.branches.iter().for_each(|b| b.visit_params(visit));
    }
    fn visit_params_mut(&mut self, visit: &mut dyn FnMut(ParamMut<'_, F>)) {
        self.branches
            .iter_mut()
            .for_each(|b| b.visit_params_mut(visit));
    }
}

/// Encoder–decoder (seq2seq): the encoder reads `[B, T, I]`; its final state is the decoder's
/// initial state, and the decoder's input at each of `horizon` steps is the encoder's last
/// output (repeated). Output: the decoder's states `[B, horizon, H]`; a dense layer after it
/// maps them to `[B, horizon, k]`.
///
/// Backward: the decoder's BPTT gives ∂L/∂(its inputs) and ∂L/∂(its initial state); the encoder's
/// final h receives both (its last output is the repeated input), its final c the latter.
#[derive(Debug, Clone)]
pub struct EncoderDecoder<C: Cell, F: Float = f32> {
    encoder: Recurrent<C, F>,
    decoder: Recurrent<C, F>,
    horizon: usize,
}

impl<C: Cell, F: Float> EncoderDecoder<C, F> {
    /// `encoder` (I → H) and `decoder` (H → H) of the same hidden size, `horizon` ≥ 1 steps out.
    pub fn new(encoder: Recurrent<C, F>, decoder: Recurrent<C, F>, horizon: usize) -> Result<Self> {
        let h = encoder.hidden_size();
        if decoder.input_size() != h || decoder.hidden_size() != h {
            return Err(Error::config(
                "encoder-decoder",
                format!(
                    "the decoder must read and keep the encoder's {h} units, got input {} and hidden {}",
                    decoder.input_size(),
                    decoder.hidden_size()
                ),
            ));
        }
        if horizon == 0 {
            return Err(Error::config(
                "encoder-decoder horizon",
                "must be at least 1, got 0",
            ));
        }
        Ok(EncoderDecoder {
            encoder,
            decoder,
            horizon,
        })
    }

    /// The encoder.
    pub fn encoder(&self) -> &Recurrent<C, F> {
        &self.encoder
    }

    /// The decoder.
    pub fn decoder(&self) -> &Recurrent<C, F> {
        &self.decoder
    }

    /// The number of decoder steps.
    pub fn horizon(&self) -> usize {
        self.horizon
    }

    fn decoder_input(&self, last: &RecurrentState<F>) -> Array3<F> {
        let (b, h) = last.h.dim();
        last.h
            .view()
            .insert_axis(Axis(1))
            .broadcast((b, self.horizon, h))
            .expect("one step broadcasts")
            .to_owned()
    }
}

impl<C: Cell, F: Float> Layer<F> for EncoderDecoder<C, F> {
    fn name(&self) -> &'static str {
        "encoder_decoder"
    }
    fn input_size(&self) -> usize {
        self.encoder.input_size()
    }
    fn output_size(&self) -> usize {
        self.decoder.hidden_size()
    }
    fn output_steps(&self, _: usize) -> usize {
        self.horizon
    }
    fn forward(&mut self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let (_, state) = self.encoder.forward_with_state(x, None)?;
        let input = self.decoder_input(&state);
        Ok(self
            .decoder
            .forward_with_state(input.view(), Some(&state))?
            .0)
    }
    fn predict(&self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        check_sequence("encoder_decoder", &x, self.encoder.input_size())?;
        let (_, state) = self.encoder.predict_with_state(x, None)?;
        let input = self.decoder_input(&state);
        Ok(self
            .decoder
            .predict_with_state(input.view(), Some(&state))?
            .0)
    }
    fn backward(&mut self, d_out: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let (d_input, d_state) = self.decoder.backward_with_state(Some(d_out), None)?;
        // The encoder's final h fed every decoder step and the decoder's initial state.
        let d_final = RecurrentState {
            h: d_state.h + d_input.sum_axis(Axis(1)),
            c: d_state.c,
        };
        Ok(self.encoder.backward_with_state(None, Some(&d_final))?.0)
    }
    fn hidden_gradient_norms(&self) -> Vec<Vec<F>> {
        vec![
            self.encoder.hidden_gradient_norms().to_vec(),
            self.decoder.hidden_gradient_norms().to_vec(),
        ]
    }
    fn visit_params(&self, visit: &mut dyn FnMut(ParamView<'_, F>)) {
        self.encoder.visit_params(visit);
        self.decoder.visit_params(visit);
    }
    fn visit_params_mut(&mut self, visit: &mut dyn FnMut(ParamMut<'_, F>)) {
        self.encoder.visit_params_mut(visit);
        self.decoder.visit_params_mut(visit);
    }
}
