//! Binary (CBOR) model, forecaster and checkpoint loading: the fuzzer's bytes go behind a valid
//! magic number and version, so it explores the CBOR decoder and the checks after it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recurrent::Sequential;
use recurrent::persist::{BINARY_MAGIC, FORMAT_VERSION, ForecastModel};
use recurrent::train::Checkpoint;

fuzz_target!(|data: &[u8]| {
    let mut bytes = BINARY_MAGIC.to_vec();
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(data);
    if let Ok(model) = Sequential::<f32>::from_bytes(&bytes) {
        let x = ndarray::Array3::<f32>::zeros((1, 3, recurrent::Layer::input_size(&model)));
        let _ = recurrent::Layer::predict(&model, x.view());
    }
    let _ = ForecastModel::<f64>::from_bytes(&bytes);
    let _ = Checkpoint::from_bytes(&bytes);
});
