//! The single-layer PyTorch reference cases of `tests/reference/` (see its README): outputs,
//! final states, the loss `L` and every gradient (all parameters, `x`, `h0`, `c0`), in f64
//! (normwise relative error ≤ 1e-9) and in f32 (≤ 1e-4, the same JSON read into f32).
//!
//! The `model_*` cases are covered elsewhere.

mod common;

use common::{Case, ErrorLog, dot};
use ndarray::Axis;
use recurrent::{
    Activation, Cell, Dense, DenseWeights, Float, GruCell, Layer, LstmCell, Recurrent,
    RecurrentState, RecurrentWeights, SimpleRnnCell,
};

/// Checks one single recurrent layer case (`rnn_tanh`, `rnn_relu`, `lstm`, `gru`) computed in
/// `F` with `cell`.
fn check_recurrent_case<C: Cell, F: Float>(name: &str, kind: &str, cell: C) -> ErrorLog {
    let case = Case::load(name);
    assert_eq!(case.str("kind"), kind, "{name}: kind");
    let mut log = ErrorLog::new::<F>();
    let (b, t, i, h) = (
        case.usize("batch"),
        case.usize("seq_len"),
        case.usize("input_size"),
        case.usize("hidden_size"),
    );
    let with_c = cell.has_cell_state();
    assert_eq!(
        case.has("c0"),
        with_c,
        "{name}: c0 present iff the cell has a cell state"
    );

    let weights = RecurrentWeights {
        weight_ih: case.array2::<F>("params.weight_ih"),
        weight_hh: case.array2::<F>("params.weight_hh"),
        bias_ih: case.array1::<F>("params.bias_ih"),
        bias_hh: case.array1::<F>("params.bias_hh"),
    };
    let mut layer = Recurrent::<C, F>::from_weights(cell, weights)
        .unwrap_or_else(|e| panic!("{name}: from_weights: {e}"));
    assert_eq!(
        (layer.input_size(), layer.hidden_size()),
        (i, h),
        "{name}: layer sizes"
    );

    let x = case.array3::<F>("x");
    assert_eq!(x.dim(), (b, t, i), "{name}: x shape");
    let initial = RecurrentState {
        h: case.array2::<F>("h0"),
        c: with_c.then(|| case.array2::<F>("c0")),
    };
    let (outputs, final_state) = layer
        .forward_with_state(x.view(), Some(&initial))
        .unwrap_or_else(|e| panic!("{name}: forward_with_state: {e}"));

    log.check(
        name,
        "outputs",
        outputs.view(),
        case.array3::<f64>("outputs").view(),
    );
    log.check(
        name,
        "h_n",
        final_state.h.view(),
        case.array2::<f64>("h_n").view(),
    );
    // h_n is the last output, bit for bit.
    assert_eq!(
        final_state.h,
        outputs.index_axis(Axis(1), t - 1),
        "{name} ({}): h_n differs from outputs[:, T-1]",
        F::NAME
    );
    if with_c {
        let c_n = final_state
            .c
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: the final state has no c"));
        log.check(name, "c_n", c_n.view(), case.array2::<f64>("c_n").view());
    } else {
        assert!(
            final_state.c.is_none(),
            "{name}: a cell state from a cell without one"
        );
    }

    let grad_outputs = case.array3::<F>("grad_outputs");
    let d_final = RecurrentState {
        h: case.array2::<F>("grad_h_n"),
        c: with_c.then(|| case.array2::<F>("grad_c_n")),
    };
    let mut loss =
        dot(outputs.view(), grad_outputs.view()) + dot(final_state.h.view(), d_final.h.view());
    if let (Some(c_n), Some(g_c)) = (&final_state.c, &d_final.c) {
        loss += dot(c_n.view(), g_c.view());
    }
    log.check_scalar(name, "loss_L", loss, case.f64("loss_L"));

    let (d_x, d_initial) = layer
        .backward_with_state(Some(grad_outputs.view()), Some(&d_final))
        .unwrap_or_else(|e| panic!("{name}: backward_with_state: {e}"));
    let grads = layer.gradients();
    log.check(
        name,
        "grads.weight_ih",
        grads.weight_ih.view(),
        case.array2::<f64>("grads.weight_ih").view(),
    );
    log.check(
        name,
        "grads.weight_hh",
        grads.weight_hh.view(),
        case.array2::<f64>("grads.weight_hh").view(),
    );
    log.check(
        name,
        "grads.bias_ih",
        grads.bias_ih.view(),
        case.array1::<f64>("grads.bias_ih").view(),
    );
    log.check(
        name,
        "grads.bias_hh",
        grads.bias_hh.view(),
        case.array1::<f64>("grads.bias_hh").view(),
    );
    log.check(
        name,
        "grads.x",
        d_x.view(),
        case.array3::<f64>("grads.x").view(),
    );
    log.check(
        name,
        "grads.h0",
        d_initial.h.view(),
        case.array2::<f64>("grads.h0").view(),
    );
    match (&d_initial.c, with_c) {
        (Some(d_c0), true) => {
            log.check(
                name,
                "grads.c0",
                d_c0.view(),
                case.array2::<f64>("grads.c0").view(),
            );
        }
        (None, false) => {}
        (got, _) => panic!(
            "{name}: the initial-state gradient has c = {:?}, expected one iff the cell has a cell state",
            got.is_some()
        ),
    }
    // The Layer view of the same parameters sees the same gradients.
    let mut seen = Vec::new();
    layer.visit_params(&mut |p| seen.push(p.name.to_string()));
    assert_eq!(
        seen,
        ["weight_ih", "weight_hh", "bias_ih", "bias_hh"],
        "{name}: parameter order"
    );
    assert_every_gradient_checked(&case, &log);
    log
}

/// Checks the `dense` case computed in `F`, through the 2-D API and through the [`Layer`]
/// trait on `[batch, 1, in]`.
fn check_dense_case<F: Float>(name: &str) -> ErrorLog {
    let case = Case::load(name);
    assert_eq!(case.str("kind"), "dense", "{name}: kind");
    let mut log = ErrorLog::new::<F>();
    let (n, i, o) = (
        case.usize("batch"),
        case.usize("in_features"),
        case.usize("out_features"),
    );
    let weights = DenseWeights {
        weight: case.array2::<F>("params.weight"),
        bias: case.array1::<F>("params.bias"),
    };
    let x = case.array2::<F>("x");
    assert_eq!(x.dim(), (n, i), "{name}: x shape");
    let grad_outputs = case.array2::<F>("grad_outputs");
    let outputs_ref = case.array2::<f64>("outputs");
    let grads_ref = (
        case.array2::<f64>("grads.weight"),
        case.array1::<f64>("grads.bias"),
        case.array2::<f64>("grads.x"),
    );

    // 2-D API.
    let mut dense = Dense::<F>::from_weights(weights.clone(), Activation::Identity)
        .unwrap_or_else(|e| panic!("{name}: from_weights: {e}"));
    assert_eq!(
        (dense.input_size(), dense.output_size()),
        (i, o),
        "{name}: layer sizes"
    );
    let outputs = dense
        .forward_2d(x.view())
        .unwrap_or_else(|e| panic!("{name}: forward_2d: {e}"));
    log.check(name, "outputs", outputs.view(), outputs_ref.view());
    let loss = dot(outputs.view(), grad_outputs.view());
    log.check_scalar(name, "loss_L", loss, case.f64("loss_L"));
    let d_x = dense
        .backward_2d(grad_outputs.view())
        .unwrap_or_else(|e| panic!("{name}: backward_2d: {e}"));
    let grads = dense.gradients();
    log.check(
        name,
        "grads.weight",
        grads.weight.view(),
        grads_ref.0.view(),
    );
    log.check(name, "grads.bias", grads.bias.view(), grads_ref.1.view());
    log.check(name, "grads.x", d_x.view(), grads_ref.2.view());
    assert_every_gradient_checked(&case, &log);

    // The Layer trait, every row a sequence of one step.
    let mut dense = Dense::<F>::from_weights(weights, Activation::Identity)
        .unwrap_or_else(|e| panic!("{name}: from_weights: {e}"));
    let x3 = x.insert_axis(Axis(1));
    let outputs = dense
        .forward(x3.view())
        .unwrap_or_else(|e| panic!("{name}: Layer::forward: {e}"));
    log.check(
        name,
        "outputs (Layer, [batch, 1, out])",
        outputs.index_axis(Axis(1), 0),
        outputs_ref.view(),
    );
    let d_x = dense
        .backward(grad_outputs.insert_axis(Axis(1)).view())
        .unwrap_or_else(|e| panic!("{name}: Layer::backward: {e}"));
    let grads = dense.gradients();
    log.check(
        name,
        "grads.weight (Layer)",
        grads.weight.view(),
        grads_ref.0.view(),
    );
    log.check(
        name,
        "grads.bias (Layer)",
        grads.bias.view(),
        grads_ref.1.view(),
    );
    log.check(
        name,
        "grads.x (Layer)",
        d_x.index_axis(Axis(1), 0),
        grads_ref.2.view(),
    );
    log
}

/// Every array under the case's `grads` was compared.
fn assert_every_gradient_checked(case: &Case, log: &ErrorLog) {
    for key in case.keys("grads") {
        log.assert_checked(&case.name, &format!("grads.{key}"));
    }
}

fn run_case<F: Float>(name: &str) -> ErrorLog {
    match name {
        "rnn_tanh_basic" => check_recurrent_case::<SimpleRnnCell, F>(
            name,
            "rnn_tanh",
            SimpleRnnCell::new(Activation::Tanh),
        ),
        "lstm_basic" => check_recurrent_case::<LstmCell, F>(name, "lstm", LstmCell),
        "gru_basic" => check_recurrent_case::<GruCell, F>(name, "gru", GruCell::ResetAfter),
        "dense_basic" => check_dense_case::<F>(name),
        other => panic!("no single-layer check for case {other}"),
    }
}

const SINGLE_LAYER_CASES: [&str; 4] = ["rnn_tanh_basic", "lstm_basic", "gru_basic", "dense_basic"];

fn run_and_report<F: Float>(name: &str) {
    let log = run_case::<F>(name);
    println!("{name} {}", log.summary());
}

#[test]
fn rnn_tanh_basic_matches_pytorch_in_f64() {
    run_and_report::<f64>("rnn_tanh_basic");
}

#[test]
fn rnn_tanh_basic_matches_pytorch_in_f32() {
    run_and_report::<f32>("rnn_tanh_basic");
}

#[test]
fn lstm_basic_matches_pytorch_in_f64() {
    run_and_report::<f64>("lstm_basic");
}

#[test]
fn lstm_basic_matches_pytorch_in_f32() {
    run_and_report::<f32>("lstm_basic");
}

#[test]
fn gru_basic_matches_pytorch_in_f64() {
    run_and_report::<f64>("gru_basic");
}

#[test]
fn gru_basic_matches_pytorch_in_f32() {
    run_and_report::<f32>("gru_basic");
}

#[test]
fn dense_basic_matches_pytorch_in_f64() {
    run_and_report::<f64>("dense_basic");
}

#[test]
fn dense_basic_matches_pytorch_in_f32() {
    run_and_report::<f32>("dense_basic");
}

/// Every single-layer case in one log per precision, printing the worst error of each.
fn worst_over_every_case<F: Float>() -> ErrorLog {
    let mut log = ErrorLog::new::<F>();
    for name in SINGLE_LAYER_CASES {
        log.merge(run_case::<F>(name));
    }
    println!("all single-layer reference cases, {}", log.summary());
    log
}

#[test]
fn every_single_layer_case_in_the_directory_is_covered() {
    let mut on_disk: Vec<String> = std::fs::read_dir(common::reference_dir())
        .expect("tests/reference/ is readable")
        .filter_map(|e| {
            let path = e.ok()?.path();
            (path.extension()? == "json").then(|| path.file_stem()?.to_str().map(String::from))?
        })
        .filter(|name| !name.starts_with("model_"))
        .collect();
    on_disk.sort();
    let mut covered: Vec<String> = SINGLE_LAYER_CASES.iter().map(|s| s.to_string()).collect();
    covered.sort();
    assert_eq!(
        on_disk, covered,
        "single-layer cases in tests/reference/ vs the ones this file checks"
    );
}

#[test]
fn worst_relative_error_over_every_case_is_within_1e_9_in_f64() {
    let log = worst_over_every_case::<f64>();
    assert!(log.worst <= common::F64_TOLERANCE);
}

#[test]
fn worst_relative_error_over_every_case_is_within_1e_4_in_f32() {
    let log = worst_over_every_case::<f32>();
    assert!(log.worst <= common::F32_TOLERANCE);
}

#[test]
fn relative_error_helper_measures_the_normwise_error() {
    use ndarray::array;
    let reference = array![[1.0, -4.0], [2.0, 0.5]];
    let got = array![[1.0f32, -4.0], [2.1, 0.5]];
    let d = common::relative_error(got.view(), reference.view());
    assert!((d.relative - (2.1f32 as f64 - 2.0) / 4.0).abs() < 1e-15);
    assert_eq!(common::unravel(d.index, &[2, 2]), [1, 0]);
    let nan = array![[1.0, f64::NAN], [2.0, 0.5]];
    // NaN fails every `error <= tolerance` check.
    assert!(
        common::relative_error(nan.view(), reference.view())
            .relative
            .is_nan()
    );
    let zeros = ndarray::Array2::<f64>::zeros((2, 2));
    assert_eq!(
        common::relative_error(got.view(), zeros.view()).relative,
        4.0
    );
}
