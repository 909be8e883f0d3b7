//! Optimizers and gradient clipping against hand-computed PyTorch formulas.
//!
//! The model is a Dense 2→1 with set weights; the batch is fixed, so the MSE gradient at any
//! weights is written out by hand here. Each optimizer takes three real steps (forward, MSE,
//! backward, `step`) and after every step its weights are compared with the formula written
//! in f64 in the test.

use ndarray::{Array3, array};
use recurrent::{
    Activation, Adam, Dense, DenseWeights, Error, Layer, Loss, Mse, Optimizer, Sgd, clip_grad_norm,
    clip_grad_value, grad_norm,
};

/// Parameters in visiting order: `[w₀, w₁, b]` (weight `[1, 2]` row-major, then bias).
type P = [f64; 3];

/// The fixed batch: three samples of one step, x ∈ ℝ², y ∈ ℝ.
fn batch() -> (Array3<f64>, Array3<f64>) {
    (
        array![[[1.0, 2.0]], [[-1.5, 0.5]], [[0.3, -0.7]]],
        array![[[0.5]], [[-1.0]], [[2.0]]],
    )
}

fn dense() -> Dense<f64> {
    Dense::from_weights(
        DenseWeights {
            weight: array![[0.4, -0.3]],
            bias: array![0.1],
        },
        Activation::Identity,
    )
    .unwrap()
}

fn params(model: &dyn Layer<f64>) -> P {
    let mut flat = Vec::new();
    model.visit_params(&mut |p| flat.extend_from_slice(p.value));
    flat.try_into().expect("three parameters")
}

fn grads(model: &dyn Layer<f64>) -> P {
    let mut flat = Vec::new();
    model.visit_params(&mut |p| flat.extend_from_slice(p.grad));
    flat.try_into().expect("three gradients")
}

fn set_grads(model: &mut dyn Layer<f64>, g: &[f64]) {
    let mut k = 0;
    model.visit_params_mut(&mut |p| {
        for v in p.grad.iter_mut() {
            *v = g[k];
            k += 1;
        }
    });
    assert_eq!(k, g.len());
}

/// The MSE gradient at `p`, by hand: ŷₖ = w·xₖ + b, eₖ = ŷₖ − yₖ, N = 3,
/// ∂J/∂w = 2/N Σ eₖ xₖ, ∂J/∂b = 2/N Σ eₖ.
fn hand_gradient(p: P) -> P {
    let (x, y) = batch();
    let n = 3.0;
    let mut g = [0.0; 3];
    for k in 0..3 {
        let (x0, x1) = (x[[k, 0, 0]], x[[k, 0, 1]]);
        let e = p[0] * x0 + p[1] * x1 + p[2] - y[[k, 0, 0]];
        g[0] += 2.0 / n * e * x0;
        g[1] += 2.0 / n * e * x1;
        g[2] += 2.0 / n * e;
    }
    g
}

fn assert_close(what: &str, got: P, expected: P) {
    for j in 0..3 {
        let tol = 1e-13 * expected[j].abs().max(1.0);
        assert!(
            (got[j] - expected[j]).abs() <= tol,
            "{what}: parameter {j}: got {:.17e}, expected {:.17e} (all: {got:?} vs {expected:?})",
            got[j],
            expected[j]
        );
    }
}

/// Runs three steps of `optimizer` on the Dense model and compares every step's weights with
/// `reference(t, p, g)`, the formula's new weights from the old weights `p` and the gradient
/// `g` at them (t = 1, 2, 3).
fn check_three_steps(
    what: &str,
    optimizer: &mut dyn Optimizer<f64>,
    mut reference: impl FnMut(i32, P, P) -> P,
) {
    let (x, y) = batch();
    let mut model = dense();
    let mut p = params(&model);
    for t in 1..=3 {
        let g = hand_gradient(p);
        model.zero_grad();
        let prediction = model.forward(x.view()).unwrap();
        let (_, d) = Mse.loss_and_gradient(prediction.view(), y.view()).unwrap();
        model.backward(d.view()).unwrap();
        assert_close(
            &format!("{what}: backward gradient at step {t}"),
            grads(&model),
            g,
        );
        optimizer.step(&mut model).unwrap();
        p = reference(t, p, g);
        assert_close(
            &format!("{what}: weights after step {t}"),
            params(&model),
            p,
        );
    }
    // The steps moved the weights for real (a test of nothing would pass too otherwise).
    assert!(params(&model) != params(&dense()));
}

#[test]
fn plain_sgd_subtracts_the_learning_rate_times_the_gradient() {
    let lr = 0.1;
    let mut sgd = Sgd::<f64>::new(lr).unwrap();
    check_three_steps("sgd", &mut sgd, |_, p, g| {
        [p[0] - lr * g[0], p[1] - lr * g[1], p[2] - lr * g[2]]
    });
}

#[test]
fn sgd_with_momentum_accumulates_a_buffer_that_starts_at_the_first_gradient() {
    let (lr, mu) = (0.1, 0.9);
    let mut sgd = Sgd::<f64>::new(lr).unwrap().with_momentum(mu).unwrap();
    let mut b = [0.0; 3];
    check_three_steps("sgd momentum", &mut sgd, |t, p, g| {
        let mut next = p;
        for j in 0..3 {
            // b₁ = g₁; b_t = μ b_{t−1} + g_t (no dampening); p ← p − lr b
            b[j] = if t == 1 { g[j] } else { mu * b[j] + g[j] };
            next[j] = p[j] - lr * b[j];
        }
        next
    });
}

#[test]
fn sgd_with_nesterov_steps_along_the_gradient_plus_momentum_times_the_buffer() {
    let (lr, mu) = (0.05, 0.8);
    let mut sgd = Sgd::<f64>::new(lr)
        .unwrap()
        .with_momentum(mu)
        .unwrap()
        .with_nesterov(true)
        .unwrap();
    let mut b = [0.0; 3];
    check_three_steps("sgd nesterov", &mut sgd, |_, p, g| {
        let mut next = p;
        for j in 0..3 {
            b[j] = mu * b[j] + g[j];
            next[j] = p[j] - lr * (g[j] + mu * b[j]);
        }
        next
    });
}

#[test]
fn sgd_weight_decay_adds_lambda_times_the_weight_to_the_gradient_before_momentum() {
    let (lr, wd) = (0.1, 0.05);
    let mut plain = Sgd::<f64>::new(lr).unwrap().with_weight_decay(wd).unwrap();
    check_three_steps("sgd weight decay", &mut plain, |_, p, g| {
        let mut next = p;
        for j in 0..3 {
            next[j] = p[j] - lr * (g[j] + wd * p[j]);
        }
        next
    });

    let mu = 0.9;
    let mut with_momentum = Sgd::<f64>::new(lr)
        .unwrap()
        .with_momentum(mu)
        .unwrap()
        .with_weight_decay(wd)
        .unwrap();
    let mut b = [0.0; 3];
    check_three_steps(
        "sgd momentum + weight decay",
        &mut with_momentum,
        |_, p, g| {
            let mut next = p;
            for j in 0..3 {
                let d = g[j] + wd * p[j];
                b[j] = mu * b[j] + d;
                next[j] = p[j] - lr * b[j];
            }
            next
        },
    );
}

/// The Adam update of PyTorch, in f64: returns the new p; `m`, `v` updated in place.
#[allow(clippy::too_many_arguments)]
fn adam_update(
    t: i32,
    p: f64,
    g: f64,
    m: &mut f64,
    v: &mut f64,
    lr: f64,
    (b1, b2): (f64, f64),
    eps: f64,
) -> f64 {
    *m = b1 * *m + (1.0 - b1) * g;
    *v = b2 * *v + (1.0 - b2) * g * g;
    let m_hat = *m / (1.0 - b1.powi(t));
    let v_hat = *v / (1.0 - b2.powi(t));
    p - lr * m_hat / (v_hat.sqrt() + eps)
}

#[test]
fn adam_matches_the_pytorch_formulas_for_three_steps() {
    let lr = 0.01;
    let mut adam = Adam::<f64>::new(lr).unwrap();
    let (mut m, mut v) = ([0.0; 3], [0.0; 3]);
    check_three_steps("adam", &mut adam, |t, p, g| {
        let mut next = p;
        for j in 0..3 {
            next[j] = adam_update(t, p[j], g[j], &mut m[j], &mut v[j], lr, (0.9, 0.999), 1e-8);
        }
        next
    });
    assert_eq!(adam.steps_taken(), 3);
    assert_eq!(Optimizer::<f64>::name(&adam), "adam");
}

#[test]
fn adam_with_custom_betas_and_eps_matches_the_formulas() {
    let (lr, betas, eps) = (0.03, (0.5, 0.9), 1e-3);
    let mut adam = Adam::<f64>::new(lr)
        .unwrap()
        .with_betas(betas.0, betas.1)
        .unwrap()
        .with_eps(eps)
        .unwrap();
    let (mut m, mut v) = ([0.0; 3], [0.0; 3]);
    check_three_steps("adam betas eps", &mut adam, |t, p, g| {
        let mut next = p;
        for j in 0..3 {
            next[j] = adam_update(t, p[j], g[j], &mut m[j], &mut v[j], lr, betas, eps);
        }
        next
    });
}

#[test]
fn adam_weight_decay_is_l2_added_to_the_gradient() {
    let (lr, wd) = (0.01, 0.2);
    let mut adam = Adam::<f64>::new(lr).unwrap().with_weight_decay(wd).unwrap();
    let (mut m, mut v) = ([0.0; 3], [0.0; 3]);
    check_three_steps("adam l2", &mut adam, |t, p, g| {
        let mut next = p;
        for j in 0..3 {
            let d = g[j] + wd * p[j];
            next[j] = adam_update(t, p[j], d, &mut m[j], &mut v[j], lr, (0.9, 0.999), 1e-8);
        }
        next
    });
}

#[test]
fn adamw_decays_the_weights_by_one_minus_lr_times_lambda_then_takes_the_adam_step() {
    let (lr, wd) = (0.01, 0.2);
    let mut adamw = Adam::<f64>::adamw(lr, wd).unwrap();
    assert_eq!(Optimizer::<f64>::name(&adamw), "adamw");
    let (mut m, mut v) = ([0.0; 3], [0.0; 3]);
    check_three_steps("adamw", &mut adamw, |t, p, g| {
        let mut next = p;
        for j in 0..3 {
            // p ← p(1 − lr·λ), then Adam with the undecayed gradient g (taken at the old p).
            let decayed = p[j] * (1.0 - lr * wd);
            next[j] = adam_update(
                t,
                decayed,
                g[j],
                &mut m[j],
                &mut v[j],
                lr,
                (0.9, 0.999),
                1e-8,
            );
        }
        next
    });

    // Decoupled and L2 decay are different updates (they agree without decay).
    let (x, y) = batch();
    let step_once = |opt: &mut dyn Optimizer<f64>| {
        let mut model = dense();
        let prediction = model.forward(x.view()).unwrap();
        let (_, d) = Mse.loss_and_gradient(prediction.view(), y.view()).unwrap();
        model.backward(d.view()).unwrap();
        opt.step(&mut model).unwrap();
        params(&model)
    };
    let decoupled = step_once(&mut Adam::<f64>::adamw(lr, wd).unwrap());
    let l2 = step_once(&mut Adam::<f64>::new(lr).unwrap().with_weight_decay(wd).unwrap());
    assert!(decoupled != l2, "AdamW and Adam+L2 gave the same step");
}

#[test]
fn an_optimizer_reused_on_a_model_with_other_parameter_shapes_is_an_error_and_changes_nothing() {
    let (x, y) = batch();
    let other = || {
        Dense::<f64>::from_weights(
            DenseWeights {
                weight: array![[0.1, 0.2, 0.3]],
                bias: array![-0.5],
            },
            Activation::Identity,
        )
        .unwrap()
    };
    let optimizers: Vec<Box<dyn Optimizer<f64>>> = vec![
        Box::new(Sgd::new(0.1).unwrap()),
        Box::new(Sgd::new(0.1).unwrap().with_momentum(0.9).unwrap()),
        Box::new(Adam::new(0.01).unwrap()),
        Box::new(Adam::adamw(0.01, 0.1).unwrap()),
    ];
    for mut opt in optimizers {
        let name = opt.name();
        // First used on the 2→1 model.
        let mut model = dense();
        let prediction = model.forward(x.view()).unwrap();
        let (_, d) = Mse.loss_and_gradient(prediction.view(), y.view()).unwrap();
        model.backward(d.view()).unwrap();
        opt.step(&mut model).unwrap();

        // Then on a 3→1 model with a gradient: an error, and nothing moves.
        let mut wrong = other();
        set_grads(&mut wrong, &[1.0, -2.0, 3.0, 0.5]);
        let before = recurrent::train::snapshot(&wrong);
        let err = opt.step(&mut wrong).unwrap_err();
        assert!(
            matches!(err, Error::InvalidConfig { .. }),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains("differ"), "{name}: {err}");
        assert_eq!(recurrent::train::snapshot(&wrong), before, "{name}");
        let mut g = Vec::new();
        wrong.visit_params(&mut |p| g.extend_from_slice(p.grad));
        assert_eq!(g, vec![1.0, -2.0, 3.0, 0.5], "{name}: gradients touched");

        // And the state of the first model is intact: it still steps.
        let p_before = params(&model);
        opt.step(&mut model).unwrap();
        assert!(params(&model) != p_before, "{name}");
    }

    // Adam's step counter does not advance on the failed step.
    let mut adam = Adam::<f64>::new(0.01).unwrap();
    let mut model = dense();
    set_grads(&mut model, &[1.0, 1.0, 1.0]);
    adam.step(&mut model).unwrap();
    let mut wrong = other();
    assert!(adam.step(&mut wrong).is_err());
    assert_eq!(adam.steps_taken(), 1);
}

fn expect_config<T: std::fmt::Debug>(what: &str, r: recurrent::Result<T>) {
    match r {
        Err(Error::InvalidConfig { .. }) => {}
        other => panic!("{what}: expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn invalid_optimizer_hyperparameters_are_config_errors() {
    // As torch.optim, a rate of 0 is accepted (cosine annealing ends there); below 0 is not.
    assert!(Sgd::<f64>::new(0.0).is_ok() && Adam::<f64>::new(0.0).is_ok());
    for lr in [-0.1, f64::NAN, f64::INFINITY] {
        expect_config(&format!("sgd lr {lr}"), Sgd::<f64>::new(lr));
        expect_config(&format!("adam lr {lr}"), Adam::<f64>::new(lr));
        expect_config(&format!("adamw lr {lr}"), Adam::<f64>::adamw(lr, 0.01));
    }
    let sgd = || Sgd::<f64>::new(0.1).unwrap();
    for mu in [1.0, 1.5, -0.1, f64::NAN] {
        expect_config(&format!("momentum {mu}"), sgd().with_momentum(mu));
    }
    expect_config("nesterov without momentum", sgd().with_nesterov(true));
    expect_config(
        "nesterov with zero momentum",
        sgd().with_momentum(0.0).unwrap().with_nesterov(true),
    );
    for wd in [-0.1, f64::NAN, f64::INFINITY] {
        expect_config(&format!("sgd wd {wd}"), sgd().with_weight_decay(wd));
        expect_config(
            &format!("adam wd {wd}"),
            Adam::<f64>::new(0.1).unwrap().with_weight_decay(wd),
        );
        expect_config(&format!("adamw wd {wd}"), Adam::<f64>::adamw(0.1, wd));
    }
    let adam = || Adam::<f64>::new(0.1).unwrap();
    for (b1, b2) in [(1.0, 0.999), (0.9, 1.0), (-0.1, 0.999), (0.9, f64::NAN)] {
        expect_config(&format!("betas ({b1}, {b2})"), adam().with_betas(b1, b2));
    }
    for eps in [0.0, -1e-8, f64::NAN] {
        expect_config(&format!("eps {eps}"), adam().with_eps(eps));
    }
    // Valid edges are accepted.
    assert!(sgd().with_momentum(0.0).is_ok());
    assert!(
        sgd()
            .with_momentum(0.99)
            .unwrap()
            .with_nesterov(true)
            .is_ok()
    );
    assert!(adam().with_betas(0.0, 0.0).is_ok());
    assert!(Adam::<f64>::adamw(0.1, 0.0).is_ok());
}

#[test]
fn set_learning_rate_rejects_negative_and_non_finite_rates_and_keeps_the_old_one() {
    let optimizers: Vec<Box<dyn Optimizer<f64>>> = vec![
        Box::new(Sgd::new(0.1).unwrap()),
        Box::new(Adam::new(0.1).unwrap()),
    ];
    for mut opt in optimizers {
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            expect_config(
                &format!("{} set_learning_rate({bad})", opt.name()),
                opt.set_learning_rate(bad),
            );
            assert_eq!(opt.learning_rate(), 0.1);
        }
        opt.set_learning_rate(0.25).unwrap();
        assert_eq!(opt.learning_rate(), 0.25);
    }

    // The new rate is the one used: plain SGD with lr 0.25 moves p by 0.25·g.
    let mut sgd = Sgd::<f64>::new(0.1).unwrap();
    sgd.set_learning_rate(0.25).unwrap();
    let mut model = dense();
    let p = params(&model);
    set_grads(&mut model, &[1.0, -2.0, 4.0]);
    sgd.step(&mut model).unwrap();
    assert_close(
        "sgd after set_learning_rate",
        params(&model),
        [p[0] - 0.25, p[1] + 0.5, p[2] - 1.0],
    );
}

// ---------------------------------------------------------------------------------------------
// Clipping.

#[test]
fn grad_norm_is_the_global_l2_norm_over_every_parameter() {
    let mut model = dense();
    set_grads(&mut model, &[3.0, 4.0, 12.0]);
    assert_eq!(grad_norm(&model), 13.0);
    set_grads(&mut model, &[1.0, -2.0, 2.0]);
    assert_eq!(grad_norm(&model), 3.0);
}

#[test]
fn clip_grad_norm_returns_the_pre_clip_norm_and_scales_by_max_norm_over_norm_plus_eps() {
    // ‖(3, 4, 12)‖ = 13.
    for max_norm in [1.0, 6.5, 13.0] {
        let mut model = dense();
        let weights = params(&model);
        set_grads(&mut model, &[3.0, 4.0, 12.0]);
        let norm = clip_grad_norm(&mut model, max_norm).unwrap();
        assert_eq!(
            norm, 13.0,
            "clip_grad_norm returns the norm before clipping"
        );
        let coef = max_norm / (13.0 + 1e-6);
        assert!(coef < 1.0);
        assert_close(
            &format!("clipped gradients (max_norm {max_norm})"),
            grads(&model),
            [3.0 * coef, 4.0 * coef, 12.0 * coef],
        );
        // The clipped norm is max_norm (up to the 1e-6 of the denominator).
        assert!((grad_norm(&model) - max_norm).abs() < 1e-6);
        assert_eq!(params(&model), weights, "clipping touched the weights");
    }
}

#[test]
fn clip_grad_norm_leaves_gradients_bit_identical_when_the_norm_is_below_max_norm() {
    for max_norm in [13.1, 100.0, 1e12] {
        let mut model = dense();
        let g = [3.0, -4.0, 12.0];
        set_grads(&mut model, &g);
        let norm = clip_grad_norm(&mut model, max_norm).unwrap();
        assert_eq!(norm, 13.0);
        let after = grads(&model);
        for j in 0..3 {
            assert_eq!(after[j].to_bits(), g[j].to_bits(), "max_norm {max_norm}");
        }
    }
    // A zero gradient stays zero (no division by zero: the denominator is 0 + 1e-6).
    let mut model = dense();
    set_grads(&mut model, &[0.0, 0.0, 0.0]);
    assert_eq!(clip_grad_norm(&mut model, 1.0).unwrap(), 0.0);
    assert_eq!(grads(&model), [0.0; 3]);
}

#[test]
fn clip_grad_norm_with_a_non_finite_gradient_is_an_error_and_touches_nothing() {
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut model = dense();
        let weights = params(&model);
        let g = [1e3, bad, -7.0];
        set_grads(&mut model, &g);
        let err = clip_grad_norm(&mut model, 1.0).unwrap_err();
        assert!(matches!(err, Error::NonFinite { .. }), "{bad}: {err:?}");
        assert_eq!(params(&model), weights);
        let after = grads(&model);
        for j in 0..3 {
            assert_eq!(after[j].to_bits(), g[j].to_bits(), "{bad}: gradient {j}");
        }
    }
}

#[test]
fn clip_grad_norm_and_clip_grad_value_reject_non_positive_or_nan_thresholds() {
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let mut model = dense();
        set_grads(&mut model, &[3.0, 4.0, 12.0]);
        expect_config(
            &format!("clip_grad_norm max_norm {bad}"),
            clip_grad_norm(&mut model, bad),
        );
        expect_config(
            &format!("clip_grad_value limit {bad}"),
            clip_grad_value(&mut model, bad),
        );
        assert_eq!(grads(&model), [3.0, 4.0, 12.0], "threshold {bad}");
        expect_config(
            &format!("Clip::Norm({bad})"),
            recurrent::Clip::Norm(bad).validate(),
        );
        expect_config(
            &format!("Clip::Value({bad})"),
            recurrent::Clip::Value(bad).validate(),
        );
    }
}

#[test]
fn clip_grad_value_clamps_every_entry_to_plus_or_minus_the_limit() {
    let mut model = dense();
    let weights = params(&model);
    set_grads(&mut model, &[3.0, -4.0, 0.2]);
    clip_grad_value(&mut model, 0.5).unwrap();
    assert_eq!(grads(&model), [0.5, -0.5, 0.2]);
    assert_eq!(params(&model), weights);
    // Entries exactly at the limit, or inside it, are untouched.
    set_grads(&mut model, &[0.5, -0.5, -0.1]);
    clip_grad_value(&mut model, 0.5).unwrap();
    assert_eq!(grads(&model), [0.5, -0.5, -0.1]);
}
