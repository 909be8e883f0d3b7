//! Models: [`Sequential`] stacks, and the layers that combine RNNs or reshape activations.

mod combine;
mod sequential;
mod shape_layers;

pub use combine::{Bidirectional, EncoderDecoder, Merge, Parallel};
pub use sequential::{LayerSpec, RecurrentKind, Sequential, SequentialBuilder};
pub use shape_layers::{Dropout, Flatten, Repeat, Unflatten};
