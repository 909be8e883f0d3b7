//! Peak memory of one LSTM training step at the L benchmark configuration (batch 128, 100 steps,
//! 32 inputs, 512 hidden; f32): forward, MSE on a dense head over the last step, backward, one
//! Adam step, in a process of its own, so the kernel's high-water mark (`VmHWM` in
//! `/proc/self/status`, Linux) is this step's.
//!
//! ```text
//! cargo run --release --example peak_memory            # lstm
//! cargo run --release --example peak_memory -- gru     # or gru, rnn
//! ```
//!
//! The summary line compares the peak with B·T·(G+2)·H·4 bytes (the activations a training step
//! must hold: the gate pre-activations plus h and c for every step).

use ndarray::Array3;
use ndarray_rand::RandomExt;
use ndarray_rand::rand_distr::StandardNormal;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use recurrent::{
    Activation, Adam, Dense, Gru, Layer, Loss, Lstm, Mse, Optimizer, Sequential, SimpleRnn,
};

/// `VmHWM` and `VmRSS` from `/proc/self/status`, in bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cell = std::env::args().nth(1).unwrap_or_else(|| "lstm".into());
    let (b, t, i, h) = (128, 100, 32, 512);
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let (rnn, gates): (Box<dyn Layer<f32>>, usize) = match cell.as_str() {
        "lstm" => (
            Box::new(Lstm::<f32>::new(i, h, &mut rng)?.with_return_sequences(false)),
            4,
        ),
        "gru" => (
            Box::new(Gru::<f32>::new(i, h, &mut rng)?.with_return_sequences(false)),
            3,
        ),
        "rnn" => (
            Box::new(SimpleRnn::<f32>::new(i, h, &mut rng)?.with_return_sequences(false)),
            1,
        ),
        other => return Err(format!("unknown cell {other:?}: lstm, gru or rnn").into()),
    };
    let head = Dense::<f32>::new(h, 1, Activation::Identity, &mut rng)?;
    let mut model = Sequential::from_layers(i, vec![rnn, Box::new(head)])?;
    let mut optimizer = Adam::<f32>::new(1e-3)?;
    let x = Array3::<f32>::random_using((b, t, i), StandardNormal, &mut rng);
    let y = Array3::<f32>::random_using((b, 1, 1), StandardNormal, &mut rng);
    let (before, _) = memory();

    model.zero_grad();
    let prediction = model.forward(x.view())?;
    let (loss, d_prediction) = Mse.loss_and_gradient(prediction.view(), y.view())?;
    model.backward(d_prediction.view())?;
    optimizer.step(&mut model)?;

    let (peak, rss) = memory();
    let activations = (b * t * (gates + 2) * h * 4) as f64;
    let mb = |v: f64| v / 1e6;
    println!(
        "{cell} L step: loss {loss:.4}; VmHWM before the step {:.1} MB, after {:.1} MB \
         (VmRSS {:.1} MB); B·T·(G+2)·H·4 = {:.1} MB",
        mb(before as f64),
        mb(peak as f64),
        mb(rss as f64),
        mb(activations)
    );
    println!(
        "peak_memory: model={cell}_L PeakMB {:.1} ActivationsMB {:.1} Ratio {:.2}",
        mb(peak as f64),
        mb(activations),
        peak as f64 / activations
    );
    Ok(())
}
