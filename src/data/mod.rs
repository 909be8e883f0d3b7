//! The time-series pipeline: load a [`Series`] (slices or CSV), split it chronologically, fit
//! invertible [`Transform`]s on the training rows ([`Pipeline`]), and cut [`windows`].

mod series;
mod transform;
mod window;

pub use series::{CsvOptions, FillPolicy, Series, Split};
pub use transform::{Pipeline, Transform};
pub use window::{WindowSpec, Windows, input_window, windows};
