//! Model, forecaster and checkpoint loading from arbitrary bytes (JSON and anything else):
//! every input must give a model or a typed error, never a panic or an abort.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recurrent::Sequential;
use recurrent::persist::ForecastModel;
use recurrent::train::Checkpoint;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = Sequential::<f32>::from_bytes(data) {
        // A model that loads must also predict without panicking.
        let x = ndarray::Array3::<f32>::zeros((1, 3, recurrent::Layer::input_size(&model)));
        let _ = recurrent::Layer::predict(&model, x.view());
    }
    let _ = ForecastModel::<f64>::from_bytes(data);
    let _ = Checkpoint::from_bytes(data);
});
