//! A table of named numeric columns over time, loaded from slices or CSV.

use std::io::Read;
use std::ops::Range;
use std::path::Path;

use ndarray::{Array2, ArrayView1, ArrayView2, s};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What to do with a missing or unparsable value in a CSV file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FillPolicy {
    /// Report it as an error naming the line and column (the default).
    #[default]
    Error,
    /// Repeat the previous value of the column (a gap in the first row is an error).
    ForwardFill,
    /// Linear interpolation between the neighbouring values of the column (a gap at either
    /// end is an error).
    Linear,
    /// Drop every row with a gap in any selected column.
    Drop,
}

/// Which columns of a CSV file to read, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsvOptions {
    /// Numeric columns to load, by header name; `None`: every column but the label column and an
    /// unnamed index column.
    pub columns: Option<Vec<String>>,
    /// A column of labels (dates, quarters) kept as text.
    pub label: Option<String>,
    /// Gaps.
    pub fill: FillPolicy,
    /// Field delimiter (default `,`).
    pub delimiter: Option<u8>,
}

impl CsvOptions {
    /// Every numeric column, no labels, gaps are errors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads only these columns, in this order.
    pub fn columns<S: AsRef<str>>(mut self, names: &[S]) -> Self {
        self.columns = Some(names.iter().map(|n| n.as_ref().to_string()).collect());
        self
    }

    /// Keeps this column as row labels.
    pub fn label(mut self, name: &str) -> Self {
        self.label = Some(name.to_string());
        self
    }

    /// How gaps are filled.
    pub fn fill(mut self, fill: FillPolicy) -> Self {
        self.fill = fill;
        self
    }

    /// The field delimiter.
    pub fn delimiter(mut self, delimiter: u8) -> Self {
        self.delimiter = Some(delimiter);
        self
    }
}

/// Rows of a [`Series`] used for training, validation and testing, in time order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// Training rows.
    pub train: Range<usize>,
    /// Validation rows (may be empty).
    pub validation: Range<usize>,
    /// Test rows (may be empty).
    pub test: Range<usize>,
}

/// A multivariate time series: `values` `[rows, columns]` (f64), named columns, optional row
/// labels (dates).
///
/// ```
/// use recurrent::data::Series;
/// let s = Series::from_slice("passengers", &[112.0, 118.0, 132.0])?;
/// assert_eq!(s.column("passengers")?.to_vec(), vec![112.0, 118.0, 132.0]);
/// # Ok::<(), recurrent::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    names: Vec<String>,
    values: Array2<f64>,
    labels: Option<Vec<String>>,
}

impl Series {
    /// A one-column series.
    pub fn from_slice(name: &str, values: &[f64]) -> Result<Self> {
        Self::from_columns(&[name], &[values])
    }

    /// A series from named columns of equal length.
    pub fn from_columns<S: AsRef<str>, V: AsRef<[f64]>>(
        names: &[S],
        columns: &[V],
    ) -> Result<Self> {
        if names.len() != columns.len() {
            return Err(Error::config(
                "series",
                format!("{} names for {} columns", names.len(), columns.len()),
            ));
        }
        if names.is_empty() {
            return Err(Error::config("series", "needs at least one column"));
        }
        let rows = columns[0].as_ref().len();
        if rows == 0 {
            return Err(Error::Empty {
                what: "series".into(),
                axis: "rows".into(),
                shape: vec![0, names.len()],
            });
        }
        for (name, col) in names.iter().zip(columns) {
            if col.as_ref().len() != rows {
                return Err(Error::config(
                    "series",
                    format!(
                        "column {:?} has {} values, the first column {rows}",
                        name.as_ref(),
                        col.as_ref().len()
                    ),
                ));
            }
        }
        let values = Array2::from_shape_fn((rows, names.len()), |(r, c)| columns[c].as_ref()[r]);
        Self::new(
            names.iter().map(|n| n.as_ref().to_string()).collect(),
            values,
            None,
        )
    }

    /// A series from a `[rows, columns]` array; every value must be finite.
    pub fn new(
        names: Vec<String>,
        values: Array2<f64>,
        labels: Option<Vec<String>>,
    ) -> Result<Self> {
        if names.len() != values.ncols() {
            return Err(Error::config(
                "series",
                format!("{} names for {} columns", names.len(), values.ncols()),
            ));
        }
        if values.nrows() == 0 || values.ncols() == 0 {
            return Err(Error::Empty {
                what: "series".into(),
                axis: if values.nrows() == 0 {
                    "rows"
                } else {
                    "columns"
                }
                .into(),
                shape: values.shape().to_vec(),
            });
        }
        if let Some(((r, c), _)) = values.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: format!("series column {:?}", names[c]),
                index: vec![r],
            });
        }
        if let Some(l) = &labels
            && l.len() != values.nrows()
        {
            return Err(Error::config(
                "series labels",
                format!("{} labels for {} rows", l.len(), values.nrows()),
            ));
        }
        Ok(Series {
            names,
            values,
            labels,
        })
    }

    /// Reads a CSV file with a header row (see [`from_csv_reader`](Self::from_csv_reader)).
    pub fn from_csv(path: impl AsRef<Path>, options: &CsvOptions) -> Result<Self> {
        let path = path.as_ref();
        let file =
            std::fs::File::open(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        Self::from_csv_reader(file, options).map_err(|e| match e {
            Error::Csv {
                file: None,
                line,
                column,
                message,
            } => Error::Csv {
                file: Some(path.display().to_string()),
                line,
                column,
                message,
            },
            other => other,
        })
    }

    /// Reads CSV with a header row. Headers may be quoted; a column with an empty header (an
    /// index written by pandas) is skipped unless asked for. A missing or unparsable value is
    /// handled by [`CsvOptions::fill`]; by default it is an error naming the 1-based line and
    /// the column. Asking for a column that is not there lists the ones that are.
    pub fn from_csv_reader(mut reader: impl Read, options: &CsvOptions) -> Result<Self> {
        // The whole text is kept so that line numbers come from byte offsets: the csv crate's
        // own line counter drifts on `\r\n` line ends.
        let mut text = Vec::new();
        reader
            .read_to_end(&mut text)
            .map_err(|e| Error::Io(e.to_string()))?;
        let mut counted = (0usize, 1u64); // (bytes scanned, line number at that byte)
        let mut line_at = |byte: u64| -> u64 {
            let mut byte = (byte as usize).min(text.len());
            // After a `\r` the record's start may point at the `\n` that ends the line before.
            while byte < text.len() && matches!(text[byte], b'\r' | b'\n') {
                byte += 1;
            }
            if byte < counted.0 {
                counted = (0, 1);
            }
            counted.1 += text[counted.0..byte]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            counted.0 = byte;
            counted.1
        };
        let mut builder = csv::ReaderBuilder::new();
        builder.has_headers(true).trim(csv::Trim::All);
        if let Some(d) = options.delimiter {
            builder.delimiter(d);
        }
        let mut rdr = builder.from_reader(text.as_slice());
        let csv_error = |line: u64, column: &str, message: String| Error::Csv {
            file: None,
            line,
            column: column.to_string(),
            message,
        };
        let headers: Vec<String> = rdr
            .headers()
            .map_err(|e| csv_error(1, "", e.to_string()))?
            .iter()
            .map(|h| h.to_string())
            .collect();
        if headers.is_empty() || headers.iter().all(|h| h.is_empty()) {
            return Err(Error::Empty {
                what: "CSV file".into(),
                axis: "header".into(),
                shape: vec![0],
            });
        }
        let find = |name: &str| -> Result<usize> {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| Error::UnknownColumn {
                    name: name.to_string(),
                    available: headers.iter().filter(|h| !h.is_empty()).cloned().collect(),
                })
        };
        let label_index = options.label.as_deref().map(find).transpose()?;
        let selected: Vec<usize> = match &options.columns {
            Some(names) => names.iter().map(|n| find(n)).collect::<Result<_>>()?,
            None => (0..headers.len())
                .filter(|&i| Some(i) != label_index && !headers[i].is_empty())
                .collect(),
        };
        if selected.is_empty() {
            return Err(Error::config("CSV columns", "no numeric column selected"));
        }

        let mut columns: Vec<Vec<Option<f64>>> = vec![Vec::new(); selected.len()];
        let mut labels = Vec::new();
        let mut lines = Vec::new();
        for record in rdr.records() {
            let record = record.map_err(|e| {
                let line = e.position().map_or(0, |p| line_at(p.byte()));
                csv_error(line, "", e.to_string())
            })?;
            let line = record.position().map_or(0, |p| line_at(p.byte()));
            if record.len() == 1 && record[0].is_empty() {
                // A line of only blanks; `,` (every field missing) is a row with gaps instead.
                continue;
            }
            for (k, &c) in selected.iter().enumerate() {
                let field = record.get(c).unwrap_or("");
                let value = parse_value(field);
                if value.is_none() && options.fill == FillPolicy::Error {
                    let message = if field.is_empty() {
                        "missing value".to_string()
                    } else {
                        format!("cannot parse {field:?} as a number")
                    };
                    return Err(csv_error(line, &headers[c], message));
                }
                columns[k].push(value);
            }
            if let Some(li) = label_index {
                labels.push(record.get(li).unwrap_or("").to_string());
            }
            lines.push(line);
        }
        if lines.is_empty() {
            return Err(Error::Empty {
                what: "CSV file".into(),
                axis: "rows".into(),
                shape: vec![0, selected.len()],
            });
        }
        let names: Vec<String> = selected.iter().map(|&c| headers[c].clone()).collect();
        let (filled, keep) = fill_gaps(columns, &names, &lines, options.fill)?;
        let labels = label_index.map(|_| {
            labels
                .into_iter()
                .zip(&keep)
                .filter_map(|(l, &k)| k.then_some(l))
                .collect()
        });
        let rows = filled.first().map_or(0, Vec::len);
        if rows == 0 {
            return Err(Error::Empty {
                what: "CSV file after dropping gaps".into(),
                axis: "rows".into(),
                shape: vec![0, names.len()],
            });
        }
        let values = Array2::from_shape_fn((rows, names.len()), |(r, c)| filled[c][r]);
        Self::new(names, values, labels)
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.values.nrows()
    }

    /// Always false: a series has at least one row.
    pub fn is_empty(&self) -> bool {
        self.values.nrows() == 0
    }

    /// Column names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// `[rows, columns]`.
    pub fn values(&self) -> ArrayView2<'_, f64> {
        self.values.view()
    }

    /// Row labels, if loaded.
    pub fn labels(&self) -> Option<&[String]> {
        self.labels.as_deref()
    }

    /// The index of a column; unknown names list the ones there are.
    pub fn column_index(&self, name: &str) -> Result<usize> {
        self.names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| Error::UnknownColumn {
                name: name.to_string(),
                available: self.names.clone(),
            })
    }

    /// One column's values.
    pub fn column(&self, name: &str) -> Result<ArrayView1<'_, f64>> {
        Ok(self.values.column(self.column_index(name)?))
    }

    /// A series of `rows`.
    pub fn rows(&self, rows: Range<usize>) -> Result<Series> {
        if rows.start >= rows.end || rows.end > self.len() {
            return Err(Error::config(
                "series rows",
                format!("{rows:?} is not a non-empty range within 0..{}", self.len()),
            ));
        }
        Ok(Series {
            names: self.names.clone(),
            values: self.values.slice(s![rows.clone(), ..]).to_owned(),
            labels: self.labels.as_ref().map(|l| l[rows].to_vec()),
        })
    }

    /// A series of the named columns, in the order given.
    pub fn select<S: AsRef<str>>(&self, names: &[S]) -> Result<Series> {
        let idx: Vec<usize> = names
            .iter()
            .map(|n| self.column_index(n.as_ref()))
            .collect::<Result<_>>()?;
        let values =
            Array2::from_shape_fn((self.len(), idx.len()), |(r, c)| self.values[[r, idx[c]]]);
        Series::new(
            idx.iter().map(|&i| self.names[i].clone()).collect(),
            values,
            self.labels.clone(),
        )
    }

    /// Chronological split by counts: the last `test` rows for testing, the `validation` rows
    /// before them for validation, the rest for training (at least one row).
    pub fn split_counts(&self, validation: usize, test: usize) -> Result<Split> {
        let n = self.len();
        if validation + test >= n {
            return Err(Error::config(
                "split",
                format!(
                    "{validation} validation and {test} test rows leave no training rows of {n}"
                ),
            ));
        }
        let train_end = n - validation - test;
        Ok(Split {
            train: 0..train_end,
            validation: train_end..train_end + validation,
            test: train_end + validation..n,
        })
    }

    /// Chronological split by fractions of the rows (rounded to the nearest row).
    pub fn split_fractions(&self, validation: f64, test: f64) -> Result<Split> {
        for (what, f) in [("validation", validation), ("test", test)] {
            if !(f.is_finite() && (0.0..1.0).contains(&f)) {
                return Err(Error::config(
                    format!("split {what} fraction"),
                    format!("must lie in [0, 1), got {f}"),
                ));
            }
        }
        let n = self.len() as f64;
        self.split_counts(
            (n * validation).round() as usize,
            (n * test).round() as usize,
        )
    }
}

/// Parses a CSV field: empty, `NA`, `NaN`, `null` and anything unparsable are gaps.
fn parse_value(field: &str) -> Option<f64> {
    match field {
        "" | "NA" | "N/A" | "NaN" | "nan" | "null" | "NULL" | "None" => None,
        f => f.parse::<f64>().ok().filter(|v| v.is_finite()),
    }
}

/// Fills gaps by `policy`; returns the columns and which rows were kept.
fn fill_gaps(
    columns: Vec<Vec<Option<f64>>>,
    names: &[String],
    lines: &[u64],
    policy: FillPolicy,
) -> Result<(Vec<Vec<f64>>, Vec<bool>)> {
    let rows = lines.len();
    let gap_error = |c: usize, r: usize, why: &str| Error::Csv {
        file: None,
        line: lines[r],
        column: names[c].clone(),
        message: why.to_string(),
    };
    match policy {
        FillPolicy::Error => Ok((
            columns
                .into_iter()
                .map(|col| col.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
                .collect(),
            vec![true; rows],
        )),
        FillPolicy::Drop => {
            let keep: Vec<bool> = (0..rows)
                .map(|r| columns.iter().all(|c| c[r].is_some()))
                .collect();
            let cols = columns
                .into_iter()
                .map(|col| {
                    col.into_iter()
                        .zip(&keep)
                        .filter_map(|(v, &k)| if k { v } else { None })
                        .collect()
                })
                .collect();
            Ok((cols, keep))
        }
        FillPolicy::ForwardFill => {
            let mut out = Vec::with_capacity(columns.len());
            for (c, col) in columns.into_iter().enumerate() {
                let mut last = None;
                let mut filled = Vec::with_capacity(rows);
                for (r, v) in col.into_iter().enumerate() {
                    let v = v.or(last).ok_or_else(|| {
                        gap_error(
                            c,
                            r,
                            "missing value with nothing before it to carry forward",
                        )
                    })?;
                    last = Some(v);
                    filled.push(v);
                }
                out.push(filled);
            }
            Ok((out, vec![true; rows]))
        }
        FillPolicy::Linear => {
            let mut out = Vec::with_capacity(columns.len());
            for (c, col) in columns.into_iter().enumerate() {
                let known: Vec<usize> = (0..rows).filter(|&r| col[r].is_some()).collect();
                let mut filled = Vec::with_capacity(rows);
                for r in 0..rows {
                    if let Some(v) = col[r] {
                        filled.push(v);
                        continue;
                    }
                    let before = known.iter().rev().find(|&&k| k < r);
                    let after = known.iter().find(|&&k| k > r);
                    match (before, after) {
                        (Some(&a), Some(&b)) => {
                            let (va, vb) = (col[a].unwrap_or(0.0), col[b].unwrap_or(0.0));
                            let w = (r - a) as f64 / (b - a) as f64;
                            filled.push(va + w * (vb - va));
                        }
                        _ => {
                            return Err(gap_error(
                                c,
                                r,
                                "missing value at the edge of the column cannot be interpolated",
                            ));
                        }
                    }
                }
                out.push(filled);
            }
            Ok((out, vec![true; rows]))
        }
    }
}
