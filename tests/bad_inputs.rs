//! Every public function that takes a user's data, fed a bad shape, an empty input, non-finite
//! values or out-of-range settings: one table, each row a call that must return a typed error
//! whose message names the problem. Every call runs under `catch_unwind`, and the test counts
//! the panics (there must be none).

use std::panic::{AssertUnwindSafe, catch_unwind};

use ndarray::{Array2, Array3};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use recurrent::data::{CsvOptions, Pipeline, Series, Transform, WindowSpec, input_window, windows};
use recurrent::forecast::{
    BacktestConfig, Baseline, Forecaster, TrainingWindow, backtest, mape, mase, mse,
};
use recurrent::persist::Format;
use recurrent::stream::Streamer;
use recurrent::train::Checkpoint;
use recurrent::{
    Activation, Adam, Clip, Dense, EarlyStopping, Error, Gru, GruCell, Huber, Layer, Loss,
    LrSchedule, Lstm, Mse, Optimizer, RecurrentKind, RecurrentState, Result, Sequential, Sgd,
    Trainer, Validation, clip_grad_norm, clip_grad_value, interop,
};

type Row = (&'static str, &'static str, Box<dyn FnOnce() -> Result<()>>);

fn rng() -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(1)
}

fn x(b: usize, t: usize, i: usize) -> Array3<f64> {
    Array3::from_shape_fn((b, t, i), |(b, t, i)| {
        ((b + 2 * t + 3 * i) % 5) as f64 / 5.0
    })
}

fn small_model() -> Sequential<f64> {
    Sequential::<f64>::builder(2)
        .gru(3)
        .dense(1)
        .build(0)
        .unwrap()
}

fn csv(text: &'static str) -> Result<Series> {
    Series::from_csv_reader(text.as_bytes(), &CsvOptions::new())
}

fn table() -> Array2<f64> {
    Array2::from_shape_fn((30, 2), |(t, c)| 1.0 + t as f64 + c as f64)
}

fn pipeline() -> Pipeline {
    Pipeline::fit(&[Transform::Standardize], table().view()).unwrap()
}

fn fit_with(trainer: Trainer<f64>) -> Result<()> {
    let mut model = small_model();
    let mut trainer = trainer;
    trainer
        .fit(
            &mut model,
            x(8, 4, 2).view(),
            Array3::zeros((8, 1, 1)).view(),
        )
        .map(drop)
}

fn model_bytes() -> Vec<u8> {
    small_model().to_bytes(Format::Binary).unwrap()
}

#[allow(clippy::too_many_lines)]
fn rows() -> Vec<Row> {
    vec![
        // ---- layers
        (
            "lstm with 0 inputs",
            "input_size",
            Box::new(|| Lstm::<f64>::new(0, 4, &mut rng()).map(drop)),
        ),
        (
            "gru with 0 units",
            "hidden_size",
            Box::new(|| Gru::<f32>::new(3, 0, &mut rng()).map(drop)),
        ),
        (
            "dense with 0 outputs",
            "0",
            Box::new(|| Dense::<f64>::new(3, 0, Activation::Tanh, &mut rng()).map(drop)),
        ),
        (
            "lstm predict, wrong feature count",
            "[2, 3, 2]",
            Box::new(|| {
                Lstm::<f64>::new(2, 4, &mut rng())?
                    .predict(x(2, 3, 5).view())
                    .map(drop)
            }),
        ),
        (
            "lstm forward, empty batch",
            "batch",
            Box::new(|| {
                Lstm::<f64>::new(2, 4, &mut rng())?
                    .forward(x(0, 3, 2).view())
                    .map(drop)
            }),
        ),
        (
            "gru forward, zero steps",
            "steps",
            Box::new(|| {
                Gru::<f64>::new(2, 4, &mut rng())?
                    .forward(x(2, 0, 2).view())
                    .map(drop)
            }),
        ),
        (
            "lstm initial state of the wrong shape",
            "initial",
            Box::new(|| {
                let mut lstm = Lstm::<f64>::new(2, 4, &mut rng())?;
                let state = RecurrentState {
                    h: Array2::zeros((2, 5)),
                    c: Some(Array2::zeros((2, 4))),
                };
                lstm.forward_with_state(x(2, 3, 2).view(), Some(&state))
                    .map(drop)
            }),
        ),
        (
            "a cell state given to a GRU",
            "cell without one",
            Box::new(|| {
                let mut gru = Gru::<f64>::new(2, 4, &mut rng())?;
                let state = RecurrentState {
                    h: Array2::zeros((2, 4)),
                    c: Some(Array2::zeros((2, 4))),
                };
                gru.forward_with_state(x(2, 3, 2).view(), Some(&state))
                    .map(drop)
            }),
        ),
        (
            "gru backward without forward",
            "without a preceding",
            Box::new(|| {
                Gru::<f64>::new(2, 4, &mut rng())?
                    .backward(x(2, 3, 4).view())
                    .map(drop)
            }),
        ),
        (
            "dense backward with a gradient of the wrong shape",
            "gradient",
            Box::new(|| {
                let mut dense = Dense::<f64>::new(2, 1, Activation::Identity, &mut rng())?;
                dense.forward(x(2, 3, 2).view())?;
                dense.backward(x(2, 3, 2).view()).map(drop)
            }),
        ),
        // ---- models
        (
            "a model reading 0 features",
            "input size",
            Box::new(|| Sequential::<f64>::builder(0).gru(2).build(0).map(drop)),
        ),
        (
            "a model with no layers",
            "no layers",
            Box::new(|| Sequential::<f64>::builder(2).build(0).map(drop)),
        ),
        (
            "an lstm of 0 units in a stack",
            "layer 1",
            Box::new(|| {
                Sequential::<f64>::builder(2)
                    .gru(3)
                    .lstm(0)
                    .build(0)
                    .map(drop)
            }),
        ),
        (
            "dropout rate 1.5",
            "dropout rate",
            Box::new(|| {
                Sequential::<f64>::builder(2)
                    .gru(3)
                    .dropout(1.5)
                    .build(0)
                    .map(drop)
            }),
        ),
        (
            "dropout rate NaN",
            "dropout rate",
            Box::new(|| {
                Sequential::<f64>::builder(2)
                    .gru(3)
                    .dropout(f64::NAN)
                    .build(0)
                    .map(drop)
            }),
        ),
        (
            "flatten without the window length",
            "window length",
            Box::new(|| Sequential::<f64>::builder(2).flatten().build(0).map(drop)),
        ),
        (
            "unflatten 4 features into 3 steps",
            "do not split",
            Box::new(|| {
                Sequential::<f64>::builder(2)
                    .dense(4)
                    .unflatten(3)
                    .build(0)
                    .map(drop)
            }),
        ),
        (
            "return_sequences after a dense layer",
            "return_sequences",
            Box::new(|| {
                Sequential::<f64>::builder(2)
                    .dense(4)
                    .return_sequences(true)
                    .build(0)
                    .map(drop)
            }),
        ),
        (
            "a model asked to predict with the wrong feature count",
            "[4, 6, 2]",
            Box::new(|| small_model().predict(x(4, 6, 3).view()).map(drop)),
        ),
        (
            "encoder-decoder horizon 0",
            "horizon",
            Box::new(|| {
                Sequential::<f64>::encoder_decoder(RecurrentKind::Lstm, 2, 3, 0, 1)
                    .build(0)
                    .map(drop)
            }),
        ),
        // ---- losses, optimizers, clipping
        (
            "mse of mismatched shapes",
            "must match the prediction",
            Box::new(|| Mse.loss(x(2, 1, 1).view(), x(2, 2, 1).view()).map(drop)),
        ),
        (
            "huber with delta 0",
            "delta",
            Box::new(|| Huber::new(0.0).map(drop)),
        ),
        (
            "adam with a negative learning rate",
            "learning rate",
            Box::new(|| Adam::<f64>::new(-0.1).map(drop)),
        ),
        (
            "adam with a NaN learning rate",
            "learning rate",
            Box::new(|| Adam::<f64>::new(f64::NAN).map(drop)),
        ),
        (
            "adam with beta2 = 1",
            "beta2",
            Box::new(|| Adam::<f64>::new(0.1)?.with_betas(0.9, 1.0).map(drop)),
        ),
        (
            "sgd with momentum 1.5",
            "momentum",
            Box::new(|| Sgd::<f64>::new(0.1)?.with_momentum(1.5).map(drop)),
        ),
        (
            "sgd nesterov without momentum",
            "nesterov",
            Box::new(|| Sgd::<f64>::new(0.1)?.with_nesterov(true).map(drop)),
        ),
        (
            "an optimizer reused on a different model",
            "new optimizer",
            Box::new(|| {
                let mut adam = Adam::<f64>::new(0.1)?;
                adam.step(&mut small_model())?;
                adam.step(&mut Sequential::<f64>::builder(2).lstm(3).dense(1).build(0)?)
            }),
        ),
        (
            "clip to a max norm of 0",
            "max_norm",
            Box::new(|| clip_grad_norm(&mut small_model(), 0.0).map(drop)),
        ),
        (
            "clip a NaN gradient",
            "non-finite",
            Box::new(|| {
                let mut model = small_model();
                model.visit_params_mut(&mut |p| p.grad[0] = f64::NAN);
                clip_grad_norm(&mut model, 1.0).map(drop)
            }),
        ),
        (
            "clip by a negative value",
            "clip",
            Box::new(|| clip_grad_value(&mut small_model(), -1.0)),
        ),
        // ---- training
        (
            "fit for 0 epochs",
            "epochs",
            Box::new(|| fit_with(Trainer::new(Mse, Adam::new(0.1)?).epochs(0))),
        ),
        (
            "fit with batch size 0",
            "batch size",
            Box::new(|| fit_with(Trainer::new(Mse, Adam::new(0.1)?).batch_size(0))),
        ),
        (
            "a validation fraction of 1.5",
            "validation fraction",
            Box::new(|| {
                fit_with(
                    Trainer::new(Mse, Adam::new(0.1)?).validation(Validation::LastFraction(1.5)),
                )
            }),
        ),
        (
            "early stopping patience 0",
            "patience",
            Box::new(|| {
                fit_with(Trainer::new(Mse, Adam::new(0.1)?).early_stopping(EarlyStopping::new(0)))
            }),
        ),
        (
            "a step schedule with gamma 0",
            "gamma",
            Box::new(|| {
                fit_with(
                    Trainer::new(Mse, Adam::new(0.1)?).schedule(LrSchedule::Step {
                        step_size: 2,
                        gamma: 0.0,
                    }),
                )
            }),
        ),
        (
            "truncated BPTT of 0 steps",
            "truncated",
            Box::new(|| fit_with(Trainer::new(Mse, Adam::new(0.1)?).truncated_bptt(0))),
        ),
        (
            "a clip norm of -1 in the trainer",
            "max_norm",
            Box::new(|| fit_with(Trainer::new(Mse, Adam::new(0.1)?).clip(Clip::Norm(-1.0)))),
        ),
        (
            "checkpoints every 0 epochs",
            "checkpoint",
            Box::new(|| {
                fit_with(Trainer::new(Mse, Adam::new(0.1)?).checkpoint_every(
                    0,
                    "unused",
                    Format::Json,
                ))
            }),
        ),
        (
            "NaN in the training inputs",
            "non-finite value in training inputs",
            Box::new(|| {
                let mut inputs = x(8, 4, 2);
                inputs[[3, 1, 0]] = f64::NAN;
                Trainer::new(Mse, Adam::new(0.1)?)
                    .fit(
                        &mut small_model(),
                        inputs.view(),
                        Array3::zeros((8, 1, 1)).view(),
                    )
                    .map(drop)
            }),
        ),
        (
            "infinite training targets",
            "non-finite value in training targets",
            Box::new(|| {
                let mut targets = Array3::zeros((8, 1, 1));
                targets[[5, 0, 0]] = f64::INFINITY;
                Trainer::new(Mse, Adam::new(0.1)?)
                    .fit(&mut small_model(), x(8, 4, 2).view(), targets.view())
                    .map(drop)
            }),
        ),
        (
            "targets of the wrong shape",
            "targets",
            Box::new(|| {
                Trainer::new(Mse, Adam::new(0.1)?)
                    .fit(
                        &mut small_model(),
                        x(8, 4, 2).view(),
                        Array3::zeros((8, 2, 1)).view(),
                    )
                    .map(drop)
            }),
        ),
        (
            "no training samples",
            "samples",
            Box::new(|| {
                Trainer::new(Mse, Adam::new(0.1)?)
                    .fit(
                        &mut small_model(),
                        x(0, 4, 2).view(),
                        Array3::zeros((0, 1, 1)).view(),
                    )
                    .map(drop)
            }),
        ),
        // ---- data
        (
            "a CSV column that is not there",
            "the columns are",
            Box::new(|| {
                Series::from_csv_reader("a,b\n1,2\n".as_bytes(), &CsvOptions::new().columns(&["c"]))
                    .map(drop)
            }),
        ),
        (
            "an empty CSV file",
            "header",
            Box::new(|| csv("").map(drop)),
        ),
        (
            "a CSV with a missing value",
            "line 3",
            Box::new(|| csv("a,b\n1,2\n3,\n").map(drop)),
        ),
        (
            "a CSV with text for a number",
            "abc",
            Box::new(|| csv("a\n1\nabc\n").map(drop)),
        ),
        (
            "a series with a NaN",
            "non-finite",
            Box::new(|| Series::from_slice("y", &[1.0, f64::NAN]).map(drop)),
        ),
        (
            "a split with no training rows",
            "training",
            Box::new(|| {
                Series::from_slice("y", &[1.0, 2.0, 3.0])?
                    .split_counts(2, 1)
                    .map(drop)
            }),
        ),
        (
            "split fractions over 1",
            "no training rows",
            Box::new(|| {
                Series::from_slice("y", &[1.0; 10])?
                    .split_fractions(0.6, 0.6)
                    .map(drop)
            }),
        ),
        (
            "a log of a negative value",
            "log",
            Box::new(|| {
                Pipeline::fit(&[Transform::Log], Array2::from_elem((4, 1), -1.0).view()).map(drop)
            }),
        ),
        (
            "a pipeline fitted on no rows",
            "rows",
            Box::new(|| {
                Pipeline::fit(
                    &[Transform::Standardize],
                    Array2::<f64>::zeros((0, 2)).view(),
                )
                .map(drop)
            }),
        ),
        (
            "a pipeline applied to data with other columns",
            "columns",
            Box::new(|| pipeline().transform(Array2::zeros((5, 3)).view()).map(drop)),
        ),
        (
            "a difference of lag 0",
            "lag",
            Box::new(|| {
                Pipeline::fit(&[Transform::Difference { lag: 0 }], table().view()).map(drop)
            }),
        ),
        (
            "a lookback longer than the series",
            "does not fit",
            Box::new(|| windows::<f64>(table().view(), &WindowSpec::new(40, 1), 0..30).map(drop)),
        ),
        (
            "a window horizon of 0",
            "horizon",
            Box::new(|| windows::<f64>(table().view(), &WindowSpec::new(4, 0), 0..30).map(drop)),
        ),
        (
            "a window target column out of range",
            "out of range",
            Box::new(|| {
                windows::<f64>(table().view(), &WindowSpec::new(4, 1).targets(&[5]), 0..30)
                    .map(drop)
            }),
        ),
        (
            "an input window past the table",
            "does not fit",
            Box::new(|| input_window::<f64>(table().view(), &WindowSpec::new(4, 1), 30).map(drop)),
        ),
        // ---- forecasting
        (
            "a forecaster whose model reads other columns",
            "features",
            Box::new(|| {
                let model = small_model();
                let pipeline = pipeline();
                let spec = WindowSpec::new(4, 1);
                Forecaster::new(&model, &pipeline, &spec).map(drop)
            }),
        ),
        (
            "a recursive horizon of 0",
            "horizon",
            Box::new(|| {
                let model = small_model();
                let pipeline = pipeline();
                let spec = WindowSpec::new(4, 1).inputs(&[0, 1]);
                Forecaster::new(&model, &pipeline, &spec)?
                    .recursive(table().view(), 20, 0, None)
                    .map(drop)
            }),
        ),
        (
            "a forecast origin before a full window",
            "fewer than",
            Box::new(|| {
                let model = small_model();
                let pipeline = pipeline();
                let spec = WindowSpec::new(4, 1).inputs(&[0, 1]);
                Forecaster::new(&model, &pipeline, &spec)?
                    .direct(table().view(), 1)
                    .map(drop)
            }),
        ),
        (
            "metrics of unequal lengths",
            "must match",
            Box::new(|| mse(&[1.0, 2.0], &[1.0]).map(drop)),
        ),
        (
            "metrics of nothing",
            "at least 1",
            Box::new(|| mse(&[], &[]).map(drop)),
        ),
        (
            "metrics with a NaN forecast",
            "non-finite",
            Box::new(|| mse(&[1.0], &[f64::NAN]).map(drop)),
        ),
        (
            "MAPE with an actual 0",
            "is 0",
            Box::new(|| mape(&[0.0, 1.0], &[1.0, 1.0]).map(drop)),
        ),
        (
            "MASE with season 0",
            "season",
            Box::new(|| mase(&[1.0], &[1.0], &[1.0, 2.0, 3.0], 0).map(drop)),
        ),
        (
            "a seasonal naive period of 0",
            "period",
            Box::new(|| {
                Baseline::SeasonalNaive { period: 0 }
                    .forecast(&[1.0, 2.0], 3)
                    .map(drop)
            }),
        ),
        (
            "a backtest stride of 0",
            "stride",
            Box::new(|| {
                let config = BacktestConfig {
                    first_origin: 5,
                    horizon: 1,
                    stride: 0,
                    window: TrainingWindow::Expanding,
                    refit_every: None,
                };
                backtest(
                    table().view(),
                    &[0],
                    &config,
                    |_| Ok(()),
                    |_, _, _| Ok(Array2::zeros((1, 1))),
                )
                .map(drop)
            }),
        ),
        // ---- files
        (
            "a corrupt model file",
            "corrupt",
            Box::new(|| {
                let mut bytes = model_bytes();
                let n = bytes.len();
                bytes[n / 2..].fill(0xff);
                Sequential::<f64>::from_bytes(&bytes).map(drop)
            }),
        ),
        (
            "a truncated model file",
            "corrupt",
            Box::new(|| Sequential::<f64>::from_bytes(&model_bytes()[..40]).map(drop)),
        ),
        (
            "a model file of a newer version",
            "version 9",
            Box::new(|| {
                let mut bytes = model_bytes();
                bytes[8..12].copy_from_slice(&9u32.to_le_bytes());
                Sequential::<f64>::from_bytes(&bytes).map(drop)
            }),
        ),
        (
            "a file that is not a model",
            "not a recurrent model file",
            Box::new(|| Sequential::<f64>::from_bytes(b"Date,Passengers\n").map(drop)),
        ),
        (
            "a model file that does not exist",
            "no-such-model",
            Box::new(|| Sequential::<f64>::load("/nonexistent/no-such-model.json").map(drop)),
        ),
        (
            "a checkpoint from empty bytes",
            "checkpoint",
            Box::new(|| Checkpoint::from_bytes(b"").map(drop)),
        ),
        // ---- streaming and interop
        (
            "a streaming step with the wrong feature count",
            "streaming",
            Box::new(|| {
                let mut model = small_model();
                Streamer::new(&mut model).step_one(&[1.0]).map(drop)
            }),
        ),
        (
            "a streaming step with a NaN",
            "non-finite",
            Box::new(|| {
                let mut model = small_model();
                Streamer::new(&mut model)
                    .step_one(&[1.0, f64::NAN])
                    .map(drop)
            }),
        ),
        (
            "a PyTorch export of a reset-before GRU",
            "reset-before",
            Box::new(|| {
                let gru = recurrent::Recurrent::<GruCell, f64>::with_init(
                    GruCell::ResetBefore,
                    2,
                    3,
                    recurrent::Init::Glorot,
                    &mut rng(),
                )?;
                interop::to_torch(&gru).map(drop)
            }),
        ),
    ]
}

#[test]
fn every_bad_input_is_a_typed_error_naming_the_problem_and_nothing_panics() {
    let rows = rows();
    let count = rows.len();
    assert!(count >= 40, "only {count} rows");
    let mut panics = Vec::new();
    let mut wrong = Vec::new();
    for (name, needle, call) in rows {
        match catch_unwind(AssertUnwindSafe(call)) {
            Err(_) => panics.push(name),
            Ok(Ok(())) => wrong.push(format!("{name}: accepted")),
            Ok(Err(err)) => {
                let message = err.to_string();
                if !message.to_lowercase().contains(&needle.to_lowercase()) {
                    wrong.push(format!("{name}: {message:?} does not mention {needle:?}"));
                }
                // Every error is one of the typed variants (never a stringly catch-all).
                assert!(
                    !matches!(err, Error::Io(_)) || name.contains("exist"),
                    "{name}: {err}"
                );
            }
        }
    }
    assert!(
        panics.is_empty(),
        "{} of {count} calls panicked: {panics:#?}",
        panics.len()
    );
    assert!(
        wrong.is_empty(),
        "{} of {count} rows failed:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
