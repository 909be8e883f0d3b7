//! Layer benchmarks, with the ids DESIGN.md fixes so results stay comparable over time:
//!
//! * `forward/{lstm,gru,rnn}/{T,S,M,L}`: inference, the recurrent layer's predict plus the head's;
//! * `train_step/{lstm,gru,rnn}/{T,S,M,L}`: zero the gradients, forward, MSE, backward, one Adam
//!   step (what PyTorch's `opt.zero_grad(); loss.backward(); opt.step()` does);
//! * `stream_step/{lstm,gru,rnn}/{T,S}`: the latency of one observation in streaming use: the
//!   layer's [`Layer::step`] on `[B, 1, I]` (state carried from the window before) plus the head;
//! * `airline_epoch/lstm32`: one epoch of the airline recipe (LSTM(32), lookback 24, horizon 1,
//!   batch 16 over the 95 training windows of the log-differenced, standardized series) through
//!   [`Trainer`];
//! * `gemm/…`: the matrix-product backends at the per-step shape `[B, H] × [H, 4H]` of M and L,
//!   and at 2048³ (the ceiling the layer figures are compared with).
//!
//! The model is one recurrent layer (f32; LSTM, reset-after GRU, tanh Elman RNN) returning only
//! its last step, and a linear [`Dense`] head to 1 output. Models and inputs are built, seeded,
//! before timing, and only for the ids criterion's filter selects:
//!
//! ```text
//! cargo bench --bench layers -- forward          # every forward id
//! cargo bench --bench layers -- 'forward/lstm/T' # one id (the filter is a regex)
//! ```
//!
//! The same configurations in PyTorch: `benches/compare/torch_rnn.py`, and
//! `benches/compare/compare.py` prints the ratios.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main,
};
use ndarray::{Array1, Array2, Array3, linalg::general_mat_mul, s};
use ndarray_rand::RandomExt;
use ndarray_rand::rand_distr::StandardNormal;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use recurrent::data::{CsvOptions, Pipeline, Series, Transform, WindowSpec, windows};
use recurrent::{
    Activation, Adam, Dense, Gru, Layer, Loss, Lstm, Mse, Optimizer, RecurrentKernel, Sequential,
    SimpleRnn, Trainer,
};

/// One benchmark configuration: `[batch, steps, input]` in, `hidden` units.
#[derive(Debug, Clone, Copy)]
struct Config {
    name: &'static str,
    batch: usize,
    steps: usize,
    input: usize,
    hidden: usize,
}

/// T = tiny online (one forecasting series), S = small, M = medium, L = large (DESIGN.md).
const CONFIGS: [Config; 4] = [
    // (name, batch, steps, input, hidden)
    config("T", 1, 24, 1, 16),
    config("S", 32, 50, 1, 32),
    config("M", 64, 100, 8, 128),
    config("L", 128, 100, 32, 512),
];

const fn config(
    name: &'static str,
    batch: usize,
    steps: usize,
    input: usize,
    hidden: usize,
) -> Config {
    Config {
        name,
        batch,
        steps,
        input,
        hidden,
    }
}

/// The recurrent cell under test; `id` is the cell's part of the benchmark id.
#[derive(Debug, Clone, Copy)]
enum CellKind {
    Lstm,
    Gru,
    Rnn,
}

const CELLS: [CellKind; 3] = [CellKind::Lstm, CellKind::Gru, CellKind::Rnn];

impl CellKind {
    fn id(self) -> &'static str {
        match self {
            CellKind::Lstm => "lstm",
            CellKind::Gru => "gru",
            CellKind::Rnn => "rnn",
        }
    }
}

/// One recurrent layer keeping its last step, then a linear head to 1 output.
struct Model {
    rnn: Box<dyn Layer<f32>>,
    head: Dense<f32>,
}

/// The recurrent layer of `cell` for `cfg`, returning only its last step.
fn recurrent_layer(cell: CellKind, cfg: &Config, rng: &mut ChaCha8Rng) -> Box<dyn Layer<f32>> {
    let (i, h) = (cfg.input, cfg.hidden);
    match cell {
        CellKind::Lstm => Box::new(
            Lstm::<f32>::new(i, h, rng)
                .expect("valid sizes")
                .with_return_sequences(false),
        ),
        CellKind::Gru => Box::new(
            Gru::<f32>::new(i, h, rng)
                .expect("valid sizes")
                .with_return_sequences(false),
        ),
        CellKind::Rnn => Box::new(
            SimpleRnn::<f32>::new(i, h, rng)
                .expect("valid sizes")
                .with_return_sequences(false),
        ),
    }
}

impl Model {
    fn new(cell: CellKind, cfg: &Config, rng: &mut ChaCha8Rng) -> Self {
        let rnn = recurrent_layer(cell, cfg, rng);
        let head =
            Dense::<f32>::new(cfg.hidden, 1, Activation::Identity, rng).expect("valid sizes");
        Model { rnn, head }
    }

    /// Inference: `x` `[B, T, I]` → `[B, 1, 1]`.
    fn predict(&self, x: &Array3<f32>) -> Array3<f32> {
        let last = self.rnn.predict(x.view()).expect("forward");
        self.head.predict(last.view()).expect("head")
    }
}

/// A model with its inputs `x` `[B, T, I]` and regression targets `[B, 1, 1]`, both N(0, 1).
struct Setup {
    model: Model,
    x: Array3<f32>,
    target: Array3<f32>,
}

impl Setup {
    fn new(cell: CellKind, cfg: &Config) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let model = Model::new(cell, cfg, &mut rng);
        let x = Array3::random_using((cfg.batch, cfg.steps, cfg.input), StandardNormal, &mut rng);
        let target = Array3::random_using((cfg.batch, 1, 1), StandardNormal, &mut rng);
        let setup = Setup { model, x, target };
        // One untimed pass: the model runs and its output has the targets' shape.
        assert_eq!(setup.model.predict(&setup.x).shape(), setup.target.shape());
        setup
    }
}

/// A group named `kind` (so ids read `kind/cell/config`) with a time budget fitted to `cfg`:
/// T and S take microseconds to a few ms, M tens of ms, L up to a second per iteration.
fn group_for<'a>(c: &'a mut Criterion, kind: &str, cfg: &Config) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(kind);
    match cfg.name {
        "T" | "S" => {
            group
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(3));
        }
        "M" => {
            group
                .sampling_mode(SamplingMode::Flat)
                .sample_size(20)
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(5));
        }
        _ => {
            group
                .sampling_mode(SamplingMode::Flat)
                .sample_size(10)
                .warm_up_time(Duration::from_secs(2))
                .measurement_time(Duration::from_secs(10));
        }
    }
    group
}

/// `forward/{lstm,gru,rnn}/{T,S,M,L}`: the recurrent layer's predict plus the head's.
fn forward(c: &mut Criterion) {
    for cfg in &CONFIGS {
        let mut group = group_for(c, "forward", cfg);
        for cell in CELLS {
            // Built on first use, so ids the filter leaves out cost nothing.
            let mut setup: Option<Setup> = None;
            group.bench_function(BenchmarkId::new(cell.id(), cfg.name), |b| {
                let s = setup.get_or_insert_with(|| Setup::new(cell, cfg));
                b.iter(|| s.model.predict(black_box(&s.x)));
            });
        }
        group.finish();
    }
}

/// A training setup: the model as one [`Sequential`] (recurrent layer, head), its Adam
/// optimizer, inputs `x` `[B, T, I]` and targets `[B, 1, 1]`.
struct TrainSetup {
    model: Sequential<f32>,
    optimizer: Adam<f32>,
    x: Array3<f32>,
    target: Array3<f32>,
}

impl TrainSetup {
    /// The same weights and data as [`Setup::new`] (same seed, same draws).
    fn new(cell: CellKind, cfg: &Config) -> Self {
        let Setup { model, x, target } = Setup::new(cell, cfg);
        let layers: Vec<Box<dyn Layer<f32>>> = vec![model.rnn, Box::new(model.head)];
        let model = Sequential::from_layers(cfg.input, layers).expect("sizes chain");
        let mut setup = TrainSetup {
            model,
            optimizer: Adam::new(1e-3).expect("valid rate"),
            x,
            target,
        };
        setup.step(); // untimed: creates the optimizer's moments, as PyTorch's warm-up does
        setup
    }

    /// One training step; returns the loss.
    fn step(&mut self) -> f32 {
        self.model.zero_grad();
        let prediction = self.model.forward(self.x.view()).expect("forward");
        let (loss, d_prediction) = Mse
            .loss_and_gradient(prediction.view(), self.target.view())
            .expect("shapes match");
        self.model.backward(d_prediction.view()).expect("backward");
        self.optimizer.step(&mut self.model).expect("step");
        loss
    }
}

/// `train_step/{lstm,gru,rnn}/{T,S,M,L}`: zero_grad, forward, MSE, backward, one Adam step.
fn train_step(c: &mut Criterion) {
    for cfg in &CONFIGS {
        let mut group = group_for(c, "train_step", cfg);
        for cell in CELLS {
            let mut setup: Option<TrainSetup> = None;
            group.bench_function(BenchmarkId::new(cell.id(), cfg.name), |b| {
                let s = setup.get_or_insert_with(|| TrainSetup::new(cell, cfg));
                b.iter(|| black_box(s.step()));
            });
        }
        group.finish();
    }
}

/// `stream_step/{lstm,gru,rnn}/{T,S}`: one new observation per series (`[B, 1, I]`) through
/// [`Layer::step`], carrying the state of the configuration's window, then the head.
fn stream_step(c: &mut Criterion) {
    for cfg in &CONFIGS[..2] {
        let mut group = group_for(c, "stream_step", cfg);
        for cell in CELLS {
            let mut setup: Option<(Setup, Array3<f32>)> = None;
            group.bench_function(BenchmarkId::new(cell.id(), cfg.name), |b| {
                let (s, one) = setup.get_or_insert_with(|| {
                    let mut s = Setup::new(cell, cfg);
                    // Read the window step by step (untimed): the carried state is a real one.
                    for t in 0..cfg.steps {
                        let x_t = s.x.slice(s![.., t..t + 1, ..]).to_owned();
                        s.model.rnn.step(x_t.view()).expect("step");
                    }
                    let one = s.x.slice(s![.., ..1, ..]).to_owned();
                    (s, one)
                });
                // One observation: the layer's streaming step (state carried), then the head.
                b.iter(|| {
                    let h = s.model.rnn.step(black_box(one.view())).expect("step");
                    s.model.head.predict(h.view()).expect("head")
                });
            });
        }
        group.finish();
    }
}

/// `airline_epoch/lstm32`: one epoch of the airline recipe through [`Trainer`].
fn airline_epoch(c: &mut Criterion) {
    let mut group = c.benchmark_group("airline_epoch");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let mut setup = None;
    group.bench_function("lstm32", |b| {
        let (model, x, y) = setup.get_or_insert_with(|| {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/airline.csv");
            let series = Series::from_csv(path, &CsvOptions::new().label("Date")).expect("csv");
            let values = series.column("Passengers").expect("column").to_vec();
            let fit_end = values.len() - 24; // the last 24 months are the test block
            let table = Array2::from_shape_fn((fit_end, 1), |(r, _)| values[r]);
            let pipeline = Pipeline::fit(
                &[
                    Transform::Log,
                    Transform::Difference { lag: 1 },
                    Transform::Standardize,
                ],
                table.view(),
            )
            .expect("pipeline");
            let table = pipeline.transform(table.view()).expect("transform");
            let spec = WindowSpec::new(24, 1);
            let w = windows::<f32>(table.view(), &spec, 0..table.nrows()).expect("windows");
            let model = Sequential::<f32>::builder(1)
                .lstm(32)
                .direct_head(1, 1)
                .build(0)
                .expect("model");
            (model, w.x, w.y)
        });
        b.iter(|| {
            let mut trainer = Trainer::new(Mse, Adam::new(1e-3).expect("rate"))
                .epochs(1)
                .batch_size(16)
                .seed(0);
            trainer.fit(model, x.view(), y.view()).expect("fit")
        });
    });
    group.finish();
}

/// `gemm/{own,ndarray}/{hh_M,hh_L,2048}`: `C [m, n] = A [m, k] · Bᵀ (+ bias)` with `B` `[n, k]`
/// (how `W_hh` is stored). `own` is the per-step kernel ([`RecurrentKernel::project`], `B`
/// packed before timing), `ndarray` is `general_mat_mul` (matrixmultiply). `hh_M` and `hh_L`
/// are the LSTM per-step shapes `[B, H] × [H, 4H]` of M and L; `2048` is 2048³. GFLOP/s =
/// 2·m·k·n / time.
fn gemm(c: &mut Criterion) {
    let shapes = [
        ("hh_M", 64, 128, 512),
        ("hh_L", 128, 512, 2048),
        ("2048", 2048, 2048, 2048),
    ];
    let mut group = c.benchmark_group("gemm");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (name, m, k, n) in shapes {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut data = None;
        let mut get = || {
            data.get_or_insert_with(|| {
                let a = Array2::<f32>::random_using((m, k), StandardNormal, &mut rng);
                let w = Array2::<f32>::random_using((n, k), StandardNormal, &mut rng);
                (a, w, Array1::<f32>::zeros(n), Array2::<f32>::zeros((m, n)))
            })
            .clone()
        };
        group.bench_function(BenchmarkId::new("own", name), |bench| {
            let (a, w, bias, mut out) = get();
            let kernel = RecurrentKernel::for_forward(w.view(), bias.view());
            bench.iter(|| kernel.project(black_box(a.view()), 0..n, out.view_mut()));
        });
        group.bench_function(BenchmarkId::new("ndarray", name), |bench| {
            let (a, w, _, mut out) = get();
            bench.iter(|| general_mat_mul(1.0, black_box(&a), &w.t(), 0.0, &mut out));
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    forward,
    train_step,
    stream_step,
    airline_epoch,
    gemm
);
criterion_main!(benches);
