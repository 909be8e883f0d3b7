//! The time-series data pipeline: CSV loading and gaps, chronological splits, the invertible
//! transform pipeline (fitted on training rows only) and sliding windows.

use std::path::PathBuf;

use ndarray::{Array2, ArrayView2, s};
use recurrent::Error;
use recurrent::data::{
    CsvOptions, FillPolicy, Pipeline, Series, Transform, WindowSpec, input_window, windows,
};

fn data_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join("data")
        .join(file)
}

fn load(file: &str, options: &CsvOptions) -> Series {
    Series::from_csv(data_path(file), options).unwrap_or_else(|e| panic!("cannot load {file}: {e}"))
}

fn read(text: &str, options: &CsvOptions) -> recurrent::Result<Series> {
    Series::from_csv_reader(text.as_bytes(), options)
}

fn column(series: &Series, name: &str) -> Vec<f64> {
    series.column(name).unwrap().to_vec()
}

/// Asserts `result` is an `Error::Csv` at `line` in `column`, whose message mentions `words`.
fn expect_csv_error<T: std::fmt::Debug>(
    result: recurrent::Result<T>,
    line: u64,
    column: &str,
    words: &str,
) -> Error {
    match result {
        Err(err @ Error::Csv { .. }) => {
            let Error::Csv {
                line: l,
                column: c,
                message,
                ..
            } = &err
            else {
                unreachable!()
            };
            assert_eq!(*l, line, "wrong line in {err}");
            assert_eq!(c, column, "wrong column in {err}");
            assert!(message.contains(words), "{err} should mention {words:?}");
            let text = err.to_string();
            assert!(text.contains(&format!("line {line}")), "{text}");
            assert!(text.contains(column), "{text}");
            err
        }
        other => panic!("expected a CSV error at line {line}, column {column}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// CSV
// ---------------------------------------------------------------------------------------------

#[test]
fn airline_loads_144_months_of_passengers_with_dates_as_labels() {
    let s = load("airline.csv", &CsvOptions::new().label("Date"));
    assert_eq!(s.len(), 144);
    assert_eq!(s.names(), ["Passengers"]);
    let p = column(&s, "Passengers");
    assert_eq!(&p[..4], [112.0, 118.0, 132.0, 129.0]);
    assert_eq!(p[143], 432.0);
    let labels = s.labels().expect("labels were asked for");
    assert_eq!(labels.len(), 144);
    assert_eq!(labels[0], "1949-01");
    assert_eq!(labels[143], "1960-12");
}

#[test]
fn sunspots_loads_with_quoted_headers() {
    let s = load("sunspots.csv", &CsvOptions::new().label("YEAR"));
    assert_eq!(s.len(), 309);
    assert_eq!(s.names(), ["SUNACTIVITY"]);
    let labels = s.labels().unwrap();
    assert_eq!(labels[0], "1700");
    assert_eq!(labels[308], "2008");
    assert_eq!(&column(&s, "SUNACTIVITY")[..4], [5.0, 11.0, 16.0, 23.0]);
    // Without a label column, YEAR is an ordinary numeric column.
    let both = load("sunspots.csv", &CsvOptions::new());
    assert_eq!(both.names(), ["YEAR", "SUNACTIVITY"]);
    assert_eq!(both.values()[[308, 0]], 2008.0);
}

#[test]
fn uschange_skips_the_unnamed_index_column_and_keeps_five_numeric_columns() {
    let s = load("uschange.csv", &CsvOptions::new().label("Quarter"));
    assert_eq!(s.len(), 187);
    assert_eq!(
        s.names(),
        [
            "Consumption",
            "Income",
            "Production",
            "Savings",
            "Unemployment"
        ]
    );
    let labels = s.labels().unwrap();
    assert_eq!(labels[0], "1970 Q1");
    assert_eq!(labels[186], "2016 Q3");
    let first = s.values().row(0).to_vec();
    assert_eq!(
        first,
        [
            0.615986218,
            0.9722610429999999,
            -2.4527003119999997,
            4.810311502,
            0.9
        ]
    );
}

#[test]
fn selected_columns_come_in_the_order_asked_for() {
    let s = load(
        "uschange.csv",
        &CsvOptions::new()
            .columns(&["Savings", "Consumption"])
            .label("Quarter"),
    );
    assert_eq!(s.names(), ["Savings", "Consumption"]);
    assert_eq!(s.values()[[0, 0]], 4.810311502);
    assert_eq!(s.values()[[0, 1]], 0.615986218);
}

#[test]
fn a_missing_value_is_an_error_naming_its_one_based_line_and_column() {
    // The header is line 1, so the third data row is line 4.
    let text = "t,a,b\n1,10,20\n2,11,21\n3,12,\n4,13,23\n";
    let err = expect_csv_error(read(text, &CsvOptions::new().label("t")), 4, "b", "missing");
    assert!(matches!(err, Error::Csv { file: None, .. }));
    // Also when the value is missing in the very first data row (line 2).
    let text = "a,b\n,1\n2,3\n";
    expect_csv_error(read(text, &CsvOptions::new()), 2, "a", "missing");
}

#[test]
fn an_unparsable_value_is_an_error_naming_its_line_column_and_text() {
    let text = "a,b\n1,2\n3,4\n5,6\nseven,8\n";
    let err = expect_csv_error(read(text, &CsvOptions::new()), 5, "a", "seven");
    assert!(err.to_string().contains("seven"));
}

#[test]
fn csv_line_numbers_count_blank_lines_and_crlf_line_ends() {
    let text = "a\n1\n\n2\nx\n";
    expect_csv_error(read(text, &CsvOptions::new()), 5, "a", "x");
    let text = "a,b\r\n1,2\r\n3,4\r\n5,oops\r\n";
    expect_csv_error(read(text, &CsvOptions::new()), 4, "b", "oops");
}

#[test]
fn a_csv_error_read_from_a_file_names_the_file() {
    let path = std::env::temp_dir().join(format!(
        "recurrent-data-test-{}-bad.csv",
        std::process::id()
    ));
    std::fs::write(&path, "x,y\n1,2\n3,4\n5,?\n").unwrap();
    let result = Series::from_csv(&path, &CsvOptions::new());
    std::fs::remove_file(&path).ok();
    let err = expect_csv_error(result, 4, "y", "?");
    let Error::Csv { file, .. } = &err else {
        unreachable!()
    };
    assert_eq!(file.as_deref(), Some(path.display().to_string().as_str()));
    assert!(err.to_string().starts_with(&path.display().to_string()));
}

#[test]
fn a_file_that_does_not_exist_is_an_io_error() {
    let path = data_path("no-such-file.csv");
    match Series::from_csv(&path, &CsvOptions::new()) {
        Err(Error::Io(message)) => assert!(message.contains("no-such-file.csv"), "{message}"),
        other => panic!("expected an i/o error, got {other:?}"),
    }
}

#[test]
fn an_unknown_column_lists_the_available_columns() {
    let text = ",Quarter,Consumption,Income\n0,1970 Q1,0.6,0.9\n";
    for options in [
        CsvOptions::new().columns(&["Consumptoin"]),
        CsvOptions::new().label("Consumptoin"),
    ] {
        match read(text, &options) {
            Err(Error::UnknownColumn { name, available }) => {
                assert_eq!(name, "Consumptoin");
                assert_eq!(available, ["Quarter", "Consumption", "Income"]);
            }
            other => panic!("expected an unknown-column error, got {other:?}"),
        }
    }
    // The same from a loaded series.
    let s = read(text, &CsvOptions::new().label("Quarter")).unwrap();
    match s.column("Savings") {
        Err(Error::UnknownColumn { name, available }) => {
            assert_eq!(name, "Savings");
            assert_eq!(available, ["Consumption", "Income"]);
        }
        other => panic!("expected an unknown-column error, got {other:?}"),
    }
}

#[test]
fn an_empty_file_and_a_header_only_file_are_errors() {
    for (what, text) in [("empty", ""), ("header only", "a,b\n"), ("blank", "\n\n")] {
        match read(text, &CsvOptions::new()) {
            Err(Error::Empty { .. } | Error::Csv { .. } | Error::InvalidConfig { .. }) => {}
            other => panic!("{what} file: expected an error, got {other:?}"),
        }
    }
    assert!(matches!(
        read("a,b\n", &CsvOptions::new()),
        Err(Error::Empty { ref axis, .. }) if axis == "rows"
    ));
}

#[test]
fn forward_fill_repeats_the_previous_value_of_each_column() {
    let text = "a,b\n1,10\n,20\n,\n4,\n5,50\n";
    let s = read(text, &CsvOptions::new().fill(FillPolicy::ForwardFill)).unwrap();
    assert_eq!(column(&s, "a"), [1.0, 1.0, 1.0, 4.0, 5.0]);
    assert_eq!(column(&s, "b"), [10.0, 20.0, 20.0, 20.0, 50.0]);
}

#[test]
fn linear_fill_interpolates_between_the_neighbouring_values() {
    let text = "a,b\n1,10\n,NA\n,\n7,40\n9,50\n";
    let s = read(text, &CsvOptions::new().fill(FillPolicy::Linear)).unwrap();
    let a = column(&s, "a");
    let b = column(&s, "b");
    for (got, want) in a.iter().zip([1.0, 3.0, 5.0, 7.0, 9.0]) {
        assert!((got - want).abs() < 1e-12, "{a:?}");
    }
    for (got, want) in b.iter().zip([10.0, 20.0, 30.0, 40.0, 50.0]) {
        assert!((got - want).abs() < 1e-12, "{b:?}");
    }
}

#[test]
fn drop_fill_removes_every_row_with_a_gap_and_its_label() {
    let text = "t,a,b\nr1,1,10\nr2,,20\nr3,3,\nr4,4,40\nr5,x,50\n";
    let s = read(text, &CsvOptions::new().label("t").fill(FillPolicy::Drop)).unwrap();
    assert_eq!(column(&s, "a"), [1.0, 4.0]);
    assert_eq!(column(&s, "b"), [10.0, 40.0]);
    assert_eq!(s.labels().unwrap(), ["r1", "r4"]);
    // Dropping every row leaves nothing: an error, not an empty series.
    assert!(read("a,b\nNA,1\n2,\n", &CsvOptions::new().fill(FillPolicy::Drop)).is_err());
}

#[test]
fn forward_fill_with_a_gap_in_the_first_row_is_an_error() {
    let text = "a,b\n1,\n2,3\n";
    expect_csv_error(
        read(text, &CsvOptions::new().fill(FillPolicy::ForwardFill)),
        2,
        "b",
        "missing",
    );
}

#[test]
fn linear_fill_with_a_gap_at_either_edge_is_an_error() {
    let start = "a,b\n1,\n2,3\n4,5\n";
    expect_csv_error(
        read(start, &CsvOptions::new().fill(FillPolicy::Linear)),
        2,
        "b",
        "edge",
    );
    let end = "a,b\n1,1\n2,3\n4,\n";
    expect_csv_error(
        read(end, &CsvOptions::new().fill(FillPolicy::Linear)),
        4,
        "b",
        "edge",
    );
}

#[test]
fn a_semicolon_delimiter_is_honoured() {
    let s = read("a;b\n1;2\n3;4\n", &CsvOptions::new().delimiter(b';')).unwrap();
    assert_eq!(column(&s, "a"), [1.0, 3.0]);
    assert_eq!(column(&s, "b"), [2.0, 4.0]);
}

// ---------------------------------------------------------------------------------------------
// Splits
// ---------------------------------------------------------------------------------------------

fn ten_rows() -> Series {
    Series::from_slice("x", &(0..10).map(f64::from).collect::<Vec<_>>()).unwrap()
}

fn assert_chronological_cover(split: &recurrent::data::Split, n: usize) {
    assert_eq!(split.train.start, 0);
    assert!(!split.train.is_empty());
    assert_eq!(split.train.end, split.validation.start);
    assert_eq!(split.validation.end, split.test.start);
    assert_eq!(split.test.end, n);
}

#[test]
fn a_split_by_counts_is_chronological_and_covers_every_row() {
    let s = ten_rows();
    let split = s.split_counts(2, 3).unwrap();
    assert_eq!(split.train, 0..5);
    assert_eq!(split.validation, 5..7);
    assert_eq!(split.test, 7..10);
    assert_chronological_cover(&split, 10);
    let no_validation = s.split_counts(0, 4).unwrap();
    assert_eq!(no_validation.train, 0..6);
    assert!(no_validation.validation.is_empty());
    assert_chronological_cover(&no_validation, 10);
    // The test rows are the last rows of the series.
    let test = s.rows(split.test.clone()).unwrap();
    assert_eq!(column(&test, "x"), [7.0, 8.0, 9.0]);
}

#[test]
fn a_split_by_fractions_is_chronological_and_covers_every_row() {
    let s = ten_rows();
    let split = s.split_fractions(0.1, 0.2).unwrap();
    assert_eq!(split.train, 0..7);
    assert_eq!(split.validation, 7..8);
    assert_eq!(split.test, 8..10);
    assert_chronological_cover(&split, 10);
    let airline = load("airline.csv", &CsvOptions::new().label("Date"));
    let split = airline.split_fractions(0.1, 1.0 / 6.0).unwrap();
    assert_eq!(split.test, 120..144);
    assert_chronological_cover(&split, 144);
}

#[test]
fn splits_that_leave_no_training_rows_or_use_bad_fractions_are_errors() {
    let s = ten_rows();
    for (v, t) in [(5, 5), (0, 10), (10, 0), (3, 9)] {
        assert!(
            matches!(s.split_counts(v, t), Err(Error::InvalidConfig { .. })),
            "split_counts({v}, {t})"
        );
    }
    for (v, t) in [
        (0.5, 0.5),
        (1.0, 0.0),
        (0.0, 1.0),
        (-0.1, 0.2),
        (f64::NAN, 0.1),
        (0.1, f64::INFINITY),
    ] {
        assert!(
            matches!(s.split_fractions(v, t), Err(Error::InvalidConfig { .. })),
            "split_fractions({v}, {t})"
        );
    }
}

#[test]
fn rows_out_of_range_or_empty_are_errors() {
    let s = ten_rows();
    assert!(s.rows(3..3).is_err());
    assert!(s.rows(5..11).is_err());
    assert_eq!(s.rows(8..10).unwrap().len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Transforms
// ---------------------------------------------------------------------------------------------

/// A positive three-column table of 144 rows on different scales: the airline passengers, a
/// reversed and shifted copy, and a seasonal wave around 1000.
fn table() -> Array2<f64> {
    let airline = load("airline.csv", &CsvOptions::new().label("Date"));
    let p = column(&airline, "Passengers");
    Array2::from_shape_fn((144, 3), |(r, c)| match c {
        0 => p[r],
        1 => 0.5 * p[143 - r] + 3.0,
        _ => 1000.0 + 100.0 * (r as f64 * std::f64::consts::TAU / 12.0).sin() + r as f64,
    })
}

/// Transforms `values`, inverts with the first `lost_rows()` rows as history, and checks every
/// column comes back within 1e-12 · max|x| of that column.
fn assert_round_trip(transforms: &[Transform], values: ArrayView2<'_, f64>, train_rows: usize) {
    let pipeline = Pipeline::fit(transforms, values.slice(s![..train_rows, ..])).unwrap();
    let lost = pipeline.lost_rows();
    let z = pipeline.transform(values).unwrap();
    assert_eq!(z.dim(), (values.nrows() - lost, values.ncols()));
    assert!(z.iter().all(|v| v.is_finite()), "{transforms:?}");
    let columns: Vec<usize> = (0..values.ncols()).collect();
    let back = pipeline
        .inverse(z.view(), values.slice(s![..lost, ..]), &columns)
        .unwrap();
    assert_eq!(back.dim(), z.dim());
    for c in 0..values.ncols() {
        let scale = values.column(c).fold(0.0f64, |m, v| m.max(v.abs()));
        for r in 0..back.nrows() {
            let (got, want) = (back[[r, c]], values[[r + lost, c]]);
            assert!(
                (got - want).abs() <= 1e-12 * scale,
                "{transforms:?}: row {}, column {c}: {got} vs {want}",
                r + lost
            );
        }
    }
}

#[test]
fn every_transform_alone_round_trips_every_column() {
    let t = table();
    for transform in [
        Transform::Standardize,
        Transform::MinMax,
        Transform::Log,
        Transform::Sqrt,
        Transform::Difference { lag: 1 },
        Transform::Difference { lag: 12 },
    ] {
        assert_round_trip(&[transform], t.view(), 120);
    }
}

#[test]
fn pipelines_of_several_transforms_round_trip_every_column() {
    let t = table();
    use Transform::*;
    for transforms in [
        vec![Log, Difference { lag: 1 }, Standardize],
        vec![Sqrt, Standardize],
        vec![Difference { lag: 1 }, Difference { lag: 12 }, MinMax],
        vec![
            Log,
            Difference { lag: 12 },
            Difference { lag: 1 },
            Standardize,
        ],
        vec![Standardize, Difference { lag: 1 }, MinMax],
        vec![],
    ] {
        assert_round_trip(&transforms, t.view(), 120);
    }
}

#[test]
fn a_pipeline_reports_its_transforms_columns_and_lost_rows() {
    let t = table();
    use Transform::*;
    let transforms = [Log, Difference { lag: 1 }, Difference { lag: 12 }, MinMax];
    let p = Pipeline::fit(&transforms, t.view()).unwrap();
    assert_eq!(p.transforms(), transforms);
    assert_eq!(p.columns(), 3);
    assert_eq!(p.lost_rows(), 13);
    assert_eq!(p.transform(t.view()).unwrap().nrows(), 144 - 13);
}

#[test]
fn a_subset_of_columns_inverts_with_each_columns_own_parameters() {
    let t = table();
    use Transform::*;
    let p = Pipeline::fit(&[Log, Difference { lag: 1 }, Standardize], t.view()).unwrap();
    let full = p.transform(t.view()).unwrap();
    let subset = t.select(ndarray::Axis(1), &[2, 0]);
    let z = p.transform_columns(subset.view(), &[2, 0]).unwrap();
    assert_eq!(z.column(0), full.column(2));
    assert_eq!(z.column(1), full.column(0));
    let back = p
        .inverse(z.view(), subset.slice(s![..1, ..]), &[2, 0])
        .unwrap();
    for r in 0..back.nrows() {
        for k in 0..2 {
            let want = subset[[r + 1, k]];
            assert!((back[[r, k]] - want).abs() <= 1e-12 * want.abs().max(1.0));
        }
    }
    // A column index the pipeline was not fitted on is an error.
    assert!(p.transform_columns(subset.view(), &[3, 0]).is_err());
    // So is a column count that does not match the selection.
    assert!(p.transform_columns(subset.view(), &[0]).is_err());
}

#[test]
fn log_needs_positive_values_and_sqrt_needs_non_negative_ones() {
    let with_zero = ndarray::array![[1.0], [0.0], [2.0]];
    let with_negative = ndarray::array![[1.0], [-0.5], [2.0]];
    assert!(matches!(
        Pipeline::fit(&[Transform::Log], with_zero.view()),
        Err(Error::InvalidConfig { .. })
    ));
    assert!(Pipeline::fit(&[Transform::Log], with_negative.view()).is_err());
    assert!(Pipeline::fit(&[Transform::Sqrt], with_zero.view()).is_ok());
    assert!(matches!(
        Pipeline::fit(&[Transform::Sqrt], with_negative.view()),
        Err(Error::InvalidConfig { .. })
    ));
    // Fitted on good rows, a bad value met later is still an error.
    let good = ndarray::array![[1.0], [2.0]];
    let log = Pipeline::fit(&[Transform::Log], good.view()).unwrap();
    assert!(log.transform(with_zero.view()).is_err());
    let sqrt = Pipeline::fit(&[Transform::Sqrt], good.view()).unwrap();
    assert!(sqrt.transform(with_negative.view()).is_err());
}

#[test]
fn sunspots_with_zeros_take_a_square_root_but_not_a_log() {
    let s = load("sunspots.csv", &CsvOptions::new().label("YEAR"));
    let v = s.values();
    assert!(v.iter().any(|&x| x == 0.0), "the sunspots have zero years");
    let sqrt = Pipeline::fit(&[Transform::Sqrt, Transform::Standardize], v).unwrap();
    let z = sqrt.transform(v).unwrap();
    assert!(z.iter().all(|x| x.is_finite()));
    assert_round_trip(&[Transform::Sqrt, Transform::Standardize], v, 288);
    match Pipeline::fit(&[Transform::Log], v) {
        Err(Error::InvalidConfig { what, reason }) => {
            assert!(what.contains("log"), "{what}");
            assert!(reason.contains('0'), "{reason}");
        }
        other => panic!("expected the log of a zero to fail, got {other:?}"),
    }
}

#[test]
fn a_constant_column_never_produces_nan() {
    let values = Array2::from_shape_fn((20, 2), |(r, c)| if c == 0 { 7.5 } else { r as f64 });
    for transform in [Transform::Standardize, Transform::MinMax] {
        let p = Pipeline::fit(&[transform], values.view()).unwrap();
        let z = p.transform(values.view()).unwrap();
        assert!(z.iter().all(|v| v.is_finite()), "{transform:?}: {z}");
        assert!(z.column(0).iter().all(|&v| v == 0.0), "{transform:?}: {z}");
        assert_round_trip(&[transform], values.view(), 20);
        // A single training row is constant too.
        let one = Pipeline::fit(&[transform], values.slice(s![..1, ..])).unwrap();
        assert!(
            one.transform(values.view())
                .unwrap()
                .iter()
                .all(|v| v.is_finite())
        );
    }
}

#[test]
fn the_pipeline_is_fitted_on_the_training_rows_only() {
    let a = table();
    let mut b = a.clone();
    // The tables differ only in the test rows 120.. .
    for r in 120..144 {
        for c in 0..3 {
            b[[r, c]] = a[[r, c]] * 3.0 + 50.0;
        }
    }
    use Transform::*;
    for transforms in [
        vec![Standardize],
        vec![MinMax],
        vec![Log, Difference { lag: 1 }, Standardize],
        vec![Sqrt, Difference { lag: 12 }, MinMax],
    ] {
        let pa = Pipeline::fit(&transforms, a.slice(s![..120, ..])).unwrap();
        let pb = Pipeline::fit(&transforms, b.slice(s![..120, ..])).unwrap();
        assert_eq!(pa, pb, "{transforms:?}");
        // The train rows transform the same, alone or inside the whole table.
        let ta = pa.transform(a.slice(s![..120, ..])).unwrap();
        let tb = pb.transform(b.slice(s![..120, ..])).unwrap();
        assert_eq!(ta, tb);
        let whole_a = pa.transform(a.view()).unwrap();
        let whole_b = pa.transform(b.view()).unwrap();
        assert_eq!(whole_a.slice(s![..ta.nrows(), ..]), ta);
        assert_ne!(whole_a, whole_b, "the test rows do differ");
        // Fitting on all the rows would have seen the change: the comparison is not vacuous.
        let all_a = Pipeline::fit(&transforms, a.view()).unwrap();
        let all_b = Pipeline::fit(&transforms, b.view()).unwrap();
        assert_ne!(all_a, all_b, "{transforms:?}");
    }
}

#[test]
fn inverting_a_forecast_under_differencing_gives_the_true_continuation() {
    let t = table();
    use Transform::*;
    for transforms in [
        vec![Difference { lag: 1 }],
        vec![Log, Difference { lag: 1 }, Standardize],
        vec![
            Log,
            Difference { lag: 1 },
            Difference { lag: 12 },
            Standardize,
        ],
        vec![Sqrt, Difference { lag: 12 }, MinMax],
    ] {
        let p = Pipeline::fit(&transforms, t.slice(s![..120, ..])).unwrap();
        let lost = p.lost_rows();
        let z = p.transform(t.view()).unwrap();
        // The "forecast" is the true transformed continuation of rows 120..144.
        let future = z.slice(s![120 - lost.., ..]);
        assert_eq!(future.nrows(), 24);
        let columns = [0, 1, 2];
        // History: everything up to the origin, or just the last `lost` rows of it.
        for history in [t.slice(s![..120, ..]), t.slice(s![120 - lost..120, ..])] {
            let back = p.inverse(future, history, &columns).unwrap();
            for r in 0..24 {
                for c in 0..3 {
                    let want = t[[120 + r, c]];
                    assert!(
                        (back[[r, c]] - want).abs() <= 1e-12 * 1200.0,
                        "{transforms:?}: row {}, column {c}: {} vs {want}",
                        120 + r,
                        back[[r, c]]
                    );
                }
            }
        }
        if lost > 0 {
            assert!(
                p.inverse(future, t.slice(s![121 - lost..120, ..]), &columns)
                    .is_err(),
                "{transforms:?}: a history shorter than the lags is an error"
            );
        }
    }
}

#[test]
fn a_zero_lag_or_a_difference_that_eats_every_training_row_is_an_error() {
    let t = table();
    assert!(Pipeline::fit(&[Transform::Difference { lag: 0 }], t.view()).is_err());
    assert!(Pipeline::fit(&[Transform::Difference { lag: 12 }], t.slice(s![..12, ..])).is_err());
    let p = Pipeline::fit(&[Transform::Difference { lag: 12 }], t.view()).unwrap();
    assert!(p.transform(t.slice(s![..12, ..])).is_err());
    assert!(Pipeline::fit(&[Transform::Standardize], t.slice(s![..0, ..])).is_err());
}

// ---------------------------------------------------------------------------------------------
// Windows
// ---------------------------------------------------------------------------------------------

/// A table whose value encodes its position: row r, column c holds 100 r + c.
fn coded(rows: usize, columns: usize) -> Array2<f64> {
    Array2::from_shape_fn((rows, columns), |(r, c)| (100 * r + c) as f64)
}

fn row_of(v: f64) -> usize {
    (v / 100.0).floor() as usize
}

#[test]
fn windows_have_the_spec_shapes_and_the_right_values() {
    let values = coded(20, 3);
    let spec = WindowSpec::new(4, 3).inputs(&[0, 2]).targets(&[1]);
    let w = windows::<f64>(values.view(), &spec, 0..20).unwrap();
    // Origins 3 ..= 16.
    assert_eq!(w.origins, (3..=16).collect::<Vec<_>>());
    assert_eq!(w.x.shape(), [14, 4, 2]);
    assert_eq!(w.y.shape(), [14, 3, 1]);
    for (i, &o) in w.origins.iter().enumerate() {
        for t in 0..4 {
            assert_eq!(w.x[[i, t, 0]], values[[o + 1 + t - 4, 0]]);
            assert_eq!(w.x[[i, t, 1]], values[[o + 1 + t - 4, 2]]);
        }
        for t in 0..3 {
            assert_eq!(w.y[[i, t, 0]], values[[o + 1 + t, 1]]);
        }
    }
    let w32 = windows::<f32>(values.view(), &spec, 0..20).unwrap();
    assert_eq!(w32.x.shape(), [14, 4, 2]);
    assert_eq!(w32.y[[13, 2, 0]], 1901.0f32);
}

#[test]
fn a_windows_target_never_overlaps_its_input() {
    let values = coded(30, 1);
    for (lookback, horizon, stride) in [(1, 1, 1), (5, 3, 1), (7, 4, 2), (3, 6, 5)] {
        let spec = WindowSpec::new(lookback, horizon).stride(stride);
        let w = windows::<f64>(values.view(), &spec, 0..30).unwrap();
        for (i, &o) in w.origins.iter().enumerate() {
            let inputs: Vec<usize> = w.x.slice(s![i, .., 0]).iter().map(|&v| row_of(v)).collect();
            let targets: Vec<usize> = w.y.slice(s![i, .., 0]).iter().map(|&v| row_of(v)).collect();
            assert_eq!(*inputs.last().unwrap(), o, "the origin is the last input");
            assert!(inputs.iter().all(|&r| r <= o));
            assert!(targets.iter().all(|&r| r > o));
            assert_eq!(targets[0], o + 1);
            assert_eq!(inputs.len(), lookback);
            assert_eq!(targets.len(), horizon);
        }
    }
}

#[test]
fn the_last_window_ends_at_the_last_value_of_the_target_range() {
    let values = coded(25, 1);
    for stride in [1, 2, 3, 4, 7] {
        for range in [0..25, 0..21, 10..25, 12..19] {
            let spec = WindowSpec::new(3, 2).stride(stride);
            let w = windows::<f64>(values.view(), &spec, range.clone()).unwrap();
            let n = w.origins.len();
            assert_eq!(
                row_of(w.y[[n - 1, 1, 0]]),
                range.end - 1,
                "stride {stride}, range {range:?}"
            );
            assert!(
                w.origins.windows(2).all(|p| p[1] - p[0] == stride),
                "stride {stride}: {:?}",
                w.origins
            );
            // No further window fits before the first one.
            let first = w.origins[0];
            assert!(
                first < stride || first - stride + 1 < range.start.max(3),
                "stride {stride}, range {range:?}: origins {:?}",
                w.origins
            );
        }
    }
}

#[test]
fn windows_of_a_test_range_look_back_into_earlier_rows_but_never_past_their_origin() {
    let values = coded(40, 1);
    let spec = WindowSpec::new(8, 2);
    let w = windows::<f64>(values.view(), &spec, 30..40).unwrap();
    // Origins 29..=37: every target in 30..40.
    assert_eq!(w.origins, (29..=37).collect::<Vec<_>>());
    let mut reaches_back = false;
    for (i, &o) in w.origins.iter().enumerate() {
        for t in 0..2 {
            let r = row_of(w.y[[i, t, 0]]);
            assert!((30..40).contains(&r));
        }
        for t in 0..8 {
            let r = row_of(w.x[[i, t, 0]]);
            assert!(r <= o);
            reaches_back |= r < 30;
        }
    }
    assert!(reaches_back, "test windows read training rows as inputs");
    // The input window at an origin is the same window.
    for (i, &o) in w.origins.iter().enumerate() {
        let x = input_window::<f64>(values.view(), &spec, o).unwrap();
        assert_eq!(x.shape(), [1, 8, 1]);
        assert_eq!(x.slice(s![0, .., ..]), w.x.slice(s![i, .., ..]));
    }
}

#[test]
fn a_lookback_longer_than_the_series_is_a_typed_error() {
    let values = coded(10, 1);
    for spec in [
        WindowSpec::new(11, 1),
        WindowSpec::new(10, 1),
        WindowSpec::new(5, 6),
    ] {
        match windows::<f64>(values.view(), &spec, 0..10) {
            Err(Error::InvalidConfig { what, .. }) => assert_eq!(what, "windows"),
            other => panic!("{spec:?}: expected an error, got {other:?}"),
        }
    }
    // The largest window that fits gives exactly one sample.
    let w = windows::<f64>(values.view(), &WindowSpec::new(9, 1), 0..10).unwrap();
    assert_eq!(w.origins, [8]);
    assert!(input_window::<f64>(values.view(), &WindowSpec::new(11, 1), 9).is_err());
    assert!(input_window::<f64>(values.view(), &WindowSpec::new(3, 1), 1).is_err());
    assert!(input_window::<f64>(values.view(), &WindowSpec::new(3, 1), 10).is_err());
}

#[test]
fn a_zero_horizon_stride_or_lookback_is_an_error() {
    let values = coded(10, 2);
    for (spec, what) in [
        (WindowSpec::new(3, 0), "horizon"),
        (WindowSpec::new(3, 1).stride(0), "stride"),
        (WindowSpec::new(0, 1), "lookback"),
    ] {
        match windows::<f64>(values.view(), &spec, 0..10) {
            Err(Error::InvalidConfig { what: w, .. }) => assert!(w.contains(what), "{w}"),
            other => panic!("{what} 0: expected an error, got {other:?}"),
        }
        assert!(input_window::<f64>(values.view(), &spec, 5).is_err());
    }
}

#[test]
fn bad_window_columns_and_target_ranges_are_errors() {
    let values = coded(10, 2);
    let bad = [
        WindowSpec::new(2, 1).inputs(&[2]),
        WindowSpec::new(2, 1).targets(&[5]),
        WindowSpec::new(2, 1).inputs(&[]),
        WindowSpec::new(2, 1).targets(&[]),
    ];
    for spec in bad {
        assert!(
            windows::<f64>(values.view(), &spec, 0..10).is_err(),
            "{spec:?}"
        );
    }
    let spec = WindowSpec::new(2, 1);
    assert!(windows::<f64>(values.view(), &spec, 5..5).is_err());
    assert!(windows::<f64>(values.view(), &spec, 0..11).is_err());
}
