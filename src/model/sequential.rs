//! [`Sequential`]: a stack of layers, and the builder that infers sizes layer to layer.

use std::fmt::Write as _;

use ndarray::{Array3, ArrayView3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::combine::{Bidirectional, EncoderDecoder, Merge, Parallel};
use super::shape_layers::{Dropout, Flatten, Repeat, Unflatten};
use crate::layer::Layer;
use crate::{
    Activation, Cell, Dense, Error, Float, GruCell, Init, LstmCell, ParamMut, ParamView, Recurrent,
    Result, SimpleRnnCell,
};

/// The recurrent cells a builder can place, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecurrentKind {
    /// Elman RNN with tanh.
    RnnTanh,
    /// Elman RNN with relu.
    RnnRelu,
    /// LSTM.
    Lstm,
    /// GRU, reset-after (PyTorch's).
    Gru,
    /// GRU, reset-before (Cho et al. 2014, Keras `reset_after=False`).
    GruResetBefore,
}

impl RecurrentKind {
    /// The name used in summaries (`"lstm"`).
    pub fn name(self) -> &'static str {
        match self {
            RecurrentKind::RnnTanh => "rnn_tanh",
            RecurrentKind::RnnRelu => "rnn_relu",
            RecurrentKind::Lstm => "lstm",
            RecurrentKind::Gru => "gru",
            RecurrentKind::GruResetBefore => "gru_reset_before",
        }
    }
}

/// A closed description of a built-in layer: what [`Sequential::specs`] reports and what a
/// builder places. (Persistence saves models through it.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LayerSpec {
    /// A [`Recurrent`] layer.
    Recurrent {
        /// Which cell.
        kind: RecurrentKind,
        /// H.
        hidden_size: usize,
        /// Every step (true) or the last only.
        return_sequences: bool,
    },
    /// A [`Bidirectional`] pair.
    Bidirectional {
        /// Which cell.
        kind: RecurrentKind,
        /// H of each direction.
        hidden_size: usize,
        /// How the directions merge.
        merge: Merge,
        /// Every step (true) or the final states only.
        return_sequences: bool,
    },
    /// An [`EncoderDecoder`].
    EncoderDecoder {
        /// Which cell (both encoder and decoder).
        kind: RecurrentKind,
        /// H.
        hidden_size: usize,
        /// Decoder steps.
        horizon: usize,
    },
    /// A [`Dense`] layer.
    Dense {
        /// Output features.
        units: usize,
        /// φ.
        activation: Activation,
    },
    /// [`Dropout`].
    Dropout {
        /// p.
        rate: f64,
    },
    /// [`Repeat`].
    Repeat {
        /// Copies.
        times: usize,
    },
    /// [`Flatten`] of a window of `steps` steps.
    Flatten {
        /// Window length.
        steps: usize,
    },
    /// [`Unflatten`] into `horizon` steps.
    Unflatten {
        /// Steps out.
        horizon: usize,
    },
    /// [`Parallel`] branches, each a list of layers.
    Parallel {
        /// The branches.
        branches: Vec<Vec<LayerSpec>>,
    },
    /// A user-defined layer (not describable).
    Custom {
        /// Its [`Layer::name`].
        name: String,
    },
}

/// Built layers and their descriptions.
type BuiltLayers<F> = (Vec<Box<dyn Layer<F>>>, Vec<LayerSpec>);

/// A layer waiting in a builder.
#[derive(Debug)]
enum Pending<F: Float> {
    Recurrent {
        kind: RecurrentKind,
        hidden: usize,
        return_sequences: Option<bool>,
    },
    Bidirectional {
        kind: RecurrentKind,
        hidden: usize,
        merge: Merge,
        return_sequences: Option<bool>,
    },
    EncoderDecoder {
        kind: RecurrentKind,
        hidden: usize,
        horizon: usize,
    },
    Dense {
        units: usize,
        activation: Activation,
    },
    Dropout(f64),
    Repeat(usize),
    /// The window length, when known up front (a model rebuilt from its [`LayerSpec`]s).
    Flatten(Option<usize>),
    Unflatten(usize),
    Parallel(Vec<SequentialBuilder<F>>),
    Custom(Box<dyn Layer<F>>),
}

impl<F: Float> Pending<F> {
    fn is_recurrent(&self) -> bool {
        matches!(
            self,
            Pending::Recurrent { .. }
                | Pending::Bidirectional { .. }
                | Pending::EncoderDecoder { .. }
        )
    }
}

/// Builds a [`Sequential`]: sizes are inferred layer to layer from the input feature count;
/// sizes and hyperparameters are validated at [`build`](Self::build), and an error names the
/// layer (`layer 2 (dense)`).
///
/// A recurrent layer returns every step when the next layer (dropout aside) is recurrent too,
/// and only its last step otherwise (many-to-one); [`return_sequences`](Self::return_sequences)
/// overrides that for the layer just added.
///
/// ```
/// use recurrent::Sequential;
/// let model = Sequential::<f32>::builder(3)
///     .lstm(32)        // returns every step: a GRU follows
///     .gru(16)         // returns the last step: [batch, 1, 16]
///     .dense(1)        // [batch, 1, 1]
///     .build(42)?;
/// println!("{}", model.summary());
/// # Ok::<(), recurrent::Error>(())
/// ```
#[derive(Debug)]
pub struct SequentialBuilder<F: Float = f32> {
    input_size: Option<usize>,
    init: Init,
    layers: Vec<Pending<F>>,
}

impl<F: Float> SequentialBuilder<F> {
    /// A builder for a parallel branch: its input size is the enclosing model's.
    pub fn branch() -> Self {
        SequentialBuilder {
            input_size: None,
            init: Init::default(),
            layers: Vec::new(),
        }
    }

    /// A builder that places the layers `specs` describe (as [`Sequential::specs`] reports
    /// them), reading `input_size` features: how a saved model is rebuilt before its weights
    /// are loaded. A [`LayerSpec::Custom`] layer cannot be rebuilt: [`Error::Unsupported`].
    pub fn from_specs(input_size: usize, specs: &[LayerSpec]) -> Result<Self> {
        let mut builder = Self::branch();
        builder.input_size = Some(input_size);
        builder.layers = pending_from_specs(specs)?;
        Ok(builder)
    }

    /// The initialization of every layer ([`Init::Glorot`] by default).
    pub fn init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }

    /// A recurrent layer of `kind` with `hidden_size` units.
    pub fn recurrent(mut self, kind: RecurrentKind, hidden_size: usize) -> Self {
        self.layers.push(Pending::Recurrent {
            kind,
            hidden: hidden_size,
            return_sequences: None,
        });
        self
    }

    /// A tanh Elman RNN layer.
    pub fn rnn(self, hidden_size: usize) -> Self {
        self.recurrent(RecurrentKind::RnnTanh, hidden_size)
    }

    /// An LSTM layer.
    pub fn lstm(self, hidden_size: usize) -> Self {
        self.recurrent(RecurrentKind::Lstm, hidden_size)
    }

    /// A GRU layer (reset-after).
    pub fn gru(self, hidden_size: usize) -> Self {
        self.recurrent(RecurrentKind::Gru, hidden_size)
    }

    /// A bidirectional recurrent layer, each direction `hidden_size` units.
    pub fn bidirectional(mut self, kind: RecurrentKind, hidden_size: usize, merge: Merge) -> Self {
        self.layers.push(Pending::Bidirectional {
            kind,
            hidden: hidden_size,
            merge,
            return_sequences: None,
        });
        self
    }

    /// An [`EncoderDecoder`] of `kind` with `hidden_size` units, `horizon` decoder steps.
    pub fn encoder_decoder(
        mut self,
        kind: RecurrentKind,
        hidden_size: usize,
        horizon: usize,
    ) -> Self {
        self.layers.push(Pending::EncoderDecoder {
            kind,
            hidden: hidden_size,
            horizon,
        });
        self
    }

    /// Sets whether the recurrent or bidirectional layer just added returns every step.
    /// On any other layer, [`build`](Self::build) reports an error.
    pub fn return_sequences(mut self, every_step: bool) -> Self {
        match self.layers.last_mut() {
            Some(Pending::Recurrent {
                return_sequences, ..
            })
            | Some(Pending::Bidirectional {
                return_sequences, ..
            }) => *return_sequences = Some(every_step),
            _ => self.layers.push(Pending::Custom(Box::new(Misplaced))),
        }
        self
    }

    /// A linear dense layer with `units` outputs.
    pub fn dense(self, units: usize) -> Self {
        self.dense_with(units, Activation::Identity)
    }

    /// A dense layer with activation φ.
    pub fn dense_with(mut self, units: usize, activation: Activation) -> Self {
        self.layers.push(Pending::Dense { units, activation });
        self
    }

    /// Inverted dropout with rate p (training only).
    pub fn dropout(mut self, rate: f64) -> Self {
        self.layers.push(Pending::Dropout(rate));
        self
    }

    /// Repeats a one-step input `times` times ([`Repeat`]).
    pub fn repeat(mut self, times: usize) -> Self {
        self.layers.push(Pending::Repeat(times));
        self
    }

    /// Flattens the whole input window into one step ([`Flatten`]); the window length must be
    /// given at build time through [`build_for_steps`](Self::build_for_steps).
    pub fn flatten(mut self) -> Self {
        self.layers.push(Pending::Flatten(None));
        self
    }

    /// Splits one step of `horizon·k` values into `[horizon, k]` ([`Unflatten`]).
    pub fn unflatten(mut self, horizon: usize) -> Self {
        self.layers.push(Pending::Unflatten(horizon));
        self
    }

    /// A direct multi-step head: dense to `horizon·targets` values, shaped `[B, horizon, targets]`.
    pub fn direct_head(self, horizon: usize, targets: usize) -> Self {
        self.dense(horizon * targets).unflatten(horizon)
    }

    /// Parallel branches over this point's activations, concatenated along features; each
    /// branch starts from [`SequentialBuilder::branch`].
    pub fn parallel(mut self, branches: Vec<SequentialBuilder<F>>) -> Self {
        self.layers.push(Pending::Parallel(branches));
        self
    }

    /// A user-defined layer; its [`Layer::input_size`] must match the previous layer's output.
    pub fn layer(mut self, layer: Box<dyn Layer<F>>) -> Self {
        self.layers.push(Pending::Custom(layer));
        self
    }

    /// Builds the model, drawing every weight (and dropout seed) from `seed`.
    ///
    /// `steps`, the window length, is needed only by [`flatten`](Self::flatten); use
    /// [`build_for_steps`](Self::build_for_steps) then.
    pub fn build(self, seed: u64) -> Result<Sequential<F>> {
        self.build_for_steps(seed, None)
    }

    /// As [`build`](Self::build), for windows of `steps` steps (needed by a flatten layer).
    pub fn build_for_steps(self, seed: u64, steps: Option<usize>) -> Result<Sequential<F>> {
        let input = self.input_size.ok_or_else(|| {
            Error::config(
                "sequential",
                "a branch builder can only be built inside parallel()",
            )
        })?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (layers, specs) = self.build_layers(input, steps, &mut rng)?;
        Ok(Sequential {
            input_size: input,
            layers,
            specs,
        })
    }

    fn build_layers(
        self,
        input: usize,
        mut steps: Option<usize>,
        rng: &mut ChaCha8Rng,
    ) -> Result<BuiltLayers<F>> {
        if input == 0 {
            return Err(Error::config(
                "sequential input size",
                "must be at least 1, got 0",
            ));
        }
        if self.layers.is_empty() {
            return Err(Error::config("sequential", "has no layers"));
        }
        let init = self.init;
        let mut features = input;
        let mut layers: Vec<Box<dyn Layer<F>>> = Vec::new();
        let mut specs = Vec::new();
        let kinds: Vec<bool> = self.layers.iter().map(|p| p.is_recurrent()).collect();
        let is_dropout: Vec<bool> = self
            .layers
            .iter()
            .map(|p| matches!(p, Pending::Dropout(_)))
            .collect();
        for (index, pending) in self.layers.into_iter().enumerate() {
            // Default return_sequences: true iff the next non-dropout layer is recurrent.
            let next_recurrent = (index + 1..kinds.len())
                .find(|&j| !is_dropout[j])
                .is_some_and(|j| kinds[j]);
            let name = layer_name(&pending);
            let wrap = |e: Error| Error::config(format!("layer {index} ({name})"), e.to_string());
            let (layer, spec): (Box<dyn Layer<F>>, LayerSpec) = match pending {
                Pending::Recurrent {
                    kind,
                    hidden,
                    return_sequences,
                } => {
                    let every = return_sequences.unwrap_or(next_recurrent);
                    let layer =
                        recurrent_box(kind, features, hidden, init, every, rng).map_err(wrap)?;
                    let spec = LayerSpec::Recurrent {
                        kind,
                        hidden_size: hidden,
                        return_sequences: every,
                    };
                    (layer, spec)
                }
                Pending::Bidirectional {
                    kind,
                    hidden,
                    merge,
                    return_sequences,
                } => {
                    let every = return_sequences.unwrap_or(next_recurrent);
                    let layer = bidirectional_box(kind, features, hidden, merge, every, init, rng)
                        .map_err(wrap)?;
                    let spec = LayerSpec::Bidirectional {
                        kind,
                        hidden_size: hidden,
                        merge,
                        return_sequences: every,
                    };
                    (layer, spec)
                }
                Pending::EncoderDecoder {
                    kind,
                    hidden,
                    horizon,
                } => {
                    let layer = encoder_decoder_box(kind, features, hidden, horizon, init, rng)
                        .map_err(wrap)?;
                    let spec = LayerSpec::EncoderDecoder {
                        kind,
                        hidden_size: hidden,
                        horizon,
                    };
                    (layer, spec)
                }
                Pending::Dense { units, activation } => {
                    let layer =
                        Dense::with_init(features, units, activation, init, rng).map_err(wrap)?;
                    (
                        Box::new(layer) as Box<dyn Layer<F>>,
                        LayerSpec::Dense { units, activation },
                    )
                }
                Pending::Dropout(rate) => {
                    let layer = Dropout::<F>::new(features, rate, rng.random()).map_err(wrap)?;
                    (
                        Box::new(layer) as Box<dyn Layer<F>>,
                        LayerSpec::Dropout { rate },
                    )
                }
                Pending::Repeat(times) => {
                    let layer = Repeat::new(features, times).map_err(wrap)?;
                    (
                        Box::new(layer) as Box<dyn Layer<F>>,
                        LayerSpec::Repeat { times },
                    )
                }
                Pending::Flatten(known) => {
                    let t = known.or(steps).ok_or_else(|| {
                        wrap(Error::config(
                            "flatten",
                            "needs the window length: build with build_for_steps(seed, Some(steps))",
                        ))
                    })?;
                    let layer = Flatten::new(t, features).map_err(wrap)?;
                    (
                        Box::new(layer) as Box<dyn Layer<F>>,
                        LayerSpec::Flatten { steps: t },
                    )
                }
                Pending::Unflatten(horizon) => {
                    if horizon == 0 || !features.is_multiple_of(horizon) {
                        return Err(wrap(Error::config(
                            "unflatten",
                            format!("{features} features do not split into {horizon} steps"),
                        )));
                    }
                    let layer = Unflatten::new(horizon, features / horizon).map_err(wrap)?;
                    (
                        Box::new(layer) as Box<dyn Layer<F>>,
                        LayerSpec::Unflatten { horizon },
                    )
                }
                Pending::Parallel(branches) => {
                    let mut boxes = Vec::new();
                    let mut branch_specs = Vec::new();
                    for branch in branches {
                        let (b_layers, b_specs) =
                            branch.build_layers(features, steps, rng).map_err(wrap)?;
                        boxes.push(Box::new(Sequential {
                            input_size: features,
                            layers: b_layers,
                            specs: b_specs.clone(),
                        }) as Box<dyn Layer<F>>);
                        branch_specs.push(b_specs);
                    }
                    let layer = Parallel::new(boxes).map_err(wrap)?;
                    let steps_out: Vec<_> =
                        layer.branches().iter().map(|b| b.output_steps(7)).collect();
                    if steps_out.windows(2).any(|w| w[0] != w[1]) {
                        return Err(wrap(Error::config(
                            "parallel",
                            "branches must give the same number of steps (e.g. all keep only the last step)",
                        )));
                    }
                    (
                        Box::new(layer) as Box<dyn Layer<F>>,
                        LayerSpec::Parallel {
                            branches: branch_specs,
                        },
                    )
                }
                Pending::Custom(layer) => {
                    if layer.name() == Misplaced.name_str() {
                        return Err(Error::config(
                            format!("layer {index}"),
                            "return_sequences() must follow a recurrent or bidirectional layer",
                        ));
                    }
                    let name = layer.name().to_string();
                    (layer, LayerSpec::Custom { name })
                }
            };
            if layer.input_size() != features {
                return Err(Error::config(
                    format!("layer {index} ({})", layer.name()),
                    format!(
                        "reads {} features but receives {features}",
                        layer.input_size()
                    ),
                ));
            }
            features = layer.output_size();
            steps = steps.map(|t| layer.output_steps(t));
            layers.push(layer);
            specs.push(spec);
        }
        Ok((layers, specs))
    }
}

fn pending_from_specs<F: Float>(specs: &[LayerSpec]) -> Result<Vec<Pending<F>>> {
    specs
        .iter()
        .map(|spec| {
            Ok(match spec {
                LayerSpec::Recurrent {
                    kind,
                    hidden_size,
                    return_sequences,
                } => Pending::Recurrent {
                    kind: *kind,
                    hidden: *hidden_size,
                    return_sequences: Some(*return_sequences),
                },
                LayerSpec::Bidirectional {
                    kind,
                    hidden_size,
                    merge,
                    return_sequences,
                } => Pending::Bidirectional {
                    kind: *kind,
                    hidden: *hidden_size,
                    merge: *merge,
                    return_sequences: Some(*return_sequences),
                },
                LayerSpec::EncoderDecoder {
                    kind,
                    hidden_size,
                    horizon,
                } => Pending::EncoderDecoder {
                    kind: *kind,
                    hidden: *hidden_size,
                    horizon: *horizon,
                },
                LayerSpec::Dense { units, activation } => Pending::Dense {
                    units: *units,
                    activation: *activation,
                },
                LayerSpec::Dropout { rate } => Pending::Dropout(*rate),
                LayerSpec::Repeat { times } => Pending::Repeat(*times),
                LayerSpec::Flatten { steps } => Pending::Flatten(Some(*steps)),
                LayerSpec::Unflatten { horizon } => Pending::Unflatten(*horizon),
                LayerSpec::Parallel { branches } => Pending::Parallel(
                    branches
                        .iter()
                        .map(|b| {
                            let mut branch = SequentialBuilder::branch();
                            branch.layers = pending_from_specs(b)?;
                            Ok(branch)
                        })
                        .collect::<Result<_>>()?,
                ),
                LayerSpec::Custom { name } => {
                    return Err(Error::Unsupported(format!(
                        "the user-defined layer {name:?} has no built-in description to rebuild it from"
                    )));
                }
            })
        })
        .collect()
}

fn layer_name<F: Float>(pending: &Pending<F>) -> &'static str {
    match pending {
        Pending::Recurrent { kind, .. } => kind.name(),
        Pending::Bidirectional { .. } => "bidirectional",
        Pending::EncoderDecoder { .. } => "encoder_decoder",
        Pending::Dense { .. } => "dense",
        Pending::Dropout(_) => "dropout",
        Pending::Repeat(_) => "repeat",
        Pending::Flatten(_) => "flatten",
        Pending::Unflatten(_) => "unflatten",
        Pending::Parallel(_) => "parallel",
        Pending::Custom(_) => "custom",
    }
}

/// Marks a misplaced `return_sequences()` call so that `build` can report it.
#[derive(Debug)]
struct Misplaced;

impl Misplaced {
    fn name_str(&self) -> &'static str {
        "__misplaced_return_sequences"
    }
}

impl<F: Float> Layer<F> for Misplaced {
    fn name(&self) -> &'static str {
        self.name_str()
    }
    fn input_size(&self) -> usize {
        0
    }
    fn output_size(&self) -> usize {
        0
    }
    fn forward(&mut self, _: ArrayView3<'_, F>) -> Result<Array3<F>> {
        Err(Error::Unsupported("placeholder".into()))
    }
    fn predict(&self, _: ArrayView3<'_, F>) -> Result<Array3<F>> {
        Err(Error::Unsupported("placeholder".into()))
    }
    fn backward(&mut self, _: ArrayView3<'_, F>) -> Result<Array3<F>> {
        Err(Error::Unsupported("placeholder".into()))
    }
    fn visit_params(&self, _: &mut dyn FnMut(ParamView<'_, F>)) {}
    fn visit_params_mut(&mut self, _: &mut dyn FnMut(ParamMut<'_, F>)) {}
}

fn make<C: Cell, F: Float>(
    cell: C,
    input: usize,
    hidden: usize,
    init: Init,
    rng: &mut ChaCha8Rng,
) -> Result<Recurrent<C, F>> {
    Recurrent::with_init(cell, input, hidden, init, rng)
}

fn recurrent_box<F: Float>(
    kind: RecurrentKind,
    input: usize,
    hidden: usize,
    init: Init,
    every: bool,
    rng: &mut ChaCha8Rng,
) -> Result<Box<dyn Layer<F>>> {
    fn boxed<C: Cell, F: Float>(r: Recurrent<C, F>, every: bool) -> Box<dyn Layer<F>> {
        Box::new(r.with_return_sequences(every))
    }
    Ok(match kind {
        RecurrentKind::RnnTanh => boxed(
            make(
                SimpleRnnCell::new(Activation::Tanh),
                input,
                hidden,
                init,
                rng,
            )?,
            every,
        ),
        RecurrentKind::RnnRelu => boxed(
            make(
                SimpleRnnCell::new(Activation::Relu),
                input,
                hidden,
                init,
                rng,
            )?,
            every,
        ),
        RecurrentKind::Lstm => boxed(make(LstmCell, input, hidden, init, rng)?, every),
        RecurrentKind::Gru => boxed(make(GruCell::ResetAfter, input, hidden, init, rng)?, every),
        RecurrentKind::GruResetBefore => {
            boxed(make(GruCell::ResetBefore, input, hidden, init, rng)?, every)
        }
    })
}

fn bidirectional_box<F: Float>(
    kind: RecurrentKind,
    input: usize,
    hidden: usize,
    merge: Merge,
    every: bool,
    init: Init,
    rng: &mut ChaCha8Rng,
) -> Result<Box<dyn Layer<F>>> {
    fn pair<C: Cell, F: Float>(
        cell: C,
        input: usize,
        hidden: usize,
        merge: Merge,
        every: bool,
        init: Init,
        rng: &mut ChaCha8Rng,
    ) -> Result<Box<dyn Layer<F>>> {
        let forward = make(cell.clone(), input, hidden, init, rng)?;
        let backward = make(cell, input, hidden, init, rng)?;
        Ok(Box::new(Bidirectional::new(
            forward, backward, merge, every,
        )?))
    }
    match kind {
        RecurrentKind::RnnTanh => pair(
            SimpleRnnCell::new(Activation::Tanh),
            input,
            hidden,
            merge,
            every,
            init,
            rng,
        ),
        RecurrentKind::RnnRelu => pair(
            SimpleRnnCell::new(Activation::Relu),
            input,
            hidden,
            merge,
            every,
            init,
            rng,
        ),
        RecurrentKind::Lstm => pair(LstmCell, input, hidden, merge, every, init, rng),
        RecurrentKind::Gru => pair(GruCell::ResetAfter, input, hidden, merge, every, init, rng),
        RecurrentKind::GruResetBefore => {
            pair(GruCell::ResetBefore, input, hidden, merge, every, init, rng)
        }
    }
}

fn encoder_decoder_box<F: Float>(
    kind: RecurrentKind,
    input: usize,
    hidden: usize,
    horizon: usize,
    init: Init,
    rng: &mut ChaCha8Rng,
) -> Result<Box<dyn Layer<F>>> {
    fn pair<C: Cell, F: Float>(
        cell: C,
        input: usize,
        hidden: usize,
        horizon: usize,
        init: Init,
        rng: &mut ChaCha8Rng,
    ) -> Result<Box<dyn Layer<F>>> {
        let encoder = make(cell.clone(), input, hidden, init, rng)?;
        let decoder = make(cell, hidden, hidden, init, rng)?;
        Ok(Box::new(EncoderDecoder::new(encoder, decoder, horizon)?))
    }
    match kind {
        RecurrentKind::RnnTanh => pair(
            SimpleRnnCell::new(Activation::Tanh),
            input,
            hidden,
            horizon,
            init,
            rng,
        ),
        RecurrentKind::RnnRelu => pair(
            SimpleRnnCell::new(Activation::Relu),
            input,
            hidden,
            horizon,
            init,
            rng,
        ),
        RecurrentKind::Lstm => pair(LstmCell, input, hidden, horizon, init, rng),
        RecurrentKind::Gru => pair(GruCell::ResetAfter, input, hidden, horizon, init, rng),
        RecurrentKind::GruResetBefore => {
            pair(GruCell::ResetBefore, input, hidden, horizon, init, rng)
        }
    }
}

/// A stack of layers applied in order; itself a [`Layer`], so models nest (parallel branches
/// are `Sequential`s).
///
/// Input `[batch, steps, features]`; output `[batch, horizon, targets]`. Build one with
/// [`Sequential::builder`] or a configuration preset:
///
/// | preset | input | output |
/// | --- | --- | --- |
/// | [`many_to_one`](Self::many_to_one) | `[B, T, I]` | `[B, 1, k]` |
/// | [`many_to_many`](Self::many_to_many) (aligned) | `[B, T, I]` | `[B, T, k]` |
/// | [`direct_multi_step`](Self::direct_multi_step) | `[B, T, I]` | `[B, h, k]` |
/// | [`one_to_many`](Self::one_to_many) | `[B, 1, I]` | `[B, n, k]` |
/// | [`encoder_decoder`](Self::encoder_decoder) | `[B, T, I]` | `[B, h, k]` |
#[derive(Debug)]
pub struct Sequential<F: Float = f32> {
    input_size: usize,
    layers: Vec<Box<dyn Layer<F>>>,
    specs: Vec<LayerSpec>,
}

impl<F: Float> Sequential<F> {
    /// A builder for a model reading `input_size` features per step.
    pub fn builder(input_size: usize) -> SequentialBuilder<F> {
        SequentialBuilder {
            input_size: Some(input_size),
            init: Init::default(),
            layers: Vec::new(),
        }
    }

    /// A model from layers built elsewhere (e.g. from imported weights); each layer's
    /// [`input_size`](Layer::input_size) must equal the previous one's output size.
    pub fn from_layers(input_size: usize, layers: Vec<Box<dyn Layer<F>>>) -> Result<Self> {
        if layers.is_empty() {
            return Err(Error::config("sequential", "has no layers"));
        }
        let mut features = input_size;
        for (index, layer) in layers.iter().enumerate() {
            if layer.input_size() != features {
                return Err(Error::config(
                    format!("layer {index} ({})", layer.name()),
                    format!(
                        "reads {} features but receives {features}",
                        layer.input_size()
                    ),
                ));
            }
            features = layer.output_size();
        }
        let specs = layers
            .iter()
            .map(|l| LayerSpec::Custom {
                name: l.name().to_string(),
            })
            .collect();
        Ok(Sequential {
            input_size,
            layers,
            specs,
        })
    }

    /// Many-to-one: a recurrent layer reads the window, a dense head maps its last state to
    /// `targets` values: `[B, T, I]` → `[B, 1, targets]`.
    pub fn many_to_one(
        kind: RecurrentKind,
        input_size: usize,
        hidden_size: usize,
        targets: usize,
    ) -> SequentialBuilder<F> {
        Self::builder(input_size)
            .recurrent(kind, hidden_size)
            .dense(targets)
    }

    /// Many-to-many, aligned: an output at every step, `[B, T, I]` → `[B, T, targets]`.
    pub fn many_to_many(
        kind: RecurrentKind,
        input_size: usize,
        hidden_size: usize,
        targets: usize,
    ) -> SequentialBuilder<F> {
        Self::builder(input_size)
            .recurrent(kind, hidden_size)
            .return_sequences(true)
            .dense(targets)
    }

    /// Direct multi-step: the last state feeds a head that emits the whole horizon at once,
    /// `[B, T, I]` → `[B, horizon, targets]`.
    pub fn direct_multi_step(
        kind: RecurrentKind,
        input_size: usize,
        hidden_size: usize,
        horizon: usize,
        targets: usize,
    ) -> SequentialBuilder<F> {
        Self::builder(input_size)
            .recurrent(kind, hidden_size)
            .direct_head(horizon, targets)
    }

    /// One-to-many: one input vector `[B, 1, I]` is repeated as the input of each of `steps`
    /// steps (Keras's RepeatVector), giving `[B, steps, targets]`.
    pub fn one_to_many(
        kind: RecurrentKind,
        input_size: usize,
        hidden_size: usize,
        steps: usize,
        targets: usize,
    ) -> SequentialBuilder<F> {
        Self::builder(input_size)
            .repeat(steps)
            .recurrent(kind, hidden_size)
            .return_sequences(true)
            .dense(targets)
    }

    /// Encoder–decoder: the encoder's final state starts the decoder, which runs `horizon` steps
    /// on the repeated encoder output; a dense layer maps each step: `[B, T, I]` →
    /// `[B, horizon, targets]`.
    pub fn encoder_decoder(
        kind: RecurrentKind,
        input_size: usize,
        hidden_size: usize,
        horizon: usize,
        targets: usize,
    ) -> SequentialBuilder<F> {
        Self::builder(input_size)
            .encoder_decoder(kind, hidden_size, horizon)
            .dense(targets)
    }

    /// The layers, in order.
    pub fn layers(&self) -> &[Box<dyn Layer<F>>] {
        &self.layers
    }

    /// The layers, mutably (e.g. to read one layer's hidden-gradient norms).
    pub fn layers_mut(&mut self) -> &mut [Box<dyn Layer<F>>] {
        &mut self.layers
    }

    /// The description of every layer.
    pub fn specs(&self) -> &[LayerSpec] {
        &self.specs
    }

    /// One line per layer with its output shape and parameter count, and the total, as
    /// Keras's `model.summary()`. `T` stands for the input's step count.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<4} {:<18} {:<20} {:>10}",
            "#", "layer", "output shape", "params"
        );
        let _ = writeln!(out, "{}", "-".repeat(55));
        // A layer's step count is symbolic (T) when it follows the input, a number when fixed.
        let (mut small, mut large) = (7usize, 11usize);
        for (i, layer) in self.layers.iter().enumerate() {
            small = layer.output_steps(small);
            large = layer.output_steps(large);
            let steps = if small == large {
                small.to_string()
            } else {
                "T".to_string()
            };
            let shape = format!("[batch, {steps}, {}]", layer.output_size());
            let _ = writeln!(
                out,
                "{:<4} {:<18} {:<20} {:>10}",
                i,
                layer.name(),
                shape,
                layer.param_count()
            );
        }
        let _ = writeln!(out, "{}", "-".repeat(55));
        let _ = writeln!(out, "total parameters: {}", self.param_count());
        out
    }
}

impl<F: Float> Layer<F> for Sequential<F> {
    fn name(&self) -> &'static str {
        "sequential"
    }
    fn input_size(&self) -> usize {
        self.input_size
    }
    fn output_size(&self) -> usize {
        self.layers
            .last()
            .map_or(self.input_size, |l| l.output_size())
    }
    fn output_steps(&self, input_steps: usize) -> usize {
        self.layers
            .iter()
            .fold(input_steps, |t, l| l.output_steps(t))
    }
    fn forward(&mut self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let mut layers = self.layers.iter_mut();
        let first = layers
            .next()
            .ok_or_else(|| Error::config("sequential", "has no layers"))?;
        let mut a = first.forward(x)?;
        for layer in layers {
            a = layer.forward(a.view())?;
        }
        Ok(a)
    }
    fn predict(&self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let mut layers = self.layers.iter();
        let first = layers
            .next()
            .ok_or_else(|| Error::config("sequential", "has no layers"))?;
        let mut a = first.predict(x)?;
        for layer in layers {
            a = layer.predict(a.view())?;
        }
        Ok(a)
    }
    fn backward(&mut self, d_out: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let mut layers = self.layers.iter_mut().rev();
        let last = layers
            .next()
            .ok_or_else(|| Error::config("sequential", "has no layers"))?;
        let mut d = last.backward(d_out)?;
        for layer in layers {
            d = layer.backward(d.view())?;
        }
        Ok(d)
    }
    fn set_stateful(&mut self, stateful: bool) {
        self.layers
            .iter_mut()
            .for_each(|l| l.set_stateful(stateful));
    }
    fn reset_state(&mut self) {
        self.layers.iter_mut().for_each(|l| l.reset_state());
    }
    fn step(&mut self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let mut layers = self.layers.iter_mut();
        let first = layers
            .next()
            .ok_or_else(|| Error::config("sequential", "has no layers"))?;
        let mut a = first.step(x)?;
        // After a layer that keeps only its last step, each call's output stands for the whole
        // sequence so far: the layers after it see it as a one-step sequence of its own, as in
        // `predict`, so they start from a fresh state each call instead of carrying one.
        let mut collapsed = first.output_steps(2) == 1;
        for layer in layers {
            a = if collapsed {
                layer.predict(a.view())?
            } else {
                layer.step(a.view())?
            };
            collapsed |= layer.output_steps(2) == 1;
        }
        Ok(a)
    }
    fn visit_rngs(&self, visit: &mut dyn FnMut(&ChaCha8Rng)) {
        self.layers.iter().for_each(|l| l.visit_rngs(visit));
    }
    fn visit_rngs_mut(&mut self, visit: &mut dyn FnMut(&mut ChaCha8Rng)) {
        self.layers.iter_mut().for_each(|l| l.visit_rngs_mut(visit));
    }
    fn hidden_gradient_norms(&self) -> Vec<Vec<F>> {
        self.layers
            .iter()
            .flat_map(|l| l.hidden_gradient_norms())
            .collect()
    }
    fn visit_params(&self, visit: &mut dyn FnMut(ParamView<'_, F>)) {
        self.layers.iter().for_each(|l| l.visit_params(visit));
    }
    fn visit_params_mut(&mut self, visit: &mut dyn FnMut(ParamMut<'_, F>)) {
        self.layers
            .iter_mut()
            .for_each(|l| l.visit_params_mut(visit));
    }
}
