//! Recurrent layers: one driver ([`Recurrent`]) owns the time loop, forward and backward, for
//! every [`Cell`].
//!
//! Shape of the work (`B` batch, `T` steps, `I` inputs, `H` hidden, `G` gates):
//! 1. the inputs of all steps are projected at once, `X [T·B, I] · W_ihᵀ + b_ih → [T·B, G·H]`;
//! 2. per step, the cell adds the recurrent product `h_{t−1} [B, H] · W_hhᵀ` for all gates at
//!    once and applies its gate nonlinearities in one pass, in buffers allocated before the loop;
//! 3. backward runs the steps in reverse, each producing the gate gradients and ∂L/∂h_{t−1};
//!    after the loop `∂W_ih`, `∂W_hh`, the bias gradients and `∂X` are one product each over all
//!    `T·B` rows.

/// Defines `fn $name<F: Float>(args)` that runs its body compiled for AVX2 + FMA when the CPU
/// has them (and the portable path is not forced), else as plain Rust: the element-wise loops in
/// the body then vectorize 8 lanes wide. The arithmetic is the same either way (Rust never
/// fuses a·b + c on its own). Bodies should call only `#[inline(always)]` helpers.
macro_rules! simd_fn {
    ($(#[$meta:meta])* fn $name:ident<F: Float>($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        fn $name<F: Float>($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body<F: Float>($($arg: $ty),*) $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx2<F: Float>($($arg: $ty),*) {
                body($($arg),*)
            }

            // AVX-512 (F, VL): 16 lanes and 32 vector registers, so the gate passes spill less.
            #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
            #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx512<F: Float>($($arg: $ty),*) {
                body($($arg),*)
            }

            #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
            if crate::recurrent::kernels::avx512_elementwise() {
                // SAFETY: the CPU has AVX-512F/VL, AVX2 and FMA (checked at run time).
                return unsafe { avx512($($arg),*) };
            }
            #[cfg(target_arch = "x86_64")]
            if crate::recurrent::kernels::avx2_elementwise() {
                // SAFETY: the CPU has AVX2 and FMA (checked at run time).
                return unsafe { avx2($($arg),*) };
            }
            body($($arg),*)
        }
    };
}

mod cell;
mod gru;
mod kernels;
mod lstm;
mod rnn;
#[cfg(all(target_arch = "x86_64", feature = "avx512"))]
mod simd512;

use std::ops::Range;

use ndarray::{Array1, Array2, Array3, ArrayView3, Axis, Ix1, Ix2, linalg::general_mat_mul, s};
use rand::Rng;
use serde::{Deserialize, Serialize};

pub use cell::{BackwardStep, Cell, ForwardStep, RecurrentKernel};
pub use gru::GruCell;
pub use lstm::LstmCell;
pub use rnn::SimpleRnnCell;

use crate::layer::{Layer, check_sequence, check_step};
use crate::{Error, Float, Init, Param, ParamMut, ParamView, Result, init};
use cell::add_column_sums;
use kernels::{Init as Start, Packed};

/// An Elman RNN layer: [`Recurrent`] with a [`SimpleRnnCell`].
pub type SimpleRnn<F = f32> = Recurrent<SimpleRnnCell, F>;
/// An LSTM layer: [`Recurrent`] with an [`LstmCell`].
pub type Lstm<F = f32> = Recurrent<LstmCell, F>;
/// A GRU layer (reset-after or reset-before): [`Recurrent`] with a [`GruCell`].
pub type Gru<F = f32> = Recurrent<GruCell, F>;

/// A recurrent state: `h` `[B, H]`, and `c` `[B, H]` for cells with a cell state (LSTM).
///
/// Used for the initial state going in, the final state coming out, and their gradients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecurrentState<F> {
    /// The hidden state `[B, H]`.
    pub h: Array2<F>,
    /// The cell state `[B, H]` (LSTM only; an initial state without one starts the LSTM's
    /// cell state at zeros).
    pub c: Option<Array2<F>>,
}

impl<F: Float> RecurrentState<F> {
    /// An all-zero state for `batch` rows of `hidden` units, with a cell part when `with_cell`.
    pub fn zeros(batch: usize, hidden: usize, with_cell: bool) -> Self {
        RecurrentState {
            h: Array2::zeros((batch, hidden)),
            c: with_cell.then(|| Array2::zeros((batch, hidden))),
        }
    }
}

/// A layer's weights in the crate's own layout, which is PyTorch's: `weight_ih` `[G·H, I]`,
/// `weight_hh` `[G·H, H]`, `bias_ih` and `bias_hh` `[G·H]`, gate blocks of `H` rows in the
/// cell's order (LSTM i, f, g, o; GRU r, z, n).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecurrentWeights<F> {
    /// `[G·H, I]`
    pub weight_ih: Array2<F>,
    /// `[G·H, H]`
    pub weight_hh: Array2<F>,
    /// `[G·H]`
    pub bias_ih: Array1<F>,
    /// `[G·H]`
    pub bias_hh: Array1<F>,
}

/// What a training forward keeps for the backward, time-major.
#[derive(Debug, Clone)]
struct SequenceCache<F> {
    batch: usize,
    steps: usize,
    /// `[T·B, I]`: the inputs, row `t·B + b`.
    x: Array2<F>,
    /// `[T·B, G·H]`: what each step left in its gate buffer (activated gates).
    gates: Array2<F>,
    /// `[T·B, E·H]`: the cell's extra cache.
    extra: Array2<F>,
    /// `[(T+1)·B, H]`: h_0 … h_T.
    hs: Array2<F>,
    /// `[(T+1)·B, H]`: c_0 … c_T (empty without a cell state).
    cs: Array2<F>,
}

impl<F> SequenceCache<F> {
    /// The cache's large buffers, for the next pass.
    fn into_workspace(self) -> Workspace<F> {
        Workspace {
            gates: into_vec(self.gates),
            extra: into_vec(self.extra),
            hs: into_vec(self.hs),
            cs: into_vec(self.cs),
        }
    }
}

/// An owned standard-layout array's values (its whole allocation, from offset 0).
fn into_vec<F>(a: Array2<F>) -> Vec<F> {
    let (values, offset) = a.into_raw_vec_and_offset();
    if offset.unwrap_or(0) == 0 {
        values
    } else {
        Vec::new()
    }
}

/// A recurrent layer over `[batch, steps, features]`, generic over its [`Cell`] and element type.
///
/// Use it through the aliases [`SimpleRnn`], [`Lstm`] and [`Gru`]. Parameters are stored as
/// PyTorch shapes them (see [`RecurrentWeights`]).
///
/// * [`forward_with_state`](Self::forward_with_state) `x [B, T, I]`, optional initial state →
///   every step's `h` `[B, T, H]` and the final state; keeps a cache for the backward.
/// * [`backward_with_state`](Self::backward_with_state) ∂L/∂outputs `[B, T, H]` and ∂L/∂final
///   state → ∂L/∂x `[B, T, I]` and ∂L/∂initial state, *adding* into the parameter gradients.
/// * As a [`Layer`], it returns every step (`return_sequences`, the default) or only the last,
///   as `[B, 1, H]`.
///
/// ```
/// use ndarray::Array3;
/// use rand::SeedableRng;
/// use rand_chacha::ChaCha8Rng;
/// use recurrent::Lstm;
///
/// let mut rng = ChaCha8Rng::seed_from_u64(0);
/// let mut lstm = Lstm::<f64>::new(2, 8, &mut rng)?;
/// let x = Array3::<f64>::zeros((4, 10, 2)); // [batch, steps, features]
/// let (outputs, final_state) = lstm.forward_with_state(x.view(), None)?;
/// assert_eq!(outputs.shape(), &[4, 10, 8]);
/// assert_eq!(final_state.h.shape(), &[4, 8]);
///
/// // Gradients of L = Σ outputs: every output gets ∂L/∂h = 1.
/// let (d_x, d_initial) = lstm.backward_with_state(Some(Array3::ones((4, 10, 8)).view()), None)?;
/// assert_eq!(d_x.shape(), &[4, 10, 2]);
/// assert!(d_initial.c.is_some());
/// # Ok::<(), recurrent::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Recurrent<C: Cell, F: Float = f32> {
    cell: C,
    input_size: usize,
    hidden_size: usize,
    return_sequences: bool,
    weight_ih: Param<F, Ix2>,
    weight_hh: Param<F, Ix2>,
    bias_ih: Param<F, Ix1>,
    bias_hh: Param<F, Ix1>,
    cache: Option<SequenceCache<F>>,
    /// Stateful mode: start each [`Layer`] forward from the previous final state.
    stateful: bool,
    carried: Option<RecurrentState<F>>,
    /// ‖∂L/∂h_t‖ per step t of the last backward.
    hidden_grad_norms: Vec<F>,
    /// The last pass's buffers, reused by the next (see [`Workspace`]).
    workspace: WorkspacePool<F>,
}

/// The large buffers of a pass (`[T·B, G·H]` gates, `[T·B, E·H]` extra, `[(T+1)·B, H]` h and c),
/// kept after a backward (or an inference forward) for the next pass: a training loop then
/// allocates, zeroes and first-touches them once instead of every batch (at the L benchmark
/// size, 183 MB a step; at S, glibc would otherwise hand large blocks back to the system and
/// page-fault them in again depending on its thresholds). Stale contents are harmless: the
/// input projection writes every gate, each step writes its h, c and extra rows, and the
/// initial rows are set explicitly.
struct Workspace<F> {
    gates: Vec<F>,
    extra: Vec<F>,
    hs: Vec<F>,
    cs: Vec<F>,
}

/// A [`Workspace`] behind a lock, so the `&self` inference forward can use it too (a concurrent
/// caller finding it taken allocates its own). Cloning a layer does not clone it.
struct WorkspacePool<F>(std::sync::Mutex<Option<Workspace<F>>>);

/// Capacities only: the buffers can hold hundreds of MB of values.
impl<F> std::fmt::Debug for WorkspacePool<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.try_lock().as_deref() {
            Ok(Some(w)) => write!(
                f,
                "WorkspacePool {{ gates: {}, extra: {}, hs: {}, cs: {} }}",
                w.gates.capacity(),
                w.extra.capacity(),
                w.hs.capacity(),
                w.cs.capacity()
            ),
            Ok(None) => f.write_str("WorkspacePool(empty)"),
            Err(_) => f.write_str("WorkspacePool(in use)"),
        }
    }
}

impl<F> Default for WorkspacePool<F> {
    fn default() -> Self {
        WorkspacePool(std::sync::Mutex::new(None))
    }
}

impl<F> Clone for WorkspacePool<F> {
    fn clone(&self) -> Self {
        WorkspacePool::default()
    }
}

impl<F> WorkspacePool<F> {
    fn take(&self) -> Workspace<F> {
        self.0
            .try_lock()
            .ok()
            .and_then(|mut slot| slot.take())
            .unwrap_or(Workspace {
                gates: Vec::new(),
                extra: Vec::new(),
                hs: Vec::new(),
                cs: Vec::new(),
            })
    }

    fn put(&self, workspace: Workspace<F>) {
        if let Ok(mut slot) = self.0.try_lock() {
            *slot = Some(workspace);
        }
    }

    fn clear(&self) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = None;
        }
    }
}

/// `buffer` resized to `n` values if its capacity holds them (contents stale, new values
/// zero), else a new zeroed buffer.
fn reuse_or_zeroed<F: Float>(mut buffer: Vec<F>, n: usize) -> Vec<F> {
    if buffer.capacity() >= n {
        buffer.resize(n, F::zero());
        buffer
    } else {
        drop(buffer);
        vec![F::zero(); n]
    }
}

impl<F: Float> SimpleRnn<F> {
    /// A tanh Elman layer with the default ([`Init::Glorot`]) initialization.
    pub fn new<R: Rng + ?Sized>(
        input_size: usize,
        hidden_size: usize,
        rng: &mut R,
    ) -> Result<Self> {
        Self::with_init(
            SimpleRnnCell::default(),
            input_size,
            hidden_size,
            Init::default(),
            rng,
        )
    }
}

impl<F: Float> Lstm<F> {
    /// An LSTM layer with the default ([`Init::Glorot`]) initialization.
    pub fn new<R: Rng + ?Sized>(
        input_size: usize,
        hidden_size: usize,
        rng: &mut R,
    ) -> Result<Self> {
        Self::with_init(LstmCell, input_size, hidden_size, Init::default(), rng)
    }
}

impl<F: Float> Gru<F> {
    /// A reset-after GRU layer (PyTorch's) with the default ([`Init::Glorot`]) initialization.
    pub fn new<R: Rng + ?Sized>(
        input_size: usize,
        hidden_size: usize,
        rng: &mut R,
    ) -> Result<Self> {
        Self::with_init(
            GruCell::ResetAfter,
            input_size,
            hidden_size,
            Init::default(),
            rng,
        )
    }
}

impl<C: Cell, F: Float> Recurrent<C, F> {
    /// A layer with `cell`, `input_size` inputs and `hidden_size` units, drawn by `init`.
    ///
    /// Errors when a size is 0.
    pub fn with_init<R: Rng + ?Sized>(
        cell: C,
        input_size: usize,
        hidden_size: usize,
        init: Init,
        rng: &mut R,
    ) -> Result<Self> {
        check_sizes(cell.name(), input_size, hidden_size)?;
        let gh = cell.gates() * hidden_size;
        let weights = match init {
            Init::Glorot => {
                let weight_ih = init::glorot_uniform(gh, input_size, rng)?;
                let mut weight_hh = Array2::zeros((gh, hidden_size));
                for gate in 0..cell.gates() {
                    let block = init::orthogonal::<F, R>(hidden_size, rng);
                    weight_hh
                        .slice_mut(s![gate * hidden_size..(gate + 1) * hidden_size, ..])
                        .assign(&block);
                }
                let mut bias_ih = Array1::zeros(gh);
                if let Some(b) = bias_ih.as_slice_mut() {
                    cell.init_bias_ih(hidden_size, b);
                }
                RecurrentWeights {
                    weight_ih,
                    weight_hh,
                    bias_ih,
                    bias_hh: Array1::zeros(gh),
                }
            }
            Init::Torch => {
                let k = 1.0 / (hidden_size as f64).sqrt();
                RecurrentWeights {
                    weight_ih: init::uniform(gh, input_size, k, rng)?,
                    weight_hh: init::uniform(gh, hidden_size, k, rng)?,
                    bias_ih: init::uniform_vector(gh, k, rng)?,
                    bias_hh: init::uniform_vector(gh, k, rng)?,
                }
            }
        };
        Self::from_weights(cell, weights)
    }

    /// A layer holding `weights` (the crate's layout, see [`RecurrentWeights`]); sizes are read
    /// from `weight_ih` `[G·H, I]`, and every other array must agree.
    pub fn from_weights(cell: C, weights: RecurrentWeights<F>) -> Result<Self> {
        let g = cell.gates();
        let (rows, input_size) = weights.weight_ih.dim();
        if rows == 0 || rows % g != 0 {
            return Err(Error::config(
                format!("{} weight_ih", cell.name()),
                format!("{rows} rows is not a positive multiple of the {g} gates"),
            ));
        }
        let hidden_size = rows / g;
        check_sizes(cell.name(), input_size, hidden_size)?;
        let name = cell.name();
        let expect2 = |what: &str, a: &Array2<F>, shape: [usize; 2]| {
            if a.shape() == shape {
                Ok(())
            } else {
                Err(Error::shape(format!("{name} {what}"), &shape, a.shape()))
            }
        };
        let expect1 = |what: &str, a: &Array1<F>, len: usize| {
            if a.len() == len {
                Ok(())
            } else {
                Err(Error::shape(format!("{name} {what}"), &[len], a.shape()))
            }
        };
        expect2("weight_hh", &weights.weight_hh, [rows, hidden_size])?;
        expect1("bias_ih", &weights.bias_ih, rows)?;
        expect1("bias_hh", &weights.bias_hh, rows)?;
        Ok(Recurrent {
            cell,
            input_size,
            hidden_size,
            return_sequences: true,
            weight_ih: Param::new("weight_ih", weights.weight_ih),
            weight_hh: Param::new("weight_hh", weights.weight_hh),
            bias_ih: Param::new("bias_ih", weights.bias_ih),
            bias_hh: Param::new("bias_hh", weights.bias_hh),
            cache: None,
            stateful: false,
            carried: None,
            hidden_grad_norms: Vec::new(),
            workspace: WorkspacePool::default(),
        })
    }

    /// ‖∂L/∂h_t‖ (norm over batch and units) for every step t of the last backward: how much
    /// of the loss's gradient reaches each hidden state (vanishing and exploding gradients).
    pub fn hidden_gradient_norms(&self) -> &[F] {
        &self.hidden_grad_norms
    }

    /// The state carried between forwards in stateful mode, if any.
    pub fn carried_state(&self) -> Option<&RecurrentState<F>> {
        self.carried.as_ref()
    }

    /// Builder-style: whether the [`Layer`] output is every step `[B, T, H]` (true, the
    /// default) or only the last `[B, 1, H]`.
    pub fn with_return_sequences(mut self, return_sequences: bool) -> Self {
        self.return_sequences = return_sequences;
        self
    }

    /// Whether the [`Layer`] output is every step.
    pub fn return_sequences(&self) -> bool {
        self.return_sequences
    }

    /// Frees the buffers the layer keeps from its last pass for the next one (about
    /// `B·T·(G + E + 2)·H` values: the gates, the cell's extra cache, h and c of every step).
    /// Passes keep them so that a training loop does not allocate, zero and first-touch them
    /// every batch; call this when the layer will sit idle. The next pass allocates afresh.
    pub fn release_buffers(&self) {
        self.workspace.clear();
    }

    /// The cell.
    pub fn cell(&self) -> &C {
        &self.cell
    }

    /// `I`.
    pub fn input_size(&self) -> usize {
        self.input_size
    }

    /// `H`.
    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    /// A copy of the weights, in the crate's (PyTorch's) layout.
    pub fn weights(&self) -> RecurrentWeights<F> {
        RecurrentWeights {
            weight_ih: self.weight_ih.value.clone(),
            weight_hh: self.weight_hh.value.clone(),
            bias_ih: self.bias_ih.value.clone(),
            bias_hh: self.bias_hh.value.clone(),
        }
    }

    /// A copy of the accumulated gradients, in the same layout as [`weights`](Self::weights).
    pub fn gradients(&self) -> RecurrentWeights<F> {
        RecurrentWeights {
            weight_ih: self.weight_ih.grad.clone(),
            weight_hh: self.weight_hh.grad.clone(),
            bias_ih: self.bias_ih.grad.clone(),
            bias_hh: self.bias_hh.grad.clone(),
        }
    }

    /// Training forward over `x` `[B, T, I]` from `initial` (zeros when `None`): returns every
    /// step's hidden state `[B, T, H]` and the final state, and keeps the cache
    /// [`backward_with_state`](Self::backward_with_state) needs.
    ///
    /// Errors on a wrong feature count, an empty batch or zero steps, or an initial state of the
    /// wrong shape (a cell state given to a cell without one included).
    pub fn forward_with_state(
        &mut self,
        x: ArrayView3<'_, F>,
        initial: Option<&RecurrentState<F>>,
    ) -> Result<(Array3<F>, RecurrentState<F>)> {
        self.forward_steps(x, initial, true)
    }

    /// The training forward; every step's outputs only when `all_steps` (else `[B, 0, H]`).
    fn forward_steps(
        &mut self,
        x: ArrayView3<'_, F>,
        initial: Option<&RecurrentState<F>>,
        all_steps: bool,
    ) -> Result<(Array3<F>, RecurrentState<F>)> {
        let cache = self.run(x, initial)?;
        let result = self.outputs(&cache, all_steps);
        // A cache no backward consumed: its buffers serve the next pass.
        if let Some(unused) = self.cache.replace(cache) {
            self.workspace.put(unused.into_workspace());
        }
        Ok(result)
    }

    /// Inference forward: as [`forward_with_state`](Self::forward_with_state), keeping no cache.
    pub fn predict_with_state(
        &self,
        x: ArrayView3<'_, F>,
        initial: Option<&RecurrentState<F>>,
    ) -> Result<(Array3<F>, RecurrentState<F>)> {
        self.predict_steps(x, initial, true)
    }

    /// The inference forward; every step's outputs only when `all_steps` (else `[B, 0, H]`).
    fn predict_steps(
        &self,
        x: ArrayView3<'_, F>,
        initial: Option<&RecurrentState<F>>,
        all_steps: bool,
    ) -> Result<(Array3<F>, RecurrentState<F>)> {
        let cache = self.run(x, initial)?;
        let result = self.outputs(&cache, all_steps);
        self.workspace.put(cache.into_workspace());
        Ok(result)
    }

    /// Backpropagation through time for the last training forward.
    ///
    /// `d_outputs` `[B, T, H]` is ∂L/∂(every step's h) (`None`: zero), `d_final` ∂L/∂(final
    /// state) (`None`: zero; its `c` may be `None` too). Returns ∂L/∂x `[B, T, I]` and ∂L/∂(initial
    /// state), and *adds* ∂L/∂θ into every parameter's gradient. The cache is consumed: a second
    /// backward needs a new forward.
    pub fn backward_with_state(
        &mut self,
        d_outputs: Option<ArrayView3<'_, F>>,
        d_final: Option<&RecurrentState<F>>,
    ) -> Result<(Array3<F>, RecurrentState<F>)> {
        let name = self.cell.name();
        // Check every shape before the cache is consumed: a rejected call keeps the forward.
        let (b, t) = match &self.cache {
            Some(cache) => (cache.batch, cache.steps),
            None => {
                return Err(Error::BackwardBeforeForward {
                    layer: name.to_string(),
                });
            }
        };
        let h = self.hidden_size;
        let check = |what: &str, got: &[usize], expected: &[usize]| {
            if got == expected {
                Ok(())
            } else {
                Err(Error::shape(format!("{name} {what}"), expected, got))
            }
        };
        if let Some(d) = &d_outputs {
            check("output gradient", d.shape(), &[b, t, h])?;
        }
        if let Some(d) = d_final {
            check("final-state gradient h", d.h.shape(), &[b, h])?;
            if let Some(c) = &d.c {
                if !self.cell.has_cell_state() {
                    return Err(Error::config(
                        format!("{name} final-state gradient"),
                        format!(
                            "a cell-state gradient of shape {:?} was given to a cell without a cell state",
                            c.shape()
                        ),
                    ));
                }
                check("final-state gradient c", c.shape(), &[b, h])?;
            }
        }
        let cache = self
            .cache
            .take()
            .ok_or_else(|| Error::BackwardBeforeForward {
                layer: name.to_string(),
            })?;
        let result = self.backward_cached(cache, d_outputs, d_final);
        self.cache = None;
        Ok(result)
    }

    fn check_initial(&self, initial: &RecurrentState<F>, batch: usize) -> Result<()> {
        let name = self.cell.name();
        let expected = [batch, self.hidden_size];
        if initial.h.shape() != expected {
            return Err(Error::shape(
                format!("{name} initial state h"),
                &expected,
                initial.h.shape(),
            ));
        }
        match (&initial.c, self.cell.has_cell_state()) {
            (Some(c), true) if c.shape() != expected => Err(Error::shape(
                format!("{name} initial state c"),
                &expected,
                c.shape(),
            )),
            (Some(c), false) => Err(Error::config(
                format!("{name} initial state"),
                format!(
                    "a cell state of shape {:?} was given to a cell without one",
                    c.shape()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The forward pass proper: every buffer is allocated here, before the step loop.
    fn run(
        &self,
        x: ArrayView3<'_, F>,
        initial: Option<&RecurrentState<F>>,
    ) -> Result<SequenceCache<F>> {
        let (b, t) = check_sequence(self.cell.name(), &x, self.input_size)?;
        if let Some(state) = initial {
            self.check_initial(state, b)?;
        }
        let (i, h) = (self.input_size, self.hidden_size);
        let gh = self.cell.gates() * h;
        let eh = self.cell.extra_blocks() * h;
        let with_c = self.cell.has_cell_state();

        // Time-major inputs [T·B, I]: one transpose at the boundary, none per step.
        let x_tm = x
            .permuted_axes([1, 0, 2])
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((t * b, i))
            .map_err(|e| Error::config("input layout", e.to_string()))?;
        // The last pass's buffers when they are large enough (see `Workspace`).
        let workspace = self.workspace.take();
        // Every gate is written by the input projection (`Start::Row` never reads C), so a new
        // buffer starts uninitialized: no zeroing pass over the largest array of the pass.
        let n_gates = t * b * gh;
        let mut gates_buffer = workspace.gates;
        let reused = gates_buffer.capacity() >= n_gates;
        if reused {
            gates_buffer.resize(n_gates, F::zero());
        } else {
            gates_buffer = Vec::with_capacity(n_gates);
        }
        {
            // Input projection of every step at once: X · W_ihᵀ + b_ih, on the packed kernel
            // (W_ihᵀ packed once; X is read in place).
            let w_ih = &self.weight_ih.value;
            let packed = Packed::new(i, gh, kernels::backend_for::<F>(), |k, j| w_ih[[j, k]]);
            let bias = self
                .bias_ih
                .value
                .as_slice()
                .expect("bias_ih is contiguous");
            let x_rows = as_slice(&x_tm);
            assert!(x_rows.len() >= t * b * i && gates_buffer.capacity() >= n_gates);
            // SAFETY: X holds T·B rows of I (checked), the gate buffer room for T·B rows of
            // G·H, owned here; `Start::Row` writes every element of C without reading it.
            unsafe {
                packed.gemm_raw(
                    t * b,
                    0,
                    i,
                    x_rows.as_ptr(),
                    i,
                    1,
                    gates_buffer.as_mut_ptr(),
                    gh,
                    Start::Row(bias),
                );
            }
        }
        if !reused {
            // SAFETY: all n_gates values were written just above.
            unsafe { gates_buffer.set_len(n_gates) };
        }
        let mut gates = Array2::from_shape_vec((t * b, gh), gates_buffer).expect("T·B·G·H values");
        let mut extra =
            Array2::from_shape_vec((t * b, eh), reuse_or_zeroed(workspace.extra, t * b * eh))
                .expect("T·B·E·H values");
        let c_rows = if with_c { (t + 1) * b } else { 0 };
        let mut hs = Array2::from_shape_vec(
            ((t + 1) * b, h),
            reuse_or_zeroed(workspace.hs, (t + 1) * b * h),
        )
        .expect("(T+1)·B·H values");
        let mut cs = Array2::from_shape_vec((c_rows, h), reuse_or_zeroed(workspace.cs, c_rows * h))
            .expect("(T+1)·B·H values");
        // The initial state rows (a reused buffer holds the last pass's values there).
        match initial {
            Some(state) => hs.slice_mut(s![..b, ..]).assign(&state.h),
            None => hs.slice_mut(s![..b, ..]).fill(F::zero()),
        }
        if with_c {
            match initial.and_then(|state| state.c.as_ref()) {
                Some(c0) => cs.slice_mut(s![..b, ..]).assign(c0),
                None => cs.slice_mut(s![..b, ..]).fill(F::zero()),
            }
        }
        let kernel =
            RecurrentKernel::for_forward(self.weight_hh.value.view(), self.bias_hh.value.view());
        let shape = LoopShape {
            batch: b,
            steps: t,
            hidden: h,
            gh,
            eh,
            with_c,
        };
        let bufs = ForwardBuffers {
            gates: SharedMut::new(as_slice_mut(&mut gates)),
            extra: SharedMut::new(as_slice_mut(&mut extra)),
            hs: SharedMut::new(as_slice_mut(&mut hs)),
            cs: SharedMut::new(as_slice_mut(&mut cs)),
        };
        let parts = kernels::batch_parts(b, t, gh, h);
        let cell = &self.cell;
        if parts.len() == 1 {
            // SAFETY: the buffers are sized by `shape` and borrowed mutably for this call.
            unsafe { forward_rows(cell, &kernel, shape, 0..b, &bufs) };
        } else {
            std::thread::scope(|scope| {
                for rows in parts {
                    let (kernel, bufs) = (&kernel, &bufs);
                    // SAFETY: as above; the threads' row ranges are disjoint.
                    scope.spawn(move || unsafe { forward_rows(cell, kernel, shape, rows, bufs) });
                }
            });
        }
        Ok(SequenceCache {
            batch: b,
            steps: t,
            x: x_tm,
            gates,
            extra,
            hs,
            cs,
        })
    }

    /// Every step's h as `[B, T, H]` (when `all_steps`, else an empty `[B, 0, H]`: a layer
    /// returning only its last step copies nothing more), and the final state.
    fn outputs(&self, cache: &SequenceCache<F>, all_steps: bool) -> (Array3<F>, RecurrentState<F>) {
        let (b, t, h) = (cache.batch, cache.steps, self.hidden_size);
        let hs = cache
            .hs
            .view()
            .into_shape_with_order((t + 1, b, h))
            .expect("hs is [(T+1)·B, H]");
        let kept = if all_steps { 1.. } else { t + 1.. };
        let outputs = hs
            .slice(s![kept, .., ..])
            .permuted_axes([1, 0, 2])
            .as_standard_layout()
            .into_owned();
        let final_state = RecurrentState {
            h: hs.index_axis(Axis(0), t).to_owned(),
            c: self
                .cell
                .has_cell_state()
                .then(|| cache.cs.slice(s![t * b.., ..]).to_owned()),
        };
        (outputs, final_state)
    }

    /// BPTT: the reverse step loop, then the whole-sequence weight products.
    fn backward_cached(
        &mut self,
        mut cache: SequenceCache<F>,
        d_outputs: Option<ArrayView3<'_, F>>,
        d_final: Option<&RecurrentState<F>>,
    ) -> (Array3<F>, RecurrentState<F>) {
        let (b, t, h, i) = (cache.batch, cache.steps, self.hidden_size, self.input_size);
        let gh = self.cell.gates() * h;
        let eh = self.cell.extra_blocks() * h;
        let with_c = self.cell.has_cell_state();
        let separate = self.cell.separate_recurrent_grad();

        // Upstream output gradients, time-major [T·B, H].
        let d_out_tm: Option<Array2<F>> = d_outputs.map(|d| {
            d.permuted_axes([1, 0, 2])
                .as_standard_layout()
                .into_owned()
                .into_shape_with_order((t * b, h))
                .expect("checked [B, T, H]")
        });
        let mut d_h_carry = match d_final {
            Some(d) => d.h.as_standard_layout().into_owned(),
            None => Array2::zeros((b, h)),
        };
        let mut d_c = match d_final.and_then(|d| d.c.as_ref()) {
            Some(c) => c.as_standard_layout().into_owned(),
            None => Array2::zeros((if with_c { b } else { 0 }, h)),
        };
        // The cached gates become the pre-activation gradients, step by step, in place.
        let mut d_gates = std::mem::take(&mut cache.gates);
        let mut d_recurrent = Array2::<F>::zeros((if separate { t * b } else { 0 }, gh));
        let kernel =
            RecurrentKernel::for_backward(self.weight_hh.value.view(), self.bias_hh.value.view());

        let shape = LoopShape {
            batch: b,
            steps: t,
            hidden: h,
            gh,
            eh,
            with_c,
        };
        let bufs = BackwardBuffers {
            extra: as_slice(&cache.extra),
            hs: as_slice(&cache.hs),
            cs: as_slice(&cache.cs),
            d_out: d_out_tm.as_ref().map(as_slice),
            gates: SharedMut::new(as_slice_mut(&mut d_gates)),
            d_recurrent: SharedMut::new(as_slice_mut(&mut d_recurrent)),
            d_c: SharedMut::new(as_slice_mut(&mut d_c)),
            d_carry: SharedMut::new(as_slice_mut(&mut d_h_carry)),
            separate,
        };
        let parts = kernels::batch_parts(b, t, gh, h);
        let cell = &self.cell;
        // Σ over the batch of (∂L/∂h_t)², per step; the norms are their square roots.
        let mut squares = vec![F::zero(); t];
        if parts.len() == 1 {
            // SAFETY: the buffers are sized by `shape` and borrowed mutably for this call.
            unsafe { backward_rows(cell, &kernel, shape, 0..b, &bufs, &mut squares) };
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = parts
                    .into_iter()
                    .map(|rows| {
                        let (kernel, bufs) = (&kernel, &bufs);
                        scope.spawn(move || {
                            let mut part = vec![F::zero(); t];
                            // SAFETY: as above; the threads' row ranges are disjoint.
                            unsafe { backward_rows(cell, kernel, shape, rows, bufs, &mut part) };
                            part
                        })
                    })
                    .collect();
                for handle in handles {
                    let part = handle.join().expect("a backward thread panicked");
                    for (total, p) in squares.iter_mut().zip(part) {
                        *total += p;
                    }
                }
            });
        }
        let hidden_grad_norms: Vec<F> = squares.into_iter().map(F::sqrt).collect();

        // Whole-sequence products: ∂W_ih = ∂Aᵀ·X, ∂b_ih = Σ ∂A, ∂X = ∂A·W_ih.
        let mut d_bias = Array1::<F>::zeros(gh);
        let mut d_x_tm = Array2::<F>::zeros((t * b, i));
        if i < kernels::SMALL_INPUT {
            // Small I: ∂W_ihᵀ [I, G·H] = Σ_rows x_r ⊗ ∂A_r (added transposed below) and
            // ∂X[r, c] = ∂A_r · W_ih[:, c], with W_ih's columns made contiguous.
            let w_t = self.weight_ih.value.t().as_standard_layout().into_owned();
            let mut d_w_t = vec![F::zero(); i * gh];
            let (d_a, x) = (as_slice(&d_gates), as_slice(&cache.x));
            // One pass over ∂A for all three on AVX-512 (f32), else three passes.
            #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
            let fused = simd512::input_side_small(
                gh,
                d_a,
                x,
                as_slice(&w_t),
                as_slice_mut(&mut d_x_tm),
                &mut d_w_t,
                d_bias.as_slice_mut().expect("contiguous"),
            );
            #[cfg(not(all(target_arch = "x86_64", feature = "avx512")))]
            let fused = false;
            if !fused {
                input_weight_grad_small(gh, d_a, x, &mut d_w_t);
                add_column_sums(d_gates.view(), &mut d_bias);
                input_grad_small(gh, d_a, as_slice(&w_t), as_slice_mut(&mut d_x_tm));
            }
            for ((row, col), g) in self.weight_ih.grad.indexed_iter_mut() {
                *g += d_w_t[col * gh + row];
            }
        } else {
            general_mat_mul(
                F::one(),
                &d_gates.t(),
                &cache.x,
                F::one(),
                &mut self.weight_ih.grad,
            );
            add_column_sums(d_gates.view(), &mut d_bias);
            // W_ih [G·H, I] packed once; ∂A is read in place.
            let w_ih = &self.weight_ih.value;
            let packed = Packed::new(gh, i, kernels::backend_for::<F>(), |k, j| w_ih[[k, j]]);
            packed.gemm(
                t * b,
                0,
                gh,
                as_slice(&d_gates),
                gh,
                as_slice_mut(&mut d_x_tm),
                i,
                Start::Zero,
            );
        }
        // ∂b_ih = Σ_rows ∂A (and ∂b_hh the same sums unless the cell's recurrent side differs).
        self.bias_ih.grad += &d_bias;
        let d_rec_view = if separate {
            d_recurrent.view()
        } else {
            d_gates.view()
        };
        // Steps whose h_{t−1} is zero (the first, from a zero initial state) add nothing to
        // ∂W_hh = Σ_t ∂a_tᵀ h_{t−1}: their rows are left out of the product. (A non-finite
        // ∂a in those rows then no longer turns ∂W_hh into NaN through 0·∞; ∂b and ∂W_ih still
        // carry it, so divergence is still detected.)
        let skip = if cache.hs.slice(s![..b, ..]).iter().all(|&v| v == F::zero()) {
            b
        } else {
            0
        };
        self.cell.recurrent_weight_grad(
            h,
            d_rec_view.slice(s![skip.., ..]),
            cache.hs.slice(s![skip..t * b, ..]),
            cache.extra.slice(s![skip.., ..]),
            self.weight_hh.grad.view_mut(),
        );
        if separate {
            add_column_sums(d_rec_view, &mut self.bias_hh.grad);
        } else {
            self.bias_hh.grad += &d_bias;
        }
        let d_x = d_x_tm
            .into_shape_with_order((t, b, i))
            .expect("[T·B, I]")
            .permuted_axes([1, 0, 2])
            .as_standard_layout()
            .into_owned();
        let d_initial = RecurrentState {
            h: d_h_carry,
            c: with_c.then_some(d_c),
        };
        self.hidden_grad_norms = hidden_grad_norms;
        // The pass's buffers serve the next one.
        cache.gates = d_gates;
        self.workspace.put(cache.into_workspace());
        (d_x, d_initial)
    }
}

simd_fn! {
    /// ∂W_ihᵀ `[I, G·H]` += Σ_r x_r ⊗ ∂A_r for ∂A `[N, G·H]` and X `[N, I]` (small I: axpys,
    /// four rows of ∂A at a time so each accumulator row is loaded and stored once per four).
    fn input_weight_grad_small<F: Float>(gh: usize, d_a: &[F], x: &[F], d_w_t: &mut [F]) {
        let i = d_w_t.len() / gh;
        let mut d_blocks = d_a.chunks_exact(4 * gh);
        let mut x_blocks = x.chunks_exact(4 * i);
        for (d4, x4) in (&mut d_blocks).zip(&mut x_blocks) {
            let (d0, rest) = d4.split_at(gh);
            let (d1, rest) = rest.split_at(gh);
            let (d2, d3) = rest.split_at(gh);
            for (c, acc) in d_w_t.chunks_exact_mut(gh).enumerate() {
                let xs = [x4[c], x4[i + c], x4[2 * i + c], x4[3 * i + c]];
                kernels::axpy4(xs, d0, d1, d2, d3, acc);
            }
        }
        let (d_rest, x_rest) = (d_blocks.remainder(), x_blocks.remainder());
        for (d_row, x_row) in d_rest.chunks_exact(gh).zip(x_rest.chunks_exact(i)) {
            for (&xv, acc) in x_row.iter().zip(d_w_t.chunks_exact_mut(gh)) {
                kernels::axpy(xv, d_row, acc);
            }
        }
    }
}

simd_fn! {
    /// ∂X `[N, I]` = ∂A `[N, G·H]` · W_ih, with `w_t` = W_ihᵀ `[I, G·H]` (small I: dot products,
    /// two rows of ∂A at a time sharing the loads of W_ih).
    fn input_grad_small<F: Float>(gh: usize, d_a: &[F], w_t: &[F], d_x: &mut [F]) {
        let i = w_t.len() / gh;
        let mut d_pairs = d_a.chunks_exact(2 * gh);
        let mut x_pairs = d_x.chunks_exact_mut(2 * i);
        for (d2, dx2) in (&mut d_pairs).zip(&mut x_pairs) {
            let (d0, d1) = d2.split_at(gh);
            let (dx0, dx1) = dx2.split_at_mut(i);
            for ((v0, v1), w_col) in dx0.iter_mut().zip(dx1.iter_mut()).zip(w_t.chunks_exact(gh)) {
                let (a, b) = kernels::dot2(d0, d1, w_col);
                *v0 = a;
                *v1 = b;
            }
        }
        let (d_rest, x_rest) = (d_pairs.remainder(), x_pairs.into_remainder());
        for (d_row, dx_row) in d_rest.chunks_exact(gh).zip(x_rest.chunks_exact_mut(i)) {
            for (v, w_col) in dx_row.iter_mut().zip(w_t.chunks_exact(gh)) {
                *v = kernels::dot(d_row, w_col);
            }
        }
    }
}

/// The sizes a step loop runs over.
#[derive(Debug, Clone, Copy)]
struct LoopShape {
    batch: usize,
    steps: usize,
    hidden: usize,
    /// G·H
    gh: usize,
    /// E·H
    eh: usize,
    with_c: bool,
}

/// A buffer several threads write, each only its own rows (see [`forward_rows`]).
#[derive(Debug, Clone, Copy)]
struct SharedMut<F> {
    ptr: *mut F,
    len: usize,
}

// SAFETY: a SharedMut is only turned into slices over disjoint row ranges by the threads of
// one pass (forward_rows, backward_rows), while the buffer it came from is borrowed mutably.
unsafe impl<F: Send> Send for SharedMut<F> {}
unsafe impl<F: Send> Sync for SharedMut<F> {}

impl<F> SharedMut<F> {
    fn new(data: &mut [F]) -> Self {
        SharedMut {
            ptr: data.as_mut_ptr(),
            len: data.len(),
        }
    }

    /// `data[start .. start + len]`.
    ///
    /// # Safety
    /// No other live reference may overlap the range while the slice lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice<'a>(&self, start: usize, len: usize) -> &'a mut [F] {
        if len == 0 {
            return &mut [];
        }
        assert!(start + len <= self.len, "range inside the buffer");
        // SAFETY: in bounds (checked); exclusivity is the caller's.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

/// The forward's time-major buffers: gates and extra `[T·B, ·]`, hs and cs `[(T+1)·B, H]`.
struct ForwardBuffers<F> {
    gates: SharedMut<F>,
    extra: SharedMut<F>,
    hs: SharedMut<F>,
    cs: SharedMut<F>,
}

/// The forward step loop for the batch rows `rows`: the rows of one step are contiguous in the
/// time-major buffers, and rows never interact, so threads can take disjoint row ranges.
///
/// # Safety
/// The buffers hold `shape`'s sizes, and no other code touches rows `rows` of them meanwhile.
unsafe fn forward_rows<'k, C: Cell, F: Float>(
    cell: &C,
    kernel: &'k RecurrentKernel<'k, F>,
    shape: LoopShape,
    rows: Range<usize>,
    bufs: &ForwardBuffers<F>,
) {
    let LoopShape {
        batch: b,
        steps: t,
        hidden: h,
        gh,
        eh,
        with_c,
    } = shape;
    let (r0, nb) = (rows.start, rows.len());
    let mut scratch = vec![F::zero(); nb * gh];
    for step in 0..t {
        let row = step * b + r0; // this step's first row of ours
        let next = (step + 1) * b + r0;
        // SAFETY: rows `rows` of step `step` (and of h/c at step and step + 1) are ours.
        unsafe {
            cell.forward_step(ForwardStep {
                batch: nb,
                hidden: h,
                gates: bufs.gates.slice(row * gh, nb * gh),
                extra: bufs.extra.slice(row * eh, nb * eh),
                scratch: &mut scratch,
                h_prev: bufs.hs.slice(row * h, nb * h),
                h: bufs.hs.slice(next * h, nb * h),
                c_prev: if with_c {
                    bufs.cs.slice(row * h, nb * h)
                } else {
                    &mut []
                },
                c: if with_c {
                    bufs.cs.slice(next * h, nb * h)
                } else {
                    &mut []
                },
                kernel,
            });
        }
    }
}

/// The backward's buffers: the forward cache (read), the upstream gradients, and what the
/// reverse loop writes.
struct BackwardBuffers<'a, F> {
    extra: &'a [F],
    hs: &'a [F],
    cs: &'a [F],
    /// `[T·B, H]` upstream gradients of every step's output, if any.
    d_out: Option<&'a [F]>,
    /// `[T·B, G·H]`: the cached gates, overwritten by their pre-activation gradients.
    gates: SharedMut<F>,
    /// `[T·B, G·H]` when the cell has a separate recurrent gradient, else empty.
    d_recurrent: SharedMut<F>,
    /// `[B, H]` ∂L/∂c (empty without a cell state).
    d_c: SharedMut<F>,
    /// `[B, H]` ∂L/∂h arriving from the step after.
    d_carry: SharedMut<F>,
    separate: bool,
}

/// The reverse step loop for the batch rows `rows`; adds Σ_b (∂L/∂h_t)² of its rows into
/// `squares[t]`.
///
/// # Safety
/// As [`forward_rows`].
unsafe fn backward_rows<'k, C: Cell, F: Float>(
    cell: &C,
    kernel: &'k RecurrentKernel<'k, F>,
    shape: LoopShape,
    rows: Range<usize>,
    bufs: &BackwardBuffers<'_, F>,
    squares: &mut [F],
) {
    let LoopShape {
        batch: b,
        steps: t,
        hidden: h,
        gh,
        eh,
        with_c,
    } = shape;
    let (r0, nb) = (rows.start, rows.len());
    let mut d_h_sum = vec![F::zero(); if bufs.d_out.is_some() { nb * h } else { 0 }];
    let mut d_h_prev = vec![F::zero(); nb * h];
    let mut scratch = vec![F::zero(); nb * h];
    // SAFETY: rows `rows` of the [B, H] state gradients are ours.
    let d_carry_out = unsafe { bufs.d_carry.slice(r0 * h, nb * h) };
    // ∂L/∂h arriving from the step after; swapped with `d_h_prev` after each step (no copy).
    let mut d_carry = d_carry_out.to_vec();
    let d_c = if with_c {
        unsafe { bufs.d_c.slice(r0 * h, nb * h) }
    } else {
        &mut []
    };
    for step in (0..t).rev() {
        let row = step * b + r0;
        let next = (step + 1) * b + r0;
        // Everything that reaches h_t: this step's output gradient plus step t+1's share.
        let d_h: &[F] = match bufs.d_out {
            Some(d_out) => {
                for ((dst, &a), &c) in d_h_sum
                    .iter_mut()
                    .zip(&d_out[row * h..(row + nb) * h])
                    .zip(d_carry.iter())
                {
                    *dst = a + c;
                }
                &d_h_sum
            }
            None => &d_carry,
        };
        squares[step] += kernels::sum_of_squares(d_h);
        // SAFETY: rows `rows` of step `step` are ours.
        unsafe {
            cell.backward_step(BackwardStep {
                batch: nb,
                hidden: h,
                gates: bufs.gates.slice(row * gh, nb * gh),
                extra: &bufs.extra[row * eh..(row + nb) * eh],
                h_prev: &bufs.hs[row * h..(row + nb) * h],
                h: &bufs.hs[next * h..(next + nb) * h],
                c_prev: if with_c {
                    &bufs.cs[row * h..(row + nb) * h]
                } else {
                    &[]
                },
                d_h,
                d_c,
                d_recurrent: if bufs.separate {
                    bufs.d_recurrent.slice(row * gh, nb * gh)
                } else {
                    &mut []
                },
                d_h_prev: &mut d_h_prev,
                scratch: &mut scratch,
                kernel,
            });
        }
        std::mem::swap(&mut d_carry, &mut d_h_prev);
    }
    d_carry_out.copy_from_slice(&d_carry);
}

fn check_sizes(name: &str, input_size: usize, hidden_size: usize) -> Result<()> {
    if input_size == 0 {
        return Err(Error::config(
            format!("{name} input_size"),
            "must be at least 1, got 0",
        ));
    }
    if hidden_size == 0 {
        return Err(Error::config(
            format!("{name} hidden_size"),
            "must be at least 1, got 0",
        ));
    }
    Ok(())
}

fn as_slice<F>(a: &Array2<F>) -> &[F] {
    a.as_slice()
        .expect("buffers are allocated in standard layout")
}

fn as_slice_mut<F>(a: &mut Array2<F>) -> &mut [F] {
    a.as_slice_mut()
        .expect("buffers are allocated in standard layout")
}

impl<C: Cell, F: Float> Layer<F> for Recurrent<C, F> {
    fn name(&self) -> &'static str {
        self.cell.name()
    }

    fn input_size(&self) -> usize {
        self.input_size
    }

    fn output_size(&self) -> usize {
        self.hidden_size
    }

    fn output_steps(&self, input_steps: usize) -> usize {
        if self.return_sequences {
            input_steps
        } else {
            1
        }
    }

    fn forward(&mut self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let carried = if self.stateful {
            self.carried.take()
        } else {
            None
        };
        let all_steps = self.return_sequences;
        let (outputs, final_state) = match self.forward_steps(x, carried.as_ref(), all_steps) {
            Ok(result) => result,
            Err(e) => {
                self.carried = carried;
                return Err(e);
            }
        };
        if self.stateful {
            self.carried = Some(final_state.clone());
        }
        Ok(if self.return_sequences {
            outputs
        } else {
            final_state.h.insert_axis(Axis(1))
        })
    }

    fn predict(&self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        let carried = if self.stateful {
            self.carried.as_ref()
        } else {
            None
        };
        let (outputs, final_state) = self.predict_steps(x, carried, self.return_sequences)?;
        Ok(if self.return_sequences {
            outputs
        } else {
            final_state.h.insert_axis(Axis(1))
        })
    }

    fn backward(&mut self, d_out: ArrayView3<'_, F>) -> Result<Array3<F>> {
        if self.return_sequences {
            return Ok(self.backward_with_state(Some(d_out), None)?.0);
        }
        // Only the last step was returned: its gradient is the final state's.
        let (b, h) = match &self.cache {
            Some(cache) => (cache.batch, self.hidden_size),
            None => {
                return Err(Error::BackwardBeforeForward {
                    layer: self.cell.name().to_string(),
                });
            }
        };
        if d_out.shape() != [b, 1, h] {
            return Err(Error::shape(
                format!("{} output gradient", self.cell.name()),
                &[b, 1, h],
                d_out.shape(),
            ));
        }
        let d_final = RecurrentState {
            h: d_out.index_axis(Axis(1), 0).to_owned(),
            c: None,
        };
        Ok(self.backward_with_state(None, Some(&d_final))?.0)
    }

    fn set_stateful(&mut self, stateful: bool) {
        self.stateful = stateful;
        if !stateful {
            self.carried = None;
        }
    }

    fn reset_state(&mut self) {
        self.carried = None;
    }

    fn step(&mut self, x: ArrayView3<'_, F>) -> Result<Array3<F>> {
        check_step(self.cell.name(), &x, self.input_size)?;
        // One step from the carried state (zeros at the start); the new state replaces it, so
        // the memory held is one state whatever the stream's length.
        let (outputs, final_state) = self.predict_with_state(x, self.carried.as_ref())?;
        self.carried = Some(final_state);
        Ok(outputs)
    }

    fn hidden_gradient_norms(&self) -> Vec<Vec<F>> {
        vec![self.hidden_grad_norms.clone()]
    }

    fn visit_params(&self, visit: &mut dyn FnMut(ParamView<'_, F>)) {
        visit(self.weight_ih.view());
        visit(self.weight_hh.view());
        visit(self.bias_ih.view());
        visit(self.bias_hh.view());
    }

    fn visit_params_mut(&mut self, visit: &mut dyn FnMut(ParamMut<'_, F>)) {
        visit(self.weight_ih.view_mut());
        visit(self.weight_hh.view_mut());
        visit(self.bias_ih.view_mut());
        visit(self.bias_hh.view_mut());
    }
}
