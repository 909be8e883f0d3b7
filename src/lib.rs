//! # recurrent
//!
//! Recurrent neural networks for time series, with backpropagation through time written by hand
//! and checked against two oracles: central finite differences in f64 and PyTorch's own numbers.
//!
//! Layers ([`Layer`]):
//! * [`Dense`]: `y = φ(x Wᵀ + b)`;
//! * [`SimpleRnn`] (Elman, [`SimpleRnnCell`]), [`Lstm`] ([`LstmCell`]) and [`Gru`] ([`GruCell`],
//!   reset-after and reset-before), all one [`Recurrent`] driver over a [`Cell`].
//!
//! Arrays are batch-first: `[batch, steps, features]`. Parameters are stored as PyTorch shapes
//! them, and import/export to PyTorch's and Keras's layouts lives in [`interop`].
//! Everything is generic over the element type ([`Float`]: `f32` by default, or `f64`).
//!
//! ```
//! use ndarray::Array3;
//! use rand::SeedableRng;
//! use rand_chacha::ChaCha8Rng;
//! use recurrent::{Activation, Dense, Gru, Layer};
//!
//! let mut rng = ChaCha8Rng::seed_from_u64(42);
//! // A GRU reading 24 steps of 1 feature, keeping its last state, then a linear head.
//! let gru = Gru::<f32>::new(1, 16, &mut rng)?.with_return_sequences(false);
//! let head = Dense::<f32>::new(16, 1, Activation::Identity, &mut rng)?;
//! let x = Array3::<f32>::zeros((8, 24, 1));
//! let y = head.predict(gru.predict(x.view())?.view())?;
//! assert_eq!(y.shape(), &[8, 1, 1]); // [batch, horizon, targets]
//! # Ok::<(), recurrent::Error>(())
//! ```

#![warn(missing_docs)]

mod activation;
pub mod data;
mod dense;
mod error;
mod float;
pub mod forecast;
pub mod init;
pub mod interop;
mod layer;
mod loss;
pub mod model;
pub mod optim;
mod param;
pub mod persist;
mod recurrent;
pub mod stream;
pub mod train;

pub use activation::Activation;
pub use dense::{Dense, DenseWeights};
pub use error::{Error, Result};
pub use float::Float;
pub use init::Init;
pub use layer::Layer;
pub use loss::{Huber, Loss, Mae, Mse, check_same_shape};
pub use model::{
    Bidirectional, Dropout, EncoderDecoder, Flatten, LayerSpec, Merge, Parallel, RecurrentKind,
    Repeat, Sequential, SequentialBuilder, Unflatten,
};
pub use optim::{
    Adam, AdamW, Clip, Optimizer, OptimizerState, Sgd, clip_grad_norm, clip_grad_value, grad_norm,
};
pub use param::{Param, ParamMut, ParamView};
pub use recurrent::{
    BackwardStep, Cell, ForwardStep, Gru, GruCell, Lstm, LstmCell, Recurrent, RecurrentKernel,
    RecurrentState, RecurrentWeights, SimpleRnn, SimpleRnnCell,
};
pub use train::{EarlyStopping, History, LrSchedule, OnDivergence, Trainer, Validation};

/// The README's code, compiled and run as a doc test so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
