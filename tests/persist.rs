//! Saving and loading models and forecasters (JSON and binary), atomic saves, corrupt and
//! hostile files, checkpoints and bit-identical resume, and the divergence policy.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::{Array2, Array3, ArrayView3, s};
use recurrent::data::{Pipeline, Transform, WindowSpec, windows};
use recurrent::persist::{BINARY_MAGIC, FORMAT_VERSION, ForecastModel, Format, atomic_write};
use recurrent::train::{Checkpoint, Control, snapshot};
use recurrent::{
    Activation, Adam, EarlyStopping, Error, Layer, Loss, LrSchedule, Merge, Mse, OnDivergence,
    RecurrentKind, Sequential, SequentialBuilder, Sgd, Trainer, Validation,
};

/// A fresh folder under the target directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("persist-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every kind of built-in layer in one model: stacked recurrent layers, a bidirectional layer,
/// dropout, parallel branches (one flattening the window) and a dense head.
fn everything<F: recurrent::Float>(seed: u64) -> Sequential<F> {
    Sequential::<F>::builder(2)
        .lstm(5)
        .dropout(0.2)
        .bidirectional(RecurrentKind::GruResetBefore, 3, Merge::Concat)
        .return_sequences(true)
        .parallel(vec![
            SequentialBuilder::branch().rnn(4),
            SequentialBuilder::branch()
                .flatten()
                .dense_with(3, Activation::Tanh),
        ])
        .dense(2)
        .build_for_steps(seed, Some(7))
        .unwrap()
}

fn inputs<F: recurrent::Float>(batch: usize, steps: usize, features: usize) -> Array3<F> {
    Array3::from_shape_fn((batch, steps, features), |(b, t, i)| {
        F::from_f64(((b * 31 + t * 7 + i * 3) % 17) as f64 / 8.5 - 1.0)
    })
}

#[test]
fn a_saved_model_loads_and_predicts_bit_identically_in_both_formats_and_element_types() {
    let dir = scratch("round-trip");
    for format in [Format::Json, Format::Binary] {
        let model = everything::<f32>(1);
        let path = dir.join(format!("model-f32-{format:?}"));
        model.save(&path, format).unwrap();
        let loaded = Sequential::<f32>::load(&path).unwrap();
        let x = inputs::<f32>(3, 7, 2);
        assert_eq!(
            model.predict(x.view()).unwrap(),
            loaded.predict(x.view()).unwrap()
        );
        assert_eq!(snapshot(&model), snapshot(&loaded));
        assert_eq!(model.specs(), loaded.specs());
        assert_eq!(model.summary(), loaded.summary());

        let model = everything::<f64>(2);
        let bytes = model.to_bytes(format).unwrap();
        match format {
            Format::Binary => {
                assert_eq!(bytes[..8], BINARY_MAGIC);
                assert_eq!(bytes[8..12], FORMAT_VERSION.to_le_bytes());
            }
            Format::Json => assert!(
                bytes.starts_with(b"{\"magic\":\"recurrent\",\"format_version\":1,"),
                "{}",
                String::from_utf8_lossy(&bytes[..60])
            ),
        }
        let loaded = Sequential::<f64>::from_bytes(&bytes).unwrap();
        let x = inputs::<f64>(2, 7, 2);
        assert_eq!(
            model.predict(x.view()).unwrap(),
            loaded.predict(x.view()).unwrap()
        );
        // An f32 file loads exactly into f64.
        let f32_model = everything::<f32>(3);
        let widened = Sequential::<f64>::from_bytes(&f32_model.to_bytes(format).unwrap()).unwrap();
        let narrow: Vec<f64> = snapshot(&f32_model)
            .concat()
            .iter()
            .map(|&v| v as f64)
            .collect();
        assert_eq!(snapshot(&widened).concat(), narrow);
    }
}

#[test]
fn every_configuration_preset_round_trips() {
    let builders: Vec<SequentialBuilder<f64>> = vec![
        Sequential::many_to_one(RecurrentKind::RnnRelu, 2, 3, 1),
        Sequential::many_to_many(RecurrentKind::Lstm, 2, 3, 2),
        Sequential::direct_multi_step(RecurrentKind::Gru, 2, 3, 4, 1),
        Sequential::one_to_many(RecurrentKind::RnnTanh, 2, 3, 5, 1),
        Sequential::encoder_decoder(RecurrentKind::Lstm, 2, 3, 4, 2),
    ];
    for builder in builders {
        let model = builder.build(9).unwrap();
        let steps = if model
            .specs()
            .iter()
            .any(|s| matches!(s, recurrent::LayerSpec::Repeat { .. }))
        {
            1
        } else {
            6
        };
        let x = inputs::<f64>(2, steps, 2);
        for format in [Format::Json, Format::Binary] {
            let loaded = Sequential::<f64>::from_bytes(&model.to_bytes(format).unwrap()).unwrap();
            assert_eq!(
                model.predict(x.view()).unwrap(),
                loaded.predict(x.view()).unwrap(),
                "{:?}",
                model.specs()
            );
        }
    }
}

#[test]
fn a_forecast_model_saves_the_pipeline_window_spec_and_column_names_with_the_model() {
    let values = Array2::from_shape_fn((80, 2), |(t, c)| {
        50.0 + t as f64 + 5.0 * ((t + c) as f64 / 3.0).sin()
    });
    let pipeline = Pipeline::fit(
        &[
            Transform::Log,
            Transform::Difference { lag: 1 },
            Transform::Standardize,
        ],
        values.slice(s![..60, ..]),
    )
    .unwrap();
    let spec = WindowSpec::new(8, 3).inputs(&[0, 1]).targets(&[0]);
    let model = Sequential::<f32>::direct_multi_step(RecurrentKind::Gru, 2, 6, 3, 1)
        .build(4)
        .unwrap();
    let bundle =
        ForecastModel::new(model, pipeline, spec, vec!["sales".into(), "price".into()]).unwrap();
    let expected = bundle
        .forecaster()
        .unwrap()
        .direct(values.view(), 59)
        .unwrap();
    let dir = scratch("forecaster");
    for format in [Format::Json, Format::Binary] {
        let path = dir.join(format!("bundle-{format:?}"));
        bundle.save(&path, format).unwrap();
        let loaded = ForecastModel::<f32>::load(&path).unwrap();
        assert_eq!(loaded.columns, ["sales", "price"]);
        assert_eq!(loaded.spec, bundle.spec);
        assert_eq!(loaded.pipeline, bundle.pipeline);
        let forecast = loaded
            .forecaster()
            .unwrap()
            .direct(values.view(), 59)
            .unwrap();
        assert_eq!(forecast, expected);
        // A forecaster file is not a model file, and the other way round.
        assert!(matches!(
            Sequential::<f32>::load(&path),
            Err(Error::UnrecognizedFile { .. })
        ));
    }
    let model_bytes = bundle.model.to_bytes(Format::Json).unwrap();
    assert!(matches!(
        ForecastModel::<f32>::from_bytes(&model_bytes),
        Err(Error::UnrecognizedFile { .. })
    ));
    // Parts that disagree are refused when bundling.
    let wrong = ForecastModel::new(
        Sequential::<f32>::many_to_one(RecurrentKind::Gru, 3, 4, 1)
            .build(0)
            .unwrap(),
        bundle.pipeline.clone(),
        bundle.spec.clone(),
        bundle.columns.clone(),
    );
    assert!(wrong.is_err());
}

/// A layer the crate knows nothing about.
#[derive(Debug)]
struct Doubler;

impl Layer<f32> for Doubler {
    fn name(&self) -> &'static str {
        "doubler"
    }
    fn input_size(&self) -> usize {
        1
    }
    fn output_size(&self) -> usize {
        1
    }
    fn forward(&mut self, x: ArrayView3<'_, f32>) -> recurrent::Result<Array3<f32>> {
        self.predict(x)
    }
    fn predict(&self, x: ArrayView3<'_, f32>) -> recurrent::Result<Array3<f32>> {
        Ok(x.mapv(|v| 2.0 * v))
    }
    fn backward(&mut self, d: ArrayView3<'_, f32>) -> recurrent::Result<Array3<f32>> {
        Ok(d.mapv(|v| 2.0 * v))
    }
    fn visit_params(&self, _: &mut dyn FnMut(recurrent::ParamView<'_, f32>)) {}
    fn visit_params_mut(&mut self, _: &mut dyn FnMut(recurrent::ParamMut<'_, f32>)) {}
}

#[test]
fn saving_a_model_with_a_user_defined_layer_is_an_unsupported_error_and_writes_nothing() {
    let model = Sequential::<f32>::builder(1)
        .gru(3)
        .dense(1)
        .layer(Box::new(Doubler))
        .build(0)
        .unwrap();
    let dir = scratch("custom");
    let path = dir.join("model.json");
    let err = model.save(&path, Format::Json).unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("doubler"), "{err}");
    assert!(!path.exists());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn a_model_with_a_non_finite_weight_is_not_saved() {
    let mut model = Sequential::<f64>::builder(1)
        .gru(2)
        .dense(1)
        .build(0)
        .unwrap();
    model.visit_params_mut(&mut |p| {
        if p.name == "bias" {
            p.value[0] = f64::NAN;
        }
    });
    assert!(matches!(
        model.to_bytes(Format::Binary),
        Err(Error::NonFinite { .. })
    ));
}

/// A writer that accepts `left` bytes and then fails.
struct FailAfter<'a> {
    inner: &'a mut dyn Write,
    left: usize,
}

impl Write for FailAfter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other("disk full (simulated)"));
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        self.inner.write(&buf[..n])
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[test]
fn a_save_that_fails_part_way_leaves_the_previous_file_intact_and_no_temporary_file() {
    let dir = scratch("atomic");
    let path = dir.join("model.bin");
    let old = everything::<f32>(1);
    old.save(&path, Format::Binary).unwrap();
    let old_bytes = std::fs::read(&path).unwrap();
    let new = everything::<f32>(2);
    let size = new.to_bytes(Format::Binary).unwrap().len();
    for fail_after in [0, 1, 11, 12, 100, size / 2, size - 1] {
        for format in [Format::Binary, Format::Json] {
            let err = atomic_write(&path, |out| {
                new.write_to(
                    &mut FailAfter {
                        inner: out,
                        left: fail_after,
                    },
                    format,
                )
            })
            .unwrap_err();
            assert!(matches!(err, Error::Io(_)), "{err}");
            assert_eq!(
                std::fs::read(&path).unwrap(),
                old_bytes,
                "after {fail_after} bytes"
            );
            let entries: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(entries, [std::ffi::OsString::from("model.bin")]);
        }
    }
    let x = inputs::<f32>(1, 7, 2);
    assert_eq!(
        Sequential::<f32>::load(&path)
            .unwrap()
            .predict(x.view())
            .unwrap(),
        old.predict(x.view()).unwrap()
    );
    // A whole save replaces it.
    new.save(&path, Format::Binary).unwrap();
    assert_eq!(
        Sequential::<f32>::load(&path)
            .unwrap()
            .predict(x.view())
            .unwrap(),
        new.predict(x.view()).unwrap()
    );
}

fn small_model_bytes(format: Format) -> Vec<u8> {
    Sequential::<f32>::builder(1)
        .lstm(2)
        .dropout(0.1)
        .dense(1)
        .build(3)
        .unwrap()
        .to_bytes(format)
        .unwrap()
}

#[test]
fn every_truncation_of_a_model_file_is_a_typed_error() {
    for format in [Format::Json, Format::Binary] {
        let bytes = small_model_bytes(format);
        for len in 0..bytes.len() {
            let result = std::panic::catch_unwind(|| Sequential::<f32>::from_bytes(&bytes[..len]));
            let Ok(result) = result else {
                panic!("{format:?} truncated to {len} bytes panicked")
            };
            let err = result.expect_err("a truncated file must not load");
            assert!(
                matches!(
                    err,
                    Error::CorruptFile { .. } | Error::UnrecognizedFile { .. }
                ),
                "{format:?} at {len}: {err}"
            );
        }
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    // Every single-byte change to a few values at every position of the file.
    for format in [Format::Json, Format::Binary] {
        let bytes = small_model_bytes(format);
        let mut loaded = 0;
        for i in 0..bytes.len() {
            for replacement in [0u8, 0xff, b'9', b'"', b'-', bytes[i] ^ 0x01] {
                let mut corrupt = bytes.clone();
                corrupt[i] = replacement;
                let result =
                    std::panic::catch_unwind(|| Sequential::<f32>::from_bytes(&corrupt).is_ok());
                match result {
                    Ok(true) => loaded += 1, // e.g. a changed digit of a weight
                    Ok(false) => {}
                    Err(_) => panic!("{format:?}: byte {i} set to {replacement} panicked"),
                }
            }
        }
        assert!(loaded < bytes.len() * 6);
    }
}

#[test]
fn files_of_another_kind_and_random_bytes_are_unrecognized() {
    for bytes in [
        &b"date,value\n2020-01,3\n"[..],
        &b"\x89PNG\r\n\x1a\n"[..],
        &b"[1, 2, 3]"[..],
        &b"{\"magic\": \"something else\", \"format_version\": 1}"[..],
        &b"{\"hello\": 1}"[..],
    ] {
        let err = Sequential::<f32>::from_bytes(bytes).unwrap_err();
        assert!(matches!(err, Error::UnrecognizedFile { .. }), "{err}");
    }
    // A checkpoint is not a model.
    let x = inputs::<f64>(8, 4, 1);
    let y = Array3::<f64>::zeros((8, 1, 1));
    let dir = scratch("kinds");
    let path = dir.join("ckpt");
    let mut model = Sequential::<f64>::builder(1)
        .gru(2)
        .dense(1)
        .build(0)
        .unwrap();
    Trainer::new(Mse, Adam::new(0.01).unwrap())
        .checkpoint_every(1, &path, Format::Json)
        .fit(&mut model, x.view(), y.view())
        .unwrap();
    let err = Sequential::<f64>::load(&path).unwrap_err();
    assert!(matches!(err, Error::UnrecognizedFile { .. }), "{err}");
    assert!(err.to_string().contains("checkpoint"), "{err}");
    let err = Checkpoint::from_bytes(&small_model_bytes(Format::Binary)).unwrap_err();
    assert!(matches!(err, Error::UnrecognizedFile { .. }), "{err}");
}

#[test]
fn a_file_from_a_newer_format_version_is_refused_as_such() {
    let mut binary = small_model_bytes(Format::Binary);
    binary[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let err = Sequential::<f32>::from_bytes(&binary).unwrap_err();
    assert_eq!(
        err,
        Error::NewerFormat {
            what: "this model file".into(),
            found: FORMAT_VERSION + 1,
            supported: FORMAT_VERSION
        }
    );
    let json = String::from_utf8(small_model_bytes(Format::Json)).unwrap();
    let newer = json.replacen("\"format_version\":1", "\"format_version\":7", 1);
    let err = Sequential::<f32>::from_bytes(newer.as_bytes()).unwrap_err();
    assert!(matches!(err, Error::NewerFormat { found: 7, .. }), "{err}");
    // Even when the body is one this version cannot read.
    let alien = r#"{"magic":"recurrent","format_version":2,"kind":"model","element":"f32","body":{"quantum":true}}"#;
    assert!(matches!(
        Sequential::<f32>::from_bytes(alien.as_bytes()),
        Err(Error::NewerFormat { found: 2, .. })
    ));
}

#[test]
fn a_file_declaring_absurd_sizes_is_rejected_before_allocating() {
    let json = String::from_utf8(small_model_bytes(Format::Json)).unwrap();
    assert!(json.contains("\"hidden_size\":2"));
    for absurd in ["1000000000000", "16000000", "18446744073709551615"] {
        let hostile = json.replacen("\"hidden_size\":2", &format!("\"hidden_size\":{absurd}"), 1);
        let err = Sequential::<f32>::from_bytes(hostile.as_bytes()).unwrap_err();
        assert!(matches!(err, Error::CorruptFile { .. }), "{absurd}: {err}");
    }
    // Within the size bounds but far more weights than the file holds: refused by the count.
    let hostile = json.replacen("\"hidden_size\":2", "\"hidden_size\":4000000", 1);
    let err = Sequential::<f32>::from_bytes(hostile.as_bytes()).unwrap_err();
    assert!(
        err.to_string().contains("declares"),
        "hidden 4e6 must be refused by the weight count: {err}"
    );
    let hostile = json.replacen("\"units\":1", "\"units\":1000000000000", 1);
    assert!(Sequential::<f32>::from_bytes(hostile.as_bytes()).is_err());
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

/// A seeded toy task with every piece of training state in play: dropout, shuffling, Adam,
/// validation, early stopping and a reduce-on-plateau schedule.
fn toy_task() -> (Array3<f64>, Array3<f64>) {
    let x = Array3::from_shape_fn((40, 6, 1), |(b, t, _)| {
        ((b * 13 + t * 5) % 23) as f64 / 11.5 - 1.0
    });
    let y = x
        .sum_axis(ndarray::Axis(1))
        .insert_axis(ndarray::Axis(1))
        .mapv(|v| v / 3.0);
    (x, y)
}

fn toy_model() -> Sequential<f64> {
    Sequential::<f64>::builder(1)
        .lstm(4)
        .dropout(0.25)
        .gru(3)
        .dense(1)
        .build(5)
        .unwrap()
}

fn toy_trainer(epochs: usize) -> Trainer<f64> {
    Trainer::new(Mse, Adam::new(0.02).unwrap())
        .epochs(epochs)
        .batch_size(8)
        .seed(11)
        .validation(Validation::LastFraction(0.25))
        .early_stopping(EarlyStopping::new(50).min_delta(1e-9))
        .schedule(LrSchedule::ReduceOnPlateau {
            factor: 0.5,
            patience: 1,
            threshold: 0.01,
            min_lr: 1e-4,
        })
}

#[test]
fn resuming_from_a_checkpoint_is_bit_identical_to_an_uninterrupted_run() {
    let (x, y) = toy_task();
    let epochs = 7;
    let mut reference = toy_model();
    let expected = toy_trainer(epochs)
        .fit(&mut reference, x.view(), y.view())
        .unwrap();

    for format in [Format::Json, Format::Binary] {
        let dir = scratch(&format!("resume-{format:?}"));
        let path = dir.join("ckpt");
        let start_copy = dir.join("start");
        // An interrupted run: checkpoints every 2 epochs; the callback copies the checkpoint
        // written before the first epoch (before any validation) and "crashes" after epoch 4.
        let copy_path = path.clone();
        let copy_to = start_copy.clone();
        let mut interrupted = toy_model();
        toy_trainer(epochs)
            .checkpoint_every(2, &path, format)
            .callback(Box::new(move |report| {
                if report.epoch == 0 {
                    std::fs::copy(&copy_path, &copy_to).unwrap();
                }
                if report.epoch == 4 {
                    Control::Stop
                } else {
                    Control::Continue
                }
            }))
            .fit(&mut interrupted, x.view(), y.view())
            .unwrap();

        for (file, done) in [(&path, 4), (&start_copy, 0)] {
            let checkpoint = Checkpoint::load(file).unwrap();
            assert_eq!(checkpoint.epochs_done(), done);
            assert_eq!(checkpoint.history().epochs.len(), done);
            // Resume into a model built with another seed: the checkpoint sets every weight.
            let mut resumed = Sequential::<f64>::builder(1)
                .lstm(4)
                .dropout(0.25)
                .gru(3)
                .dense(1)
                .build(99)
                .unwrap();
            let history = toy_trainer(epochs)
                .resume_from(checkpoint)
                .fit(&mut resumed, x.view(), y.view())
                .unwrap();
            assert_eq!(history, expected, "{format:?} from epoch {done}");
            assert_eq!(
                snapshot(&resumed),
                snapshot(&reference),
                "{format:?} from {done}"
            );
        }
    }
}

#[test]
fn a_checkpoint_keeps_non_finite_history_values_in_json() {
    // A metric that is NaN and an early-stopping best that never became finite.
    let (x, y) = toy_task();
    let dir = scratch("nan-history");
    let path = dir.join("ckpt.json");
    let mut model = toy_model();
    let history = Trainer::new(Mse, Sgd::new(0.01).unwrap())
        .epochs(2)
        .metric("always_nan", |_| Ok(f64::NAN))
        .checkpoint_every(1, &path, Format::Json)
        .fit(&mut model, x.view(), y.view())
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("\"nan\""),
        "NaN must be written as a tagged string"
    );
    let checkpoint = Checkpoint::load(&path).unwrap();
    let saved = &checkpoint.history().epochs;
    assert_eq!(saved.len(), 2);
    assert!(saved[1].metrics[0].1.is_nan());
    assert_eq!(saved[1].train_loss, history.epochs[1].train_loss);
}

#[test]
fn resuming_checks_the_model_and_the_data_against_the_checkpoint() {
    let (x, y) = toy_task();
    let dir = scratch("resume-checks");
    let path = dir.join("ckpt");
    let mut model = toy_model();
    toy_trainer(1)
        .checkpoint_every(1, &path, Format::Binary)
        .fit(&mut model, x.view(), y.view())
        .unwrap();
    // Another architecture.
    let mut other = Sequential::<f64>::builder(1)
        .gru(4)
        .dense(1)
        .build(0)
        .unwrap();
    let err = toy_trainer(3)
        .resume_from(Checkpoint::load(&path).unwrap())
        .fit(&mut other, x.view(), y.view())
        .unwrap_err();
    assert!(matches!(err, Error::CorruptFile { .. }), "{err}");
    // Other data (fewer samples).
    let mut same = toy_model();
    let err = toy_trainer(3)
        .resume_from(Checkpoint::load(&path).unwrap())
        .fit(
            &mut same,
            x.slice(s![..20, .., ..]),
            y.slice(s![..20, .., ..]),
        )
        .unwrap_err();
    assert!(err.to_string().contains("samples"), "{err}");
    // Another optimizer.
    let err = Trainer::new(Mse, Sgd::new(0.1).unwrap())
        .epochs(3)
        .validation(Validation::LastFraction(0.25))
        .resume_from(Checkpoint::load(&path).unwrap())
        .fit(&mut same, x.view(), y.view())
        .unwrap_err();
    assert!(err.to_string().contains("adam"), "{err}");
    // A zero interval.
    assert!(
        toy_trainer(1)
            .checkpoint_every(0, &path, Format::Json)
            .fit(&mut same, x.view(), y.view())
            .is_err()
    );
}

// ---------------------------------------------------------------------------------------------
// Divergence

/// MSE that turns into NaN from its `after`-th call on.
#[derive(Debug)]
struct NanAfter {
    calls: AtomicUsize,
    after: usize,
}

impl Loss<f64> for NanAfter {
    fn name(&self) -> &'static str {
        "nan_after"
    }
    fn loss(&self, p: ArrayView3<'_, f64>, y: ArrayView3<'_, f64>) -> recurrent::Result<f64> {
        Mse.loss(p, y)
    }
    fn loss_and_gradient(
        &self,
        p: ArrayView3<'_, f64>,
        y: ArrayView3<'_, f64>,
    ) -> recurrent::Result<(f64, Array3<f64>)> {
        let (loss, mut d) = Mse.loss_and_gradient(p, y)?;
        if self.calls.fetch_add(1, Ordering::SeqCst) >= self.after {
            d.fill(f64::NAN);
            return Ok((f64::NAN, d));
        }
        Ok((loss, d))
    }
}

#[test]
fn a_non_finite_loss_stops_fit_with_an_error_naming_epoch_and_batch_and_finite_weights() {
    let (x, y) = toy_task();
    let mut model = Sequential::<f64>::builder(1)
        .gru(3)
        .dense(1)
        .build(0)
        .unwrap();
    // 40 samples in batches of 8: 5 batches an epoch; call 12 is epoch 2, batch 2.
    let err = Trainer::new(
        NanAfter {
            calls: AtomicUsize::new(0),
            after: 12,
        },
        Adam::new(0.01).unwrap(),
    )
    .epochs(5)
    .batch_size(8)
    .fit(&mut model, x.view(), y.view())
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Diverged {
                epoch: 2,
                batch: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("epoch 2, batch 2"), "{err}");
    assert!(snapshot(&model).concat().iter().all(|v| v.is_finite()));
}

#[test]
fn on_divergence_restore_best_and_stop_restores_the_best_epoch() {
    let (x, y) = toy_task();
    let mut model = Sequential::<f64>::builder(1)
        .gru(3)
        .dense(1)
        .build(0)
        .unwrap();
    let mut best_weights = Vec::new();
    let mut best_loss = f64::INFINITY;
    // Track the weights after each epoch through a metric (it sees the model).
    let history = Trainer::new(
        NanAfter {
            calls: AtomicUsize::new(0),
            after: 17,
        },
        Adam::new(0.01).unwrap(),
    )
    .epochs(6)
    .batch_size(8)
    .shuffle(false)
    .on_divergence(OnDivergence::RestoreBestAndStop)
    .fit(&mut model, x.view(), y.view())
    .unwrap();
    assert_eq!(
        history.diverged,
        Some(recurrent::train::Divergence { epoch: 3, batch: 2 })
    );
    assert!(history.stopped_early);
    assert_eq!(history.epochs.len(), 3);
    for (e, record) in history.epochs.iter().enumerate() {
        if record.train_loss < best_loss {
            best_loss = record.train_loss;
            best_weights.push(e);
        }
    }
    assert_eq!(history.best_epoch, best_weights.last().copied());
    // The restored weights are those of the best epoch: retrain without divergence to compare.
    let mut again = Sequential::<f64>::builder(1)
        .gru(3)
        .dense(1)
        .build(0)
        .unwrap();
    Trainer::new(Mse, Adam::new(0.01).unwrap())
        .epochs(history.best_epoch.unwrap() + 1)
        .batch_size(8)
        .shuffle(false)
        .fit(&mut again, x.view(), y.view())
        .unwrap();
    assert_eq!(snapshot(&model), snapshot(&again));
}

#[test]
fn windows_and_training_feed_a_saved_forecaster_end_to_end() {
    // Train, bundle, save, load, forecast: the loaded bundle forecasts what the trained one did.
    let values = Array2::from_shape_fn((120, 1), |(t, _)| {
        100.0 + t as f64 + 10.0 * (t as f64 * std::f64::consts::TAU / 12.0).sin()
    });
    let pipeline = Pipeline::fit(
        &[Transform::Difference { lag: 1 }, Transform::Standardize],
        values.slice(s![..100, ..]),
    )
    .unwrap();
    let table = pipeline.transform(values.view()).unwrap();
    let spec = WindowSpec::new(12, 1);
    let train = windows::<f32>(table.view(), &spec, 0..99).unwrap();
    let mut model = Sequential::<f32>::builder(1)
        .lstm(6)
        .dense(1)
        .build(0)
        .unwrap();
    Trainer::new(Mse, Adam::new(0.01).unwrap())
        .epochs(3)
        .fit(&mut model, train.x.view(), train.y.view())
        .unwrap();
    let bundle = ForecastModel::new(model, pipeline, spec, vec!["y".into()]).unwrap();
    let origins: Vec<usize> = (99..119).collect();
    let expected = bundle
        .forecaster()
        .unwrap()
        .one_step(values.view(), &origins)
        .unwrap();
    let loaded =
        ForecastModel::<f32>::from_bytes(&bundle.to_bytes(Format::Binary).unwrap()).unwrap();
    assert_eq!(
        loaded
            .forecaster()
            .unwrap()
            .one_step(values.view(), &origins)
            .unwrap(),
        expected
    );
}

#[test]
fn a_checkpoint_with_an_inconsistent_optimizer_state_is_refused_and_leaves_the_model_as_it_was() {
    let (x, y) = toy_task();
    let dir = scratch("bad-optimizer-state");
    let path = dir.join("ckpt.json");
    let mut model = toy_model();
    toy_trainer(2)
        .checkpoint_every(1, &path, Format::Json)
        .fit(&mut model, x.view(), y.view())
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let good = Checkpoint::load(&path).unwrap();
    let tampered: Vec<String> = vec![
        // No moments although steps were taken; a step count that would overflow.
        regex_replace(&text, "\"buffers\":[", "\"buffers\":[],\"ignored\":["),
        regex_replace(
            &text,
            "\"step\":",
            "\"step\":18446744073709551615,\"ignored\":",
        ),
    ];
    for bad in tampered {
        let checkpoint = Checkpoint::from_bytes(bad.as_bytes()).unwrap();
        let mut fresh = toy_model();
        let before = snapshot(&fresh);
        let mut trainer = toy_trainer(4).resume_from(checkpoint);
        let err = trainer.fit(&mut fresh, x.view(), y.view()).unwrap_err();
        assert!(err.to_string().contains("optimizer state"), "{err}");
        assert_eq!(
            snapshot(&fresh),
            before,
            "a failed resume changed the model"
        );
        // The trainer still holds the checkpoint: the next fit fails the same way, never a
        // fresh run (which would overwrite a checkpoint file).
        assert!(trainer.fit(&mut fresh, x.view(), y.view()).is_err());
    }
    // The untampered checkpoint resumes.
    toy_trainer(4)
        .resume_from(good)
        .fit(&mut toy_model(), x.view(), y.view())
        .unwrap();
}

/// Replaces the first `from` in `text` by `to` (a plain substring, despite the name's habit).
fn regex_replace(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from} not in the file");
    text.replacen(from, to, 1)
}

#[test]
fn a_forecaster_file_with_an_absurd_lookback_or_lag_is_refused_on_load() {
    let values = Array2::from_shape_fn((40, 1), |(t, _)| 10.0 + t as f64);
    let pipeline = Pipeline::fit(&[Transform::Difference { lag: 1 }], values.view()).unwrap();
    let bundle = ForecastModel::new(
        Sequential::<f64>::builder(1)
            .gru(2)
            .dense(1)
            .build(0)
            .unwrap(),
        pipeline,
        WindowSpec::new(4, 1),
        vec!["y".into()],
    )
    .unwrap();
    let text = String::from_utf8(bundle.to_bytes(Format::Json).unwrap()).unwrap();
    for (from, to) in [
        ("\"lookback\":4", "\"lookback\":1099511627776"),
        ("\"lag\":1}", "\"lag\":9223372036854775807}"),
    ] {
        let hostile = text.replace(from, to);
        assert_ne!(hostile, text, "{from}");
        let err = ForecastModel::<f64>::from_bytes(hostile.as_bytes()).unwrap_err();
        assert!(matches!(err, Error::CorruptFile { .. }), "{to}: {err}");
    }
}

#[test]
fn an_f64_weight_too_large_for_f32_is_refused_when_loading_as_f32() {
    let mut model = Sequential::<f64>::builder(1)
        .gru(2)
        .dense(1)
        .build(0)
        .unwrap();
    model.visit_params_mut(&mut |p| {
        if p.name == "bias" {
            p.value[0] = 1e300;
        }
    });
    let bytes = model.to_bytes(Format::Binary).unwrap();
    assert!(Sequential::<f64>::from_bytes(&bytes).is_ok());
    let err = Sequential::<f32>::from_bytes(&bytes).unwrap_err();
    assert!(err.to_string().contains("non-finite"), "{err}");
}
