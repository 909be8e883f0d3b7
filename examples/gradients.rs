//! RNNs and gradients: the adding problem (Hochreiter & Schmidhuber 1997) with 100 steps.
//!
//! Each step carries two numbers: a value drawn from U(0, 1) and a marker that is 1 at exactly
//! two steps (one in each half of the sequence) and 0 elsewhere. The target is the sum of the
//! two marked values. Always predicting 1 (the mean) gives an MSE of about 0.167; a model that
//! has learned the task is below 0.0167.
//!
//! A tanh SimpleRnn and an LSTM are trained with the same seeds, data and number of epochs. The
//! example prints, for each, how much of the loss's gradient reaches the hidden state at step t,
//! ‖∂L/∂h_t‖, before and after training (the SimpleRnn's profile vanishes towards t = 0: it
//! cannot see the early marker), and each model's test MSE against the threshold.
//!
//! `cargo run --release --example gradients`

use ndarray::{Array3, s};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recurrent::optim::Clip;
use recurrent::train::{hidden_gradient_profile, progress_printer};
use recurrent::{Adam, Layer, Loss, Mse, RecurrentKind, Sequential, Trainer};

const STEPS: usize = 100;
const THRESHOLD: f64 = 0.0167;

/// `n` adding-problem samples: x [n, 100, 2], y [n, 1, 1].
fn adding_problem(n: usize, rng: &mut ChaCha8Rng) -> (Array3<f32>, Array3<f32>) {
    let mut x = Array3::zeros((n, STEPS, 2));
    let mut y = Array3::zeros((n, 1, 1));
    for i in 0..n {
        for t in 0..STEPS {
            x[[i, t, 0]] = rng.random::<f32>();
        }
        let first = rng.random_range(0..STEPS / 2);
        let second = rng.random_range(STEPS / 2..STEPS);
        x[[i, first, 1]] = 1.0;
        x[[i, second, 1]] = 1.0;
        y[[i, 0, 0]] = x[[i, first, 0]] + x[[i, second, 0]];
    }
    (x, y)
}

fn profile_line(norms: &[f32]) -> String {
    (0..STEPS)
        .step_by(11)
        .map(|t| format!("t={t}:{:.1e}", norms[t]))
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() -> Result<(), recurrent::Error> {
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let (x_train, y_train) = adding_problem(4000, &mut rng);
    let (x_test, y_test) = adding_problem(500, &mut rng);
    let baseline = Mse.loss(Array3::ones(y_test.raw_dim()).view(), y_test.view())?;
    println!(
        "adding problem, {STEPS} steps: always predicting 1 gives MSE {baseline:.4}; solved below {THRESHOLD}"
    );

    let mut summary = Vec::new();
    for (name, kind) in [
        ("simple_rnn", RecurrentKind::RnnTanh),
        ("lstm", RecurrentKind::Lstm),
    ] {
        let mut model = Sequential::<f32>::many_to_one(kind, 2, 32, 1).build(1)?;
        let probe = (
            x_test.slice(s![..64, .., ..]),
            y_test.slice(s![..64, .., ..]),
        );
        let before = hidden_gradient_profile(&mut model, &Mse, probe.0, probe.1)?;
        println!(
            "\n{name}: ‖∂L/∂h_t‖ before training  {}",
            profile_line(&before[0])
        );

        let mut trainer = Trainer::new(Mse, Adam::new(0.005)?)
            .epochs(12)
            .batch_size(32)
            .seed(3)
            .clip(Clip::Norm(1.0))
            .callback(progress_printer(4));
        let history = trainer.fit(&mut model, x_train.view(), y_train.view())?;

        let after = hidden_gradient_profile(&mut model, &Mse, probe.0, probe.1)?;
        println!(
            "{name}: ‖∂L/∂h_t‖ after training   {}",
            profile_line(&after[0])
        );
        let ratio = after[0][0] / after[0][STEPS - 1];
        let mse = f64::from(Mse.loss(model.predict(x_test.view())?.view(), y_test.view())?);
        let max_norm = history.step_grad_norms.iter().cloned().fold(0.0, f64::max);
        println!(
            "{name}: test MSE {mse:.5} ({} the threshold {THRESHOLD}); ‖∂L/∂h_0‖ / ‖∂L/∂h_99‖ = {ratio:.2e}; largest pre-clip gradient norm {max_norm:.3}",
            if mse < THRESHOLD { "below" } else { "above" },
        );
        summary.push(format!(
            "gradients: model={name} MSE {mse:.5} Threshold {THRESHOLD} GradRatio {ratio:.3e}"
        ));
    }
    println!();
    println!("gradients: model=predict_one MSE {baseline:.5}");
    for line in summary {
        println!("{line}");
    }
    Ok(())
}
