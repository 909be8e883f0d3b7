//! Central finite differences in f64 (step 1e-6) against the hand-written backward passes: every
//! parameter entry, every input entry and every initial-state entry (h0, and c0 for an LSTM), for
//! Dense (every activation; 2-D API and the `Layer` trait), SimpleRnn (tanh and relu), Lstm and
//! Gru (reset-after and reset-before; state API, and the `Layer` trait returning every step or
//! only the last), at four shapes that include one step and a batch of one.
//!
//! Whole models too, through the `Layer` trait (every parameter entry and every input entry): a
//! stack of mixed cells, bidirectional layers with every merge, parallel branches, encoder–decoders,
//! one-to-many, direct multi-step and aligned many-to-many; and dropout with its masks held fixed
//! (alone, and inside a model rebuilt from the same seed).
//!
//! The checked scalar is `L = Σ outputs ⊙ g_out + Σ h_T ⊙ g_h (+ Σ c_T ⊙ g_c)` with fixed random
//! nonzero upstream weights; an entry passes when
//! `|a − n| ≤ 1e-6 · max(|a|, |n|) + 1e-8 · max(1, |L|)`.

mod common;

use std::fmt;

use common::{as_f64, dot, unravel};
use ndarray::{
    Array, Array2, Array3, ArrayD, ArrayView2, ArrayView3, Axis, Ix2, Ix3, ShapeBuilder,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recurrent::{
    Activation, Cell, Dense, Dropout, GruCell, Init, Layer, LayerSpec, LstmCell, Merge, Recurrent,
    RecurrentKind, RecurrentState, Sequential, SequentialBuilder, SimpleRnnCell,
};

/// The central-difference step.
const STEP: f64 = 1e-6;
/// The relative part of the pass criterion.
const RELATIVE: f64 = 1e-6;
/// The absolute part of the pass criterion, scaled by max(1, |L|).
const ABSOLUTE: f64 = 1e-8;
/// How far every relu pre-activation must stay from the kink at 0.
const RELU_MARGIN: f64 = 1e-3;

/// Batch, steps, input features, hidden units (a Dense layer's output features).
#[derive(Debug, Clone, Copy)]
struct Shape {
    batch: usize,
    steps: usize,
    input: usize,
    hidden: usize,
}

const SHAPES: [Shape; 4] = [
    Shape {
        batch: 2,
        steps: 4,
        input: 3,
        hidden: 3,
    },
    Shape {
        batch: 1,
        steps: 1,
        input: 2,
        hidden: 2,
    },
    Shape {
        batch: 3,
        steps: 1,
        input: 1,
        hidden: 2,
    },
    Shape {
        batch: 1,
        steps: 5,
        input: 2,
        hidden: 3,
    },
];

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "(B,T,I,H)=({},{},{},{})",
            self.batch, self.steps, self.input, self.hidden
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The generic checker
// ---------------------------------------------------------------------------------------------

/// An array the checked scalar depends on besides the layer's parameters (x, h0, c0).
struct Input {
    name: &'static str,
    value: ArrayD<f64>,
}

impl Input {
    fn new<D: ndarray::Dimension>(name: &'static str, value: Array<f64, D>) -> Self {
        Input {
            name,
            value: value.as_standard_layout().into_owned().into_dyn(),
        }
    }

    fn view2(&self) -> ArrayView2<'_, f64> {
        self.value
            .view()
            .into_dimensionality::<Ix2>()
            .unwrap_or_else(|_| panic!("input {} is not 2-D", self.name))
    }

    fn view3(&self) -> ArrayView3<'_, f64> {
        self.value
            .view()
            .into_dimensionality::<Ix3>()
            .unwrap_or_else(|_| panic!("input {} is not 3-D", self.name))
    }
}

/// One checked entry.
#[derive(Debug, Clone)]
struct Entry {
    what: String,
    analytic: f64,
    numeric: f64,
    /// |a − n| over the allowed difference: the entry passes when ≤ 1.
    ratio: f64,
}

/// What one gradient check saw.
#[derive(Debug, Clone)]
struct Report {
    label: String,
    loss: f64,
    entries: usize,
    failures: usize,
    worst: Option<Entry>,
}

impl Report {
    fn add(&mut self, what: String, analytic: f64, numeric: f64) {
        let allowed =
            RELATIVE * analytic.abs().max(numeric.abs()) + ABSOLUTE * self.loss.abs().max(1.0);
        let diff = (analytic - numeric).abs();
        let ratio = if diff.is_finite() {
            diff / allowed
        } else {
            f64::INFINITY
        };
        self.entries += 1;
        if ratio > 1.0 {
            self.failures += 1;
        }
        if self.worst.as_ref().is_none_or(|w| ratio > w.ratio) {
            self.worst = Some(Entry {
                what,
                analytic,
                numeric,
                ratio,
            });
        }
    }

    fn worst_ratio(&self) -> f64 {
        self.worst.as_ref().map_or(0.0, |w| w.ratio)
    }

    /// The failure message naming the worst entry, when some entry fails.
    fn failure(&self) -> Option<String> {
        if self.entries == 0 {
            return Some(format!("{}: nothing was checked", self.label));
        }
        let w = self.worst.as_ref()?;
        (w.ratio > 1.0).then(|| {
            format!(
                "{}: {} of {} entries disagree with central differences; worst: {}: analytic {:e}, \
                 numeric {:e}, |a − n| = {:e} is {:.3}× the allowed 1e-6·max(|a|,|n|) + \
                 1e-8·max(1,|L|) (L = {:e})",
                self.label,
                self.failures,
                self.entries,
                w.what,
                w.analytic,
                w.numeric,
                (w.analytic - w.numeric).abs(),
                w.ratio,
                self.loss
            )
        })
    }

    fn assert_passes(&self) {
        if let Some(message) = self.failure() {
            panic!("{message}");
        }
    }
}

/// A parameter's name, shape, values and analytic gradient, copied out of the layer.
struct ParamCopy {
    name: String,
    shape: Vec<usize>,
    values: Vec<f64>,
    grads: Vec<f64>,
}

/// Sets the `k`-th entry of the `p`-th parameter (in `visit_params_mut` order) to `value`.
fn set_param<L: Layer<f64>>(layer: &mut L, p: usize, k: usize, value: f64) {
    let mut index = 0;
    layer.visit_params_mut(&mut |param| {
        if index == p {
            param.value[k] = value;
        }
        index += 1;
    });
}

/// Checks every parameter entry of `layer` and every entry of every input against central
/// differences of `loss`. `backprop` runs the training forward and the backward (the
/// parameter gradients are zeroed first) and returns L and ∂L/∂(each input), in `inputs`' order.
/// Panics naming the worst entry when one fails.
fn gradcheck<L: Layer<f64>>(
    label: String,
    layer: &mut L,
    inputs: &mut [Input],
    loss: impl FnMut(&mut L, &[Input]) -> f64,
    backprop: impl FnMut(&mut L, &[Input]) -> (f64, Vec<ArrayD<f64>>),
) -> Report {
    let report = measure(label, layer, inputs, loss, backprop);
    report.assert_passes();
    report
}

/// [`gradcheck`] without the final assertion.
fn measure<L: Layer<f64>>(
    label: String,
    layer: &mut L,
    inputs: &mut [Input],
    mut loss: impl FnMut(&mut L, &[Input]) -> f64,
    mut backprop: impl FnMut(&mut L, &[Input]) -> (f64, Vec<ArrayD<f64>>),
) -> Report {
    layer.zero_grad();
    let (l, input_grads) = backprop(layer, inputs);
    let l_inference = loss(layer, inputs);
    assert!(
        (l - l_inference).abs() <= 1e-12 * l.abs().max(1.0),
        "{label}: the training forward gives L = {l:e}, the inference forward {l_inference:e}"
    );
    assert_eq!(
        input_grads.len(),
        inputs.len(),
        "{label}: one gradient per input"
    );
    let mut report = Report {
        label,
        loss: l,
        entries: 0,
        failures: 0,
        worst: None,
    };

    // Parameters: analytic gradients first, then perturb one entry at a time.
    let mut params: Vec<ParamCopy> = Vec::new();
    layer.visit_params(&mut |p| {
        params.push(ParamCopy {
            name: p.name.to_string(),
            shape: p.shape.to_vec(),
            values: p.value.to_vec(),
            grads: p.grad.to_vec(),
        })
    });
    assert!(!params.is_empty(), "{}: no parameters", report.label);
    // In a model several parameters share a name: number those by occurrence in visiting
    // order (`weight_hh#2` is the second `weight_hh`).
    let names: Vec<String> = params.iter().map(|p| p.name.clone()).collect();
    for (p, param) in params.iter_mut().enumerate() {
        if names.iter().filter(|n| **n == param.name).count() > 1 {
            let occurrence = names[..=p].iter().filter(|n| **n == param.name).count();
            param.name = format!("{}#{occurrence}", param.name);
        }
    }
    for (p, param) in params.iter().enumerate() {
        let ParamCopy {
            name,
            shape,
            values,
            grads,
        } = param;
        assert_eq!(
            values.len(),
            shape.iter().product::<usize>(),
            "{}: parameter {name} of shape {shape:?} has {} values",
            report.label,
            values.len()
        );
        assert_eq!(
            values.len(),
            grads.len(),
            "{}: {name} gradient size",
            report.label
        );
        for (k, (&original, &analytic)) in values.iter().zip(grads).enumerate() {
            let (up, down) = (original + STEP, original - STEP);
            set_param(layer, p, k, up);
            let l_up = loss(layer, inputs);
            set_param(layer, p, k, down);
            let l_down = loss(layer, inputs);
            set_param(layer, p, k, original);
            let numeric = (l_up - l_down) / (up - down);
            report.add(
                format!("parameter {name} {:?}", unravel(k, shape)),
                analytic,
                numeric,
            );
        }
    }

    // Inputs and initial states.
    for (n, grad) in input_grads.iter().enumerate() {
        let name = inputs[n].name;
        let shape = inputs[n].value.shape().to_vec();
        assert_eq!(
            grad.shape(),
            &shape[..],
            "{}: gradient of input {name}",
            report.label
        );
        for (k, &analytic) in grad.iter().enumerate() {
            let original = entry_mut(&mut inputs[n], k, None);
            let (up, down) = (original + STEP, original - STEP);
            entry_mut(&mut inputs[n], k, Some(up));
            let l_up = loss(layer, inputs);
            entry_mut(&mut inputs[n], k, Some(down));
            let l_down = loss(layer, inputs);
            entry_mut(&mut inputs[n], k, Some(original));
            let numeric = (l_up - l_down) / (up - down);
            report.add(
                format!("input {name} {:?}", unravel(k, &shape)),
                analytic,
                numeric,
            );
        }
    }

    // Everything was put back exactly.
    let l_after = loss(layer, inputs);
    assert_eq!(
        l_after.to_bits(),
        l_inference.to_bits(),
        "{}: L changed after the perturbations were undone",
        report.label
    );
    report
}

/// Reads the flat entry `k` of `input` (row-major), writing `value` first when given.
fn entry_mut(input: &mut Input, k: usize, value: Option<f64>) -> f64 {
    let slot = input
        .value
        .as_slice_mut()
        .expect("inputs are kept in standard layout")
        .get_mut(k)
        .expect("entry in range");
    if let Some(v) = value {
        *slot = v;
    }
    *slot
}

/// Several reports of one test.
struct Summary {
    test: &'static str,
    checks: usize,
    entries: usize,
    worst: Option<Report>,
}

impl Summary {
    fn new(test: &'static str) -> Self {
        Summary {
            test,
            checks: 0,
            entries: 0,
            worst: None,
        }
    }

    fn add(&mut self, report: Report) {
        self.checks += 1;
        self.entries += report.entries;
        if self
            .worst
            .as_ref()
            .is_none_or(|w| report.worst_ratio() > w.worst_ratio())
        {
            self.worst = Some(report);
        }
    }

    fn print(&self) {
        let worst = self.worst.as_ref().expect("something was checked");
        let entry = worst.worst.as_ref().expect("entries were checked");
        println!(
            "{}: {} gradient checks, {} entries; worst |a − n| / allowed = {:.3e} at {} {} \
             (analytic {:e}, numeric {:e})",
            self.test,
            self.checks,
            self.entries,
            entry.ratio,
            worst.label,
            entry.what,
            entry.analytic,
            entry.numeric
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Random data
// ---------------------------------------------------------------------------------------------

/// Entries from U(lo, hi).
fn uniform<Sh: ShapeBuilder>(
    rng: &mut ChaCha8Rng,
    shape: Sh,
    lo: f64,
    hi: f64,
) -> Array<f64, Sh::Dim> {
    Array::from_shape_simple_fn(shape, || rng.random_range(lo..hi))
}

/// Nonzero upstream weights: a random sign times U(0.2, 1).
fn nonzero<Sh: ShapeBuilder>(rng: &mut ChaCha8Rng, shape: Sh) -> Array<f64, Sh::Dim> {
    Array::from_shape_simple_fn(shape, || {
        let magnitude = rng.random_range(0.2..1.0);
        if rng.random_bool(0.5) {
            magnitude
        } else {
            -magnitude
        }
    })
}

/// The smallest |pre-activation| among `values`, and whether any is positive.
fn margin_of(values: impl IntoIterator<Item = f64>) -> (f64, bool) {
    values
        .into_iter()
        .fold((f64::INFINITY, false), |(m, pos), a| {
            (m.min(a.abs()), pos || a > 0.0)
        })
}

// ---------------------------------------------------------------------------------------------
// Recurrent layers
// ---------------------------------------------------------------------------------------------

/// Upstream gradients on every output and on the final state.
#[derive(Debug, Clone)]
struct Upstream {
    outputs: Array3<f64>,
    h: Array2<f64>,
    c: Option<Array2<f64>>,
}

impl Upstream {
    /// L = Σ outputs ⊙ g_out + Σ h_T ⊙ g_h (+ Σ c_T ⊙ g_c).
    fn loss(&self, outputs: &Array3<f64>, last: &RecurrentState<f64>) -> f64 {
        let mut l = dot(outputs.view(), self.outputs.view()) + dot(last.h.view(), self.h.view());
        match (&last.c, &self.c) {
            (Some(c), Some(g)) => l += dot(c.view(), g.view()),
            (None, None) => {}
            (c, _) => panic!(
                "final cell state present: {}, expected the opposite",
                c.is_some()
            ),
        }
        l
    }

    fn final_state(&self) -> RecurrentState<f64> {
        RecurrentState {
            h: self.h.clone(),
            c: self.c.clone(),
        }
    }
}

/// A layer with its input, initial state and upstream gradients.
struct RecurrentSetup<C: Cell> {
    layer: Recurrent<C, f64>,
    x: Array3<f64>,
    h0: Array2<f64>,
    c0: Option<Array2<f64>>,
    upstream: Upstream,
}

/// Draws a layer (PyTorch's init, U(−1/√H, 1/√H), so no gate saturates), x from U(−1, 1),
/// h0 and c0, and upstream weights, redrawing until `accept(layer, x, h0)` holds.
fn recurrent_setup<C: Cell>(
    cell: C,
    shape: Shape,
    seed: u64,
    accept: impl Fn(&Recurrent<C, f64>, &Array3<f64>, &Array2<f64>) -> bool,
) -> RecurrentSetup<C> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let Shape {
        batch: b,
        steps: t,
        input: i,
        hidden: h,
    } = shape;
    for _ in 0..1000 {
        let layer = Recurrent::<C, f64>::with_init(cell.clone(), i, h, Init::Torch, &mut rng)
            .expect("valid sizes");
        let x = uniform(&mut rng, (b, t, i), -1.0, 1.0);
        let h0 = uniform(&mut rng, (b, h), -0.9, 0.9);
        let c0 = cell
            .has_cell_state()
            .then(|| uniform(&mut rng, (b, h), -1.0, 1.0));
        if !accept(&layer, &x, &h0) {
            continue;
        }
        let upstream = Upstream {
            outputs: nonzero(&mut rng, (b, t, h)),
            h: nonzero(&mut rng, (b, h)),
            c: cell.has_cell_state().then(|| nonzero(&mut rng, (b, h))),
        };
        return RecurrentSetup {
            layer,
            x,
            h0,
            c0,
            upstream,
        };
    }
    panic!(
        "no acceptable {} setup at {shape} in 1000 draws",
        cell.name()
    );
}

/// Every pre-activation `W_ih x_t + b_ih + W_hh h_{t−1} + b_hh` of an Elman layer run from
/// `h0`, recomputed here from its weights (and cross-checked against its outputs).
fn elman_preactivations(
    layer: &Recurrent<SimpleRnnCell, f64>,
    x: &Array3<f64>,
    h0: &Array2<f64>,
) -> Vec<f64> {
    let w = layer.weights();
    let start = RecurrentState {
        h: h0.clone(),
        c: None,
    };
    let (outputs, _) = layer
        .predict_with_state(x.view(), Some(&start))
        .expect("forward");
    let (b, t, _) = x.dim();
    let mut all = Vec::new();
    for row in 0..b {
        for step in 0..t {
            let h_prev = if step == 0 {
                h0.row(row).to_owned()
            } else {
                outputs.slice(ndarray::s![row, step - 1, ..]).to_owned()
            };
            let a = w.weight_ih.dot(&x.slice(ndarray::s![row, step, ..]))
                + &w.bias_ih
                + w.weight_hh.dot(&h_prev)
                + &w.bias_hh;
            for (j, &a_j) in a.iter().enumerate() {
                let expected = layer.cell().activation.apply(a_j);
                let got = outputs[[row, step, j]];
                assert!(
                    (got - expected).abs() <= 1e-12 * (1.0 + expected.abs()),
                    "recomputed pre-activation disagrees with the layer at [{row}, {step}, {j}]: \
                     φ({a_j}) = {expected}, layer {got}"
                );
                all.push(a_j);
            }
        }
    }
    all
}

/// Accepts an Elman relu draw when every pre-activation, from `h0` and from a zero state (the
/// `Layer` path), is at least [`RELU_MARGIN`] from 0 and some unit is active.
fn relu_accept(layer: &Recurrent<SimpleRnnCell, f64>, x: &Array3<f64>, h0: &Array2<f64>) -> bool {
    let zeros = Array2::zeros(h0.raw_dim());
    let (m1, pos1) = margin_of(elman_preactivations(layer, x, h0));
    let (m2, pos2) = margin_of(elman_preactivations(layer, x, &zeros));
    m1.min(m2) >= RELU_MARGIN && pos1 && pos2
}

/// The state API: `forward_with_state` from (h0, c0) and `backward_with_state` with upstream
/// gradients on every output and on the final state; checks params, x, h0 and c0.
fn check_state_api<C: Cell>(label: String, setup: &RecurrentSetup<C>) -> Report {
    let mut layer = setup.layer.clone().with_return_sequences(true);
    let mut inputs = vec![
        Input::new("x", setup.x.clone()),
        Input::new("h0", setup.h0.clone()),
    ];
    if let Some(c0) = &setup.c0 {
        inputs.push(Input::new("c0", c0.clone()));
    }
    let with_c = setup.c0.is_some();
    let upstream = &setup.upstream;
    let initial = |inputs: &[Input]| RecurrentState {
        h: inputs[1].view2().to_owned(),
        c: with_c.then(|| inputs[2].view2().to_owned()),
    };
    gradcheck(
        label,
        &mut layer,
        &mut inputs,
        |layer, inputs| {
            let (outputs, last) = layer
                .predict_with_state(inputs[0].view3(), Some(&initial(inputs)))
                .expect("predict_with_state");
            upstream.loss(&outputs, &last)
        },
        |layer, inputs| {
            let (outputs, last) = layer
                .forward_with_state(inputs[0].view3(), Some(&initial(inputs)))
                .expect("forward_with_state");
            let l = upstream.loss(&outputs, &last);
            let (d_x, d_initial) = layer
                .backward_with_state(Some(upstream.outputs.view()), Some(&upstream.final_state()))
                .expect("backward_with_state");
            let mut grads = vec![d_x.into_dyn(), d_initial.h.into_dyn()];
            match (d_initial.c, with_c) {
                (Some(d_c0), true) => grads.push(d_c0.into_dyn()),
                (None, false) => {}
                (d_c0, _) => panic!(
                    "∂L/∂c0 returned: {}, expected iff the cell has a cell state",
                    d_c0.is_some()
                ),
            }
            (l, grads)
        },
    )
}

/// The [`Layer`] trait path: `forward` from a zero state, then `backward(g)`; checks params
/// and x. `g` has the output's shape (`[B, T, H]`, or `[B, 1, H]` for the last step only).
fn check_layer_trait<L: Layer<f64>>(
    label: String,
    mut layer: L,
    x: Array3<f64>,
    g: Array3<f64>,
) -> Report {
    let (_, t, _) = x.dim();
    assert_eq!(
        g.shape(),
        [x.dim().0, layer.output_steps(t), layer.output_size()],
        "{label}: the output gradient's shape"
    );
    let mut inputs = [Input::new("x", x)];
    gradcheck(
        label,
        &mut layer,
        &mut inputs,
        |layer, inputs| {
            let y = layer.predict(inputs[0].view3()).expect("predict");
            dot(y.view(), g.view())
        },
        |layer, inputs| {
            let y = layer.forward(inputs[0].view3()).expect("forward");
            let d_x = layer.backward(g.view()).expect("backward");
            (dot(y.view(), g.view()), vec![d_x.into_dyn()])
        },
    )
}

/// Every shape: the state API, then the `Layer` trait returning every step and the last only.
fn check_recurrent<C: Cell>(
    test: &'static str,
    cell: C,
    seed: u64,
    accept: impl Fn(&Recurrent<C, f64>, &Array3<f64>, &Array2<f64>) -> bool,
) {
    let mut summary = Summary::new(test);
    for (n, shape) in SHAPES.into_iter().enumerate() {
        let setup = recurrent_setup(cell.clone(), shape, seed + n as u64, &accept);
        let name = cell.name();
        summary.add(check_state_api(
            format!("{name} {shape} forward_with_state/backward_with_state"),
            &setup,
        ));
        summary.add(check_layer_trait(
            format!("{name} {shape} Layer, return_sequences(true)"),
            setup.layer.clone().with_return_sequences(true),
            setup.x.clone(),
            setup.upstream.outputs.clone(),
        ));
        summary.add(check_layer_trait(
            format!("{name} {shape} Layer, return_sequences(false)"),
            setup.layer.clone().with_return_sequences(false),
            setup.x.clone(),
            setup.upstream.h.clone().insert_axis(Axis(1)),
        ));
    }
    summary.print();
}

fn any<C: Cell>(_: &Recurrent<C, f64>, _: &Array3<f64>, _: &Array2<f64>) -> bool {
    true
}

#[test]
fn simple_rnn_tanh_backward_matches_finite_differences() {
    check_recurrent(
        "simple_rnn_tanh_backward_matches_finite_differences",
        SimpleRnnCell::new(Activation::Tanh),
        100,
        any,
    );
}

#[test]
fn simple_rnn_relu_backward_matches_finite_differences() {
    check_recurrent(
        "simple_rnn_relu_backward_matches_finite_differences",
        SimpleRnnCell::new(Activation::Relu),
        200,
        relu_accept,
    );
}

#[test]
fn lstm_backward_matches_finite_differences() {
    check_recurrent(
        "lstm_backward_matches_finite_differences",
        LstmCell,
        300,
        any,
    );
}

#[test]
fn gru_reset_after_backward_matches_finite_differences() {
    check_recurrent(
        "gru_reset_after_backward_matches_finite_differences",
        GruCell::ResetAfter,
        400,
        any,
    );
}

#[test]
fn gru_reset_before_backward_matches_finite_differences() {
    check_recurrent(
        "gru_reset_before_backward_matches_finite_differences",
        GruCell::ResetBefore,
        500,
        any,
    );
}

// ---------------------------------------------------------------------------------------------
// Dense
// ---------------------------------------------------------------------------------------------

const ACTIVATIONS: [Activation; 4] = [
    Activation::Identity,
    Activation::Tanh,
    Activation::Sigmoid,
    Activation::Relu,
];

/// A dense layer `shape.input → shape.hidden` (PyTorch's init), `B·T` input rows from U(−1, 1)
/// and nonzero upstream weights; for relu, redrawn until every pre-activation is at least
/// [`RELU_MARGIN`] from 0 and some is positive.
fn dense_setup(
    activation: Activation,
    shape: Shape,
    seed: u64,
) -> (Dense<f64>, Array2<f64>, Array2<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let rows = shape.batch * shape.steps;
    for _ in 0..1000 {
        let dense =
            Dense::<f64>::with_init(shape.input, shape.hidden, activation, Init::Torch, &mut rng)
                .expect("valid sizes");
        let x = uniform(&mut rng, (rows, shape.input), -1.0, 1.0);
        if activation == Activation::Relu {
            let w = dense.weights();
            let pre = x.dot(&w.weight.t()) + &w.bias;
            let (margin, active) = margin_of(pre.iter().copied());
            if margin < RELU_MARGIN || !active {
                continue;
            }
        }
        let g = nonzero(&mut rng, (rows, shape.hidden));
        return (dense, x, g);
    }
    panic!("no acceptable dense {activation:?} setup at {shape} in 1000 draws");
}

#[test]
fn dense_backward_matches_finite_differences_for_every_activation() {
    let mut summary =
        Summary::new("dense_backward_matches_finite_differences_for_every_activation");
    for (a, activation) in ACTIVATIONS.into_iter().enumerate() {
        for (n, shape) in SHAPES.into_iter().enumerate() {
            let (mut dense, x, g) = dense_setup(activation, shape, 600 + 10 * a as u64 + n as u64);
            let mut inputs = [Input::new("x", x)];
            summary.add(gradcheck(
                format!("dense {} {shape} forward_2d/backward_2d", activation.name()),
                &mut dense,
                &mut inputs,
                |dense, inputs| {
                    let y = dense.predict_2d(inputs[0].view2()).expect("predict_2d");
                    dot(y.view(), g.view())
                },
                |dense, inputs| {
                    let y = dense.forward_2d(inputs[0].view2()).expect("forward_2d");
                    let d_x = dense.backward_2d(g.view()).expect("backward_2d");
                    (dot(y.view(), g.view()), vec![d_x.into_dyn()])
                },
            ));
        }
    }
    summary.print();
}

#[test]
fn dense_layer_trait_backward_matches_finite_differences_on_sequences() {
    let mut summary =
        Summary::new("dense_layer_trait_backward_matches_finite_differences_on_sequences");
    for (a, activation) in ACTIVATIONS.into_iter().enumerate() {
        for (n, shape) in SHAPES.into_iter().enumerate() {
            let (dense, x, g) = dense_setup(activation, shape, 700 + 10 * a as u64 + n as u64);
            let to_sequence = |rows: Array2<f64>| {
                let f = rows.ncols();
                rows.into_shape_with_order((shape.batch, shape.steps, f))
                    .expect("B·T rows")
            };
            summary.add(check_layer_trait(
                format!("dense {} {shape} Layer on [B, T, I]", activation.name()),
                dense,
                to_sequence(x),
                to_sequence(g),
            ));
        }
    }
    summary.print();
}

#[test]
fn gradcheck_catches_a_wrong_gradient() {
    // The checker itself: a backward that reports one slightly wrong ∂L/∂x entry must fail,
    // and the failure must name that entry.
    let (mut dense, x, g) = dense_setup(Activation::Tanh, SHAPES[0], 1);
    let mut inputs = [Input::new("x", x)];
    let report = measure(
        "dense with a wrong ∂x".to_string(),
        &mut dense,
        &mut inputs,
        |dense, inputs| {
            dot(
                dense.predict_2d(inputs[0].view2()).unwrap().view(),
                g.view(),
            )
        },
        |dense, inputs| {
            let y = dense.forward_2d(inputs[0].view2()).unwrap();
            let mut d_x = dense.backward_2d(g.view()).unwrap();
            d_x[[1, 2]] *= 1.0 + 1e-4;
            (dot(y.view(), g.view()), vec![d_x.into_dyn()])
        },
    );
    assert_eq!(report.failures, 1, "exactly the corrupted entry fails");
    let message = report
        .failure()
        .expect("a wrong gradient must fail the check");
    assert!(
        message.contains("input x [1, 2]") && message.contains("dense with a wrong ∂x"),
        "the failure should name the layer and the wrong entry: {message}"
    );
}

#[test]
fn relu_pre_activations_stay_clear_of_the_kink() {
    // The draws the relu checks use really keep every pre-activation ≥ 1e-3 from 0.
    for (n, shape) in SHAPES.into_iter().enumerate() {
        let setup = recurrent_setup(
            SimpleRnnCell::new(Activation::Relu),
            shape,
            200 + n as u64,
            relu_accept,
        );
        let (m, _) = margin_of(elman_preactivations(&setup.layer, &setup.x, &setup.h0));
        assert!(m >= RELU_MARGIN, "{shape}: margin {m}");
        let (dense, x, _) = dense_setup(Activation::Relu, shape, 630 + n as u64);
        let w = dense.weights();
        let (m, _) = margin_of((x.dot(&w.weight.t()) + &w.bias).iter().map(|&v| as_f64(v)));
        assert!(m >= RELU_MARGIN, "dense {shape}: margin {m}");
    }
}

// ---------------------------------------------------------------------------------------------
// Whole models
// ---------------------------------------------------------------------------------------------

/// Batch and input features of every model check (small, so every entry is checked quickly).
const MODEL_BATCH: usize = 2;
const MODEL_INPUT: usize = 2;
const MODEL_HIDDEN: usize = 3;

/// Checks a whole model through the [`Layer`] trait: `L = Σ model(x) ⊙ g`, with x from
/// U(−1, 1) `[B, steps, I]` and nonzero g of the output's shape, which must be
/// `[B, expected.0, expected.1]`; every parameter entry and every entry of x.
fn check_model(
    label: &str,
    model: Sequential<f64>,
    steps: usize,
    expected: (usize, usize),
    seed: u64,
) -> Report {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = uniform(
        &mut rng,
        (MODEL_BATCH, steps, Layer::<f64>::input_size(&model)),
        -1.0,
        1.0,
    );
    let y = model
        .predict(x.view())
        .unwrap_or_else(|e| panic!("{label}: predict: {e}"));
    assert_eq!(
        y.shape(),
        [MODEL_BATCH, expected.0, expected.1],
        "{label}: output shape"
    );
    let g = nonzero(&mut rng, y.raw_dim());
    let report = check_layer_trait(label.to_string(), model, x, g);
    print_report(&report);
    report
}

/// One line per checked model: entries and the worst |a − n| / allowed.
fn print_report(report: &Report) {
    let entry = report.worst.as_ref().expect("entries were checked");
    println!(
        "  {}: {} entries, L = {:.4e}, worst |a − n| / allowed = {:.3e} at {} (analytic {:e}, \
         numeric {:e})",
        report.label,
        report.entries,
        report.loss,
        entry.ratio,
        entry.what,
        entry.analytic,
        entry.numeric
    );
}

fn built(label: &str, model: recurrent::Result<Sequential<f64>>) -> Sequential<f64> {
    model.unwrap_or_else(|e| panic!("{label}: build: {e}"))
}

#[test]
fn stacked_mixed_cell_model_backward_matches_finite_differences() {
    // lstm → gru (reset-before) → rnn tanh → dense, many-to-one: the first two return every
    // step (a recurrent layer follows), the rnn only its last, so the output is [B, 1, 2].
    let mut summary = Summary::new("stacked_mixed_cell_model_backward_matches_finite_differences");
    for (n, init) in [Init::Glorot, Init::Torch].into_iter().enumerate() {
        let label = format!("lstm → gru_reset_before → rnn_tanh → dense, {init:?} init, T = 4");
        let model = built(
            &label,
            Sequential::<f64>::builder(MODEL_INPUT)
                .init(init)
                .lstm(MODEL_HIDDEN)
                .recurrent(RecurrentKind::GruResetBefore, MODEL_HIDDEN)
                .rnn(MODEL_HIDDEN)
                .dense(2)
                .build(1000 + n as u64),
        );
        let every_step: Vec<bool> = model
            .specs()
            .iter()
            .filter_map(|s| match s {
                LayerSpec::Recurrent {
                    return_sequences, ..
                } => Some(*return_sequences),
                _ => None,
            })
            .collect();
        assert_eq!(every_step, [true, true, false], "{label}: return_sequences");
        summary.add(check_model(&label, model, 4, (1, 2), 1100 + n as u64));
    }
    summary.print();
}

#[test]
fn bidirectional_models_backward_match_finite_differences() {
    // Every merge, every step and last step only, for an LSTM and a GRU pair, with a dense head.
    let mut summary = Summary::new("bidirectional_models_backward_match_finite_differences");
    let mut seed = 1200;
    for kind in [RecurrentKind::Lstm, RecurrentKind::Gru] {
        for merge in [Merge::Concat, Merge::Sum, Merge::Mean] {
            for every_step in [true, false] {
                seed += 1;
                let label = format!(
                    "bidirectional {} {merge:?} return_sequences({every_step}) → dense, T = 4",
                    kind.name()
                );
                let model = built(
                    &label,
                    Sequential::<f64>::builder(MODEL_INPUT)
                        .init(Init::Torch)
                        .bidirectional(kind, MODEL_HIDDEN, merge)
                        .return_sequences(every_step)
                        .dense(2)
                        .build(seed),
                );
                let width = match merge {
                    Merge::Concat => 2 * MODEL_HIDDEN,
                    Merge::Sum | Merge::Mean => MODEL_HIDDEN,
                };
                assert_eq!(
                    model.layers()[0].output_size(),
                    width,
                    "{label}: merged width"
                );
                let steps_out = if every_step { 4 } else { 1 };
                summary.add(check_model(&label, model, 4, (steps_out, 2), seed + 100));
            }
        }
    }
    // A bidirectional layer feeding another recurrent layer (it returns every step by default).
    let label = "bidirectional rnn_tanh Concat → lstm → dense, T = 3";
    let model = built(
        label,
        Sequential::<f64>::builder(MODEL_INPUT)
            .bidirectional(RecurrentKind::RnnTanh, MODEL_HIDDEN, Merge::Concat)
            .lstm(MODEL_HIDDEN)
            .dense(1)
            .build(1300),
    );
    summary.add(check_model(label, model, 3, (1, 1), 1301));
    summary.print();
}

#[test]
fn parallel_branch_models_backward_match_finite_differences() {
    let mut summary = Summary::new("parallel_branch_models_backward_match_finite_differences");
    let steps = 4;
    // A GRU branch (last step) beside a dense tanh branch on the flattened window.
    let label = "parallel [gru | flatten → dense tanh] → dense, T = 4";
    let model = built(
        label,
        Sequential::<f64>::builder(MODEL_INPUT)
            .parallel(vec![
                SequentialBuilder::branch().gru(MODEL_HIDDEN),
                SequentialBuilder::branch()
                    .flatten()
                    .dense_with(MODEL_HIDDEN, Activation::Tanh),
            ])
            .dense(1)
            .build_for_steps(1400, Some(steps)),
    );
    assert_eq!(
        model.layers()[0].output_size(),
        2 * MODEL_HIDDEN,
        "{label}: concatenated width"
    );
    summary.add(check_model(label, model, steps, (1, 1), 1401));
    // Branches that keep every step: an LSTM beside a dense tanh applied per step.
    let label = "parallel [lstm every step | dense tanh] → dense, T = 4, Torch init";
    let model = built(
        label,
        Sequential::<f64>::builder(MODEL_INPUT)
            .init(Init::Torch)
            .parallel(vec![
                SequentialBuilder::branch()
                    .init(Init::Torch)
                    .lstm(MODEL_HIDDEN)
                    .return_sequences(true),
                SequentialBuilder::branch()
                    .init(Init::Torch)
                    .dense_with(2, Activation::Tanh),
            ])
            .dense(2)
            .build_for_steps(1410, Some(steps)),
    );
    summary.add(check_model(label, model, steps, (steps, 2), 1411));
    summary.print();
}

#[test]
fn encoder_decoder_models_backward_match_finite_differences() {
    let mut summary = Summary::new("encoder_decoder_models_backward_match_finite_differences");
    let (horizon, targets) = (3, 2);
    for (n, kind) in [
        RecurrentKind::Lstm,
        RecurrentKind::Gru,
        RecurrentKind::GruResetBefore,
        RecurrentKind::RnnTanh,
    ]
    .into_iter()
    .enumerate()
    {
        let label = format!(
            "encoder_decoder {} horizon {horizon} → dense {targets}, T = 4",
            kind.name()
        );
        let model = built(
            &label,
            Sequential::<f64>::encoder_decoder(kind, MODEL_INPUT, MODEL_HIDDEN, horizon, targets)
                .build(1500 + n as u64),
        );
        summary.add(check_model(
            &label,
            model,
            4,
            (horizon, targets),
            1600 + n as u64,
        ));
    }
    summary.print();
}

#[test]
fn one_to_many_models_backward_match_finite_differences() {
    // [B, 1, I] repeated over 4 steps: the gradient of x sums over the copies.
    let mut summary = Summary::new("one_to_many_models_backward_match_finite_differences");
    let (steps, targets) = (4, 2);
    for (n, kind) in [
        RecurrentKind::Lstm,
        RecurrentKind::Gru,
        RecurrentKind::RnnTanh,
    ]
    .into_iter()
    .enumerate()
    {
        let label = format!(
            "one_to_many {} over {steps} steps → dense {targets}",
            kind.name()
        );
        let model = built(
            &label,
            Sequential::<f64>::one_to_many(kind, MODEL_INPUT, MODEL_HIDDEN, steps, targets)
                .build(1700 + n as u64),
        );
        summary.add(check_model(
            &label,
            model,
            1,
            (steps, targets),
            1750 + n as u64,
        ));
    }
    summary.print();
}

#[test]
fn direct_multi_step_and_aligned_many_to_many_models_backward_match_finite_differences() {
    let mut summary = Summary::new(
        "direct_multi_step_and_aligned_many_to_many_models_backward_match_finite_differences",
    );
    let (horizon, targets) = (3, 2);
    for (n, kind) in [RecurrentKind::Lstm, RecurrentKind::Gru]
        .into_iter()
        .enumerate()
    {
        let label = format!(
            "direct_multi_step {} → dense {} → unflatten [{horizon}, {targets}], T = 4",
            kind.name(),
            horizon * targets
        );
        let model = built(
            &label,
            Sequential::<f64>::direct_multi_step(kind, MODEL_INPUT, MODEL_HIDDEN, horizon, targets)
                .build(1800 + n as u64),
        );
        summary.add(check_model(
            &label,
            model,
            4,
            (horizon, targets),
            1850 + n as u64,
        ));

        let label = format!(
            "many_to_many (aligned) {} → dense {targets}, T = 4",
            kind.name()
        );
        let model = built(
            &label,
            Sequential::<f64>::many_to_many(kind, MODEL_INPUT, MODEL_HIDDEN, targets)
                .build(1900 + n as u64),
        );
        summary.add(check_model(&label, model, 4, (4, targets), 1950 + n as u64));
    }
    summary.print();
}

/// Copies every parameter value of `from` into `to` (the same architecture).
fn copy_params(from: &dyn Layer<f64>, to: &mut dyn Layer<f64>) {
    let mut values = Vec::new();
    from.visit_params(&mut |p| values.push(p.value.to_vec()));
    let mut values = values.into_iter();
    to.visit_params_mut(&mut |p| {
        let v = values.next().expect("the same number of parameters");
        p.value.copy_from_slice(&v);
    });
    assert!(values.next().is_none(), "the same number of parameters");
}

#[test]
fn dropout_backward_matches_finite_differences_with_its_mask_fixed() {
    // A dropout layer's first training forward is a fixed function of x once its seed is fixed:
    // x ↦ x ⊙ m, m read off forward(ones) of a copy in the same state. Its backward must be
    // ∂x = ∂y ⊙ m, exactly, and agree with central differences of Σ (copy.forward(x)) ⊙ g.
    let mut summary =
        Summary::new("dropout_backward_matches_finite_differences_with_its_mask_fixed");
    let (b, t, f) = (3, 4, 5);
    for (n, rate) in [0.2, 0.5, 0.8].into_iter().enumerate() {
        let label = format!("dropout p = {rate} on [{b}, {t}, {f}]");
        let mut rng = ChaCha8Rng::seed_from_u64(2000 + n as u64);
        let fresh = Dropout::<f64>::new(f, rate, 2100 + n as u64).expect("valid dropout");
        let mask = fresh
            .clone()
            .forward(Array3::ones((b, t, f)).view())
            .expect("forward");
        let keep = 1.0 / (1.0 - rate);
        assert!(
            mask.iter().all(|&m| m == 0.0 || m == keep),
            "{label}: mask entries are 0 or 1/(1 − p)"
        );
        assert!(
            mask.iter().any(|&m| m == 0.0) && mask.iter().any(|&m| m == keep),
            "{label}: the mask both drops and keeps"
        );

        let x = uniform(&mut rng, (b, t, f), -1.0, 1.0);
        let g = nonzero(&mut rng, (b, t, f));
        let mut layer = fresh.clone();
        let y = layer.forward(x.view()).expect("forward");
        assert_eq!(y, &x * &mask, "{label}: forward is x ⊙ mask");
        let d_x = layer.backward(g.view()).expect("backward");
        assert_eq!(d_x, &g * &mask, "{label}: backward is ∂y ⊙ mask");
        assert_eq!(
            layer.predict(x.view()).expect("predict"),
            x,
            "{label}: inference is the identity"
        );

        let fixed_loss = |x: &Array3<f64>| {
            let y = fresh.clone().forward(x.view()).expect("forward");
            dot(y.view(), g.view())
        };
        let mut report = Report {
            label,
            loss: fixed_loss(&x),
            entries: 0,
            failures: 0,
            worst: None,
        };
        let mut x_shifted = x.clone();
        for (k, &analytic) in d_x.iter().enumerate() {
            let index = unravel(k, &[b, t, f]);
            let (i0, i1, i2) = (index[0], index[1], index[2]);
            let original = x[[i0, i1, i2]];
            let (up, down) = (original + STEP, original - STEP);
            x_shifted[[i0, i1, i2]] = up;
            let l_up = fixed_loss(&x_shifted);
            x_shifted[[i0, i1, i2]] = down;
            let l_down = fixed_loss(&x_shifted);
            x_shifted[[i0, i1, i2]] = original;
            report.add(
                format!("input x {index:?}"),
                analytic,
                (l_up - l_down) / (up - down),
            );
        }
        report.assert_passes();
        print_report(&report);
        summary.add(report);
    }
    summary.print();
}

#[test]
fn model_with_active_dropout_matches_finite_differences_with_its_masks_fixed() {
    // lstm → dropout 0.5 → gru → dropout 0.3 → dense. Each dropout's first training forward
    // uses the mask its seed gives, so a model rebuilt from the same seed (the checked model's
    // parameters copied in) runs the same masks on its own first training forward: that fixed
    // function is what the finite differences see.
    let seed = 2200;
    let build = || {
        Sequential::<f64>::builder(MODEL_INPUT)
            .lstm(MODEL_HIDDEN)
            .dropout(0.5)
            .gru(MODEL_HIDDEN)
            .dropout(0.3)
            .dense(2)
            .build(seed)
            .expect("valid model")
    };
    let label = "lstm → dropout 0.5 → gru → dropout 0.3 → dense, masks fixed, T = 4".to_string();
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 1);
    let x = uniform(&mut rng, (MODEL_BATCH, 4, MODEL_INPUT), -1.0, 1.0);
    let g = nonzero(&mut rng, (MODEL_BATCH, 1, 2));
    // The masks really act: the first training forward differs from inference.
    let y_train = build().forward(x.view()).expect("forward");
    let y_infer = build().predict(x.view()).expect("predict");
    assert_ne!(y_train, y_infer, "{label}: dropout is active in training");

    let mut model = build();
    let mut inputs = [Input::new("x", x)];
    let report = gradcheck(
        label,
        &mut model,
        &mut inputs,
        |model, inputs| {
            let mut same_masks = build();
            copy_params(model, &mut same_masks);
            let y = same_masks.forward(inputs[0].view3()).expect("forward");
            dot(y.view(), g.view())
        },
        |model, inputs| {
            let y = model.forward(inputs[0].view3()).expect("forward");
            let d_x = model.backward(g.view()).expect("backward");
            (dot(y.view(), g.view()), vec![d_x.into_dyn()])
        },
    );
    print_report(&report);
    let mut summary =
        Summary::new("model_with_active_dropout_matches_finite_differences_with_its_masks_fixed");
    summary.add(report);
    summary.print();
}
