//! Weights to and from PyTorch's and Keras's layouts.
//!
//! The crate stores a recurrent layer exactly as PyTorch does ([`RecurrentWeights`]), so the
//! PyTorch conversions ([`to_torch`], [`from_torch`]) only check that PyTorch has the layer and
//! that every shape agrees. Keras ([`to_keras`], [`from_keras`], [`KerasRecurrentWeights`])
//! transposes the matrices, orders the GRU's gate blocks differently and keeps one bias where
//! PyTorch keeps two (except for its reset-after GRU).
//!
//! # Layouts
//!
//! `I` inputs, `H` units, `G` gate blocks (1 simple RNN, 4 LSTM, 3 GRU). Each matrix holds the
//! `G` gate blocks side by side, `H` rows (PyTorch) or `H` columns (Keras) each.
//!
//! | layer | crate = PyTorch | Keras |
//! | --- | --- | --- |
//! | recurrent, input side | `weight_ih` `[G·H, I]` | `kernel` `[I, G·H]` |
//! | recurrent, state side | `weight_hh` `[G·H, H]` | `recurrent_kernel` `[H, G·H]` |
//! | simple RNN, LSTM, GRU `reset_after=False` | `bias_ih`, `bias_hh` `[G·H]` | `bias` `[G·H]` = `bias_ih + bias_hh` |
//! | GRU `reset_after=True` | `bias_ih`, `bias_hh` `[G·H]` | `bias` `[2, G·H]`: row 0 input, row 1 recurrent |
//! | dense | `weight` `[out, in]`, `bias` `[out]` | `kernel` `[in, out]`, `bias` `[out]` |
//!
//! # Gate order
//!
//! | cell | crate = PyTorch | Keras |
//! | --- | --- | --- |
//! | [`SimpleRnnCell`] | (one block) | (one block) |
//! | [`LstmCell`] | i, f, g, o | i, f, c, o (the same order; Keras calls g c) |
//! | [`GruCell`] | r, z, n | z, r, h (reset and update swapped) |
//!
//! # What each side supports
//!
//! | cell | PyTorch | Keras |
//! | --- | --- | --- |
//! | [`SimpleRnnCell`] tanh or relu | `nn.RNN(nonlinearity=…)` | `SimpleRNN(activation=…)` |
//! | [`SimpleRnnCell`] identity or sigmoid | [`Error::Unsupported`] | `SimpleRNN(activation=…)` |
//! | [`LstmCell`] | `nn.LSTM` | `LSTM` |
//! | [`GruCell::ResetAfter`] | `nn.GRU` | `GRU(reset_after=True)` |
//! | [`GruCell::ResetBefore`] | [`Error::Unsupported`] | `GRU(reset_after=False)` |
//!
//! Keras layers must use `use_bias=True` (for `use_bias=False`, pass a zero bias), and the
//! gated cells the default activations (`activation="tanh"`, `recurrent_activation="sigmoid"`,
//! the default since Keras 2.3; older `hard_sigmoid` layers compute another function).
//!
//! # Biases and Keras
//!
//! Where Keras keeps one bias, both of the crate's biases enter the cell only through their sum
//! (for the reset-before GRU too: `b_hn` sits outside the reset, see [`GruCell`]). Import puts
//! the Keras bias in `bias_ih` and zero in `bias_hh`; export writes `bias_ih + bias_hh`. The
//! layer computes the same function either way (to rounding of the sum), but a round trip
//! PyTorch → crate → Keras → crate gives the sum in `bias_ih`. Keras → crate → Keras and
//! PyTorch → crate → PyTorch are bit-exact.
//!
//! A reset-after GRU goes to and from Keras with the `[2, G·H]` bias ([`KerasBias::Split`]),
//! every other cell with the `[G·H]` one ([`KerasBias::Single`]); the other kind is a shape
//! error ([`Error::Shape`]), as is any other disagreement of sizes.
//!
//! ```
//! use rand::SeedableRng;
//! use rand_chacha::ChaCha8Rng;
//! use recurrent::interop::{self, KerasBias};
//! use recurrent::{Gru, GruCell, Init};
//!
//! let mut rng = ChaCha8Rng::seed_from_u64(1);
//! let gru = Gru::<f64>::with_init(GruCell::ResetAfter, 2, 3, Init::Torch, &mut rng)?;
//!
//! // PyTorch: the crate's own layout, unchanged.
//! let torch = interop::to_torch(&gru)?;
//! assert_eq!(torch.weight_ih.shape(), &[9, 2]);
//! let back = interop::from_torch(GruCell::ResetAfter, torch.clone())?;
//! assert_eq!(back.weights(), torch);
//!
//! // Keras: kernel [I, 3H], recurrent_kernel [H, 3H], bias [2, 3H], gates z, r, h.
//! let keras = interop::to_keras(&gru)?;
//! assert_eq!(keras.kernel.shape(), &[2, 9]);
//! assert!(matches!(&keras.bias, KerasBias::Split(b) if b.shape() == [2, 9]));
//! // Keras's z block (columns 0..3) is the crate's second block (rows 3..6), transposed.
//! assert_eq!(keras.kernel[[1, 0]], torch.weight_ih[[3, 1]]);
//! let again = interop::from_keras(GruCell::ResetAfter, keras.clone())?;
//! assert_eq!(again.weights(), gru.weights());
//! assert_eq!(interop::to_keras(&again)?, keras);
//!
//! // PyTorch has no reset-before GRU.
//! let cho = Gru::<f64>::with_init(GruCell::ResetBefore, 2, 3, Init::Torch, &mut rng)?;
//! assert!(matches!(interop::to_torch(&cho), Err(recurrent::Error::Unsupported(_))));
//! # Ok::<(), recurrent::Error>(())
//! ```

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, s};
use serde::{Deserialize, Serialize};

use crate::{
    Activation, Cell, Dense, DenseWeights, Error, Float, GruCell, LstmCell, Recurrent,
    RecurrentWeights, Result, SimpleRnnCell,
};

/// A [`Cell`] whose weights can be moved to and from PyTorch's and Keras's layouts.
///
/// Implemented for [`SimpleRnnCell`], [`LstmCell`] and [`GruCell`]; a user-defined cell can
/// implement it to use [`to_torch`], [`from_torch`], [`to_keras`] and [`from_keras`].
pub trait InteropCell: Cell {
    /// `Ok` when PyTorch has a layer computing this cell, [`Error::Unsupported`] otherwise.
    fn check_torch(&self) -> Result<()>;

    /// For each of Keras's gate blocks in Keras's order, the index of the crate's block holding
    /// it: a permutation of `0..G` (`[1, 0, 2]` for the GRU: Keras z, r, h are the crate's
    /// blocks 1, 0, 2).
    fn keras_gate_order(&self) -> &'static [usize];

    /// Whether Keras keeps the input and the recurrent bias apart (a `[2, G·H]` bias: the
    /// reset-after GRU). When false the cell must depend on `bias_ih` and `bias_hh` only through
    /// their sum, which becomes Keras's one `[G·H]` bias.
    fn keras_split_bias(&self) -> bool;
}

impl InteropCell for SimpleRnnCell {
    /// PyTorch's `nn.RNN` offers tanh and relu only.
    fn check_torch(&self) -> Result<()> {
        match self.activation {
            Activation::Tanh | Activation::Relu => Ok(()),
            other => Err(Error::Unsupported(format!(
                "PyTorch's nn.RNN has no '{}' nonlinearity (only tanh and relu)",
                other.name()
            ))),
        }
    }

    fn keras_gate_order(&self) -> &'static [usize] {
        &[0]
    }

    fn keras_split_bias(&self) -> bool {
        false
    }
}

impl InteropCell for LstmCell {
    fn check_torch(&self) -> Result<()> {
        Ok(())
    }

    /// i, f, c, o in Keras is i, f, g, o here.
    fn keras_gate_order(&self) -> &'static [usize] {
        &[0, 1, 2, 3]
    }

    fn keras_split_bias(&self) -> bool {
        false
    }
}

impl InteropCell for GruCell {
    /// PyTorch's `nn.GRU` is reset-after; a reset-before GRU is [`Error::Unsupported`].
    fn check_torch(&self) -> Result<()> {
        match self {
            GruCell::ResetAfter => Ok(()),
            GruCell::ResetBefore => Err(Error::Unsupported(
                "PyTorch's nn.GRU is reset-after only: a reset-before GRU (Keras \
                 reset_after=False) has no PyTorch layout"
                    .into(),
            )),
        }
    }

    /// Keras z, r, h are the crate's (PyTorch's) blocks 1, 0, 2.
    fn keras_gate_order(&self) -> &'static [usize] {
        &[1, 0, 2]
    }

    fn keras_split_bias(&self) -> bool {
        matches!(self, GruCell::ResetAfter)
    }
}

/// The GRU cell a Keras `GRU(reset_after=…)` layer computes: [`GruCell::ResetAfter`] for `true`
/// (Keras's default), [`GruCell::ResetBefore`] for `false`.
pub fn keras_gru_cell(reset_after: bool) -> GruCell {
    if reset_after {
        GruCell::ResetAfter
    } else {
        GruCell::ResetBefore
    }
}

/// A Keras recurrent layer's bias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KerasBias<F> {
    /// `[G·H]`: `SimpleRNN`, `LSTM`, `GRU(reset_after=False)`.
    Single(Array1<F>),
    /// `[2, G·H]`: `GRU(reset_after=True)`; row 0 is the input bias, row 1 the recurrent bias.
    Split(Array2<F>),
}

impl<F> KerasBias<F> {
    /// The array's shape: `[G·H]` or `[2, G·H]`.
    pub fn shape(&self) -> &[usize] {
        match self {
            KerasBias::Single(b) => b.shape(),
            KerasBias::Split(b) => b.shape(),
        }
    }
}

/// A recurrent layer's weights in Keras's layout (what `layer.get_weights()` returns, in order):
/// `kernel` `[I, G·H]`, `recurrent_kernel` `[H, G·H]`, `bias` `[G·H]` or `[2, G·H]`, gate blocks
/// of `H` columns in Keras's order (LSTM i, f, c, o; GRU z, r, h). See the [module
/// documentation](self) for the tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KerasRecurrentWeights<F> {
    /// `[I, G·H]`
    pub kernel: Array2<F>,
    /// `[H, G·H]`
    pub recurrent_kernel: Array2<F>,
    /// `[G·H]`, or `[2, G·H]` for the reset-after GRU.
    pub bias: KerasBias<F>,
}

impl<F: Float> KerasRecurrentWeights<F> {
    /// Converts the crate's (PyTorch's) layout for `cell` to Keras's: transposes, reorders the
    /// gate blocks and, unless the cell keeps two Keras biases, sums `bias_ih + bias_hh`.
    ///
    /// Errors ([`Error::Shape`]) when the arrays disagree in size.
    pub fn from_native<C: InteropCell>(cell: &C, weights: &RecurrentWeights<F>) -> Result<Self> {
        let (_, hidden) = check_native(cell, weights, "")?;
        let order = gate_order(cell)?;
        let kernel = rows_to_keras(weights.weight_ih.view(), order, hidden);
        let recurrent_kernel = rows_to_keras(weights.weight_hh.view(), order, hidden);
        let b_ih = vector_to_keras(weights.bias_ih.view(), order, hidden);
        let b_hh = vector_to_keras(weights.bias_hh.view(), order, hidden);
        let bias = if cell.keras_split_bias() {
            let mut both = Array2::zeros((2, b_ih.len()));
            both.row_mut(0).assign(&b_ih);
            both.row_mut(1).assign(&b_hh);
            KerasBias::Split(both)
        } else {
            // b + 0 is b bit for bit (−0 included), so Keras → crate → Keras is exact.
            KerasBias::Single(Array1::from_iter(
                b_ih.iter()
                    .zip(&b_hh)
                    .map(|(&a, &b)| if b == F::zero() { a } else { a + b }),
            ))
        };
        Ok(KerasRecurrentWeights {
            kernel,
            recurrent_kernel,
            bias,
        })
    }

    /// Converts Keras's layout to the crate's for `cell`: a single Keras bias goes to `bias_ih`
    /// (and `bias_hh` is zero); a `[2, G·H]` bias to `bias_ih` (row 0) and `bias_hh` (row 1).
    ///
    /// Errors ([`Error::Shape`], with the expected and the given shape) when `kernel` is not
    /// `[I, G·H]`, `recurrent_kernel` not `[H, G·H]`, or the bias not the cell's kind
    /// (`[2, G·H]` for the reset-after GRU, `[G·H]` otherwise); [`Error::InvalidConfig`] when
    /// `I` or `H` is 0.
    pub fn to_native<C: InteropCell>(&self, cell: &C) -> Result<RecurrentWeights<F>> {
        let name = cell.name();
        let g = cell.gates();
        let order = gate_order(cell)?;
        let input = self.kernel.nrows();
        let hidden = self.recurrent_kernel.nrows();
        check_positive(
            &format!("keras {name} kernel"),
            "input size (rows)",
            input,
            self.kernel.shape(),
        )?;
        check_positive(
            &format!("keras {name} recurrent_kernel"),
            "hidden size (rows)",
            hidden,
            self.recurrent_kernel.shape(),
        )?;
        let gh = g * hidden;
        expect_shape(
            format!("keras {name} recurrent_kernel"),
            &[hidden, gh],
            self.recurrent_kernel.shape(),
        )?;
        expect_shape(
            format!("keras {name} kernel"),
            &[input, gh],
            self.kernel.shape(),
        )?;
        let (bias_ih, bias_hh) = match (&self.bias, cell.keras_split_bias()) {
            (KerasBias::Split(b), true) => {
                expect_shape(format!("keras {name} bias"), &[2, gh], b.shape())?;
                (
                    vector_from_keras(b.row(0), order, hidden),
                    vector_from_keras(b.row(1), order, hidden),
                )
            }
            (KerasBias::Single(b), false) => {
                expect_shape(format!("keras {name} bias"), &[gh], b.shape())?;
                (
                    vector_from_keras(b.view(), order, hidden),
                    Array1::zeros(gh),
                )
            }
            (other, true) => {
                return Err(Error::shape(
                    format!("keras {name} bias (reset_after=True keeps input and recurrent rows)"),
                    &[2, gh],
                    other.shape(),
                ));
            }
            (other, false) => {
                return Err(Error::shape(
                    format!("keras {name} bias (one row for this cell)"),
                    &[gh],
                    other.shape(),
                ));
            }
        };
        Ok(RecurrentWeights {
            weight_ih: rows_from_keras(self.kernel.view(), order, hidden),
            weight_hh: rows_from_keras(self.recurrent_kernel.view(), order, hidden),
            bias_ih,
            bias_hh,
        })
    }
}

/// A dense layer's weights in Keras's layout: `kernel` `[in, out]`, `bias` `[out]`
/// (PyTorch's and the crate's are [`DenseWeights`], `weight` `[out, in]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KerasDenseWeights<F> {
    /// `[in, out]`
    pub kernel: Array2<F>,
    /// `[out]`
    pub bias: Array1<F>,
}

impl<F: Float> KerasDenseWeights<F> {
    /// From the crate's (PyTorch's) layout: `kernel = weightᵀ`.
    ///
    /// Errors ([`Error::Shape`]) when `bias` is not `[out]`.
    pub fn from_native(weights: &DenseWeights<F>) -> Result<Self> {
        let out = weights.weight.nrows();
        expect_shape("pytorch dense bias", &[out], weights.bias.shape())?;
        Ok(KerasDenseWeights {
            kernel: weights.weight.t().as_standard_layout().into_owned(),
            bias: weights.bias.clone(),
        })
    }

    /// To the crate's (PyTorch's) layout: `weight = kernelᵀ`.
    ///
    /// Errors ([`Error::Shape`]) when `bias` is not `[out]` (`out` = the kernel's columns).
    pub fn to_native(&self) -> Result<DenseWeights<F>> {
        let out = self.kernel.ncols();
        expect_shape("keras dense bias", &[out], self.bias.shape())?;
        Ok(DenseWeights {
            weight: self.kernel.t().as_standard_layout().into_owned(),
            bias: self.bias.clone(),
        })
    }
}

/// A recurrent layer's weights in PyTorch's layout (the crate's own, [`RecurrentWeights`]), for
/// `nn.RNN`, `nn.LSTM` or `nn.GRU` with `batch_first=True`: `weight_ih_l0`, `weight_hh_l0`,
/// `bias_ih_l0`, `bias_hh_l0`.
///
/// Errors with [`Error::Unsupported`] for a cell PyTorch does not have (a reset-before GRU, a
/// simple RNN whose activation is neither tanh nor relu).
pub fn to_torch<C: InteropCell, F: Float>(layer: &Recurrent<C, F>) -> Result<RecurrentWeights<F>> {
    layer.cell().check_torch()?;
    Ok(layer.weights())
}

/// A layer computing `cell` with PyTorch's weights (`weight_ih` `[G·H, I]`, `weight_hh`
/// `[G·H, H]`, `bias_ih` and `bias_hh` `[G·H]`; LSTM gates i, f, g, o, GRU r, z, n). `H` is read
/// from `weight_hh`'s columns and `I` from `weight_ih`'s. The layer returns every step
/// (`return_sequences`); chain [`Recurrent::with_return_sequences`] to change that.
///
/// Errors: [`Error::Unsupported`] for a cell PyTorch does not have; [`Error::Shape`] (expected
/// and given shape) when an array disagrees; [`Error::InvalidConfig`] when `I` or `H` is 0.
pub fn from_torch<C: InteropCell, F: Float>(
    cell: C,
    weights: RecurrentWeights<F>,
) -> Result<Recurrent<C, F>> {
    cell.check_torch()?;
    check_native(&cell, &weights, "pytorch ")?;
    Recurrent::from_weights(cell, weights)
}

/// A recurrent layer's weights in Keras's layout (see [`KerasRecurrentWeights`]).
///
/// Every cell is supported; the result's bias is `[2, G·H]` for the reset-after GRU
/// (`GRU(reset_after=True)`) and `[G·H]` = `bias_ih + bias_hh` otherwise.
pub fn to_keras<C: InteropCell, F: Float>(
    layer: &Recurrent<C, F>,
) -> Result<KerasRecurrentWeights<F>> {
    KerasRecurrentWeights::from_native(layer.cell(), &layer.weights())
}

/// A layer computing `cell` with Keras's weights (see [`KerasRecurrentWeights::to_native`] for
/// the conversion and its errors). The layer returns every step (`return_sequences`).
///
/// For a Keras `GRU`, pick the cell with [`keras_gru_cell`]`(reset_after)`.
pub fn from_keras<C: InteropCell, F: Float>(
    cell: C,
    weights: KerasRecurrentWeights<F>,
) -> Result<Recurrent<C, F>> {
    let native = weights.to_native(&cell)?;
    Recurrent::from_weights(cell, native)
}

/// A dense layer's weights for PyTorch's `nn.Linear` (`weight` `[out, in]`, `bias` `[out]`), the
/// crate's own layout. The activation is not part of it.
pub fn dense_to_torch<F: Float>(layer: &Dense<F>) -> DenseWeights<F> {
    layer.weights()
}

/// A dense layer from PyTorch's `nn.Linear` weights, followed by `activation`.
///
/// Errors: [`Error::Shape`] when `bias` is not `[out]`; [`Error::InvalidConfig`] for a 0 size.
pub fn dense_from_torch<F: Float>(
    weights: DenseWeights<F>,
    activation: Activation,
) -> Result<Dense<F>> {
    Dense::from_weights(weights, activation)
}

/// A dense layer's weights in Keras's layout (`kernel` `[in, out]`, `bias` `[out]`).
pub fn dense_to_keras<F: Float>(layer: &Dense<F>) -> KerasDenseWeights<F> {
    let weights = layer.weights();
    KerasDenseWeights {
        kernel: weights.weight.t().as_standard_layout().into_owned(),
        bias: weights.bias,
    }
}

/// A dense layer from Keras's `Dense` weights (`kernel` `[in, out]`, `bias` `[out]`) with
/// `activation` (Keras's `"linear"` is [`Activation::Identity`]).
///
/// Errors: [`Error::Shape`] when `bias` is not `[out]`; [`Error::InvalidConfig`] for a 0 size.
pub fn dense_from_keras<F: Float>(
    weights: KerasDenseWeights<F>,
    activation: Activation,
) -> Result<Dense<F>> {
    Dense::from_weights(weights.to_native()?, activation)
}

/// Checks the crate's layout for `cell`: returns `(I, H)` with `H` from `weight_hh`'s columns.
fn check_native<C: Cell, F>(
    cell: &C,
    weights: &RecurrentWeights<F>,
    prefix: &str,
) -> Result<(usize, usize)> {
    let name = cell.name();
    let input = weights.weight_ih.ncols();
    let hidden = weights.weight_hh.ncols();
    check_positive(
        &format!("{prefix}{name} weight_ih"),
        "input size (columns)",
        input,
        weights.weight_ih.shape(),
    )?;
    check_positive(
        &format!("{prefix}{name} weight_hh"),
        "hidden size (columns)",
        hidden,
        weights.weight_hh.shape(),
    )?;
    let gh = cell.gates() * hidden;
    expect_shape(
        format!("{prefix}{name} weight_hh"),
        &[gh, hidden],
        weights.weight_hh.shape(),
    )?;
    expect_shape(
        format!("{prefix}{name} weight_ih"),
        &[gh, input],
        weights.weight_ih.shape(),
    )?;
    expect_shape(
        format!("{prefix}{name} bias_ih"),
        &[gh],
        weights.bias_ih.shape(),
    )?;
    expect_shape(
        format!("{prefix}{name} bias_hh"),
        &[gh],
        weights.bias_hh.shape(),
    )?;
    Ok((input, hidden))
}

fn check_positive(what: &str, size: &str, n: usize, shape: &[usize]) -> Result<()> {
    if n == 0 {
        Err(Error::config(
            what,
            format!("the {size} must be at least 1, got shape {shape:?}"),
        ))
    } else {
        Ok(())
    }
}

fn expect_shape(what: impl Into<String>, expected: &[usize], got: &[usize]) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::shape(what, expected, got))
    }
}

/// The cell's Keras gate order, checked to be a permutation of `0..G`.
fn gate_order<C: InteropCell>(cell: &C) -> Result<&'static [usize]> {
    let order = cell.keras_gate_order();
    let g = cell.gates();
    let mut seen = vec![false; g];
    let valid = order.len() == g
        && order
            .iter()
            .all(|&p| p < g && !std::mem::replace(&mut seen[p], true));
    if valid {
        Ok(order)
    } else {
        Err(Error::config(
            format!("{} keras_gate_order", cell.name()),
            format!("{order:?} is not a permutation of 0..{g}"),
        ))
    }
}

/// `[G·H, N]` gate blocks of rows (crate) → `[N, G·H]` blocks of columns in Keras's order.
fn rows_to_keras<F: Float>(w: ArrayView2<'_, F>, order: &[usize], h: usize) -> Array2<F> {
    let (gh, n) = w.dim();
    let mut out = Array2::zeros((n, gh));
    for (k, &p) in order.iter().enumerate() {
        out.slice_mut(s![.., k * h..(k + 1) * h])
            .assign(&w.slice(s![p * h..(p + 1) * h, ..]).t());
    }
    out
}

/// `[N, G·H]` Keras blocks of columns → `[G·H, N]` crate blocks of rows.
fn rows_from_keras<F: Float>(k: ArrayView2<'_, F>, order: &[usize], h: usize) -> Array2<F> {
    let (n, gh) = k.dim();
    let mut out = Array2::zeros((gh, n));
    for (kb, &p) in order.iter().enumerate() {
        out.slice_mut(s![p * h..(p + 1) * h, ..])
            .assign(&k.slice(s![.., kb * h..(kb + 1) * h]).t());
    }
    out
}

/// `[G·H]` in the crate's block order → Keras's.
fn vector_to_keras<F: Float>(v: ArrayView1<'_, F>, order: &[usize], h: usize) -> Array1<F> {
    let mut out = Array1::zeros(v.len());
    for (k, &p) in order.iter().enumerate() {
        out.slice_mut(s![k * h..(k + 1) * h])
            .assign(&v.slice(s![p * h..(p + 1) * h]));
    }
    out
}

/// `[G·H]` in Keras's block order → the crate's.
fn vector_from_keras<F: Float>(v: ArrayView1<'_, F>, order: &[usize], h: usize) -> Array1<F> {
    let mut out = Array1::zeros(v.len());
    for (k, &p) in order.iter().enumerate() {
        out.slice_mut(s![p * h..(p + 1) * h])
            .assign(&v.slice(s![k * h..(k + 1) * h]));
    }
    out
}
