//! Training end to end: every model configuration learns a small seeded synthetic task, `fit`
//! is deterministic, user-defined layers/losses/optimizers plug in, and every `Trainer` setting
//! (validation split, early stopping, callbacks, schedules, clipping, truncated BPTT) does what
//! it says, checked against hand computations where there is one.
//!
//! The loss-falls tests print `initial → final` losses (`cargo test --release --test training
//! -- --nocapture` shows them).

use std::f64::consts::PI;
use std::sync::{Arc, Mutex};

use ndarray::{Array3, ArrayView3, Axis, Ix1, s};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recurrent::train::{Control, EpochReport, Trainer, hidden_gradient_profile, restore, snapshot};
use recurrent::{
    Activation, Adam, Clip, Dense, DenseWeights, EarlyStopping, Error, Float, Layer, LayerSpec,
    Loss, LrSchedule, Lstm, Merge, Mse, Optimizer, Param, ParamMut, ParamView, RecurrentKind,
    RecurrentState, RecurrentWeights, Result, Sequential, SequentialBuilder, Sgd, SimpleRnn,
    SimpleRnnCell, Validation, check_same_shape, grad_norm,
};

// ---------------------------------------------------------------------------------------------
// Data and helpers.

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn cast<F: Float>(a: &Array3<f64>) -> Array3<F> {
    a.mapv(F::from_f64)
}

/// `n` windows of a sine with random phase and amplitude in [0.5, 1]: inputs `[n, steps, 1]`
/// with uniform noise of ± `noise`, and the next `horizon` noise-free values `[n, horizon, 1]`.
fn sine_windows(
    n: usize,
    steps: usize,
    horizon: usize,
    noise: f64,
    seed: u64,
) -> (Array3<f64>, Array3<f64>) {
    let mut r = rng(seed);
    let omega = 0.5;
    let mut x = Array3::zeros((n, steps, 1));
    let mut y = Array3::zeros((n, horizon, 1));
    for k in 0..n {
        let phase = r.random_range(0.0..2.0 * PI);
        let amplitude = r.random_range(0.5..1.0);
        for t in 0..steps {
            x[[k, t, 0]] =
                amplitude * (omega * t as f64 + phase).sin() + noise * r.random_range(-1.0..1.0);
        }
        for j in 0..horizon {
            y[[k, j, 0]] = amplitude * (omega * (steps + j) as f64 + phase).sin();
        }
    }
    (x, y)
}

/// Uniform noise in [−1, 1], `[n, steps, 1]`.
fn uniform_sequences(n: usize, steps: usize, seed: u64) -> Array3<f64> {
    let mut r = rng(seed);
    Array3::from_shape_simple_fn((n, steps, 1), || r.random_range(-1.0..1.0))
}

/// y_t = x_{t−1} (y_0 = 0): a lagged copy, aligned.
fn lagged_copy(x: &Array3<f64>) -> Array3<f64> {
    let mut y = Array3::zeros(x.raw_dim());
    let steps = x.shape()[1];
    y.slice_mut(s![.., 1.., ..])
        .assign(&x.slice(s![.., ..steps - 1, ..]));
    y
}

/// J of `model`'s predictions on `x` against `y`, as f64.
fn loss_of<F: Float>(
    model: &dyn Layer<F>,
    loss: &dyn Loss<F>,
    x: ArrayView3<'_, F>,
    y: ArrayView3<'_, F>,
) -> f64 {
    let prediction = model.predict(x).expect("predict");
    loss.loss(prediction.view(), y).expect("loss").to_f64()
}

/// Trains `model` with Adam(lr) and MSE and asserts the final loss (predict on the training
/// data) is below `factor` × the initial one. Returns (initial, final).
#[allow(clippy::too_many_arguments)]
fn train_and_check<F: Float>(
    what: &str,
    model: &mut Sequential<F>,
    x: &Array3<F>,
    y: &Array3<F>,
    lr: f64,
    epochs: usize,
    batch_size: usize,
    factor: f64,
) -> (f64, f64) {
    let initial = loss_of(model, &Mse, x.view(), y.view());
    let mut trainer = Trainer::new(Mse, Adam::new(lr).unwrap())
        .epochs(epochs)
        .batch_size(batch_size)
        .seed(3);
    let history = trainer.fit(model, x.view(), y.view()).expect("fit");
    let final_loss = loss_of(model, &Mse, x.view(), y.view());
    println!(
        "{what}: MSE {initial:.5} → {final_loss:.5} (×{:.3}); history train loss {:.5} → {:.5}",
        final_loss / initial,
        history.epochs[0].train_loss,
        history.final_train_loss().unwrap()
    );
    assert_eq!(history.epochs.len(), epochs);
    assert!(
        final_loss < factor * initial,
        "{what}: final loss {final_loss} is not below {factor} × initial {initial}"
    );
    assert!(history.final_train_loss().unwrap() < history.epochs[0].train_loss);
    (initial, final_loss)
}

fn expect_config<T: std::fmt::Debug>(what: &str, r: Result<T>) {
    match r {
        Err(Error::InvalidConfig { .. }) => {}
        other => panic!("{what}: expected InvalidConfig, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Every configuration learns.

#[test]
fn many_to_one_gru_reset_before_learns_the_next_value_of_noisy_sine_windows() {
    let (x, y) = sine_windows(96, 10, 1, 0.05, 1);
    let mut model = Sequential::<f64>::many_to_one(RecurrentKind::GruResetBefore, 1, 12, 1)
        .build(11)
        .unwrap();
    assert_eq!(model.predict(x.view()).unwrap().shape(), &[96, 1, 1]);
    train_and_check(
        "many-to-one (gru reset-before)",
        &mut model,
        &x,
        &y,
        0.02,
        60,
        16,
        0.2,
    );
}

#[test]
fn many_to_many_aligned_rnn_tanh_learns_a_lagged_copy_at_every_step() {
    let x = uniform_sequences(96, 10, 2);
    let y = lagged_copy(&x);
    let mut model = Sequential::<f64>::many_to_many(RecurrentKind::RnnTanh, 1, 12, 1)
        .build(12)
        .unwrap();
    assert_eq!(model.predict(x.view()).unwrap().shape(), &[96, 10, 1]);
    train_and_check(
        "many-to-many (rnn tanh)",
        &mut model,
        &x,
        &y,
        0.02,
        80,
        16,
        0.2,
    );
}

#[test]
fn one_to_many_lstm_unrolls_a_sine_from_its_amplitude_and_phase() {
    let (n, steps) = (96, 8);
    let mut r = rng(3);
    let mut x = Array3::zeros((n, 1, 2));
    let mut y = Array3::zeros((n, steps, 1));
    for k in 0..n {
        let amplitude = r.random_range(0.5..1.5);
        let phase = r.random_range(0.0..PI);
        x[[k, 0, 0]] = amplitude;
        x[[k, 0, 1]] = phase;
        for t in 0..steps {
            y[[k, t, 0]] = amplitude * (0.6 * t as f64 + phase).sin();
        }
    }
    let mut model = Sequential::<f64>::one_to_many(RecurrentKind::Lstm, 2, 16, steps, 1)
        .build(13)
        .unwrap();
    assert_eq!(model.predict(x.view()).unwrap().shape(), &[n, steps, 1]);
    train_and_check("one-to-many (lstm)", &mut model, &x, &y, 0.02, 80, 16, 0.05);
}

#[test]
fn encoder_decoder_gru_predicts_the_next_four_values_of_a_sine_window() {
    let (x, y) = sine_windows(96, 12, 4, 0.05, 4);
    let mut model = Sequential::<f64>::encoder_decoder(RecurrentKind::Gru, 1, 12, 4, 1)
        .build(14)
        .unwrap();
    assert_eq!(model.predict(x.view()).unwrap().shape(), &[96, 4, 1]);
    train_and_check(
        "encoder-decoder (gru)",
        &mut model,
        &x,
        &y,
        0.02,
        60,
        16,
        0.2,
    );
}

#[test]
fn direct_multi_step_lstm_predicts_three_values_at_once() {
    let (x, y) = sine_windows(96, 12, 3, 0.05, 5);
    let mut model = Sequential::<f64>::direct_multi_step(RecurrentKind::Lstm, 1, 12, 3, 1)
        .build(15)
        .unwrap();
    assert_eq!(model.predict(x.view()).unwrap().shape(), &[96, 3, 1]);
    train_and_check(
        "direct multi-step (lstm)",
        &mut model,
        &x,
        &y,
        0.02,
        60,
        16,
        0.2,
    );
}

#[test]
fn bidirectional_gru_learns_a_target_that_needs_the_past_and_the_future() {
    // y_t = x_{t−1} + x_{t+1} (zero outside the window): no causal model can do this.
    let x = uniform_sequences(96, 10, 6);
    let mut y = Array3::zeros(x.raw_dim());
    for t in 0..10 {
        if t > 0 {
            let prev = x.slice(s![.., t - 1, ..]).to_owned();
            y.slice_mut(s![.., t, ..]).scaled_add(1.0, &prev);
        }
        if t + 1 < 10 {
            let next = x.slice(s![.., t + 1, ..]).to_owned();
            y.slice_mut(s![.., t, ..]).scaled_add(1.0, &next);
        }
    }
    let mut model = Sequential::<f64>::builder(1)
        .bidirectional(RecurrentKind::Gru, 8, Merge::Concat)
        .return_sequences(true)
        .dense(1)
        .build(16)
        .unwrap();
    assert_eq!(model.predict(x.view()).unwrap().shape(), &[96, 10, 1]);
    train_and_check(
        "bidirectional (gru, concat)",
        &mut model,
        &x,
        &y,
        0.02,
        80,
        16,
        0.2,
    );
}

#[test]
fn parallel_gru_and_flatten_dense_branches_learn_the_next_sine_value() {
    let steps = 10;
    let (x, y) = sine_windows(96, steps, 1, 0.05, 7);
    let mut model = Sequential::<f64>::builder(1)
        .parallel(vec![
            SequentialBuilder::branch().gru(8),
            SequentialBuilder::branch().flatten().dense(4),
        ])
        .dense(1)
        .build_for_steps(17, Some(steps))
        .unwrap();
    assert!(matches!(model.specs()[0], LayerSpec::Parallel { .. }));
    assert_eq!(model.layers()[0].output_size(), 12);
    assert_eq!(model.predict(x.view()).unwrap().shape(), &[96, 1, 1]);
    train_and_check(
        "parallel (gru ‖ flatten+dense)",
        &mut model,
        &x,
        &y,
        0.02,
        60,
        16,
        0.2,
    );
}

#[test]
fn a_three_layer_lstm_gru_rnn_stack_with_dropout_learns_in_f32() {
    let (x, y) = sine_windows(96, 10, 1, 0.05, 8);
    let (x, y) = (cast::<f32>(&x), cast::<f32>(&y));
    let mut model = Sequential::<f32>::builder(1)
        .lstm(12)
        .dropout(0.1)
        .gru(12)
        .rnn(12)
        .dense(1)
        .build(18)
        .unwrap();
    let kinds: Vec<_> = model.layers().iter().map(|l| l.name()).collect();
    assert_eq!(kinds, ["lstm", "dropout", "gru", "simple_rnn", "dense"]);
    assert!(matches!(
        model.specs()[2],
        LayerSpec::Recurrent {
            kind: RecurrentKind::Gru,
            return_sequences: true,
            ..
        }
    ));
    train_and_check(
        "stack lstm→dropout→gru→rnn→dense (f32)",
        &mut model,
        &x,
        &y,
        0.01,
        60,
        16,
        0.2,
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Determinism.

fn fit_with_seeds(build_seed: u64, shuffle_seed: u64) -> Vec<Vec<f64>> {
    let (x, y) = sine_windows(48, 8, 1, 0.05, 21);
    let mut model = Sequential::<f64>::builder(1)
        .lstm(6)
        .dropout(0.2)
        .gru(6)
        .dense(1)
        .build(build_seed)
        .unwrap();
    let mut trainer = Trainer::new(Mse, Adam::new(0.01).unwrap())
        .epochs(4)
        .batch_size(8)
        .seed(shuffle_seed)
        .validation(Validation::LastFraction(0.25));
    trainer.fit(&mut model, x.view(), y.view()).unwrap();
    snapshot(&model)
}

#[test]
fn the_same_seeds_and_data_give_bit_identical_weights_after_fit() {
    let a = fit_with_seeds(5, 9);
    let b = fit_with_seeds(5, 9);
    assert_eq!(a, b);
    // Bit for bit, not merely ==.
    let bits = |w: &[Vec<f64>]| -> Vec<u64> { w.iter().flatten().map(|v| v.to_bits()).collect() };
    assert_eq!(bits(&a), bits(&b));
}

#[test]
fn a_different_shuffle_seed_or_build_seed_gives_different_weights() {
    let base = fit_with_seeds(5, 9);
    assert_ne!(base, fit_with_seeds(5, 10), "shuffle seed had no effect");
    assert_ne!(base, fit_with_seeds(6, 9), "build seed had no effect");
    // Without shuffling the shuffle seed is irrelevant.
    let (x, y) = sine_windows(32, 6, 1, 0.0, 22);
    let run = |seed: u64| {
        let mut model = Sequential::<f64>::many_to_one(RecurrentKind::Gru, 1, 4, 1)
            .build(1)
            .unwrap();
        Trainer::new(Mse, Adam::new(0.01).unwrap())
            .epochs(2)
            .batch_size(8)
            .shuffle(false)
            .seed(seed)
            .fit(&mut model, x.view(), y.view())
            .unwrap();
        snapshot(&model)
    };
    assert_eq!(run(1), run(2));
}

// ---------------------------------------------------------------------------------------------
// 3. User-defined layer, loss and optimizer.

/// y = s·x with one trainable scalar s.
#[derive(Debug)]
struct Scale {
    features: usize,
    s: Param<f64, Ix1>,
    x: Option<Array3<f64>>,
}

impl Scale {
    fn new(features: usize, s: f64) -> Self {
        Scale {
            features,
            s: Param::new("s", ndarray::arr1(&[s])),
            x: None,
        }
    }
    fn value(&self) -> f64 {
        self.s.value()[0]
    }
}

impl Layer<f64> for Scale {
    fn name(&self) -> &'static str {
        "scale"
    }
    fn input_size(&self) -> usize {
        self.features
    }
    fn output_size(&self) -> usize {
        self.features
    }
    fn forward(&mut self, x: ArrayView3<'_, f64>) -> Result<Array3<f64>> {
        self.x = Some(x.to_owned());
        self.predict(x)
    }
    fn predict(&self, x: ArrayView3<'_, f64>) -> Result<Array3<f64>> {
        Ok(&x * self.value())
    }
    fn backward(&mut self, d_out: ArrayView3<'_, f64>) -> Result<Array3<f64>> {
        let x = self.x.take().ok_or_else(|| Error::BackwardBeforeForward {
            layer: "scale".into(),
        })?;
        // ∂L/∂s = Σ ∂L/∂y ⊙ x;  ∂L/∂x = s ∂L/∂y
        let d_s: f64 = (&d_out * &x).sum();
        self.s.view_mut().grad[0] += d_s;
        Ok(&d_out * self.value())
    }
    fn visit_params(&self, visit: &mut dyn FnMut(ParamView<'_, f64>)) {
        visit(self.s.view());
    }
    fn visit_params_mut(&mut self, visit: &mut dyn FnMut(ParamMut<'_, f64>)) {
        visit(self.s.view_mut());
    }
}

/// log-cosh: J = 1/N Σ ln cosh(ŷ − y), ∂J/∂ŷ = tanh(ŷ − y) / N.
#[derive(Debug)]
struct LogCosh;

impl Loss<f64> for LogCosh {
    fn name(&self) -> &'static str {
        "log_cosh"
    }
    fn loss(&self, prediction: ArrayView3<'_, f64>, target: ArrayView3<'_, f64>) -> Result<f64> {
        Ok(self.loss_and_gradient(prediction, target)?.0)
    }
    fn loss_and_gradient(
        &self,
        prediction: ArrayView3<'_, f64>,
        target: ArrayView3<'_, f64>,
    ) -> Result<(f64, Array3<f64>)> {
        let n = check_same_shape("log_cosh", &prediction, &target)? as f64;
        let e = &prediction - &target;
        let loss = e.mapv(|v| v.cosh().ln()).sum() / n;
        Ok((loss, e.mapv(|v| v.tanh() / n)))
    }
}

/// Sign-SGD: p ← p − lr · sign(g); records every learning rate it steps with.
#[derive(Debug)]
struct SignSgd {
    lr: f64,
    steps: usize,
}

impl Optimizer<f64> for SignSgd {
    fn name(&self) -> &'static str {
        "sign_sgd"
    }
    fn learning_rate(&self) -> f64 {
        self.lr
    }
    fn set_learning_rate(&mut self, lr: f64) -> Result<()> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(Error::InvalidConfig {
                what: "sign_sgd learning rate".into(),
                reason: format!("{lr}"),
            });
        }
        self.lr = lr;
        Ok(())
    }
    fn step(&mut self, model: &mut dyn Layer<f64>) -> Result<()> {
        let lr = self.lr;
        model.visit_params_mut(&mut |p| {
            for (v, g) in p.value.iter_mut().zip(p.grad.iter()) {
                if *g > 0.0 {
                    *v -= lr;
                } else if *g < 0.0 {
                    *v += lr;
                }
            }
        });
        self.steps += 1;
        Ok(())
    }
}

#[test]
fn a_user_defined_layer_loss_and_optimizer_train_through_the_public_traits() {
    // The Scale layer's own gradient is right (central differences on J = Σ y·w).
    let mut scale = Scale::new(2, 0.7);
    let x = uniform_sequences(3, 4, 31)
        .into_shape_with_order((3, 2, 2))
        .unwrap();
    let w = uniform_sequences(3, 4, 32)
        .into_shape_with_order((3, 2, 2))
        .unwrap();
    scale.forward(x.view()).unwrap();
    let d_x = scale.backward(w.view()).unwrap();
    let j = |s: f64| (&x * s * &w).sum();
    let numeric = (j(0.7 + 1e-6) - j(0.7 - 1e-6)) / 2e-6;
    assert!((scale.s.grad()[0] - numeric).abs() < 1e-8);
    assert_eq!(d_x, &w * 0.7);
    assert!(matches!(
        scale.backward(w.view()),
        Err(Error::BackwardBeforeForward { .. })
    ));

    // Targets of amplitude 2–4: the Scale head has room to grow.
    let (x, y) = sine_windows(64, 8, 1, 0.02, 33);
    let y = y * 3.0;
    let mut model = Sequential::<f64>::builder(1)
        .gru(8)
        .dense(1)
        .layer(Box::new(Scale::new(1, 0.5)))
        .build(34)
        .unwrap();
    assert_eq!(
        model.specs().last(),
        Some(&LayerSpec::Custom {
            name: "scale".into()
        })
    );
    let params_of_scale = |m: &Sequential<f64>| {
        let mut v = Vec::new();
        m.layers()[2].visit_params(&mut |p| v.extend_from_slice(p.value));
        v
    };
    assert_eq!(params_of_scale(&model), vec![0.5]);
    let initial = loss_of(&model, &LogCosh, x.view(), y.view());
    let mut trainer = Trainer::new(LogCosh, SignSgd { lr: 0.01, steps: 0 })
        .epochs(60)
        .batch_size(16)
        .schedule(LrSchedule::Step {
            step_size: 20,
            gamma: 0.5,
        });
    assert_eq!(trainer.loss().name(), "log_cosh");
    assert_eq!(trainer.optimizer().name(), "sign_sgd");
    let history = trainer.fit(&mut model, x.view(), y.view()).unwrap();
    let final_loss = loss_of(&model, &LogCosh, x.view(), y.view());
    println!(
        "custom (scale layer, log-cosh, sign-SGD): log-cosh {initial:.5} → {final_loss:.5} (×{:.3})",
        final_loss / initial
    );
    assert!(
        final_loss < 0.2 * initial,
        "{initial} → {final_loss} ({:?})",
        history.epochs.last()
    );
    // The custom layer's parameter was trained, and every optimizer step went through SignSgd
    // (4 batches × 60 epochs); the schedule reached it through set_learning_rate.
    assert!(params_of_scale(&model)[0] > 0.5 + 0.05);
    assert_eq!(history.step_grad_norms.len(), 60 * 4);
    assert_eq!(history.epochs[59].learning_rate, 0.01 * 0.25);
    assert_eq!(trainer.optimizer().learning_rate(), 0.01);
}

// ---------------------------------------------------------------------------------------------
// 6. fit: validation, early stopping, callbacks, schedules, clipping, bookkeeping, bad settings.

fn small_model(seed: u64) -> Sequential<f64> {
    Sequential::<f64>::many_to_one(RecurrentKind::Gru, 1, 6, 1)
        .build(seed)
        .unwrap()
}

#[test]
fn validation_last_fraction_holds_out_the_last_samples_and_never_trains_on_them() {
    let (x, y) = sine_windows(40, 8, 1, 0.05, 41);
    // The last quarter (10 samples) gets absurd targets.
    let mut absurd = y.clone();
    absurd.slice_mut(s![30.., .., ..]).fill(1e3);
    let trainer = || {
        Trainer::new(Mse, Adam::new(0.01).unwrap())
            .epochs(3)
            .batch_size(8)
            .seed(4)
    };

    let mut a = small_model(1);
    let ha = trainer()
        .validation(Validation::LastFraction(0.25))
        .fit(&mut a, x.view(), absurd.view())
        .unwrap();
    // The same split given explicitly: bit-identical history and weights.
    let mut b = small_model(1);
    let hb = trainer()
        .fit_with_validation(
            &mut b,
            x.slice(s![..30, .., ..]),
            absurd.slice(s![..30, .., ..]),
            x.slice(s![30.., .., ..]),
            absurd.slice(s![30.., .., ..]),
        )
        .unwrap();
    assert_eq!(ha, hb);
    assert_eq!(snapshot(&a), snapshot(&b));

    // Sane targets in the held-out part: training is unaffected, only the val loss changes.
    let mut c = small_model(1);
    let hc = trainer()
        .validation(Validation::LastFraction(0.25))
        .fit(&mut c, x.view(), y.view())
        .unwrap();
    assert_eq!(snapshot(&a), snapshot(&c));
    for (ea, ec) in ha.epochs.iter().zip(&hc.epochs) {
        assert_eq!(ea.train_loss, ec.train_loss);
        assert_eq!(ea.grad_norm, ec.grad_norm);
        let (va, vc) = (ea.val_loss.unwrap(), ec.val_loss.unwrap());
        assert!(va > 1e5 && vc < 1.0, "val losses {va} and {vc}");
    }
    // 30 training samples in batches of 8: 4 steps per epoch.
    assert_eq!(ha.step_grad_norms.len(), 3 * 4);
    // The val loss recorded is the loss of the model's predictions on the held-out samples.
    assert_eq!(
        hc.final_val_loss().unwrap(),
        loss_of(
            &c,
            &Mse,
            x.slice(s![30.., .., ..]),
            y.slice(s![30.., .., ..])
        )
    );
    // Without validation, there is no val loss.
    let mut d = small_model(1);
    let hd = trainer().fit(&mut d, x.view(), y.view()).unwrap();
    assert!(hd.epochs.iter().all(|e| e.val_loss.is_none()));
}

/// Data whose validation loss rises as training fits the training data: the validation
/// targets are the negated training task.
fn diverging_validation() -> (Array3<f64>, Array3<f64>, Array3<f64>, Array3<f64>) {
    let (x, y) = sine_windows(48, 8, 1, 0.0, 42);
    let (xv, yv) = sine_windows(16, 8, 1, 0.0, 43);
    (x, y, xv, -yv)
}

#[test]
fn early_stopping_stops_after_patience_and_restores_the_best_epochs_weights() {
    let (x, y, xv, yv) = diverging_validation();
    let patience = 3;
    let mut model = small_model(2);
    let history = Trainer::new(Mse, Adam::new(0.02).unwrap())
        .epochs(100)
        .batch_size(16)
        .early_stopping(EarlyStopping::new(patience))
        .fit_with_validation(&mut model, x.view(), y.view(), xv.view(), yv.view())
        .unwrap();
    let vals: Vec<f64> = history.epochs.iter().map(|e| e.val_loss.unwrap()).collect();
    let best_epoch = history.best_epoch.unwrap();
    let best_loss = history.best_loss.unwrap();
    assert!(history.stopped_early);
    assert_eq!(vals.len(), best_epoch + 1 + patience, "val losses {vals:?}");
    assert_eq!(best_loss, vals[best_epoch]);
    assert!(vals.iter().all(|&v| v >= best_loss));
    assert!(vals[..best_epoch].iter().all(|&v| v > best_loss));
    assert!(*vals.last().unwrap() > best_loss);
    // The restored model is the best epoch's: its val loss is exactly the best one.
    assert_eq!(loss_of(&model, &Mse, xv.view(), yv.view()), best_loss);

    // Without restoring, the model is the last epoch's.
    let mut last = small_model(2);
    let history = Trainer::new(Mse, Adam::new(0.02).unwrap())
        .epochs(100)
        .batch_size(16)
        .early_stopping(EarlyStopping::new(patience).restore_best_weights(false))
        .fit_with_validation(&mut last, x.view(), y.view(), xv.view(), yv.view())
        .unwrap();
    assert_eq!(history.epochs.len(), vals.len());
    let at_end = loss_of(&last, &Mse, xv.view(), yv.view());
    assert_eq!(at_end, history.final_val_loss().unwrap());
    assert!(at_end > best_loss);
}

/// Replays the early-stopping rule on recorded losses: (stop epoch, best epoch) where an epoch
/// improves iff its loss < best − min_delta.
fn replay_early_stopping(
    losses: &[f64],
    patience: usize,
    min_delta: f64,
) -> (Option<usize>, usize) {
    let (mut best, mut best_epoch, mut since) = (f64::INFINITY, 0, 0);
    for (epoch, &loss) in losses.iter().enumerate() {
        if epoch == 0 || loss < best - min_delta {
            best = loss;
            best_epoch = epoch;
            since = 0;
        } else {
            since += 1;
        }
        if since >= patience {
            return (Some(epoch), best_epoch);
        }
    }
    (None, best_epoch)
}

#[test]
fn early_stopping_min_delta_counts_only_improvements_larger_than_min_delta() {
    let (x, y) = sine_windows(48, 8, 1, 0.05, 44);
    let (xv, yv) = sine_windows(16, 8, 1, 0.05, 45);
    let run = |es: Option<EarlyStopping>| {
        let mut model = small_model(3);
        let mut trainer = Trainer::new(Mse, Adam::new(0.01).unwrap())
            .epochs(30)
            .batch_size(16);
        if let Some(es) = es {
            trainer = trainer.early_stopping(es);
        }
        let h = trainer
            .fit_with_validation(&mut model, x.view(), y.view(), xv.view(), yv.view())
            .unwrap();
        (h, snapshot(&model))
    };
    let (free, _) = run(None);
    let vals: Vec<f64> = free.epochs.iter().map(|e| e.val_loss.unwrap()).collect();
    assert!(!free.stopped_early);
    let patience = 3;
    let min_delta = 0.01;
    // On these losses min_delta changes the outcome (else this test would show nothing).
    let (stop_0, best_0) = replay_early_stopping(&vals, patience, 0.0);
    let (stop_d, best_d) = replay_early_stopping(&vals, patience, min_delta);
    let stop_d = stop_d.expect("improvements shrink below min_delta within 30 epochs");
    assert_ne!(stop_0, Some(stop_d), "val losses {vals:?}");
    assert_ne!(best_0, best_d, "val losses {vals:?}");

    for (delta, stop, best) in [(0.0, stop_0, best_0), (min_delta, Some(stop_d), best_d)] {
        let (h, weights) = run(Some(EarlyStopping::new(patience).min_delta(delta)));
        let stop = stop.unwrap_or(29);
        assert_eq!(h.epochs.len(), stop + 1, "min_delta {delta}: {vals:?}");
        assert_eq!(h.stopped_early, stop < 29);
        assert_eq!(h.best_epoch, Some(best), "min_delta {delta}");
        assert_eq!(h.best_loss, Some(vals[best]), "min_delta {delta}");
        // Its epochs are the free run's epochs, cut short.
        assert_eq!(&h.epochs[..], &free.epochs[..=stop]);
        // The best weights were restored: the val loss is the best epoch's.
        let mut restored = small_model(3);
        restore(&mut restored, &weights);
        assert_eq!(loss_of(&restored, &Mse, xv.view(), yv.view()), vals[best]);
    }

    // A huge min_delta: nothing after epoch 0 counts, so it stops at epoch `patience`.
    let (h, _) = run(Some(EarlyStopping::new(2).min_delta(1e9)));
    assert_eq!(h.epochs.len(), 3);
    assert!(h.stopped_early);
    assert_eq!(h.best_epoch, Some(0));
    assert!(
        vals[2] < vals[0],
        "the val loss did improve, by less than min_delta"
    );
}

#[test]
fn a_callback_returning_stop_ends_training_after_that_epoch() {
    let (x, y) = sine_windows(32, 6, 1, 0.05, 46);
    let reports: Arc<Mutex<Vec<EpochReport>>> = Arc::default();
    let seen = Arc::clone(&reports);
    let mut model = small_model(4);
    let history = Trainer::new(Mse, Adam::new(0.01).unwrap())
        .epochs(10)
        .batch_size(8)
        .callback(Box::new(move |r: &EpochReport| {
            seen.lock().unwrap().push(r.clone());
            if r.epoch == 2 {
                Control::Stop
            } else {
                Control::Continue
            }
        }))
        .fit(&mut model, x.view(), y.view())
        .unwrap();
    assert_eq!(history.epochs.len(), 3);
    assert!(history.stopped_early);
    assert_eq!(history.step_grad_norms.len(), 3 * 4);
    let reports = reports.lock().unwrap();
    assert_eq!(reports.len(), 3);
    for (k, (r, e)) in reports.iter().zip(&history.epochs).enumerate() {
        assert_eq!(r.epoch, k);
        assert_eq!(r.epochs, 10);
        assert_eq!(r.train_loss, e.train_loss);
        assert_eq!(r.grad_norm, e.grad_norm);
        assert_eq!(r.learning_rate, e.learning_rate);
        assert_eq!(r.val_loss, None);
    }

    // A Stop on the last planned epoch is not an early stop.
    let mut model = small_model(4);
    let history = Trainer::new(Mse, Adam::new(0.01).unwrap())
        .epochs(2)
        .batch_size(8)
        .callback(Box::new(|_: &EpochReport| Control::Stop))
        .callback(Box::new(|_: &EpochReport| Control::Continue))
        .fit(&mut model, x.view(), y.view())
        .unwrap();
    assert_eq!(history.epochs.len(), 1, "any callback's Stop stops");
    assert!(history.stopped_early);
}

fn learning_rates(schedule: LrSchedule, epochs: usize) -> Vec<f64> {
    let (x, y) = sine_windows(16, 4, 1, 0.05, 47);
    let mut model = small_model(5);
    let mut trainer = Trainer::new(Mse, Sgd::new(0.1).unwrap())
        .epochs(epochs)
        .batch_size(16)
        .schedule(schedule);
    let history = trainer.fit(&mut model, x.view(), y.view()).unwrap();
    // The base rate is back in the optimizer after fit.
    assert_eq!(trainer.optimizer().learning_rate(), 0.1);
    history.epochs.iter().map(|e| e.learning_rate).collect()
}

fn assert_rates(what: &str, got: &[f64], expected: &[f64]) {
    assert_eq!(got.len(), expected.len(), "{what}");
    for (e, (g, x)) in got.iter().zip(expected).enumerate() {
        assert!(
            (g - x).abs() <= 1e-15,
            "{what}: epoch {e}: lr {g}, expected {x}"
        );
    }
}

#[test]
fn step_exponential_and_cosine_schedules_give_the_expected_rate_every_epoch() {
    assert_rates(
        "constant",
        &learning_rates(LrSchedule::Constant, 3),
        &[0.1, 0.1, 0.1],
    );
    assert_rates(
        "step",
        &learning_rates(
            LrSchedule::Step {
                step_size: 2,
                gamma: 0.5,
            },
            7,
        ),
        &[0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125],
    );
    let expo: Vec<f64> = (0..5).map(|e| 0.1 * 0.8f64.powi(e)).collect();
    assert_rates(
        "exponential",
        &learning_rates(LrSchedule::Exponential { gamma: 0.8 }, 5),
        &expo,
    );
    // η_min + (lr₀ − η_min)(1 + cos(π·min(e, T)/T))/2, T = 4, η_min = 0.01; flat after T.
    let cosine: Vec<f64> = (0..7)
        .map(|e: usize| {
            let t = e.min(4) as f64 / 4.0;
            0.01 + (0.1 - 0.01) * (1.0 + (PI * t).cos()) / 2.0
        })
        .collect();
    assert_rates(
        "cosine",
        &learning_rates(
            LrSchedule::Cosine {
                t_max: 4,
                eta_min: 0.01,
            },
            7,
        ),
        &cosine,
    );
    assert!((cosine[2] - 0.055).abs() < 1e-15 && cosine[4] == 0.01 && cosine[6] == 0.01);
}

#[test]
fn cosine_schedule_with_eta_min_zero_can_run_past_t_max() {
    // PyTorch's default eta_min is 0, and torch.optim accepts lr = 0 (it rejects only lr < 0).
    // The documented rate is flat at eta_min after T, so epochs 4 and 5 train with lr 0.
    let (x, y) = sine_windows(16, 4, 1, 0.05, 47);
    let mut model = small_model(5);
    let history = Trainer::new(Mse, Sgd::new(0.1).unwrap())
        .epochs(6)
        .batch_size(16)
        .schedule(LrSchedule::Cosine {
            t_max: 4,
            eta_min: 0.0,
        })
        .fit(&mut model, x.view(), y.view())
        .expect("cosine annealing to eta_min = 0 past t_max");
    let rates: Vec<f64> = history.epochs.iter().map(|e| e.learning_rate).collect();
    let expected: Vec<f64> = (0..6)
        .map(|e: usize| 0.1 * (1.0 + (PI * e.min(4) as f64 / 4.0).cos()) / 2.0)
        .collect();
    assert_rates("cosine to 0", &rates, &expected);
    assert_eq!(rates[4], 0.0);
}

/// An optimizer that never changes the weights (a plateau by construction), recording the rate
/// of every step it is asked to take.
#[derive(Debug)]
struct Frozen {
    lr: f64,
    seen: Arc<Mutex<Vec<f64>>>,
}

impl Optimizer<f64> for Frozen {
    fn name(&self) -> &'static str {
        "frozen"
    }
    fn learning_rate(&self) -> f64 {
        self.lr
    }
    fn set_learning_rate(&mut self, lr: f64) -> Result<()> {
        assert!(lr > 0.0);
        self.lr = lr;
        Ok(())
    }
    fn step(&mut self, _: &mut dyn Layer<f64>) -> Result<()> {
        self.seen.lock().unwrap().push(self.lr);
        Ok(())
    }
}

#[test]
fn reduce_on_plateau_multiplies_the_rate_by_factor_after_patience_epochs_without_improvement() {
    let (x, y) = sine_windows(32, 6, 1, 0.05, 48);
    let seen: Arc<Mutex<Vec<f64>>> = Arc::default();
    let mut model = small_model(6);
    let epochs = 16;
    let history = Trainer::new(
        Mse,
        Frozen {
            lr: 0.1,
            seen: Arc::clone(&seen),
        },
    )
    .epochs(epochs)
    .batch_size(16)
    .shuffle(false)
    .schedule(LrSchedule::ReduceOnPlateau {
        factor: 0.5,
        patience: 2,
        threshold: 1e-4,
        min_lr: 0.01,
    })
    .fit(&mut model, x.view(), y.view())
    .unwrap();
    // The loss is flat: epoch 0 sets the best, and every later epoch is a bad one. As in
    // PyTorch, the rate drops once the bad epochs exceed patience (3 of them), the count
    // restarts, and the rate never goes below min_lr.
    let losses: Vec<f64> = history.epochs.iter().map(|e| e.train_loss).collect();
    assert!(losses.iter().all(|&l| l == losses[0]), "{losses:?}");
    let expected = [
        0.1, 0.1, 0.1, 0.1, // epoch 0 best; bad epochs 1, 2, 3 → reduce
        0.05, 0.05, 0.05, // bad 1, 2, 3 → reduce
        0.025, 0.025, 0.025, // → reduce
        0.0125, 0.0125, 0.0125, // → reduce to max(0.00625, min_lr)
        0.01, 0.01, 0.01,
    ];
    let rates: Vec<f64> = history.epochs.iter().map(|e| e.learning_rate).collect();
    assert_rates("reduce on plateau", &rates, &expected);
    // The optimizer stepped with each epoch's rate (2 batches per epoch).
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2 * epochs);
    for (k, lr) in seen.iter().enumerate() {
        assert_eq!(*lr, rates[k / 2], "step {k}");
    }
}

#[test]
fn reduce_on_plateau_keeps_the_rate_while_the_monitored_loss_improves() {
    let (x, y) = sine_windows(48, 8, 1, 0.05, 49);
    let (xv, yv) = sine_windows(16, 8, 1, 0.05, 50);
    let mut model = small_model(7);
    let history = Trainer::new(Mse, Adam::new(0.01).unwrap())
        .epochs(8)
        .batch_size(16)
        .schedule(LrSchedule::ReduceOnPlateau {
            factor: 0.5,
            patience: 1,
            threshold: 0.0,
            min_lr: 0.0,
        })
        .fit_with_validation(&mut model, x.view(), y.view(), xv.view(), yv.view())
        .unwrap();
    let vals: Vec<f64> = history.epochs.iter().map(|e| e.val_loss.unwrap()).collect();
    // Replay: with patience 1, a reduction follows two consecutive non-improving epochs.
    let (mut lr, mut best, mut bad) = (0.01, f64::INFINITY, 0);
    for (e, rec) in history.epochs.iter().enumerate() {
        assert_eq!(rec.learning_rate, lr, "epoch {e}, val losses {vals:?}");
        if vals[e] < best {
            best = vals[e];
            bad = 0;
        } else {
            bad += 1;
            if bad > 1 {
                lr *= 0.5;
                bad = 0;
            }
        }
    }
    assert!(
        vals.windows(2).filter(|w| w[1] < w[0]).count() >= 5,
        "{vals:?}"
    );
}

#[test]
fn the_history_records_one_pre_clip_gradient_norm_per_optimizer_step() {
    let (x, y) = sine_windows(50, 6, 1, 0.05, 51);
    let mut model = small_model(8);
    let history = Trainer::new(Mse, Adam::new(0.01).unwrap())
        .epochs(3)
        .batch_size(16)
        .validation(Validation::LastFraction(0.2))
        .fit(&mut model, x.view(), y.view())
        .unwrap();
    // 40 training samples in batches of 16: 3 steps (16, 16, 8) per epoch.
    assert_eq!(history.step_grad_norms.len(), 3 * 3);
    assert!(
        history
            .step_grad_norms
            .iter()
            .all(|g| g.is_finite() && *g > 0.0)
    );
    for (e, rec) in history.epochs.iter().enumerate() {
        let mean = history.step_grad_norms[3 * e..3 * e + 3]
            .iter()
            .sum::<f64>()
            / 3.0;
        assert!((rec.grad_norm - mean).abs() < 1e-12 * mean);
    }
}

#[test]
fn clipping_in_fit_records_the_pre_clip_norm_and_steps_with_the_clipped_gradient() {
    // A Dense 2→1 on one full batch, SGD lr 0.1, clip to 0.01 (far below the norm).
    let x = uniform_sequences(16, 2, 52)
        .into_shape_with_order((16, 1, 2))
        .unwrap();
    let y = x.sum_axis(Axis(2)).insert_axis(Axis(2)) * 3.0 + 1.0;
    let start = Dense::<f64>::from_weights(
        DenseWeights {
            weight: ndarray::array![[0.2, -0.1]],
            bias: ndarray::array![0.0],
        },
        Activation::Identity,
    )
    .unwrap();
    // The unclipped gradient, by the layer API.
    let mut reference = start.clone();
    let prediction = reference.forward(x.view()).unwrap();
    let (_, d) = Mse.loss_and_gradient(prediction.view(), y.view()).unwrap();
    reference.backward(d.view()).unwrap();
    let norm = grad_norm(&reference);
    let g = reference.gradients();
    assert!(norm > 1.0);

    for (clip, scale) in [
        (Clip::Norm(0.01), 0.01 / (norm + 1e-6)),
        (Clip::Norm(1e6), 1.0),
    ] {
        let mut model = start.clone();
        let history = Trainer::new(Mse, Sgd::new(0.1).unwrap())
            .epochs(1)
            .batch_size(16)
            .shuffle(false)
            .clip(clip)
            .fit(&mut model, x.view(), y.view())
            .unwrap();
        assert_eq!(history.step_grad_norms, vec![norm]);
        let w = model.weights();
        let w0 = start.weights();
        for j in 0..2 {
            let expected = w0.weight[[0, j]] - 0.1 * g.weight[[0, j]] * scale;
            assert!((w.weight[[0, j]] - expected).abs() < 1e-14, "{clip:?} w{j}");
        }
        let expected = w0.bias[0] - 0.1 * g.bias[0] * scale;
        assert!((w.bias[0] - expected).abs() < 1e-14, "{clip:?} b");
    }

    // Clip by value: each gradient entry clamped to ±0.05.
    let mut model = start.clone();
    Trainer::new(Mse, Sgd::new(0.1).unwrap())
        .epochs(1)
        .batch_size(16)
        .shuffle(false)
        .clip(Clip::Value(0.05))
        .fit(&mut model, x.view(), y.view())
        .unwrap();
    let w = model.weights();
    for j in 0..2 {
        let expected = start.weights().weight[[0, j]] - 0.1 * g.weight[[0, j]].clamp(-0.05, 0.05);
        assert!((w.weight[[0, j]] - expected).abs() < 1e-14);
    }
}

#[test]
fn bad_fit_settings_and_bad_data_are_typed_errors_and_leave_the_model_untouched() {
    let (x, y) = sine_windows(20, 6, 1, 0.05, 53);
    let mut model = small_model(9);
    let before = snapshot(&model);
    let trainer = || {
        Trainer::new(Mse, Adam::new(0.01).unwrap())
            .epochs(2)
            .batch_size(4)
    };
    let fit = |t: Trainer<f64>, m: &mut Sequential<f64>, x: &Array3<f64>, y: &Array3<f64>| {
        let mut t = t;
        t.fit(m, x.view(), y.view())
    };

    expect_config("epochs 0", fit(trainer().epochs(0), &mut model, &x, &y));
    expect_config("batch 0", fit(trainer().batch_size(0), &mut model, &x, &y));
    for f in [1.0, 0.0, -0.5, 1.5, f64::NAN] {
        expect_config(
            &format!("validation fraction {f}"),
            fit(
                trainer().validation(Validation::LastFraction(f)),
                &mut model,
                &x,
                &y,
            ),
        );
    }
    // 0.01 of 20 samples rounds to 0 validation samples.
    expect_config(
        "validation fraction leaving no validation sample",
        fit(
            trainer().validation(Validation::LastFraction(0.01)),
            &mut model,
            &x,
            &y,
        ),
    );
    expect_config(
        "early stopping patience 0",
        fit(
            trainer().early_stopping(EarlyStopping::new(0)),
            &mut model,
            &x,
            &y,
        ),
    );
    expect_config(
        "early stopping min_delta < 0",
        fit(
            trainer().early_stopping(EarlyStopping::new(2).min_delta(-1.0)),
            &mut model,
            &x,
            &y,
        ),
    );
    expect_config(
        "clip 0",
        fit(trainer().clip(Clip::Norm(0.0)), &mut model, &x, &y),
    );
    expect_config(
        "tbptt 0",
        fit(trainer().truncated_bptt(0), &mut model, &x, &y),
    );
    expect_config(
        "tbptt on a many-to-one model",
        fit(trainer().truncated_bptt(2), &mut model, &x, &y),
    );
    for schedule in [
        LrSchedule::Step {
            step_size: 0,
            gamma: 0.5,
        },
        LrSchedule::Exponential { gamma: 0.0 },
        LrSchedule::Exponential { gamma: 1.5 },
        LrSchedule::Cosine {
            t_max: 0,
            eta_min: 0.0,
        },
        LrSchedule::ReduceOnPlateau {
            factor: 1.0,
            patience: 1,
            threshold: 0.0,
            min_lr: 0.0,
        },
    ] {
        expect_config(
            &format!("{schedule:?}"),
            fit(trainer().schedule(schedule), &mut model, &x, &y),
        );
    }

    let mut nan_x = x.clone();
    nan_x[[3, 2, 0]] = f64::NAN;
    match fit(trainer(), &mut model, &nan_x, &y) {
        Err(Error::NonFinite { index, .. }) => assert_eq!(index, vec![3, 2, 0]),
        other => panic!("NaN input: {other:?}"),
    }
    let mut inf_y = y.clone();
    inf_y[[7, 0, 0]] = f64::INFINITY;
    match fit(trainer(), &mut model, &x, &inf_y) {
        Err(Error::NonFinite { index, .. }) => assert_eq!(index, vec![7, 0, 0]),
        other => panic!("infinite target: {other:?}"),
    }
    // Targets of the wrong shape: every step instead of the last, or too few samples.
    let wrong = Array3::<f64>::zeros((20, 6, 1));
    match fit(trainer(), &mut model, &x, &wrong) {
        Err(Error::Shape { expected, got, .. }) => {
            assert_eq!(expected, vec![20, 1, 1]);
            assert_eq!(got, vec![20, 6, 1]);
        }
        other => panic!("wrong target shape: {other:?}"),
    }
    let short = Array3::<f64>::zeros((19, 1, 1));
    assert!(matches!(
        fit(trainer(), &mut model, &x, &short),
        Err(Error::Shape { .. })
    ));
    // Inputs with the wrong feature count, and no samples.
    let wide = Array3::<f64>::zeros((20, 6, 2));
    assert!(matches!(
        fit(trainer(), &mut model, &wide, &y),
        Err(Error::Shape { .. })
    ));
    let none = Array3::<f64>::zeros((0, 6, 1));
    let none_y = Array3::<f64>::zeros((0, 1, 1));
    assert!(matches!(
        fit(trainer(), &mut model, &none, &none_y),
        Err(Error::Empty { .. })
    ));
    // Explicit validation data is checked too.
    let mut t = trainer();
    assert!(matches!(
        t.fit_with_validation(&mut model, x.view(), y.view(), x.view(), wrong.view()),
        Err(Error::Shape { .. })
    ));

    assert_eq!(
        snapshot(&model),
        before,
        "a rejected fit changed the weights"
    );
}

#[test]
fn a_diverging_step_is_an_error_that_does_not_update_the_weights() {
    // Targets of 1e200: the squared error overflows to infinity on the first batch.
    let (x, _) = sine_windows(8, 4, 1, 0.0, 54);
    let y = Array3::from_elem((8, 1, 1), 1e200);
    let mut model = small_model(10);
    let before = snapshot(&model);
    let err = Trainer::new(Mse, Sgd::new(0.1).unwrap())
        .epochs(1)
        .batch_size(8)
        .fit(&mut model, x.view(), y.view())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Diverged {
                epoch: 0,
                batch: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(snapshot(&model), before);
}

// ---------------------------------------------------------------------------------------------
// 7. Truncated BPTT.

#[test]
fn truncated_bptt_takes_ceil_t_over_k_optimizer_steps_per_batch() {
    let x = uniform_sequences(24, 10, 61);
    let y = lagged_copy(&x);
    for (k, chunks) in [(1, 10), (3, 4), (4, 3), (5, 2), (10, 1), (15, 1)] {
        let mut model = Sequential::<f64>::many_to_many(RecurrentKind::Gru, 1, 4, 1)
            .build(1)
            .unwrap();
        let history = Trainer::new(Mse, Adam::new(0.01).unwrap())
            .epochs(2)
            .batch_size(8)
            .truncated_bptt(k)
            .fit(&mut model, x.view(), y.view())
            .unwrap();
        // 2 epochs × 3 batches × ⌈10 / k⌉ chunks.
        assert_eq!(history.step_grad_norms.len(), 2 * 3 * chunks, "k = {k}");
    }
}

#[test]
fn truncated_bptt_training_reduces_the_loss() {
    let x = uniform_sequences(64, 12, 62);
    let y = lagged_copy(&x);
    let mut model = Sequential::<f64>::many_to_many(RecurrentKind::Lstm, 1, 12, 1)
        .build(2)
        .unwrap();
    let initial = loss_of(&model, &Mse, x.view(), y.view());
    let history = Trainer::new(Mse, Adam::new(0.02).unwrap())
        .epochs(60)
        .batch_size(16)
        .truncated_bptt(4)
        .fit(&mut model, x.view(), y.view())
        .unwrap();
    let final_loss = loss_of(&model, &Mse, x.view(), y.view());
    println!(
        "truncated BPTT k=4, T=12 (lstm, lagged copy): MSE {initial:.5} → {final_loss:.5} (×{:.3})",
        final_loss / initial
    );
    assert_eq!(history.step_grad_norms.len(), 60 * 4 * 3);
    assert!(final_loss < 0.05 * initial, "{initial} → {final_loss}");
}

/// Which state the hand-made reference carries from chunk to chunk.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Carry {
    /// The final state (h and c) of the previous chunk's training forward, before its update:
    /// what truncated BPTT must do.
    PreviousForward,
    /// A zero state at every chunk.
    Zero,
    /// The previous forward's h, but a zero cell state.
    HiddenOnly,
    /// The previous chunk re-run with the updated weights.
    Recomputed,
}

fn sgd_step(layer: &mut dyn Layer<f64>, lr: f64) {
    layer.visit_params_mut(&mut |p| {
        for (v, g) in p.value.iter_mut().zip(p.grad.iter()) {
            *v -= lr * g;
        }
    });
}

struct Manual {
    weights: Vec<Vec<f64>>,
    /// Per batch: the chunk losses weighted by chunk length / T, summed.
    batch_losses: Vec<f64>,
    norms: Vec<f64>,
    lstm: Lstm<f64>,
    dense: Dense<f64>,
}

/// Truncated BPTT by hand with the layer API: batches of `batch` rows in order; within each, the
/// state starts at zero and chunks of `k` steps each take forward, MSE, backward and one SGD
/// step, the next chunk starting from the state chosen by `carry`.
fn manual_tbptt(
    lstm: &Lstm<f64>,
    dense: &Dense<f64>,
    x: &Array3<f64>,
    y: &Array3<f64>,
    (batch, k, lr): (usize, usize, f64),
    carry: Carry,
) -> Manual {
    let (mut l, mut d) = (lstm.clone(), dense.clone());
    let (n, t) = (x.shape()[0], x.shape()[1]);
    let (mut batch_losses, mut norms) = (Vec::new(), Vec::new());
    for b0 in (0..n).step_by(batch) {
        let b1 = (b0 + batch).min(n);
        let mut state: Option<RecurrentState<f64>> = None;
        let mut batch_loss = 0.0;
        for start in (0..t).step_by(k) {
            let end = (start + k).min(t);
            let xc = x.slice(s![b0..b1, start..end, ..]);
            let yc = y.slice(s![b0..b1, start..end, ..]);
            l.zero_grad();
            d.zero_grad();
            let (h, last) = l.forward_with_state(xc, state.as_ref()).unwrap();
            let prediction = d.forward(h.view()).unwrap();
            let (loss, d_prediction) = Mse.loss_and_gradient(prediction.view(), yc).unwrap();
            let d_h = d.backward(d_prediction.view()).unwrap();
            // The gradient stops at the chunk's start: ∂L/∂(initial state) is dropped.
            l.backward_with_state(Some(d_h.view()), None).unwrap();
            batch_loss += loss * (end - start) as f64 / t as f64;
            norms.push((grad_norm(&l).powi(2) + grad_norm(&d).powi(2)).sqrt());
            sgd_step(&mut l, lr);
            sgd_step(&mut d, lr);
            state = match carry {
                Carry::PreviousForward => Some(last),
                Carry::Zero => None,
                Carry::HiddenOnly => Some(RecurrentState { h: last.h, c: None }),
                Carry::Recomputed => Some(l.predict_with_state(xc, state.as_ref()).unwrap().1),
            };
        }
        batch_losses.push(batch_loss);
    }
    Manual {
        weights: [snapshot(&l), snapshot(&d)].concat(),
        batch_losses,
        norms,
        lstm: l,
        dense: d,
    }
}

fn max_abs_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .fold(0.0, |m, (p, q)| m.max((p - q).abs()))
}

#[test]
fn a_truncated_bptt_step_matches_chunked_forward_backward_and_sgd_by_hand() {
    // (T, k, batch): the brief's T = 4, k = 2 in one batch; an uneven last chunk; two batches.
    for (t, k, batch) in [(4, 2, 5), (5, 2, 5), (5, 2, 3)] {
        let what = format!("T = {t}, k = {k}, batch {batch}");
        let mut r = rng(63);
        let lstm = Lstm::<f64>::new(1, 3, &mut r).unwrap();
        let dense = Dense::<f64>::new(3, 1, Activation::Identity, &mut r).unwrap();
        let x = uniform_sequences(5, t, 64);
        let y = lagged_copy(&x) + &uniform_sequences(5, t, 65) * 0.5;
        let lr = 0.3;

        let mut model = Sequential::<f64>::builder(1)
            .layer(Box::new(lstm.clone()))
            .layer(Box::new(dense.clone()))
            .build(0)
            .unwrap();
        let history = Trainer::new(Mse, Sgd::new(lr).unwrap())
            .epochs(1)
            .batch_size(batch)
            .shuffle(false)
            .truncated_bptt(k)
            .fit(&mut model, x.view(), y.view())
            .unwrap();

        let reference = manual_tbptt(
            &lstm,
            &dense,
            &x,
            &y,
            (batch, k, lr),
            Carry::PreviousForward,
        );
        let trained = snapshot(&model);
        assert_eq!(
            trained, reference.weights,
            "{what}: weights differ from the hand-made steps"
        );
        assert_eq!(
            history.step_grad_norms.len(),
            reference.norms.len(),
            "{what}"
        );
        for (got, expected) in history.step_grad_norms.iter().zip(&reference.norms) {
            assert!(
                (got - expected).abs() <= 1e-12 * expected,
                "{what}: {got} vs {expected}"
            );
        }
        // The epoch loss is the batches' chunk-length-weighted losses, averaged over samples.
        let rows: Vec<usize> = (0..5).step_by(batch).map(|b| batch.min(5 - b)).collect();
        let expected_loss = reference
            .batch_losses
            .iter()
            .zip(&rows)
            .map(|(l, &n)| l * n as f64)
            .sum::<f64>()
            / 5.0;
        let got_loss = history.epochs[0].train_loss;
        assert!(
            (got_loss - expected_loss).abs() <= 1e-14,
            "{what}: {got_loss} vs {expected_loss}"
        );

        // After fit the model is no longer stateful: predict starts from a zero state.
        let by_hand = reference
            .dense
            .predict(reference.lstm.predict(x.view()).unwrap().view())
            .unwrap();
        assert_eq!(model.predict(x.view()).unwrap(), by_hand, "{what}");

        // The test tells the carried state apart: every other choice gives other weights.
        for wrong in [Carry::Zero, Carry::HiddenOnly, Carry::Recomputed] {
            let other = manual_tbptt(&lstm, &dense, &x, &y, (batch, k, lr), wrong);
            let gap = max_abs_diff(&trained, &other.weights);
            assert!(
                gap > 1e-6,
                "{what}: {wrong:?} is indistinguishable ({gap:e})"
            );
        }
        // And from one untruncated step per batch.
        let mut full = Sequential::<f64>::builder(1)
            .layer(Box::new(lstm.clone()))
            .layer(Box::new(dense.clone()))
            .build(0)
            .unwrap();
        Trainer::new(Mse, Sgd::new(lr).unwrap())
            .epochs(1)
            .batch_size(batch)
            .shuffle(false)
            .fit(&mut full, x.view(), y.view())
            .unwrap();
        assert!(max_abs_diff(&trained, &snapshot(&full)) > 1e-6, "{what}");
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Hidden-gradient profile.

#[test]
fn hidden_gradient_profile_gives_one_finite_non_negative_list_of_length_t_per_recurrent_layer() {
    let (t, n) = (7, 4);
    let x = uniform_sequences(n * 2, t, 71)
        .into_shape_with_order((n, t, 2))
        .unwrap();
    let y = uniform_sequences(n, 1, 72);
    let mut model = Sequential::<f64>::builder(2)
        .lstm(5)
        .gru(5)
        .rnn(5)
        .dense(1)
        .build(3)
        .unwrap();
    let weights = snapshot(&model);
    let profile = hidden_gradient_profile(&mut model, &Mse, x.view(), y.view()).unwrap();
    assert_eq!(profile.len(), 3, "one list per recurrent layer");
    for (layer, norms) in profile.iter().enumerate() {
        assert_eq!(norms.len(), t, "layer {layer}");
        assert!(
            norms.iter().all(|g| g.is_finite() && *g >= 0.0),
            "layer {layer}: {norms:?}"
        );
        assert!(norms.iter().any(|g| *g > 0.0), "layer {layer}: {norms:?}");
    }
    // Weights unchanged, gradients left at zero.
    assert_eq!(snapshot(&model), weights);
    let mut any_grad = false;
    model.visit_params(&mut |p| any_grad |= p.grad.iter().any(|g| *g != 0.0));
    assert!(!any_grad);

    // A bidirectional layer reports both directions.
    let mut bi = Sequential::<f64>::builder(2)
        .bidirectional(RecurrentKind::GruResetBefore, 4, Merge::Sum)
        .dense(1)
        .build(4)
        .unwrap();
    let profile = hidden_gradient_profile(&mut bi, &Mse, x.view(), y.view()).unwrap();
    assert_eq!(profile.len(), 2);
    assert!(profile.iter().all(|p| p.len() == t));

    // Bad data is rejected as in fit.
    let wrong = Array3::<f64>::zeros((n, t, 1));
    assert!(matches!(
        hidden_gradient_profile(&mut model, &Mse, x.view(), wrong.view()),
        Err(Error::Shape { .. })
    ));
}

#[test]
fn a_simple_rnn_with_small_recurrent_weights_shows_vanishing_gradients_on_a_last_step_loss() {
    let (t, h) = (10, 3);
    let mut r = rng(73);
    let weights = RecurrentWeights {
        weight_ih: ndarray::Array2::from_shape_fn((h, 1), |_| r.random_range(-1.0..1.0)),
        // ‖W_hh‖ ≤ 0.3: each step back multiplies ‖∂L/∂h‖ by at most 0.3.
        weight_hh: ndarray::Array2::from_shape_fn((h, h), |_| r.random_range(-0.1..0.1)),
        bias_ih: ndarray::Array1::zeros(h),
        bias_hh: ndarray::Array1::zeros(h),
    };
    let rnn = SimpleRnn::<f64>::from_weights(SimpleRnnCell::new(Activation::Tanh), weights)
        .unwrap()
        .with_return_sequences(false);
    let dense = Dense::<f64>::new(h, 1, Activation::Identity, &mut r).unwrap();
    let mut model = Sequential::<f64>::builder(1)
        .layer(Box::new(rnn.clone()))
        .layer(Box::new(dense.clone()))
        .build(0)
        .unwrap();
    let x = uniform_sequences(6, t, 74);
    let y = uniform_sequences(6, 1, 75);
    let profile = hidden_gradient_profile(&mut model, &Mse, x.view(), y.view()).unwrap();
    assert_eq!(profile.len(), 1);
    let norms = &profile[0];
    assert_eq!(norms.len(), t);
    println!("‖∂L/∂h_t‖, t = 0…{}: {norms:?}", t - 1);
    assert!(norms[t - 1] > norms[0]);
    for s in 0..t - 1 {
        assert!(norms[s] < 0.5 * norms[s + 1], "step {s}: {norms:?}");
    }
    assert!(norms[0] < 1e-3 * norms[t - 1]);

    // At the last step ‖∂L/∂h_{T−1}‖ is the dense layer's input gradient, by hand.
    let mut head = dense.clone();
    let last = rnn.predict(x.view()).unwrap();
    let prediction = head.forward(last.view()).unwrap();
    let (_, d) = Mse.loss_and_gradient(prediction.view(), y.view()).unwrap();
    let d_h = head.backward(d.view()).unwrap();
    let expected = d_h.iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!((norms[t - 1] - expected).abs() <= 1e-14 * expected);
}
