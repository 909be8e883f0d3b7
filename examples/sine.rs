//! Quick start: an LSTM learns to continue a noisy sine wave, one step ahead.
//!
//! `cargo run --release --example sine` finishes in a few seconds. It makes 1 000 points of
//! sin(2π t / 50) plus noise, cuts them into windows of 24 steps whose target is the next value,
//! trains on the first 80 % of windows and reports the test part's errors against the naive
//! forecast (next = last).

use ndarray::{Array3, Axis, s};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recurrent::train::progress_printer;
use recurrent::{Adam, Layer, Mse, Sequential, Trainer, Validation};

fn main() -> Result<(), recurrent::Error> {
    let lookback = 24;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let series: Vec<f32> = (0..1000)
        .map(|t| {
            (2.0 * std::f32::consts::PI * t as f32 / 50.0).sin() + 0.1 * (rng.random::<f32>() - 0.5)
        })
        .collect();

    // Windows: x [N, 24, 1] → y [N, 1, 1] (the value right after the window).
    let n = series.len() - lookback;
    let x = Array3::from_shape_fn((n, lookback, 1), |(i, t, _)| series[i + t]);
    let y = Array3::from_shape_fn((n, 1, 1), |(i, _, _)| series[i + lookback]);
    let split = n * 8 / 10;
    let (x_train, y_train) = (x.slice(s![..split, .., ..]), y.slice(s![..split, .., ..]));
    let (x_test, y_test) = (x.slice(s![split.., .., ..]), y.slice(s![split.., .., ..]));

    let mut model = Sequential::<f32>::builder(1).lstm(16).dense(1).build(0)?;
    println!("{}", model.summary());
    let mut trainer = Trainer::new(Mse, Adam::new(0.01)?)
        .epochs(15)
        .batch_size(32)
        .validation(Validation::LastFraction(0.1))
        .callback(progress_printer(5));
    trainer.fit(&mut model, x_train, y_train)?;

    let prediction = model.predict(x_test)?;
    let mse = mean_squared(prediction.iter().zip(y_test.iter()).map(|(p, y)| p - y));
    let last = x_test.index_axis(Axis(1), lookback - 1);
    let naive = mean_squared(last.iter().zip(y_test.iter()).map(|(p, y)| p - y));
    println!("sine: model=lstm16 MSE {mse:.6} RMSE {:.6}", mse.sqrt());
    println!("sine: model=naive MSE {naive:.6} RMSE {:.6}", naive.sqrt());
    Ok(())
}

fn mean_squared(errors: impl Iterator<Item = f32>) -> f32 {
    let (sum, count) = errors.fold((0.0, 0), |(s, c), e| (s + e * e, c + 1));
    sum / count as f32
}
