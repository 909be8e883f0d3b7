//! The PyTorch reference cases of `tests/reference/` (see its README), in f64 (normwise relative
//! error ≤ 1e-9) and in f32 (≤ 1e-4, the same JSON read into f32):
//!
//! * single layers (`rnn_tanh_basic`, `lstm_basic`, `gru_basic`, `dense_basic`): outputs, final
//!   states, the loss `L` and every gradient (all parameters, `x`, `h0`, `c0`);
//! * models (`model_stacked_lstm_last`, `model_gru_seq2seq`), built as a [`Sequential`] from the
//!   case's weights: the MSE loss, every parameter gradient after `backward`, global-norm
//!   clipping (`clip_grad_norm`), and three-step Adam and SGD-momentum trajectories (the loss
//!   before every step, the parameters after the last and the loss there).

mod common;

use std::collections::BTreeMap;

use common::{Case, ErrorLog, dot};
use ndarray::{Array3, ArrayD, ArrayView, Axis, Dimension, IxDyn};
use recurrent::{
    Activation, Adam, Cell, Dense, DenseWeights, Float, GruCell, Layer, Loss, LstmCell, Mse,
    Optimizer, Recurrent, RecurrentState, RecurrentWeights, Sequential, Sgd, SimpleRnnCell,
    clip_grad_norm,
};
use serde_json::Value;

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

// ---------------------------------------------------------------------------------------------
// Model cases
// ---------------------------------------------------------------------------------------------

/// One entry of a model case's `layers`.
#[derive(Debug, Clone, PartialEq)]
enum ModelLayer {
    /// `rnn_tanh`, `rnn_relu`, `lstm` or `gru` (PyTorch's, so reset-after).
    Recurrent {
        kind: String,
        input: usize,
        hidden: usize,
    },
    /// The dense head, on the last step of the last recurrent layer or on every step.
    Dense {
        input: usize,
        output: usize,
        last_step: bool,
    },
}

impl ModelLayer {
    /// The parameter names in [`Layer::visit_params`] order, which are also the JSON names.
    fn param_names(&self) -> &'static [&'static str] {
        match self {
            ModelLayer::Recurrent { .. } => &["weight_ih", "weight_hh", "bias_ih", "bias_hh"],
            ModelLayer::Dense { .. } => &["weight", "bias"],
        }
    }
}

/// Fields of a model case that are inputs or settings, not results to check.
const MODEL_INPUT_FIELDS: [&str; 20] = [
    "name",
    "kind",
    "note",
    "source",
    "batch",
    "seq_len",
    "input_size",
    "layers",
    "params",
    "x",
    "target",
    "loss_reduction",
    "clip.max_norm",
    "adam.lr",
    "adam.betas",
    "adam.eps",
    "adam.steps",
    "sgd_momentum.lr",
    "sgd_momentum.momentum",
    "sgd_momentum.steps",
];

/// Which half of every parameter to read.
#[derive(Debug, Clone, Copy)]
enum Part {
    Value,
    Grad,
}

/// A parsed `model` case.
struct ModelCase {
    case: Case,
    layers: Vec<ModelLayer>,
}

impl ModelCase {
    fn load(name: &str) -> Self {
        let case = Case::load(name);
        assert_eq!(case.str("kind"), "model", "{name}: kind");
        assert_eq!(
            case.str("loss_reduction"),
            "mean",
            "{name}: only the mean reduction is checked"
        );
        let count = case
            .get("layers")
            .as_array()
            .unwrap_or_else(|| panic!("{name}: `layers` is not a list"))
            .len();
        let layers: Vec<ModelLayer> = (0..count)
            .map(|l| {
                let p = format!("layers.{l}");
                match case.str(&format!("{p}.type")) {
                    "dense" => ModelLayer::Dense {
                        input: case.usize(&format!("{p}.in")),
                        output: case.usize(&format!("{p}.out")),
                        last_step: match case.str(&format!("{p}.applied")) {
                            "last_step" => true,
                            "every_step" => false,
                            other => panic!("{name}: `{p}.applied` is {other:?}"),
                        },
                    },
                    kind @ ("rnn_tanh" | "rnn_relu" | "lstm" | "gru") => ModelLayer::Recurrent {
                        kind: kind.to_string(),
                        input: case.usize(&format!("{p}.input_size")),
                        hidden: case.usize(&format!("{p}.hidden_size")),
                    },
                    other => panic!("{name}: `{p}.type` {other:?} is not a known layer"),
                }
            })
            .collect();
        assert!(
            matches!(layers.last(), Some(ModelLayer::Dense { .. })),
            "{name}: a model case ends in its dense head"
        );
        assert!(
            layers[..count - 1]
                .iter()
                .all(|l| matches!(l, ModelLayer::Recurrent { .. })),
            "{name}: only the last layer is dense"
        );
        for list in ["params", "grads"] {
            let len = case.get(list).as_array().map(Vec::len);
            assert_eq!(len, Some(count), "{name}: `{list}` parallels `layers`");
        }
        ModelCase { case, layers }
    }

    fn name(&self) -> &str {
        &self.case.name
    }

    /// Whether the dense head reads only the last step.
    fn last_step(&self) -> bool {
        matches!(
            self.layers.last(),
            Some(ModelLayer::Dense {
                last_step: true,
                ..
            })
        )
    }

    /// The model at the case's `params`: every recurrent layer returns every step, except the
    /// last one when the head reads only the last step (it returns `[B, 1, H]`).
    fn build<F: Float>(&self) -> Sequential<F> {
        let name = self.name();
        let last_recurrent = self.layers.len() - 2;
        let mut boxes: Vec<Box<dyn Layer<F>>> = Vec::new();
        for (l, layer) in self.layers.iter().enumerate() {
            let what = format!("{name} layer {l}");
            let p = |field: &str| format!("params.{l}.{field}");
            let boxed: Box<dyn Layer<F>> = match layer {
                ModelLayer::Recurrent { kind, .. } => {
                    let weights = RecurrentWeights {
                        weight_ih: self.case.array2::<F>(&p("weight_ih")),
                        weight_hh: self.case.array2::<F>(&p("weight_hh")),
                        bias_ih: self.case.array1::<F>(&p("bias_ih")),
                        bias_hh: self.case.array1::<F>(&p("bias_hh")),
                    };
                    let every = !(l == last_recurrent && self.last_step());
                    match kind.as_str() {
                        "rnn_tanh" => recurrent_layer(
                            SimpleRnnCell::new(Activation::Tanh),
                            weights,
                            every,
                            &what,
                        ),
                        "rnn_relu" => recurrent_layer(
                            SimpleRnnCell::new(Activation::Relu),
                            weights,
                            every,
                            &what,
                        ),
                        "lstm" => recurrent_layer(LstmCell, weights, every, &what),
                        "gru" => recurrent_layer(GruCell::ResetAfter, weights, every, &what),
                        other => unreachable!("parsed kind {other}"),
                    }
                }
                ModelLayer::Dense { .. } => {
                    let weights = DenseWeights {
                        weight: self.case.array2::<F>(&p("weight")),
                        bias: self.case.array1::<F>(&p("bias")),
                    };
                    Box::new(
                        Dense::<F>::from_weights(weights, Activation::Identity)
                            .unwrap_or_else(|e| panic!("{what}: dense from_weights: {e}")),
                    )
                }
            };
            let sizes = match layer {
                ModelLayer::Recurrent { input, hidden, .. } => (*input, *hidden),
                ModelLayer::Dense { input, output, .. } => (*input, *output),
            };
            assert_eq!(
                (boxed.input_size(), boxed.output_size()),
                sizes,
                "{what}: sizes built from `params` vs the ones `layers` declares"
            );
            boxes.push(boxed);
        }
        Sequential::from_layers(self.case.usize("input_size"), boxes)
            .unwrap_or_else(|e| panic!("{name}: Sequential::from_layers: {e}"))
    }

    /// `x` `[B, T, I]`.
    fn x<F: Float>(&self) -> Array3<F> {
        let x = self.case.array3::<F>("x");
        let expected = (
            self.case.usize("batch"),
            self.case.usize("seq_len"),
            self.case.usize("input_size"),
        );
        assert_eq!(x.dim(), expected, "{}: x shape", self.name());
        x
    }

    /// `target` as the model's output shape: `[B, 1, out]` for a last-step head (the case
    /// stores `[B][out]`), `[B, T, out]` otherwise.
    fn target<F: Float>(&self) -> Array3<F> {
        let name = self.name();
        let target = self.case.array::<F>("target");
        let (b, t) = (self.case.usize("batch"), self.case.usize("seq_len"));
        let out = match self.layers.last() {
            Some(ModelLayer::Dense { output, .. }) => *output,
            _ => unreachable!("checked at load"),
        };
        if self.last_step() {
            assert_eq!(target.shape(), [b, out], "{name}: last-step target shape");
            target
                .into_shape_with_order((b, 1, out))
                .expect("[B, out] reshapes to [B, 1, out]")
        } else {
            assert_eq!(
                target.shape(),
                [b, t, out],
                "{name}: every-step target shape"
            );
            target
                .into_shape_with_order((b, t, out))
                .expect("[B, T, out]")
        }
    }

    /// `(layer, name)` of every parameter, in visiting order.
    fn param_order(&self) -> Vec<(usize, &'static str)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(l, layer)| layer.param_names().iter().map(move |&n| (l, n)))
            .collect()
    }

    /// Compares every parameter's value or gradient with `<prefix>.<layer>.<name>`.
    fn check_params<F: Float>(
        &self,
        logs: &mut KindLogs,
        prefix: &str,
        model: &Sequential<F>,
        part: Part,
    ) {
        let name = self.name();
        let mut got: Vec<(String, ArrayD<F>)> = Vec::new();
        model.visit_params(&mut |p| {
            let data = match part {
                Part::Value => p.value.to_vec(),
                Part::Grad => p.grad.to_vec(),
            };
            let array = ArrayD::from_shape_vec(IxDyn(p.shape), data)
                .unwrap_or_else(|e| panic!("{name}: parameter {} layout: {e}", p.name));
            got.push((p.name.to_string(), array));
        });
        let order = self.param_order();
        let got_names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        let expected_names: Vec<&str> = order.iter().map(|&(_, n)| n).collect();
        assert_eq!(
            got_names, expected_names,
            "{name}: the model's parameters in visiting order"
        );
        for ((l, param), (_, array)) in order.into_iter().zip(got) {
            let path = format!("{prefix}.{l}.{param}");
            logs.check(
                name,
                &path,
                array.view(),
                self.case.array::<f64>(&path).view(),
            );
        }
    }

    /// The `key` (`adam`, `sgd_momentum`) trajectory from `params`: for each step zero_grad,
    /// forward, loss, backward, `optimizer.step`; then the parameters and the loss after.
    fn check_trajectory<F: Float>(
        &self,
        logs: &mut KindLogs,
        key: &str,
        optimizer: &mut dyn Optimizer<F>,
    ) {
        let name = self.name();
        let mut model = self.build::<F>();
        let (x, target) = (self.x::<F>(), self.target::<F>());
        let steps = self.case.usize(&format!("{key}.steps"));
        let reference = self.case.array1::<f64>(&format!("{key}.losses"));
        assert_eq!(
            reference.len(),
            steps,
            "{name}: one `{key}.losses` per step"
        );
        let mut losses = Vec::with_capacity(steps);
        for k in 0..steps {
            model.zero_grad();
            let prediction = model
                .forward(x.view())
                .unwrap_or_else(|e| panic!("{name} {key} step {k}: forward: {e}"));
            let (loss, d_prediction) = Mse
                .loss_and_gradient(prediction.view(), target.view())
                .unwrap_or_else(|e| panic!("{name} {key} step {k}: loss: {e}"));
            let loss = common::as_f64(loss);
            logs.check_scalar(name, &format!("{key}.losses.{k}"), loss, reference[k]);
            losses.push(loss);
            model
                .backward(d_prediction.view())
                .unwrap_or_else(|e| panic!("{name} {key} step {k}: backward: {e}"));
            optimizer.step(&mut model).unwrap_or_else(|e| {
                panic!("{name} {key} step {k}: {} step: {e}", optimizer.name())
            });
        }
        logs.check(
            name,
            &format!("{key}.losses"),
            ndarray::Array1::from(losses).view(),
            reference.view(),
        );
        self.check_params(logs, &format!("{key}.params_after"), &model, Part::Value);
        let prediction = model
            .predict(x.view())
            .unwrap_or_else(|e| panic!("{name} {key}: predict after the steps: {e}"));
        let loss_after = Mse
            .loss(prediction.view(), target.view())
            .unwrap_or_else(|e| panic!("{name} {key}: loss after the steps: {e}"));
        logs.check_scalar(
            name,
            &format!("{key}.loss_after"),
            common::as_f64(loss_after),
            self.case.f64(&format!("{key}.loss_after")),
        );
    }

    /// Every result in the case (every field but [`MODEL_INPUT_FIELDS`], down to the arrays
    /// and numbers) was checked.
    fn assert_every_result_checked(&self, log: &ErrorLog) {
        let mut results = Vec::new();
        result_paths(&self.case.json, String::new(), &mut results);
        assert!(!results.is_empty(), "{}: no results", self.name());
        for path in results {
            log.assert_checked(self.name(), &path);
        }
    }
}

/// The dotted paths of every number and numeric array under `value` except the inputs
/// ([`MODEL_INPUT_FIELDS`]); objects and lists of objects are walked into.
fn result_paths(value: &Value, path: String, out: &mut Vec<String>) {
    if MODEL_INPUT_FIELDS.contains(&path.as_str()) {
        return;
    }
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                result_paths(v, join(key), out);
            }
        }
        Value::Array(list) if list.first().is_some_and(Value::is_object) => {
            for (i, v) in list.iter().enumerate() {
                result_paths(v, join(&i.to_string()), out);
            }
        }
        _ => out.push(path),
    }
}

fn recurrent_layer<C: Cell, F: Float>(
    cell: C,
    weights: RecurrentWeights<F>,
    every_step: bool,
    what: &str,
) -> Box<dyn Layer<F>> {
    let layer = Recurrent::<C, F>::from_weights(cell, weights)
        .unwrap_or_else(|e| panic!("{what}: recurrent from_weights: {e}"));
    Box::new(layer.with_return_sequences(every_step))
}

/// One [`ErrorLog`] per kind of array of a model case: its path up to the first index
/// (`loss`, `grads`, `clip.grads_after`, `adam.losses`, `adam.params_after`, …).
struct KindLogs {
    precision: &'static str,
    tolerance: f64,
    logs: BTreeMap<String, ErrorLog>,
}

impl KindLogs {
    fn new<F: Float>() -> Self {
        let log = ErrorLog::new::<F>();
        KindLogs {
            precision: log.precision,
            tolerance: log.tolerance,
            logs: BTreeMap::new(),
        }
    }

    fn log(&mut self, path: &str) -> &mut ErrorLog {
        let kind = path
            .split('.')
            .take_while(|s| s.parse::<usize>().is_err())
            .collect::<Vec<_>>()
            .join(".");
        let (precision, tolerance) = (self.precision, self.tolerance);
        self.logs.entry(kind).or_insert_with(|| ErrorLog {
            precision,
            tolerance,
            worst: 0.0,
            worst_at: String::from("(nothing checked)"),
            checked: Default::default(),
        })
    }

    fn check<F: Float, D: Dimension>(
        &mut self,
        case: &str,
        path: &str,
        got: ArrayView<'_, F, D>,
        reference: ArrayView<'_, f64, D>,
    ) {
        self.log(path).check(case, path, got, reference);
    }

    fn check_scalar(&mut self, case: &str, path: &str, got: f64, reference: f64) {
        self.log(path).check_scalar(case, path, got, reference);
    }

    /// Prints the worst error of every kind and folds them into one log.
    fn finish(self, case: &str) -> ErrorLog {
        let mut all: Option<ErrorLog> = None;
        for (kind, log) in self.logs {
            println!("  {case} {kind}: {}", log.summary());
            match &mut all {
                None => all = Some(log),
                Some(all) => all.merge(log),
            }
        }
        all.unwrap_or_else(|| panic!("{case}: nothing was checked"))
    }
}

/// Checks one `model` case computed in `F`: the loss, every gradient, clipping, and the Adam
/// and SGD-momentum trajectories.
fn check_model_case<F: Float>(name: &str) -> ErrorLog {
    let mc = ModelCase::load(name);
    let case = &mc.case;
    let mut logs = KindLogs::new::<F>();
    let mut model = mc.build::<F>();
    let (x, target) = (mc.x::<F>(), mc.target::<F>());

    // Loss and gradients.
    let prediction = model
        .forward(x.view())
        .unwrap_or_else(|e| panic!("{name}: forward: {e}"));
    assert_eq!(
        prediction.shape(),
        target.shape(),
        "{name}: the prediction's shape"
    );
    let (loss, d_prediction) = Mse
        .loss_and_gradient(prediction.view(), target.view())
        .unwrap_or_else(|e| panic!("{name}: loss: {e}"));
    logs.check_scalar(name, "loss", common::as_f64(loss), case.f64("loss"));
    model
        .backward(d_prediction.view())
        .unwrap_or_else(|e| panic!("{name}: backward: {e}"));
    mc.check_params(&mut logs, "grads", &model, Part::Grad);

    // Global-norm clipping of those gradients.
    let max_norm = case.f64("clip.max_norm");
    let norm_reference = case.f64("clip.total_norm_before");
    assert!(
        max_norm < norm_reference,
        "{name}: clip.max_norm {max_norm} should be below the total norm {norm_reference}"
    );
    let norm = clip_grad_norm(&mut model, max_norm)
        .unwrap_or_else(|e| panic!("{name}: clip_grad_norm: {e}"));
    logs.check_scalar(
        name,
        "clip.total_norm_before",
        common::as_f64(norm),
        norm_reference,
    );
    mc.check_params(&mut logs, "clip.grads_after", &model, Part::Grad);

    // Optimizer trajectories, each from `params`.
    let betas = case.array1::<f64>("adam.betas");
    assert_eq!(betas.len(), 2, "{name}: adam.betas");
    let mut adam = Adam::<F>::new(case.f64("adam.lr"))
        .and_then(|a| a.with_betas(betas[0], betas[1]))
        .and_then(|a| a.with_eps(case.f64("adam.eps")))
        .unwrap_or_else(|e| panic!("{name}: adam settings: {e}"));
    mc.check_trajectory(&mut logs, "adam", &mut adam);
    assert_eq!(
        adam.steps_taken(),
        case.usize("adam.steps") as u64,
        "{name}: adam steps"
    );
    let mut sgd = Sgd::<F>::new(case.f64("sgd_momentum.lr"))
        .and_then(|s| s.with_momentum(case.f64("sgd_momentum.momentum")))
        .unwrap_or_else(|e| panic!("{name}: sgd settings: {e}"));
    mc.check_trajectory(&mut logs, "sgd_momentum", &mut sgd);

    let log = logs.finish(name);
    mc.assert_every_result_checked(&log);
    log
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
        name if MODEL_CASES.contains(&name) => check_model_case::<F>(name),
        other => panic!("no check for case {other}"),
    }
}

const SINGLE_LAYER_CASES: [&str; 4] = ["rnn_tanh_basic", "lstm_basic", "gru_basic", "dense_basic"];

const MODEL_CASES: [&str; 2] = ["model_stacked_lstm_last", "model_gru_seq2seq"];

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

#[test]
fn model_stacked_lstm_last_matches_pytorch_in_f64() {
    run_and_report::<f64>("model_stacked_lstm_last");
}

#[test]
fn model_stacked_lstm_last_matches_pytorch_in_f32() {
    run_and_report::<f32>("model_stacked_lstm_last");
}

#[test]
fn model_gru_seq2seq_matches_pytorch_in_f64() {
    run_and_report::<f64>("model_gru_seq2seq");
}

#[test]
fn model_gru_seq2seq_matches_pytorch_in_f32() {
    run_and_report::<f32>("model_gru_seq2seq");
}

/// `cases` in one log per precision, printing the worst error over them.
fn worst_over<F: Float>(what: &str, cases: &[&str]) -> ErrorLog {
    let mut log = ErrorLog::new::<F>();
    for name in cases {
        log.merge(run_case::<F>(name));
    }
    println!("{what}, {}", log.summary());
    log
}

/// Every case, single-layer and model, in one log per precision.
fn worst_over_every_case<F: Float>() -> ErrorLog {
    let mut log = worst_over::<F>("all single-layer reference cases", &SINGLE_LAYER_CASES);
    log.merge(worst_over::<F>("all model reference cases", &MODEL_CASES));
    println!("every reference case, {}", log.summary());
    log
}

#[test]
fn every_case_in_the_directory_is_covered() {
    let mut on_disk: Vec<String> = std::fs::read_dir(common::reference_dir())
        .expect("tests/reference/ is readable")
        .filter_map(|e| {
            let path = e.ok()?.path();
            (path.extension()? == "json").then(|| path.file_stem()?.to_str().map(String::from))?
        })
        .collect();
    on_disk.sort();
    let mut covered: Vec<String> = SINGLE_LAYER_CASES
        .iter()
        .chain(&MODEL_CASES)
        .map(|s| s.to_string())
        .collect();
    covered.sort();
    assert_eq!(
        on_disk, covered,
        "cases in tests/reference/ vs the ones this file checks"
    );
    // The model cases are exactly the files of kind `model`.
    for name in &on_disk {
        let is_model = Case::load(name).str("kind") == "model";
        assert_eq!(
            is_model,
            MODEL_CASES.contains(&name.as_str()),
            "{name}: listed as a model case iff its kind is `model`"
        );
    }
}

#[test]
fn worst_relative_error_over_the_model_cases_is_within_1e_9_in_f64() {
    let log = worst_over::<f64>("all model reference cases", &MODEL_CASES);
    assert!(log.worst <= common::F64_TOLERANCE, "{}", log.summary());
}

#[test]
fn worst_relative_error_over_the_model_cases_is_within_1e_4_in_f32() {
    let log = worst_over::<f32>("all model reference cases", &MODEL_CASES);
    assert!(log.worst <= common::F32_TOLERANCE, "{}", log.summary());
}

#[test]
fn worst_relative_error_over_every_case_is_within_1e_9_in_f64() {
    let log = worst_over_every_case::<f64>();
    assert!(log.worst <= common::F64_TOLERANCE, "{}", log.summary());
}

#[test]
fn worst_relative_error_over_every_case_is_within_1e_4_in_f32() {
    let log = worst_over_every_case::<f32>();
    assert!(log.worst <= common::F32_TOLERANCE, "{}", log.summary());
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
