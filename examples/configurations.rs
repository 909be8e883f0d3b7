//! Every RNN configuration, trained end to end on a small synthetic task.
//!
//! `cargo run --release --example configurations` builds each configuration from its builder
//! preset, trains it with Adam on seeded data and prints its loss before and after training.
//!
//! | configuration | input | output | task |
//! | --- | --- | --- | --- |
//! | many-to-one | `[B, 20, 1]` | `[B, 1, 1]` | next value of a noisy sine |
//! | many-to-many, aligned | `[B, 20, 1]` | `[B, 20, 1]` | running mean of the inputs so far |
//! | one-to-many | `[B, 1, 2]` | `[B, 10, 1]` | a sine of the given amplitude and phase |
//! | encoder–decoder | `[B, 20, 1]` | `[B, 5, 1]` | the next 5 values of a sine |
//! | direct multi-step | `[B, 20, 1]` | `[B, 5, 1]` | the next 5 values of a sine |
//! | bidirectional | `[B, 20, 1]` | `[B, 20, 1]` | x_{t−1} + x_{t+1} (needs the future) |
//! | parallel branches | `[B, 20, 1]` | `[B, 1, 1]` | next value: a GRU beside a dense layer on the flattened window |
//! | stack of 3 cells | `[B, 20, 1]` | `[B, 1, 1]` | next value: LSTM → GRU → RNN with dropout |

use ndarray::Array3;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recurrent::{
    Adam, Layer, Loss, Merge, Mse, RecurrentKind, Sequential, SequentialBuilder, Trainer,
};

const STEPS: usize = 20;
const SAMPLES: usize = 512;

/// Sine windows with random frequency and phase: inputs `[N, 20, 1]` and the next `horizon` values.
fn sine_windows(rng: &mut ChaCha8Rng, horizon: usize) -> (Array3<f32>, Array3<f32>) {
    let mut x = Array3::zeros((SAMPLES, STEPS, 1));
    let mut y = Array3::zeros((SAMPLES, horizon, 1));
    for i in 0..SAMPLES {
        let freq = rng.random_range(0.15..0.35f32);
        let phase = rng.random_range(0.0..std::f32::consts::TAU);
        for t in 0..STEPS + horizon {
            let v = (freq * t as f32 + phase).sin() + 0.05 * (rng.random::<f32>() - 0.5);
            if t < STEPS {
                x[[i, t, 0]] = v;
            } else {
                y[[i, t - STEPS, 0]] = v;
            }
        }
    }
    (x, y)
}

fn train(
    name: &str,
    builder: SequentialBuilder<f32>,
    x: &Array3<f32>,
    y: &Array3<f32>,
    epochs: usize,
) -> Result<String, recurrent::Error> {
    let mut model = builder.build_for_steps(11, Some(x.shape()[1]))?;
    let initial = Mse.loss(model.predict(x.view())?.view(), y.view())?;
    let mut trainer = Trainer::new(Mse, Adam::new(0.01)?)
        .epochs(epochs)
        .batch_size(32)
        .seed(5);
    let history = trainer.fit(&mut model, x.view(), y.view())?;
    let last = Mse.loss(model.predict(x.view())?.view(), y.view())?;
    println!(
        "{name:<22} params {:>6}  MSE {initial:.5} → {last:.5}  ({} epochs, last epoch's mean batch loss {:.5})",
        model.param_count(),
        history.epochs.len(),
        history.final_train_loss().unwrap_or(f64::NAN)
    );
    Ok(format!(
        "configurations: model={name} MSE {last:.6} Initial {initial:.6}"
    ))
}

fn main() -> Result<(), recurrent::Error> {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let mut lines = Vec::new();

    let (x, y) = sine_windows(&mut rng, 1);
    lines.push(train(
        "many_to_one",
        Sequential::many_to_one(RecurrentKind::Lstm, 1, 16, 1),
        &x,
        &y,
        20,
    )?);

    // Aligned: the running mean of the inputs seen so far.
    let mut running = Array3::zeros(x.raw_dim());
    for i in 0..SAMPLES {
        let mut sum = 0.0;
        for t in 0..STEPS {
            sum += x[[i, t, 0]];
            running[[i, t, 0]] = sum / (t + 1) as f32;
        }
    }
    lines.push(train(
        "many_to_many",
        Sequential::many_to_many(RecurrentKind::Gru, 1, 16, 1),
        &x,
        &running,
        20,
    )?);

    // One-to-many: [amplitude, phase] → 10 steps of amplitude · sin(0.6 t + phase).
    let mut x1 = Array3::zeros((SAMPLES, 1, 2));
    let mut y1 = Array3::zeros((SAMPLES, 10, 1));
    for i in 0..SAMPLES {
        let (a, p) = (rng.random_range(0.2..1.0f32), rng.random_range(0.0..3.0f32));
        x1[[i, 0, 0]] = a;
        x1[[i, 0, 1]] = p;
        for t in 0..10 {
            y1[[i, t, 0]] = a * (0.6 * t as f32 + p).sin();
        }
    }
    lines.push(train(
        "one_to_many",
        Sequential::one_to_many(RecurrentKind::Lstm, 2, 32, 10, 1),
        &x1,
        &y1,
        40,
    )?);

    let (x5, y5) = sine_windows(&mut rng, 5);
    lines.push(train(
        "encoder_decoder",
        Sequential::encoder_decoder(RecurrentKind::Gru, 1, 16, 5, 1),
        &x5,
        &y5,
        20,
    )?);
    lines.push(train(
        "direct_multi_step",
        Sequential::direct_multi_step(RecurrentKind::Lstm, 1, 16, 5, 1),
        &x5,
        &y5,
        20,
    )?);

    // Bidirectional: x_{t−1} + x_{t+1} (zero beyond the ends) needs both directions.
    let mut around = Array3::zeros(x.raw_dim());
    for i in 0..SAMPLES {
        for t in 0..STEPS {
            let before = if t > 0 { x[[i, t - 1, 0]] } else { 0.0 };
            let after = if t + 1 < STEPS { x[[i, t + 1, 0]] } else { 0.0 };
            around[[i, t, 0]] = before + after;
        }
    }
    let bidirectional = Sequential::builder(1)
        .bidirectional(RecurrentKind::Gru, 12, Merge::Concat)
        .return_sequences(true)
        .dense(1);
    lines.push(train("bidirectional", bidirectional, &x, &around, 30)?);

    let parallel = Sequential::builder(1)
        .parallel(vec![
            SequentialBuilder::branch().gru(12),
            SequentialBuilder::branch()
                .flatten()
                .dense_with(8, recurrent::Activation::Tanh),
        ])
        .dense(1);
    lines.push(train("parallel", parallel, &x, &y, 20)?);

    let stack = Sequential::builder(1)
        .lstm(16)
        .dropout(0.1)
        .recurrent(RecurrentKind::GruResetBefore, 12)
        .rnn(8)
        .dense(1);
    lines.push(train("stack_of_3", stack, &x, &y, 20)?);

    println!();
    for line in lines {
        println!("{line}");
    }
    Ok(())
}
