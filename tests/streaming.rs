//! Streaming inference: one observation at a time through [`Streamer`] (and `Layer::step`)
//! equals the batch forward over the whole sequence, for every cell, stacks and branches, for a
//! batch of series and a single one.

use ndarray::{Array3, Axis, s};
use recurrent::stream::Streamer;
use recurrent::{Error, Float, Layer, Merge, RecurrentKind, Sequential, SequentialBuilder};

const KINDS: [RecurrentKind; 5] = [
    RecurrentKind::RnnTanh,
    RecurrentKind::RnnRelu,
    RecurrentKind::Lstm,
    RecurrentKind::Gru,
    RecurrentKind::GruResetBefore,
];

fn sequence<F: Float>(batch: usize, steps: usize, features: usize) -> Array3<F> {
    Array3::from_shape_fn((batch, steps, features), |(b, t, i)| {
        F::from_f64(((b * 7 + t * 3 + i * 5) % 13) as f64 / 6.5 - 1.0 + 0.01 * t as f64)
    })
}

/// max |a − b| / max |b| over the whole array.
fn relative_error<F: Float>(a: &Array3<F>, b: &Array3<F>) -> f64 {
    let scale = b
        .iter()
        .fold(0.0f64, |m, v| m.max(<F as Float>::to_f64(*v).abs()));
    let diff = a.iter().zip(b).fold(0.0f64, |m, (x, y)| {
        m.max((<F as Float>::to_f64(*x) - <F as Float>::to_f64(*y)).abs())
    });
    diff / scale.max(f64::MIN_POSITIVE)
}

/// Steps `model` through `x` one step at a time and stacks the outputs `[B, T, out]`.
fn streamed<F: Float>(model: &mut dyn Layer<F>, x: &Array3<F>) -> Array3<F> {
    let mut stream = Streamer::new(model);
    let outputs: Vec<_> = (0..x.shape()[1])
        .map(|t| {
            stream
                .step(x.index_axis(Axis(1), t))
                .unwrap()
                .insert_axis(Axis(1))
        })
        .collect();
    let views: Vec<_> = outputs.iter().map(|o| o.view()).collect();
    ndarray::concatenate(Axis(1), &views).unwrap()
}

fn check_every_cell<F: Float>(tolerance: f64) {
    for kind in KINDS {
        // Aligned many-to-many over a two-layer stack: every step's output is compared.
        let mut model = Sequential::<F>::builder(3)
            .recurrent(kind, 5)
            .recurrent(kind, 4)
            .return_sequences(true)
            .dense(2)
            .build(1)
            .unwrap();
        for batch in [1, 4] {
            let x = sequence::<F>(batch, 30, 3);
            let whole = model.predict(x.view()).unwrap();
            let steps = streamed(&mut model, &x);
            let err = relative_error(&steps, &whole);
            assert!(err <= tolerance, "{kind:?} batch {batch}: {err:e}");
        }
        // Many-to-one: each call gives the forecast for the sequence so far.
        let mut model = Sequential::<F>::many_to_one(kind, 2, 6, 1)
            .build(2)
            .unwrap();
        let x = sequence::<F>(3, 20, 2);
        let steps = streamed(&mut model, &x);
        for t in [0, 9, 19] {
            let prefix = model.predict(x.slice(s![.., ..=t, ..])).unwrap();
            let err = relative_error(&steps.slice(s![.., t..=t, ..]).to_owned(), &prefix);
            assert!(err <= tolerance, "{kind:?} prefix {t}: {err:e}");
        }
    }
}

#[test]
fn streaming_equals_the_batch_forward_for_every_cell_in_f64() {
    check_every_cell::<f64>(1e-12);
}

#[test]
fn streaming_equals_the_batch_forward_for_every_cell_in_f32() {
    check_every_cell::<f32>(1e-5);
}

#[test]
fn parallel_branches_and_dropout_stream_too() {
    let mut model = Sequential::<f64>::builder(2)
        .gru(4)
        .return_sequences(true)
        .dropout(0.5)
        .parallel(vec![
            SequentialBuilder::branch().lstm(3).return_sequences(true),
            SequentialBuilder::branch().dense(2),
        ])
        .dense(1)
        .build(3)
        .unwrap();
    let x = sequence::<f64>(2, 12, 2);
    let whole = model.predict(x.view()).unwrap();
    assert_eq!(whole.shape(), &[2, 12, 1]);
    let steps = streamed(&mut model, &x);
    let err = relative_error(&steps, &whole);
    assert!(err <= 1e-12, "{err:e}");
}

#[test]
fn a_single_series_streams_with_step_one_and_reset_state_starts_over() {
    let mut model = Sequential::<f64>::builder(1)
        .lstm(6)
        .dense(1)
        .build(4)
        .unwrap();
    let series: Vec<f64> = (0..40).map(|t| (t as f64 / 4.0).sin()).collect();
    let x = Array3::from_shape_fn((1, 40, 1), |(_, t, _)| series[t]);
    let whole = model.predict(x.view()).unwrap()[[0, 0, 0]];

    let mut stream = Streamer::new(&mut model);
    let mut last = Vec::new();
    for &v in &series {
        last = stream.step_one(&[v]).unwrap();
    }
    assert_eq!(stream.steps(), 40);
    assert!((last[0] - whole).abs() <= 1e-12 * whole.abs().max(1e-300));

    // After a reset, the same stream gives the same answers again.
    stream.reset_state();
    let mut again = Vec::new();
    for &v in &series {
        again = stream.step_one(&[v]).unwrap();
    }
    assert_eq!(again, last);
}

#[test]
fn streaming_rejects_bad_steps_and_layers_that_need_the_whole_window() {
    let mut model = Sequential::<f64>::builder(2)
        .gru(3)
        .dense(1)
        .build(0)
        .unwrap();
    let mut stream = Streamer::new(&mut model);
    stream.step(ndarray::Array2::zeros((4, 2)).view()).unwrap();
    // The batch is fixed until a reset.
    assert!(matches!(
        stream.step(ndarray::Array2::zeros((3, 2)).view()),
        Err(Error::Shape { .. })
    ));
    // Wrong feature count, non-finite values.
    assert!(matches!(
        stream.step(ndarray::Array2::zeros((4, 3)).view()),
        Err(Error::Shape { .. })
    ));
    let mut nan = ndarray::Array2::zeros((4, 2));
    nan[[1, 1]] = f64::NAN;
    assert!(matches!(
        stream.step(nan.view()),
        Err(Error::NonFinite { .. })
    ));
    assert!(stream.step_one(&[1.0, 2.0]).is_err()); // batch 1 ≠ 4
    stream.reset_state();
    assert!(stream.step_one(&[1.0, 2.0]).is_ok());

    for builder in [
        Sequential::<f64>::builder(2).bidirectional(RecurrentKind::Lstm, 3, Merge::Sum),
        Sequential::<f64>::encoder_decoder(RecurrentKind::Gru, 2, 3, 4, 1),
    ] {
        let mut model = builder.build(0).unwrap();
        let mut stream = Streamer::new(&mut model);
        let err = stream.step_one(&[0.0, 1.0]).unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err}");
    }
    // A multi-step input to Layer::step is a shape error.
    let mut model = Sequential::<f64>::builder(2).gru(3).build(0).unwrap();
    assert!(matches!(
        model.step(Array3::zeros((1, 2, 2)).view()),
        Err(Error::Shape { .. })
    ));
}

#[test]
fn layers_after_a_last_step_layer_stream_as_predict_sees_them() {
    // gru keeps its last step; the lstm after it reads a one-step sequence from a zero state in
    // `predict`, so it must not carry a state from call to call when streaming.
    for mut model in [
        Sequential::<f64>::builder(1)
            .gru(5)
            .dense(4)
            .lstm(3)
            .dense(1)
            .build(6)
            .unwrap(),
        Sequential::<f64>::builder(1)
            .lstm(4)
            .return_sequences(false)
            .gru(3)
            .dense(1)
            .build(7)
            .unwrap(),
    ] {
        let x = sequence::<f64>(2, 15, 1);
        let steps = streamed(&mut model, &x);
        for t in [0, 7, 14] {
            let prefix = model.predict(x.slice(s![.., ..=t, ..])).unwrap();
            let err = relative_error(&steps.slice(s![.., t..=t, ..]).to_owned(), &prefix);
            assert!(err <= 1e-12, "{:?} prefix {t}: {err:e}", model.specs());
        }
    }
}

/// Inference (`predict`, which keeps no cache) and the training forward must agree bit for bit,
/// for every cell, both output modes, f32 and f64.
fn check_predict_is_the_training_forward<F: Float>() {
    for kind in KINDS {
        for (batch, steps, inputs, hidden) in [(3, 1, 2, 5), (64, 37, 3, 32), (5, 40, 1, 16)] {
            for all_steps in [false, true] {
                let mut model = Sequential::<F>::builder(inputs)
                    .recurrent(kind, hidden)
                    .return_sequences(all_steps)
                    .dense(1)
                    .build(3)
                    .unwrap();
                let x = sequence::<F>(batch, steps, inputs);
                let predicted = model.predict(x.view()).unwrap();
                let trained = model.forward(x.view()).unwrap();
                assert_eq!(
                    predicted, trained,
                    "{kind:?} B={batch} T={steps} H={hidden} all_steps={all_steps}"
                );
            }
        }
    }
}

#[test]
fn predict_equals_the_training_forward_bit_for_bit() {
    check_predict_is_the_training_forward::<f32>();
    check_predict_is_the_training_forward::<f64>();
}

/// A layer keeps its buffers from one pass to the next (shrinking and growing batches and
/// sequences, with and without an initial state, a forward left without its backward, an
/// inference forward in between): every result equals a fresh layer's, bit for bit. Before
/// each measured pass the reused layer runs a pass of another shape and other inputs, so its
/// buffers hold values the measured pass would not compute.
#[test]
fn reused_buffers_give_the_results_of_a_fresh_layer() {
    use rand::SeedableRng;
    use recurrent::{Cell, GruCell, Recurrent, RecurrentState};
    fn run<C: Cell, F: Float>(
        layer: &mut Recurrent<C, F>,
        batch: usize,
        steps: usize,
        with_initial: bool,
    ) -> Vec<ndarray::ArrayD<F>> {
        let x = sequence::<F>(batch, steps, 3);
        let h = layer.hidden_size();
        let initial = with_initial.then(|| {
            let mut state = RecurrentState::zeros(batch, h, layer.cell().has_cell_state());
            state.h.fill(F::from_f64(0.3));
            state
        });
        let (out, last) = layer
            .forward_with_state(x.view(), initial.as_ref())
            .unwrap();
        let d_out = out.mapv(|v| v * F::from_f64(0.5));
        let (d_x, d_initial) = layer.backward_with_state(Some(d_out.view()), None).unwrap();
        let predicted = layer
            .predict_with_state(x.view(), initial.as_ref())
            .unwrap();
        let grads = layer.gradients();
        vec![
            predicted.0.into_dyn(),
            out.into_dyn(),
            last.h.into_dyn(),
            d_x.into_dyn(),
            d_initial.h.into_dyn(),
            grads.weight_hh.into_dyn(),
            grads.weight_ih.into_dyn(),
            grads.bias_hh.into_dyn(),
        ]
    }
    /// Fills the reused layer's buffers with other values: a pass of another shape and inputs.
    fn scramble<C: Cell, F: Float>(layer: &mut Recurrent<C, F>, batch: usize, steps: usize) {
        let x = sequence::<F>(batch + 1, steps + 2, 3).mapv(|v| v * F::from_f64(-1.7));
        let (out, _) = layer.forward_with_state(x.view(), None).unwrap();
        layer.backward_with_state(Some(out.view()), None).unwrap();
        layer.zero_grad();
    }
    fn check<C: Cell, F: Float>(layer: Recurrent<C, F>, name: &str) {
        let shapes = [
            (4, 10, false),
            (2, 3, true),
            (6, 12, false),
            (4, 10, true),
            (1, 1, false),
        ];
        let mut reused = layer.clone();
        // A forward whose cache no backward consumes.
        reused
            .forward_with_state(sequence::<F>(5, 7, 3).view(), None)
            .unwrap();
        for (batch, steps, with_initial) in shapes {
            scramble(&mut reused, batch, steps);
            let mut fresh = layer.clone();
            assert_eq!(
                run(&mut reused, batch, steps, with_initial),
                run(&mut fresh, batch, steps, with_initial),
                "{name} B={batch} T={steps} initial={with_initial}"
            );
            reused.zero_grad();
        }
        reused.release_buffers();
        let mut fresh = layer.clone();
        assert_eq!(
            run(&mut reused, 3, 4, false),
            run(&mut fresh, 3, 4, false),
            "{name}"
        );
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    check(
        recurrent::Lstm::<f32>::new(3, 16, &mut rng).unwrap(),
        "lstm f32",
    );
    check(
        recurrent::Lstm::<f64>::new(3, 8, &mut rng).unwrap(),
        "lstm f64",
    );
    check(
        recurrent::Gru::<f32>::new(3, 16, &mut rng).unwrap(),
        "gru f32",
    );
    check(
        recurrent::Gru::<f64>::new(3, 8, &mut rng).unwrap(),
        "gru f64",
    );
    check(
        Recurrent::<GruCell, f32>::with_init(
            GruCell::ResetBefore,
            3,
            16,
            recurrent::Init::Torch,
            &mut rng,
        )
        .unwrap(),
        "gru reset-before f32",
    );
    check(
        recurrent::SimpleRnn::<f32>::new(3, 16, &mut rng).unwrap(),
        "rnn f32",
    );
}
