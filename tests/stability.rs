//! Numerical stability: f32 gated layers fed inputs of ±100 (every gate saturated) stay finite,
//! forward and backward.

use ndarray::Array3;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use recurrent::{Cell, GruCell, Init, Layer, LstmCell, Recurrent, RecurrentState};

/// Inputs of ±100: all +100, all −100, and alternating signs over batch, step and feature.
fn extreme_inputs(batch: usize, steps: usize, input: usize) -> Vec<(&'static str, Array3<f32>)> {
    vec![
        ("+100", Array3::from_elem((batch, steps, input), 100.0)),
        ("-100", Array3::from_elem((batch, steps, input), -100.0)),
        (
            "±100",
            Array3::from_shape_fn((batch, steps, input), |(b, t, i)| {
                if (b + t + i) % 2 == 0 { 100.0 } else { -100.0 }
            }),
        ),
    ]
}

fn assert_finite(what: &str, values: impl IntoIterator<Item = f32>) {
    for (k, v) in values.into_iter().enumerate() {
        assert!(v.is_finite(), "{what}: entry {k} is {v}");
    }
}

fn check_stays_finite<C: Cell>(cell: C) {
    let (b, t, i, h) = (3, 12, 4, 5);
    for init in [Init::Glorot, Init::Torch] {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let layer = Recurrent::<C, f32>::with_init(cell.clone(), i, h, init, &mut rng)
            .expect("valid sizes");
        for (pattern, x) in extreme_inputs(b, t, i) {
            let what = format!("{} {init:?} x = {pattern}", cell.name());
            let mut layer = layer.clone();

            let predicted = layer.predict(x.view()).expect("predict");
            assert_finite(&format!("{what}: predict"), predicted.iter().copied());

            let initial = RecurrentState::zeros(b, h, cell.has_cell_state());
            let (outputs, last) = layer
                .forward_with_state(x.view(), Some(&initial))
                .expect("forward_with_state");
            assert_finite(&format!("{what}: outputs"), outputs.iter().copied());
            assert_finite(&format!("{what}: h_T"), last.h.iter().copied());
            if let Some(c) = &last.c {
                assert_finite(&format!("{what}: c_T"), c.iter().copied());
            }
            // LSTM and GRU hidden states are bounded by 1 in magnitude.
            assert!(outputs.iter().all(|v| v.abs() <= 1.0), "{what}: |h| > 1");
            assert_eq!(outputs, predicted, "{what}: forward and predict differ");

            let d_final = RecurrentState {
                h: ndarray::Array2::ones((b, h)),
                c: cell.has_cell_state().then(|| ndarray::Array2::ones((b, h))),
            };
            let (d_x, d_initial) = layer
                .backward_with_state(Some(Array3::ones((b, t, h)).view()), Some(&d_final))
                .expect("backward_with_state");
            assert_finite(&format!("{what}: ∂x"), d_x.iter().copied());
            assert_finite(&format!("{what}: ∂h0"), d_initial.h.iter().copied());
            if let Some(c) = &d_initial.c {
                assert_finite(&format!("{what}: ∂c0"), c.iter().copied());
            }
            layer.visit_params(&mut |p| {
                assert_finite(&format!("{what}: ∂{}", p.name), p.grad.iter().copied());
            });
        }
    }
}

#[test]
fn f32_lstm_stays_finite_on_inputs_of_plus_minus_100() {
    check_stays_finite(LstmCell);
}

#[test]
fn f32_gru_reset_after_stays_finite_on_inputs_of_plus_minus_100() {
    check_stays_finite(GruCell::ResetAfter);
}

#[test]
fn f32_gru_reset_before_stays_finite_on_inputs_of_plus_minus_100() {
    check_stays_finite(GruCell::ResetBefore);
}
