//! PyTorch and Keras weight layouts: round trips, the Keras gate order checked against Keras's
//! own equations, and typed errors for what a layout cannot hold.

use ndarray::{Array1, Array2, Array3, array};
use ndarray_rand::RandomExt;
use ndarray_rand::rand_distr::Uniform;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use recurrent::interop::{self, InteropCell, KerasBias, KerasDenseWeights, KerasRecurrentWeights};
use recurrent::{
    Activation, Cell, Dense, DenseWeights, Error, Float, Gru, GruCell, Layer, LstmCell, Recurrent,
    RecurrentState, RecurrentWeights, SimpleRnnCell,
};

const I: usize = 3;
const H: usize = 4;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn matrix<F: Float>(rows: usize, cols: usize, rng: &mut ChaCha8Rng) -> Array2<F> {
    let dist = Uniform::new(-0.8, 0.8).unwrap();
    Array2::<f64>::random_using((rows, cols), dist, rng).mapv(F::from_f64)
}

fn vector<F: Float>(len: usize, rng: &mut ChaCha8Rng) -> Array1<F> {
    let dist = Uniform::new(-0.8, 0.8).unwrap();
    Array1::<f64>::random_using(len, dist, rng).mapv(F::from_f64)
}

/// PyTorch-layout weights for `cell`, every entry (both biases included) random and nonzero.
fn torch_weights<C: Cell, F: Float>(cell: &C, rng: &mut ChaCha8Rng) -> RecurrentWeights<F> {
    let gh = cell.gates() * H;
    RecurrentWeights {
        weight_ih: matrix(gh, I, rng),
        weight_hh: matrix(gh, H, rng),
        bias_ih: vector(gh, rng),
        bias_hh: vector(gh, rng),
    }
}

/// Keras-layout weights for `cell`, with the bias kind Keras uses for it.
fn keras_weights<C: InteropCell, F: Float>(
    cell: &C,
    rng: &mut ChaCha8Rng,
) -> KerasRecurrentWeights<F> {
    let gh = cell.gates() * H;
    KerasRecurrentWeights {
        kernel: matrix(I, gh, rng),
        recurrent_kernel: matrix(H, gh, rng),
        bias: if cell.keras_split_bias() {
            KerasBias::Split(matrix(2, gh, rng))
        } else {
            KerasBias::Single(vector(gh, rng))
        },
    }
}

fn bits<F: Float>(values: impl IntoIterator<Item = F>) -> Vec<u64> {
    values.into_iter().map(|v| v.to_f64().to_bits()).collect()
}

fn assert_same_bits<F: Float, D: ndarray::Dimension>(
    what: &str,
    a: &ndarray::Array<F, D>,
    b: &ndarray::Array<F, D>,
) {
    assert_eq!(a.shape(), b.shape(), "{what}: shapes differ");
    assert_eq!(
        bits(a.iter().copied()),
        bits(b.iter().copied()),
        "{what} differs"
    );
}

fn assert_torch_bits<F: Float>(what: &str, a: &RecurrentWeights<F>, b: &RecurrentWeights<F>) {
    assert_same_bits(&format!("{what} weight_ih"), &a.weight_ih, &b.weight_ih);
    assert_same_bits(&format!("{what} weight_hh"), &a.weight_hh, &b.weight_hh);
    assert_same_bits(&format!("{what} bias_ih"), &a.bias_ih, &b.bias_ih);
    assert_same_bits(&format!("{what} bias_hh"), &a.bias_hh, &b.bias_hh);
}

fn assert_keras_bits<F: Float>(
    what: &str,
    a: &KerasRecurrentWeights<F>,
    b: &KerasRecurrentWeights<F>,
) {
    assert_same_bits(&format!("{what} kernel"), &a.kernel, &b.kernel);
    assert_same_bits(
        &format!("{what} recurrent_kernel"),
        &a.recurrent_kernel,
        &b.recurrent_kernel,
    );
    match (&a.bias, &b.bias) {
        (KerasBias::Single(x), KerasBias::Single(y)) => {
            assert_same_bits(&format!("{what} bias"), x, y)
        }
        (KerasBias::Split(x), KerasBias::Split(y)) => {
            assert_same_bits(&format!("{what} bias"), x, y)
        }
        (x, y) => panic!(
            "{what}: bias kinds differ: {:?} vs {:?}",
            x.shape(),
            y.shape()
        ),
    }
}

fn torch_round_trip<C: InteropCell + Copy, F: Float>(cell: C, seed: u64) {
    let original = torch_weights::<C, F>(&cell, &mut rng(seed));
    let layer = interop::from_torch(cell, original.clone()).unwrap();
    let exported = interop::to_torch(&layer).unwrap();
    assert_torch_bits(
        &format!("{} {}", cell.name(), F::NAME),
        &original,
        &exported,
    );
}

fn keras_round_trip<C: InteropCell + Copy, F: Float>(cell: C, seed: u64) {
    let original = keras_weights::<C, F>(&cell, &mut rng(seed));
    let layer = interop::from_keras(cell, original.clone()).unwrap();
    let exported = interop::to_keras(&layer).unwrap();
    assert_keras_bits(
        &format!("{} {}", cell.name(), F::NAME),
        &original,
        &exported,
    );
}

fn torch_round_trips_are_bit_exact<F: Float>() {
    torch_round_trip::<_, F>(SimpleRnnCell::new(Activation::Tanh), 1);
    torch_round_trip::<_, F>(SimpleRnnCell::new(Activation::Relu), 2);
    torch_round_trip::<_, F>(LstmCell, 3);
    torch_round_trip::<_, F>(GruCell::ResetAfter, 4);
}

fn keras_round_trips_are_bit_exact<F: Float>() {
    for (k, activation) in [
        Activation::Tanh,
        Activation::Relu,
        Activation::Sigmoid,
        Activation::Identity,
    ]
    .into_iter()
    .enumerate()
    {
        keras_round_trip::<_, F>(SimpleRnnCell::new(activation), 10 + k as u64);
    }
    keras_round_trip::<_, F>(LstmCell, 20);
    keras_round_trip::<_, F>(GruCell::ResetAfter, 21);
    keras_round_trip::<_, F>(GruCell::ResetBefore, 22);
}

fn dense_round_trips_are_bit_exact<F: Float>() {
    let mut r = rng(30);
    let torch = DenseWeights {
        weight: matrix::<F>(2, 5, &mut r),
        bias: vector::<F>(2, &mut r),
    };
    let layer = interop::dense_from_torch(torch.clone(), Activation::Tanh).unwrap();
    let back = interop::dense_to_torch(&layer);
    assert_same_bits("dense torch weight", &torch.weight, &back.weight);
    assert_same_bits("dense torch bias", &torch.bias, &back.bias);

    let keras = KerasDenseWeights {
        kernel: matrix::<F>(5, 2, &mut r),
        bias: vector::<F>(2, &mut r),
    };
    let layer = interop::dense_from_keras(keras.clone(), Activation::Identity).unwrap();
    assert_eq!(layer.input_size(), 5);
    assert_eq!(layer.output_size(), 2);
    let back = interop::dense_to_keras(&layer);
    assert_same_bits("dense keras kernel", &keras.kernel, &back.kernel);
    assert_same_bits("dense keras bias", &keras.bias, &back.bias);
}

#[test]
fn pytorch_round_trips_are_bit_exact_in_f64() {
    torch_round_trips_are_bit_exact::<f64>();
}

#[test]
fn pytorch_round_trips_are_bit_exact_in_f32() {
    torch_round_trips_are_bit_exact::<f32>();
}

#[test]
fn keras_round_trips_are_bit_exact_in_f64() {
    keras_round_trips_are_bit_exact::<f64>();
}

#[test]
fn keras_round_trips_are_bit_exact_in_f32() {
    keras_round_trips_are_bit_exact::<f32>();
}

#[test]
fn dense_round_trips_are_bit_exact_in_f64_and_f32() {
    dense_round_trips_are_bit_exact::<f64>();
    dense_round_trips_are_bit_exact::<f32>();
}

#[test]
fn weight_structs_survive_serde_bit_for_bit() {
    let mut r = rng(40);
    let keras = keras_weights::<_, f64>(&GruCell::ResetAfter, &mut r);
    let json = serde_json::to_string(&keras).unwrap();
    let back: KerasRecurrentWeights<f64> = serde_json::from_str(&json).unwrap();
    assert_keras_bits("serde keras gru", &keras, &back);

    let keras = keras_weights::<_, f32>(&LstmCell, &mut r);
    let json = serde_json::to_string(&keras).unwrap();
    let back: KerasRecurrentWeights<f32> = serde_json::from_str(&json).unwrap();
    assert_keras_bits("serde keras lstm", &keras, &back);

    let dense = KerasDenseWeights {
        kernel: matrix::<f64>(3, 2, &mut r),
        bias: vector::<f64>(2, &mut r),
    };
    let json = serde_json::to_string(&dense).unwrap();
    let back: KerasDenseWeights<f64> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, dense);
}

/// max |a − b| / max(max |a|, tiny): the normwise relative difference.
fn relative_difference(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    let scale = a.iter().map(|x| x.abs()).fold(f64::MIN_POSITIVE, f64::max);
    diff / scale
}

fn assert_close(what: &str, a: &[f64], b: &[f64], tol: f64) {
    let rel = relative_difference(a, b);
    assert!(rel <= tol, "{what}: relative difference {rel:e} > {tol:e}");
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * x.abs().max(y.abs()).max(1e-3),
            "{what}[{k}]: {x} vs {y}"
        );
    }
}

fn random_state(batch: usize, with_cell: bool, r: &mut ChaCha8Rng) -> RecurrentState<f64> {
    RecurrentState {
        h: matrix(batch, H, r),
        c: with_cell.then(|| matrix(batch, H, r)),
    }
}

fn same_outputs(what: &str, a: &Recurrent<impl Cell, f64>, b: &Recurrent<impl Cell, f64>) {
    let mut r = rng(50);
    let dist = Uniform::new(-1.5, 1.5).unwrap();
    let x = Array3::<f64>::random_using((3, 7, I), dist, &mut r);
    let state = random_state(3, a.cell().has_cell_state(), &mut r);
    for initial in [None, Some(&state)] {
        let (out_a, fin_a) = a.predict_with_state(x.view(), initial).unwrap();
        let (out_b, fin_b) = b.predict_with_state(x.view(), initial).unwrap();
        let tag = if initial.is_some() {
            "random initial state"
        } else {
            "zero initial state"
        };
        assert_close(
            &format!("{what} outputs ({tag})"),
            out_a.as_slice().unwrap(),
            out_b.as_slice().unwrap(),
            1e-12,
        );
        assert_close(
            &format!("{what} final h ({tag})"),
            fin_a.h.as_slice().unwrap(),
            fin_b.h.as_slice().unwrap(),
            1e-12,
        );
        match (&fin_a.c, &fin_b.c) {
            (Some(ca), Some(cb)) => assert_close(
                &format!("{what} final c ({tag})"),
                ca.as_slice().unwrap(),
                cb.as_slice().unwrap(),
                1e-12,
            ),
            (None, None) => {}
            _ => panic!("{what}: one final state has a cell part, the other not"),
        }
    }
}

fn keras_export_keeps_the_function<C: InteropCell + Copy>(cell: C, seed: u64) {
    let weights = torch_weights::<C, f64>(&cell, &mut rng(seed));
    assert!(weights.bias_ih.iter().all(|&b| b != 0.0));
    assert!(weights.bias_hh.iter().all(|&b| b != 0.0));
    let original = Recurrent::from_weights(cell, weights).unwrap();
    let keras = interop::to_keras(&original).unwrap();
    let imported = interop::from_keras(cell, keras).unwrap();
    same_outputs(cell.name(), &original, &imported);
}

#[test]
fn keras_export_of_two_nonzero_biases_computes_the_same_function() {
    keras_export_keeps_the_function(SimpleRnnCell::new(Activation::Tanh), 60);
    keras_export_keeps_the_function(SimpleRnnCell::new(Activation::Relu), 61);
    keras_export_keeps_the_function(SimpleRnnCell::new(Activation::Sigmoid), 62);
    keras_export_keeps_the_function(LstmCell, 63);
    keras_export_keeps_the_function(GruCell::ResetAfter, 64);
    keras_export_keeps_the_function(GruCell::ResetBefore, 65);
}

#[test]
fn keras_import_puts_a_single_bias_in_bias_ih_and_zero_in_bias_hh() {
    let keras = keras_weights::<_, f64>(&LstmCell, &mut rng(70));
    let KerasBias::Single(bias) = &keras.bias else {
        panic!("an LSTM has one Keras bias")
    };
    let native = keras.to_native(&LstmCell).unwrap();
    assert_eq!(&native.bias_ih, bias);
    assert!(native.bias_hh.iter().all(|&b| b == 0.0));
    // LSTM gates i, f, c, o are the crate's i, f, g, o: a plain transpose.
    assert_eq!(native.weight_ih, keras.kernel.t());
    assert_eq!(native.weight_hh, keras.recurrent_kernel.t());
}

#[test]
fn reset_after_gru_keeps_both_biases_through_keras() {
    let weights = torch_weights::<_, f64>(&GruCell::ResetAfter, &mut rng(71));
    let gru = interop::from_torch(GruCell::ResetAfter, weights.clone()).unwrap();
    let keras = interop::to_keras(&gru).unwrap();
    // Keras z, r, h = the crate's blocks 1, 0, 2, as columns.
    for (keras_block, native_block) in [(0, 1), (1, 0), (2, 2)] {
        for j in 0..H {
            for i in 0..I {
                assert_eq!(
                    keras.kernel[[i, keras_block * H + j]],
                    weights.weight_ih[[native_block * H + j, i]]
                );
            }
            let KerasBias::Split(bias) = &keras.bias else {
                panic!("a reset-after GRU has a [2, 3H] Keras bias")
            };
            assert_eq!(
                bias[[0, keras_block * H + j]],
                weights.bias_ih[native_block * H + j]
            );
            assert_eq!(
                bias[[1, keras_block * H + j]],
                weights.bias_hh[native_block * H + j]
            );
        }
    }
    let back = interop::from_keras(GruCell::ResetAfter, keras).unwrap();
    assert_torch_bits("gru via keras", &weights, &back.weights());
}

#[test]
fn reset_before_gru_exports_a_single_summed_bias() {
    let weights = torch_weights::<_, f64>(&GruCell::ResetBefore, &mut rng(72));
    let gru = Recurrent::from_weights(GruCell::ResetBefore, weights.clone()).unwrap();
    let keras = interop::to_keras(&gru).unwrap();
    let KerasBias::Single(bias) = &keras.bias else {
        panic!("a reset-before GRU has a [3H] Keras bias")
    };
    for (keras_block, native_block) in [(0, 1), (1, 0), (2, 2)] {
        for j in 0..H {
            let n = native_block * H + j;
            assert_eq!(
                bias[keras_block * H + j],
                weights.bias_ih[n] + weights.bias_hh[n]
            );
        }
    }
}

#[test]
fn pytorch_export_of_a_reset_before_gru_is_unsupported() {
    let mut r = rng(80);
    let gru =
        Gru::<f64>::with_init(GruCell::ResetBefore, I, H, recurrent::Init::Torch, &mut r).unwrap();
    let err = interop::to_torch(&gru).unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
    assert!(err.to_string().contains("reset-before"), "{err}");
    let err = interop::from_torch(GruCell::ResetBefore, gru.weights()).unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
}

#[test]
fn pytorch_has_no_simple_rnn_with_another_activation_than_tanh_or_relu() {
    for activation in [Activation::Sigmoid, Activation::Identity] {
        let cell = SimpleRnnCell::new(activation);
        let weights = torch_weights::<_, f64>(&cell, &mut rng(81));
        let layer = Recurrent::from_weights(cell, weights.clone()).unwrap();
        let err = interop::to_torch(&layer).unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
        assert!(err.to_string().contains(activation.name()), "{err}");
        let err = interop::from_torch(cell, weights).unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
        // Keras's SimpleRNN takes any activation.
        assert!(interop::to_keras(&layer).is_ok());
    }
}

fn assert_shape_error<T: std::fmt::Debug>(
    result: recurrent::Result<T>,
    expected: &[usize],
    got: &[usize],
) {
    match result {
        Err(err @ Error::Shape { .. }) => {
            let Error::Shape {
                expected: e,
                got: g,
                ..
            } = &err
            else {
                unreachable!()
            };
            assert_eq!(e, expected, "{err}");
            assert_eq!(g, got, "{err}");
            let message = err.to_string();
            assert!(message.contains(&format!("{expected:?}")), "{message}");
            assert!(message.contains(&format!("{got:?}")), "{message}");
        }
        other => panic!("expected a shape error {expected:?} vs {got:?}, got {other:?}"),
    }
}

#[test]
fn wrong_pytorch_shapes_are_shape_errors() {
    let cell = LstmCell;
    let good = torch_weights::<_, f64>(&cell, &mut rng(90));
    let gh = 4 * H;

    let mut w = good.clone();
    w.weight_ih = matrix(gh - 1, I, &mut rng(1));
    assert_shape_error(interop::from_torch(cell, w), &[gh, I], &[gh - 1, I]);

    let mut w = good.clone();
    w.weight_hh = matrix(gh + 1, H, &mut rng(1));
    assert_shape_error(interop::from_torch(cell, w), &[gh, H], &[gh + 1, H]);

    let mut w = good.clone();
    w.bias_ih = vector(gh + 2, &mut rng(1));
    assert_shape_error(interop::from_torch(cell, w), &[gh], &[gh + 2]);

    let mut w = good.clone();
    w.bias_hh = vector(3, &mut rng(1));
    assert_shape_error(interop::from_torch(cell, w), &[gh], &[3]);

    // GRU weights (3 gates) given as an LSTM (4 gates).
    let gru = torch_weights::<_, f64>(&GruCell::ResetAfter, &mut rng(91));
    assert_shape_error(interop::from_torch(LstmCell, gru), &[4 * H, H], &[3 * H, H]);

    let mut w = good;
    w.weight_hh = Array2::zeros((0, 0));
    let err = interop::from_torch(cell, w).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { .. }), "{err:?}");
}

#[test]
fn wrong_keras_shapes_are_shape_errors() {
    let gh = 3 * H;
    let after = GruCell::ResetAfter;
    let before = GruCell::ResetBefore;
    let good = keras_weights::<_, f64>(&after, &mut rng(92));

    let mut w = good.clone();
    w.kernel = matrix(I, gh + 1, &mut rng(1));
    assert_shape_error(interop::from_keras(after, w), &[I, gh], &[I, gh + 1]);

    let mut w = good.clone();
    w.recurrent_kernel = matrix(H, gh - 1, &mut rng(1));
    assert_shape_error(interop::from_keras(after, w), &[H, gh], &[H, gh - 1]);

    let mut w = good.clone();
    w.bias = KerasBias::Split(matrix(2, gh + 3, &mut rng(1)));
    assert_shape_error(interop::from_keras(after, w), &[2, gh], &[2, gh + 3]);

    let mut w = good.clone();
    w.bias = KerasBias::Split(matrix(3, gh, &mut rng(1)));
    assert_shape_error(interop::from_keras(after, w), &[2, gh], &[3, gh]);

    // A 1-D bias into a reset-after cell, a [2, 3H] bias into a reset-before one.
    let mut w = good.clone();
    w.bias = KerasBias::Single(vector(gh, &mut rng(1)));
    assert_shape_error(interop::from_keras(after, w), &[2, gh], &[gh]);
    assert_shape_error(interop::from_keras(before, good.clone()), &[gh], &[2, gh]);

    // A single bias of the wrong length.
    let mut w = keras_weights::<_, f64>(&before, &mut rng(93));
    w.bias = KerasBias::Single(vector(gh - 2, &mut rng(1)));
    assert_shape_error(interop::from_keras(before, w), &[gh], &[gh - 2]);

    // GRU weights read as an LSTM: [H, 3H] where [H, 4H] is needed.
    let lstm = KerasRecurrentWeights {
        bias: KerasBias::Single(vector(gh, &mut rng(1))),
        ..good.clone()
    };
    assert_shape_error(interop::from_keras(LstmCell, lstm), &[H, 4 * H], &[H, gh]);

    let mut w = good;
    w.kernel = Array2::zeros((0, gh));
    let err = interop::from_keras(after, w).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { .. }), "{err:?}");
}

#[test]
fn wrong_dense_shapes_are_shape_errors() {
    let keras = KerasDenseWeights {
        kernel: matrix::<f64>(3, 2, &mut rng(94)),
        bias: vector::<f64>(3, &mut rng(95)),
    };
    assert_shape_error(
        interop::dense_from_keras(keras.clone(), Activation::Identity),
        &[2],
        &[3],
    );
    assert_shape_error(keras.to_native(), &[2], &[3]);
    let torch = DenseWeights {
        weight: matrix::<f64>(2, 3, &mut rng(96)),
        bias: vector::<f64>(3, &mut rng(97)),
    };
    assert_shape_error(KerasDenseWeights::from_native(&torch), &[2], &[3]);
    assert_shape_error(
        interop::dense_from_torch(torch, Activation::Identity),
        &[2],
        &[3],
    );
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn a_one_unit_keras_gru_gives_the_hand_computed_output() {
    // Keras columns z, r, h. One input, one unit, one step: x = 1, h0 = 0.5.
    let kernel = array![[0.5, -0.3, 0.8]];
    let recurrent_kernel = array![[0.2, 0.4, -0.6]];
    let x = Array3::from_elem((1, 1, 1), 1.0);
    let h0 = RecurrentState {
        h: array![[0.5]],
        c: None,
    };

    // reset_after=True, bias rows [input; recurrent]:
    //   z  = σ(0.5·1 + 0.1 + 0.2·0.5 + 0.05)                 = σ(0.75)
    //   r  = σ(−0.3·1 − 0.2 + 0.4·0.5 + 0.15)                = σ(−0.15)
    //   hh = tanh(0.8·1 + 0.3 + r · (−0.6·0.5 − 0.25))       = tanh(1.1 − 0.55 r)
    //   h  = z · 0.5 + (1 − z) · hh                          = 0.5605571611485796
    let weights = KerasRecurrentWeights {
        kernel: kernel.clone(),
        recurrent_kernel: recurrent_kernel.clone(),
        bias: KerasBias::Split(array![[0.1, -0.2, 0.3], [0.05, 0.15, -0.25]]),
    };
    let gru = interop::from_keras(interop::keras_gru_cell(true), weights).unwrap();
    let (out, _) = gru.predict_with_state(x.view(), Some(&h0)).unwrap();
    let by_hand = {
        let (z, r) = (sigmoid(0.75), sigmoid(-0.15));
        let hh = (1.1 - 0.55 * r).tanh();
        z * 0.5 + (1.0 - z) * hh
    };
    assert!((by_hand - 0.5605571611485796).abs() < 1e-15);
    assert!((out[[0, 0, 0]] - by_hand).abs() < 1e-14, "{out}");

    // reset_after=False, one bias:
    //   z  = σ(0.5 + 0.1 + 0.2·0.5)                          = σ(0.7)
    //   r  = σ(−0.3 − 0.2 + 0.4·0.5)                         = σ(−0.3)
    //   hh = tanh(0.8 + 0.3 + (r · 0.5) · (−0.6))            = tanh(1.1 − 0.3 r)
    //   h  = z · 0.5 + (1 − z) · hh                          = 0.5828626740029937
    let weights = KerasRecurrentWeights {
        kernel,
        recurrent_kernel,
        bias: KerasBias::Single(array![0.1, -0.2, 0.3]),
    };
    let gru = interop::from_keras(interop::keras_gru_cell(false), weights).unwrap();
    let (out, _) = gru.predict_with_state(x.view(), Some(&h0)).unwrap();
    let by_hand = {
        let (z, r) = (sigmoid(0.7), sigmoid(-0.3));
        let hh = (1.1 - 0.3 * r).tanh();
        z * 0.5 + (1.0 - z) * hh
    };
    assert!((by_hand - 0.5828626740029937).abs() < 1e-15);
    assert!((out[[0, 0, 0]] - by_hand).abs() < 1e-14, "{out}");
}

/// Keras's `GRUCell.call`, written from its equations in Keras's own layout (columns z, r, h).
fn keras_gru_reference(
    w: &KerasRecurrentWeights<f64>,
    reset_after: bool,
    x: &Array3<f64>,
    h0: &Array2<f64>,
) -> Array3<f64> {
    let (batch, steps, inputs) = x.dim();
    let units = w.recurrent_kernel.nrows();
    let (b_in, b_rec) = match &w.bias {
        KerasBias::Split(b) => (b.row(0).to_owned(), b.row(1).to_owned()),
        KerasBias::Single(b) => (b.clone(), Array1::zeros(3 * units)),
    };
    let mut out = Array3::zeros((batch, steps, units));
    for b in 0..batch {
        let mut h = h0.row(b).to_owned();
        for t in 0..steps {
            // x · kernel + input bias, for all three blocks.
            let xw = |col: usize| {
                (0..inputs)
                    .map(|i| x[[b, t, i]] * w.kernel[[i, col]])
                    .sum::<f64>()
                    + b_in[col]
            };
            let hu = |v: &Array1<f64>, col: usize| {
                (0..units)
                    .map(|k| v[k] * w.recurrent_kernel[[k, col]])
                    .sum::<f64>()
            };
            let mut z = Array1::zeros(units);
            let mut r = Array1::zeros(units);
            for j in 0..units {
                z[j] = sigmoid(xw(j) + hu(&h, j) + b_rec[j]);
                r[j] = sigmoid(xw(units + j) + hu(&h, units + j) + b_rec[units + j]);
            }
            let rh = &r * &h;
            let mut next = Array1::zeros(units);
            for j in 0..units {
                let col = 2 * units + j;
                let hh = if reset_after {
                    (xw(col) + r[j] * (hu(&h, col) + b_rec[col])).tanh()
                } else {
                    (xw(col) + hu(&rh, col)).tanh()
                };
                next[j] = z[j] * h[j] + (1.0 - z[j]) * hh;
            }
            h = next;
            out.slice_mut(ndarray::s![b, t, ..]).assign(&h);
        }
    }
    out
}

#[test]
fn a_two_unit_keras_gru_matches_kerass_equations_over_several_steps() {
    let mut r = rng(100);
    let x = Array3::<f64>::random_using((2, 5, 2), Uniform::new(-1.0, 1.0).unwrap(), &mut r);
    let h0 = matrix::<f64>(2, 2, &mut r);
    // Distinct values in every block, so a swapped block would show.
    let kernel = array![
        [0.9, -0.4, 0.3, 0.1, -0.7, 0.5],
        [-0.2, 0.6, -0.5, 0.8, 0.4, -0.3]
    ];
    let recurrent_kernel = array![
        [0.3, -0.8, 0.7, -0.1, 0.2, 0.9],
        [-0.6, 0.5, -0.4, 0.6, -0.9, 0.25]
    ];
    for reset_after in [true, false] {
        let bias = if reset_after {
            KerasBias::Split(array![
                [0.1, -0.3, 0.2, 0.4, -0.1, 0.3],
                [-0.2, 0.35, 0.15, -0.4, 0.45, -0.25]
            ])
        } else {
            KerasBias::Single(array![0.1, -0.3, 0.2, 0.4, -0.1, 0.3])
        };
        let weights = KerasRecurrentWeights {
            kernel: kernel.clone(),
            recurrent_kernel: recurrent_kernel.clone(),
            bias,
        };
        let expected = keras_gru_reference(&weights, reset_after, &x, &h0);
        let gru = interop::from_keras(interop::keras_gru_cell(reset_after), weights).unwrap();
        let state = RecurrentState {
            h: h0.clone(),
            c: None,
        };
        let (out, _) = gru.predict_with_state(x.view(), Some(&state)).unwrap();
        assert_close(
            &format!("keras gru reset_after={reset_after}"),
            out.as_slice().unwrap(),
            expected.as_slice().unwrap(),
            1e-13,
        );
    }
}

#[test]
fn a_keras_lstm_matches_kerass_equations() {
    // Keras LSTM: columns i, f, c, o; c' = f c + i tanh(a_c); h' = o tanh(c').
    let mut r = rng(101);
    let units = 2;
    let weights = KerasRecurrentWeights {
        kernel: matrix::<f64>(1, 4 * units, &mut r),
        recurrent_kernel: matrix::<f64>(units, 4 * units, &mut r),
        bias: KerasBias::Single(vector::<f64>(4 * units, &mut r)),
    };
    let x = array![[[0.7], [-1.2], [0.4]]];
    let lstm = interop::from_keras(LstmCell, weights.clone()).unwrap();
    let (out, fin) = lstm.predict_with_state(x.view(), None).unwrap();
    let KerasBias::Single(bias) = &weights.bias else {
        unreachable!()
    };
    let (mut h, mut c) = (vec![0.0; units], vec![0.0; units]);
    for t in 0..3 {
        let a = |col: usize| {
            x[[0, t, 0]] * weights.kernel[[0, col]]
                + (0..units)
                    .map(|k| h[k] * weights.recurrent_kernel[[k, col]])
                    .sum::<f64>()
                + bias[col]
        };
        let pre: Vec<f64> = (0..4 * units).map(a).collect();
        for j in 0..units {
            let i = sigmoid(pre[j]);
            let f = sigmoid(pre[units + j]);
            let g = pre[2 * units + j].tanh();
            let o = sigmoid(pre[3 * units + j]);
            c[j] = f * c[j] + i * g;
            h[j] = o * c[j].tanh();
        }
        for j in 0..units {
            assert!((out[[0, t, j]] - h[j]).abs() < 1e-14, "step {t}: {out}");
        }
    }
    let fin_c = fin.c.unwrap();
    for j in 0..units {
        assert!((fin_c[[0, j]] - c[j]).abs() < 1e-14);
    }
}

#[test]
fn dense_keras_kernel_is_the_transposed_pytorch_weight() {
    let weight = array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
    let torch = DenseWeights {
        weight: weight.clone(),
        bias: array![0.5, -0.5],
    };
    let dense = interop::dense_from_torch(torch, Activation::Identity).unwrap();
    let keras = interop::dense_to_keras(&dense);
    assert_eq!(keras.kernel, weight.t());
    let again = interop::dense_from_keras(keras, Activation::Identity).unwrap();
    let x = array![[[1.0, -1.0, 2.0]]];
    assert_eq!(
        again.predict(x.view()).unwrap(),
        dense.predict(x.view()).unwrap()
    );
    assert_eq!(
        Dense::<f64>::from_weights(again.weights(), Activation::Identity)
            .unwrap()
            .weights(),
        dense.weights()
    );
}
