//! A user's bad input gives a typed error carrying the numbers, never a panic, for every layer.

use std::panic::{AssertUnwindSafe, catch_unwind};

use ndarray::{Array2, Array3};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use recurrent::{
    Activation, Cell, Dense, DenseWeights, Error, Gru, GruCell, Init, Layer, Lstm, LstmCell,
    Recurrent, RecurrentState, RecurrentWeights, Result, SimpleRnn, SimpleRnnCell,
};

const B: usize = 2;
const T: usize = 3;
const I: usize = 2;
const H: usize = 4;

fn rng() -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(7)
}

/// Runs `f`, failing the test if it panics.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => value,
        Err(_) => panic!("{what}: panicked instead of returning an error"),
    }
}

/// `f` returns `Error::Shape` with exactly `expected` and `got`, both in the message.
fn expect_shape<T: std::fmt::Debug>(
    what: &str,
    f: impl FnOnce() -> Result<T>,
    expected: &[usize],
    got: &[usize],
) {
    match no_panic(what, f) {
        Err(err @ Error::Shape { .. }) => {
            let Error::Shape {
                expected: e,
                got: g,
                ..
            } = &err
            else {
                unreachable!()
            };
            assert_eq!(e, expected, "{what}: {err}");
            assert_eq!(g, got, "{what}: {err}");
            let message = err.to_string();
            assert!(
                message.contains(&format!("{expected:?}")),
                "{what}: {message}"
            );
            assert!(message.contains(&format!("{got:?}")), "{what}: {message}");
        }
        other => panic!("{what}: expected a shape error {expected:?} vs {got:?}, got {other:?}"),
    }
}

/// `f` returns `Error::Empty` on `axis`, the given shape in the message.
fn expect_empty<T: std::fmt::Debug>(
    what: &str,
    f: impl FnOnce() -> Result<T>,
    axis: &str,
    shape: &[usize],
) {
    match no_panic(what, f) {
        Err(err @ Error::Empty { .. }) => {
            let Error::Empty {
                axis: a, shape: s, ..
            } = &err
            else {
                unreachable!()
            };
            assert_eq!(a, axis, "{what}: {err}");
            assert_eq!(s, shape, "{what}: {err}");
            let message = err.to_string();
            assert!(message.contains(&format!("{shape:?}")), "{what}: {message}");
            assert!(message.contains(axis), "{what}: {message}");
        }
        other => panic!("{what}: expected an empty-{axis} error, got {other:?}"),
    }
}

/// `f` returns `Error::InvalidConfig` whose message contains every one of `needles`.
fn expect_config<T: std::fmt::Debug>(what: &str, f: impl FnOnce() -> Result<T>, needles: &[&str]) {
    match no_panic(what, f) {
        Err(err @ Error::InvalidConfig { .. }) => {
            let message = err.to_string();
            for needle in needles {
                assert!(
                    message.contains(needle),
                    "{what}: {message:?} lacks {needle:?}"
                );
            }
        }
        other => panic!("{what}: expected an invalid-config error, got {other:?}"),
    }
}

/// `f` returns `Error::BackwardBeforeForward` naming `layer`.
fn expect_no_forward<T: std::fmt::Debug>(what: &str, f: impl FnOnce() -> Result<T>, layer: &str) {
    match no_panic(what, f) {
        Err(err @ Error::BackwardBeforeForward { .. }) => {
            let message = err.to_string();
            assert!(message.contains(layer), "{what}: {message}");
        }
        other => panic!("{what}: expected a backward-before-forward error, got {other:?}"),
    }
}

fn x(b: usize, t: usize, i: usize) -> Array3<f64> {
    Array3::from_shape_fn((b, t, i), |(b, t, i)| {
        0.1 * (b as f64) - 0.2 * (t as f64) + 0.3 * (i as f64)
    })
}

fn layer<C: Cell>(cell: C) -> Recurrent<C, f64> {
    Recurrent::with_init(cell, I, H, Init::Torch, &mut rng()).unwrap()
}

fn the_cells() -> (SimpleRnnCell, LstmCell, GruCell, GruCell) {
    (
        SimpleRnnCell::default(),
        LstmCell,
        GruCell::ResetAfter,
        GruCell::ResetBefore,
    )
}

/// Runs `check` for every recurrent cell.
macro_rules! for_every_cell {
    ($check:ident) => {{
        let (rnn, lstm, after, before) = the_cells();
        $check(rnn);
        $check(lstm);
        $check(after);
        $check(before);
    }};
}

fn wrong_feature_count<C: Cell + Copy>(cell: C) {
    let name = cell.name();
    let mut l = layer(cell);
    let bad = x(B, T, I + 1);
    let (expected, got) = ([B, T, I], [B, T, I + 1]);
    expect_shape(name, || l.predict(bad.view()), &expected, &got);
    expect_shape(
        name,
        || l.predict_with_state(bad.view(), None),
        &expected,
        &got,
    );
    expect_shape(name, || l.forward(bad.view()), &expected, &got);
    expect_shape(
        name,
        || l.forward_with_state(bad.view(), None),
        &expected,
        &got,
    );
    let mut last = layer(cell).with_return_sequences(false);
    expect_shape(name, || last.forward(bad.view()), &expected, &got);
}

#[test]
fn a_wrong_feature_count_is_a_shape_error_for_every_recurrent_layer() {
    for_every_cell!(wrong_feature_count);
}

fn wrong_initial_state<C: Cell + Copy>(cell: C) {
    let name = cell.name();
    let mut l = layer(cell);
    let input = x(B, T, I);
    let with_c = cell.has_cell_state();
    let good_c = with_c.then(|| Array2::zeros((B, H)));
    for h_shape in [[B, H + 1], [B + 1, H], [B, H - 1]] {
        let state = RecurrentState {
            h: Array2::zeros(h_shape),
            c: good_c.clone(),
        };
        expect_shape(
            name,
            || l.predict_with_state(input.view(), Some(&state)),
            &[B, H],
            &h_shape,
        );
        expect_shape(
            name,
            || l.forward_with_state(input.view(), Some(&state)),
            &[B, H],
            &h_shape,
        );
    }
    let state_with_c = |c_shape: [usize; 2]| RecurrentState {
        h: Array2::zeros((B, H)),
        c: Some(Array2::zeros(c_shape)),
    };
    if with_c {
        for c_shape in [[B, H + 2], [B + 1, H]] {
            let state = state_with_c(c_shape);
            expect_shape(
                name,
                || l.predict_with_state(input.view(), Some(&state)),
                &[B, H],
                &c_shape,
            );
            expect_shape(
                name,
                || l.forward_with_state(input.view(), Some(&state)),
                &[B, H],
                &c_shape,
            );
        }
    } else {
        // A c state given to a cell without one (GRU, simple RNN).
        let state = state_with_c([B, H]);
        expect_config(
            name,
            || l.predict_with_state(input.view(), Some(&state)),
            &[name, "cell state"],
        );
        expect_config(
            name,
            || l.forward_with_state(input.view(), Some(&state)),
            &[name, "cell state"],
        );
    }
}

#[test]
fn a_wrong_initial_state_is_a_typed_error_for_every_recurrent_layer() {
    for_every_cell!(wrong_initial_state);
}

fn empty_input<C: Cell + Copy>(cell: C) {
    let name = cell.name();
    let mut l = layer(cell);
    for (axis, shape) in [("batch", [0, T, I]), ("steps", [B, 0, I])] {
        let empty = x(shape[0], shape[1], shape[2]);
        expect_empty(name, || l.predict(empty.view()), axis, &shape);
        expect_empty(name, || l.forward(empty.view()), axis, &shape);
        expect_empty(
            name,
            || l.forward_with_state(empty.view(), None),
            axis,
            &shape,
        );
        expect_empty(
            name,
            || l.predict_with_state(empty.view(), None),
            axis,
            &shape,
        );
    }
}

#[test]
fn an_empty_batch_or_zero_steps_is_an_empty_error_for_every_recurrent_layer() {
    for_every_cell!(empty_input);
}

fn zero_sizes<C: Cell + Copy>(cell: C) {
    let name = cell.name();
    for (input, hidden, which) in [(0, H, "input_size"), (I, 0, "hidden_size"), (0, 0, "")] {
        for init in [Init::Glorot, Init::Torch] {
            expect_config(
                name,
                || Recurrent::<C, f64>::with_init(cell, input, hidden, init, &mut rng()),
                &[name, which, "0"],
            );
        }
    }
    // Weights with no rows, or a row count that is not a multiple of the gates.
    let g = cell.gates();
    let weights = |rows: usize| RecurrentWeights::<f64> {
        weight_ih: Array2::zeros((rows, I)),
        weight_hh: Array2::zeros((rows, H)),
        bias_ih: ndarray::Array1::zeros(rows),
        bias_hh: ndarray::Array1::zeros(rows),
    };
    expect_config(
        name,
        || Recurrent::from_weights(cell, weights(0)),
        &[name, "0"],
    );
    if g > 1 {
        expect_config(
            name,
            || Recurrent::from_weights(cell, weights(g * H + 1)),
            &[name, &(g * H + 1).to_string()],
        );
    }
}

#[test]
fn zero_sizes_in_constructors_are_config_errors_for_every_recurrent_layer() {
    for_every_cell!(zero_sizes);
    expect_config(
        "simple_rnn",
        || SimpleRnn::<f32>::new(0, 3, &mut rng()),
        &["0"],
    );
    expect_config("lstm", || Lstm::<f32>::new(3, 0, &mut rng()), &["0"]);
    expect_config("gru", || Gru::<f32>::new(0, 0, &mut rng()), &["0"]);
}

fn backward_without_forward<C: Cell + Copy>(cell: C) {
    let name = cell.name();
    let mut l = layer(cell);
    let d = Array3::<f64>::ones((B, T, H));
    expect_no_forward(name, || l.backward(d.view()), name);
    expect_no_forward(name, || l.backward_with_state(Some(d.view()), None), name);
    let mut last = layer(cell).with_return_sequences(false);
    let d_last = Array3::<f64>::ones((B, 1, H));
    expect_no_forward(name, || last.backward(d_last.view()), name);

    // predict keeps no cache, and a backward consumes the forward's.
    let input = x(B, T, I);
    l.predict(input.view()).unwrap();
    expect_no_forward(name, || l.backward(d.view()), name);
    l.forward(input.view()).unwrap();
    no_panic(name, || l.backward(d.view())).unwrap();
    expect_no_forward(name, || l.backward(d.view()), name);
}

#[test]
fn backward_without_forward_is_a_typed_error_for_every_recurrent_layer() {
    for_every_cell!(backward_without_forward);
}

fn wrong_output_gradient<C: Cell + Copy>(cell: C) {
    let name = cell.name();
    let input = x(B, T, I);
    for bad in [[B, T, H + 1], [B + 1, T, H], [B, T + 1, H], [B, 1, H]] {
        let mut l = layer(cell);
        l.forward(input.view()).unwrap();
        let d = Array3::<f64>::ones(bad);
        expect_shape(name, || l.backward(d.view()), &[B, T, H], &bad);
        let mut l = layer(cell);
        l.forward_with_state(input.view(), None).unwrap();
        expect_shape(
            name,
            || l.backward_with_state(Some(d.view()), None),
            &[B, T, H],
            &bad,
        );
    }
    // Only the last step returned: the gradient is [B, 1, H].
    for bad in [[B, T, H], [B, 1, H + 1], [B + 1, 1, H]] {
        let mut last = layer(cell).with_return_sequences(false);
        last.forward(input.view()).unwrap();
        let d = Array3::<f64>::ones(bad);
        expect_shape(name, || last.backward(d.view()), &[B, 1, H], &bad);
        // The cache survives a rejected gradient here.
        let good = Array3::<f64>::ones((B, 1, H));
        let d_x = no_panic(name, || last.backward(good.view())).unwrap();
        assert_eq!(d_x.shape(), &[B, T, I]);
    }
    // The final state's gradient.
    let mut l = layer(cell);
    l.forward_with_state(input.view(), None).unwrap();
    let d_final = RecurrentState {
        h: Array2::<f64>::ones((B, H + 1)),
        c: None,
    };
    expect_shape(
        name,
        || l.backward_with_state(None, Some(&d_final)),
        &[B, H],
        &[B, H + 1],
    );
    let mut l = layer(cell);
    l.forward_with_state(input.view(), None).unwrap();
    let d_final = RecurrentState {
        h: Array2::<f64>::ones((B, H)),
        c: Some(Array2::<f64>::ones((B + 1, H))),
    };
    if cell.has_cell_state() {
        expect_shape(
            name,
            || l.backward_with_state(None, Some(&d_final)),
            &[B, H],
            &[B + 1, H],
        );
    } else {
        expect_config(
            name,
            || l.backward_with_state(None, Some(&d_final)),
            &[name, "cell"],
        );
    }
}

#[test]
fn a_wrong_output_gradient_shape_is_a_shape_error_for_every_recurrent_layer() {
    for_every_cell!(wrong_output_gradient);
}

fn dense() -> Dense<f64> {
    Dense::with_init(I, 3, Activation::Tanh, Init::Torch, &mut rng()).unwrap()
}

#[test]
fn a_wrong_feature_count_is_a_shape_error_for_dense() {
    let mut d = dense();
    let bad = x(B, T, I + 1);
    let (expected, got) = ([B, T, I], [B, T, I + 1]);
    expect_shape("dense", || d.predict(bad.view()), &expected, &got);
    expect_shape("dense", || d.forward(bad.view()), &expected, &got);
    let rows = Array2::<f64>::zeros((5, I + 2));
    expect_shape("dense", || d.predict_2d(rows.view()), &[5, I], &[5, I + 2]);
    expect_shape("dense", || d.forward_2d(rows.view()), &[5, I], &[5, I + 2]);
}

#[test]
fn an_empty_batch_or_zero_steps_is_an_empty_error_for_dense() {
    let mut d = dense();
    for (axis, shape) in [("batch", [0, T, I]), ("steps", [B, 0, I])] {
        let empty = x(shape[0], shape[1], shape[2]);
        expect_empty("dense", || d.predict(empty.view()), axis, &shape);
        expect_empty("dense", || d.forward(empty.view()), axis, &shape);
    }
    let rows = Array2::<f64>::zeros((0, I));
    expect_empty("dense", || d.forward_2d(rows.view()), "rows", &[0, I]);
    expect_empty("dense", || d.predict_2d(rows.view()), "rows", &[0, I]);
}

#[test]
fn zero_sizes_and_bad_weights_in_constructors_are_typed_errors_for_dense() {
    for (input, output, which) in [(0, 3, "input_size"), (I, 0, "output_size")] {
        for init in [Init::Glorot, Init::Torch] {
            expect_config(
                "dense",
                || Dense::<f64>::with_init(input, output, Activation::Identity, init, &mut rng()),
                &["dense", which, "0"],
            );
        }
        expect_config(
            "dense",
            || Dense::<f32>::new(input, output, Activation::Relu, &mut rng()),
            &["dense", which, "0"],
        );
        let weights = DenseWeights::<f64> {
            weight: Array2::zeros((output, input)),
            bias: ndarray::Array1::zeros(output),
        };
        expect_config(
            "dense",
            || Dense::from_weights(weights, Activation::Identity),
            &["dense", which, "0"],
        );
    }
    let weights = DenseWeights::<f64> {
        weight: Array2::zeros((3, I)),
        bias: ndarray::Array1::zeros(4),
    };
    expect_shape(
        "dense",
        || Dense::from_weights(weights, Activation::Identity),
        &[3],
        &[4],
    );
}

#[test]
fn backward_without_forward_is_a_typed_error_for_dense() {
    let mut d = dense();
    let grad = Array3::<f64>::ones((B, T, 3));
    expect_no_forward("dense", || d.backward(grad.view()), "dense");
    let rows = Array2::<f64>::ones((B * T, 3));
    expect_no_forward("dense", || d.backward_2d(rows.view()), "dense");
    d.predict(x(B, T, I).view()).unwrap();
    expect_no_forward("dense", || d.backward(grad.view()), "dense");
    d.forward(x(B, T, I).view()).unwrap();
    no_panic("dense", || d.backward(grad.view())).unwrap();
    expect_no_forward("dense", || d.backward(grad.view()), "dense");
}

#[test]
fn a_wrong_output_gradient_shape_is_a_shape_error_for_dense() {
    let mut d = dense();
    d.forward_2d(Array2::<f64>::ones((5, I)).view()).unwrap();
    let bad = Array2::<f64>::ones((5, 4));
    expect_shape("dense", || d.backward_2d(bad.view()), &[5, 3], &[5, 4]);
    let bad = Array2::<f64>::ones((6, 3));
    expect_shape("dense", || d.backward_2d(bad.view()), &[5, 3], &[6, 3]);
    // The cache survives a rejected gradient.
    let good = Array2::<f64>::ones((5, 3));
    assert_eq!(
        no_panic("dense", || d.backward_2d(good.view()))
            .unwrap()
            .shape(),
        &[5, I]
    );

    // As a layer on [B, T, out]: a typed shape error naming the wrong width.
    d.forward(x(B, T, I).view()).unwrap();
    let bad = Array3::<f64>::ones((B, T, 4));
    match no_panic("dense", || d.backward(bad.view())) {
        Err(err @ Error::Shape { .. }) => {
            let message = err.to_string();
            assert!(message.contains("dense output gradient"), "{message}");
            assert!(message.contains('4') && message.contains('3'), "{message}");
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
    let bad = Array3::<f64>::ones((B + 1, T, 3));
    match no_panic("dense", || d.backward(bad.view())) {
        Err(Error::Shape { .. }) => {}
        other => panic!("expected a shape error, got {other:?}"),
    }
}

/// Found while writing these tests: a recurrent layer's `backward_with_state` takes its cache
/// before checking the gradient's shape, so a rejected gradient also throws the forward away and
/// the corrected call then fails with `BackwardBeforeForward` (a dense layer keeps its cache).
#[test]

fn a_rejected_output_gradient_keeps_the_recurrent_forward_cache() {
    let (rnn, lstm, after, before) = the_cells();
    fn check<C: Cell + Copy>(cell: C) {
        let mut l = layer(cell);
        l.forward(x(B, T, I).view()).unwrap();
        assert!(
            l.backward(Array3::<f64>::ones((B, T, H + 1)).view())
                .is_err()
        );
        let d_x = l.backward(Array3::<f64>::ones((B, T, H)).view());
        assert!(d_x.is_ok(), "{}: {d_x:?}", cell.name());
    }
    check(rnn);
    check(lstm);
    check(after);
    check(before);
}

/// Found while writing these tests: `Dense` as a [`Layer`] checks the output gradient only as
/// `[B·T, out]` rows, so a `[T, B, out]` gradient for a `[B, T, in]` forward (B ≠ T) is accepted
/// and its ∂x comes back as `[T, B, in]`.
#[test]

fn dense_rejects_an_output_gradient_with_batch_and_steps_swapped() {
    let mut d = dense();
    d.forward(x(B, T, I).view()).unwrap();
    let swapped = Array3::<f64>::ones((T, B, 3));
    assert!(matches!(
        d.backward(swapped.view()),
        Err(Error::Shape { .. })
    ));
}
