//! Layer benchmarks, with the ids DESIGN.md fixes so results stay comparable over time:
//! `forward/{lstm,gru,rnn}/{T,S,M,L}` (and, next to it, `train_step/…` over the same table).
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
//! The same configurations in PyTorch: `/work/shared/bench/torch_rnn.py`.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main,
};
use ndarray::Array3;
use ndarray_rand::RandomExt;
use ndarray_rand::rand_distr::StandardNormal;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use recurrent::{Activation, Dense, Gru, Layer, Lstm, SimpleRnn};

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

impl Model {
    fn new(cell: CellKind, cfg: &Config, rng: &mut ChaCha8Rng) -> Self {
        let (i, h) = (cfg.input, cfg.hidden);
        let rnn: Box<dyn Layer<f32>> = match cell {
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
        };
        let head = Dense::<f32>::new(h, 1, Activation::Identity, rng).expect("valid sizes");
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

criterion_group!(benches, forward);
criterion_main!(benches);
