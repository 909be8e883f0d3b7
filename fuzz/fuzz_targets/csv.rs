//! CSV loading from arbitrary bytes under each fill policy: a series or a typed error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recurrent::data::{CsvOptions, FillPolicy, Series};

fuzz_target!(|data: &[u8]| {
    for fill in [FillPolicy::Error, FillPolicy::ForwardFill, FillPolicy::Linear, FillPolicy::Drop] {
        let options = CsvOptions::new().fill(fill);
        if let Ok(series) = Series::from_csv_reader(data, &options) {
            let _ = series.split_fractions(0.2, 0.2);
        }
        let _ = Series::from_csv_reader(data, &CsvOptions::new().label("date").fill(fill));
    }
});
