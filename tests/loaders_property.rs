//! A property test over random and mutated bytes for every loader (models in both formats,
//! forecasters, checkpoints, CSV): whatever the bytes, a value or a typed error, never a
//! panic. Seeded, so a failure reproduces; sized to run in seconds. (The cargo-fuzz targets in
//! `fuzz/` explore the same loaders for as long as one cares to run them.)

use std::panic::{AssertUnwindSafe, catch_unwind};

use ndarray::{Array2, Array3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recurrent::data::{CsvOptions, FillPolicy, Pipeline, Series, Transform, WindowSpec};
use recurrent::persist::{BINARY_MAGIC, FORMAT_VERSION, ForecastModel, Format};
use recurrent::train::Checkpoint;
use recurrent::{Adam, Layer, Merge, Mse, RecurrentKind, Sequential, SequentialBuilder, Trainer};

/// Valid files of every kind, in both formats.
fn valid_files() -> Vec<Vec<u8>> {
    let models: Vec<Sequential<f32>> = vec![
        Sequential::builder(1)
            .lstm(2)
            .dropout(0.1)
            .dense(1)
            .build(0)
            .unwrap(),
        Sequential::builder(2)
            .bidirectional(RecurrentKind::Gru, 2, Merge::Mean)
            .dense(1)
            .build(0)
            .unwrap(),
        Sequential::builder(1)
            .parallel(vec![
                SequentialBuilder::branch().rnn(2),
                SequentialBuilder::branch().flatten().dense(2),
            ])
            .dense(1)
            .build_for_steps(0, Some(3))
            .unwrap(),
        Sequential::encoder_decoder(RecurrentKind::GruResetBefore, 1, 2, 3, 1)
            .build(0)
            .unwrap(),
    ];
    let mut files = Vec::new();
    for format in [Format::Json, Format::Binary] {
        for m in &models {
            files.push(m.to_bytes(format).unwrap());
        }
        let values = Array2::from_shape_fn((30, 1), |(t, _)| 10.0 + t as f64);
        let pipeline = Pipeline::fit(
            &[
                Transform::Log,
                Transform::Difference { lag: 1 },
                Transform::Standardize,
            ],
            values.view(),
        )
        .unwrap();
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
        files.push(bundle.to_bytes(format).unwrap());
    }
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    for format in [Format::Json, Format::Binary] {
        let path = dir.join(format!("property-checkpoint-{format:?}"));
        let mut model = Sequential::<f64>::builder(1)
            .gru(2)
            .dense(1)
            .build(0)
            .unwrap();
        Trainer::new(Mse, Adam::new(0.1).unwrap())
            .epochs(2)
            .checkpoint_every(1, &path, format)
            .fit(
                &mut model,
                Array3::zeros((4, 3, 1)).view(),
                Array3::zeros((4, 1, 1)).view(),
            )
            .unwrap();
        files.push(std::fs::read(&path).unwrap());
    }
    files
}

/// One random edit: flip, set, insert, delete, truncate, duplicate a span, or splice.
fn mutate(rng: &mut ChaCha8Rng, bytes: &mut Vec<u8>, other: &[u8]) {
    let n = bytes.len().max(1);
    match rng.random_range(0..7) {
        0 => {
            let i = rng.random_range(0..n).min(bytes.len().saturating_sub(1));
            if let Some(b) = bytes.get_mut(i) {
                *b ^= 1 << rng.random_range(0..8);
            }
        }
        1 => {
            let i = rng.random_range(0..n).min(bytes.len().saturating_sub(1));
            let interesting = [
                0u8, 0xff, b'0', b'9', b'-', b'"', b'{', b'}', b'[', b']', b',', 0x1b, 0x9f, 0xfb,
            ];
            if let Some(b) = bytes.get_mut(i) {
                *b = interesting[rng.random_range(0..interesting.len())];
            }
        }
        2 => {
            let i = rng.random_range(0..=bytes.len());
            bytes.insert(i, rng.random());
        }
        3 => {
            if !bytes.is_empty() {
                let i = rng.random_range(0..bytes.len());
                let len = rng.random_range(1..=(bytes.len() - i).min(16));
                bytes.drain(i..i + len);
            }
        }
        4 => {
            let len = rng.random_range(0..=bytes.len());
            bytes.truncate(len);
        }
        5 => {
            if !bytes.is_empty() {
                let i = rng.random_range(0..bytes.len());
                let len = rng.random_range(1..=(bytes.len() - i).min(32));
                let span: Vec<u8> = bytes[i..i + len].to_vec();
                let at = rng.random_range(0..=bytes.len());
                bytes.splice(at..at, span);
            }
        }
        _ => {
            if !other.is_empty() {
                let i = rng.random_range(0..other.len());
                let len = rng.random_range(1..=(other.len() - i).min(64));
                let at = rng.random_range(0..=bytes.len());
                let end = (at + len).min(bytes.len());
                bytes.splice(at..end, other[i..i + len].iter().copied());
            }
        }
    }
}

/// Every loader on `bytes`; a model that loads must also predict.
fn load_all(bytes: &[u8]) {
    if let Ok(model) = Sequential::<f32>::from_bytes(bytes) {
        let x = Array3::<f32>::zeros((1, 3, model.input_size()));
        let _ = model.predict(x.view());
    }
    let _ = Sequential::<f64>::from_bytes(bytes);
    // A forecaster that loads must forecast, and a checkpoint that loads must resume (or say
    // why not), from whatever the file declared.
    if let Ok(bundle) = ForecastModel::<f32>::from_bytes(bytes) {
        let columns = bundle.pipeline.columns();
        let values = Array2::from_shape_fn((60, columns), |(t, c)| 5.0 + t as f64 + c as f64);
        if let Ok(forecaster) = bundle.forecaster() {
            let _ = forecaster.direct(values.view(), 59);
            let _ = forecaster.recursive(values.view(), 59, 3, None);
        }
    }
    if let Ok(checkpoint) = Checkpoint::from_bytes(bytes) {
        let mut model = Sequential::<f64>::builder(1)
            .gru(2)
            .dense(1)
            .build(0)
            .unwrap();
        let _ = Trainer::new(Mse, Adam::new(0.1).unwrap())
            .epochs(3)
            .resume_from(checkpoint)
            .fit(
                &mut model,
                Array3::zeros((4, 3, 1)).view(),
                Array3::zeros((4, 1, 1)).view(),
            );
    }
}

fn assert_no_panic(what: &str, seed: u64, bytes: &[u8], f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        panic!(
            "{what} (seed {seed}) panicked on {} bytes: {:02x?}",
            bytes.len(),
            &bytes[..bytes.len().min(256)]
        );
    }
}

#[test]
fn model_forecaster_and_checkpoint_loaders_never_panic_on_random_or_mutated_bytes() {
    let files = valid_files();
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let prefixes: Vec<Vec<u8>> = vec![
        Vec::new(),
        [&BINARY_MAGIC[..], &FORMAT_VERSION.to_le_bytes()].concat(),
        br#"{"magic":"recurrent","format_version":1,"kind":"model","element":"f32","body":"#
            .to_vec(),
    ];
    // Random bytes behind each prefix.
    for case in 0..1500u64 {
        let len = rng.random_range(0..200);
        let mut bytes = prefixes[(case % 3) as usize].clone();
        bytes.extend((0..len).map(|_| rng.random::<u8>()));
        assert_no_panic("random bytes", case, &bytes, || load_all(&bytes));
    }
    // One to eight random edits of a valid file.
    for case in 0..4000u64 {
        let base = &files[(case as usize) % files.len()];
        let other = &files[rng.random_range(0..files.len())];
        let mut bytes = base.clone();
        for _ in 0..rng.random_range(1..=8) {
            mutate(&mut rng, &mut bytes, other);
        }
        assert_no_panic("mutated file", case, &bytes, || load_all(&bytes));
    }
}

#[test]
fn the_csv_loader_never_panics_on_random_or_mutated_bytes() {
    let airline = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/data/airline.csv"
    ))
    .unwrap();
    let uschange = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/data/uschange.csv"
    ))
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let load = |bytes: &[u8]| {
        for fill in [
            FillPolicy::Error,
            FillPolicy::ForwardFill,
            FillPolicy::Linear,
            FillPolicy::Drop,
        ] {
            let _ = Series::from_csv_reader(bytes, &CsvOptions::new().fill(fill));
            let _ = Series::from_csv_reader(bytes, &CsvOptions::new().label("Date").fill(fill));
        }
    };
    for case in 0..1000u64 {
        let len = rng.random_range(0..120);
        let alphabet = b"0123456789.,-e\n\r\"abc;NaN \t";
        let bytes: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())])
            .collect();
        assert_no_panic("random CSV", case, &bytes, || load(&bytes));
    }
    for case in 0..1500u64 {
        let (base, other) = if case % 2 == 0 {
            (&airline, &uschange)
        } else {
            (&uschange, &airline)
        };
        let mut bytes = base.clone();
        for _ in 0..rng.random_range(1..=6) {
            mutate(&mut rng, &mut bytes, other);
        }
        assert_no_panic("mutated CSV", case, &bytes, || load(&bytes));
    }
}
