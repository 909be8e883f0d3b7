//! Shared helpers for the integration tests: the PyTorch reference cases of `tests/reference/`
//! read into `ndarray` arrays of any [`Float`], and the normwise relative error the cases are
//! judged by (`max_j |got_j − ref_j| / max_j |ref_j|`, see `tests/reference/README.md`).
//!
//! Every test binary that says `mod common;` compiles this file, and not all of them use every
//! helper.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use ndarray::{Array1, Array2, Array3, ArrayD, ArrayView, Dimension, Ix1, Ix2, Ix3, IxDyn};
use recurrent::Float;
use serde_json::Value;

/// Normwise relative error allowed when computing in f64.
pub const F64_TOLERANCE: f64 = 1e-9;
/// Normwise relative error allowed when computing in f32.
pub const F32_TOLERANCE: f64 = 1e-4;

/// The tolerance for computations in `F` ([`F64_TOLERANCE`] or [`F32_TOLERANCE`]).
pub fn tolerance<F: Float>() -> f64 {
    match F::NAME {
        "f64" => F64_TOLERANCE,
        "f32" => F32_TOLERANCE,
        other => panic!("no reference tolerance for element type {other}"),
    }
}

/// `x` as f64, exactly ([`Float::to_f64`], not `num_traits`' fallible namesake).
pub fn as_f64<F: Float>(x: F) -> f64 {
    <F as Float>::to_f64(x)
}

/// `tests/reference/`, found from the crate root so the tests run from any directory.
pub fn reference_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("reference")
}

/// One reference case: a parsed `tests/reference/<name>.json`.
#[derive(Debug, Clone)]
pub struct Case {
    /// The case's name, which is also its file name without `.json`.
    pub name: String,
    /// The whole document.
    pub json: Value,
}

impl Case {
    /// Reads and parses `tests/reference/<name>.json`, and checks that its `name` field agrees.
    pub fn load(name: &str) -> Case {
        let path = reference_dir().join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read reference case {}: {e}", path.display()));
        let json: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("reference case {} is not JSON: {e}", path.display()));
        let case = Case {
            name: name.to_string(),
            json,
        };
        let stored = case.str("name");
        assert_eq!(
            stored,
            name,
            "{}: its `name` field says {stored:?}",
            path.display()
        );
        case
    }

    /// The value at a dotted `path`: object keys and list indices, e.g. `"params.weight_ih"`
    /// or `"params.0.bias_hh"` (model cases).
    pub fn get(&self, path: &str) -> &Value {
        self.try_get(path)
            .unwrap_or_else(|| panic!("{}: no field `{path}`", self.name))
    }

    /// The value at a dotted `path`, if there is one.
    pub fn try_get(&self, path: &str) -> Option<&Value> {
        path.split('.').try_fold(&self.json, |v, key| match v {
            Value::Object(map) => map.get(key),
            Value::Array(list) => key.parse::<usize>().ok().and_then(|i| list.get(i)),
            _ => None,
        })
    }

    /// Whether the case has a field at `path`.
    pub fn has(&self, path: &str) -> bool {
        self.try_get(path).is_some()
    }

    /// A string field.
    pub fn str(&self, path: &str) -> &str {
        self.get(path)
            .as_str()
            .unwrap_or_else(|| panic!("{}: `{path}` is not a string", self.name))
    }

    /// A size field (a JSON integer).
    pub fn usize(&self, path: &str) -> usize {
        let v = self.get(path);
        v.as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or_else(|| panic!("{}: `{path}` is not a size: {v}", self.name))
    }

    /// A float field, exactly as stored.
    pub fn f64(&self, path: &str) -> f64 {
        scalar_from_json(self.get(path), &self.what(path))
    }

    /// The keys of the object at `path` (e.g. every gradient name under `"grads"`).
    pub fn keys(&self, path: &str) -> Vec<String> {
        self.get(path)
            .as_object()
            .unwrap_or_else(|| panic!("{}: `{path}` is not an object", self.name))
            .keys()
            .cloned()
            .collect()
    }

    /// The nested list at `path` as an array of any rank, converted to `F`.
    pub fn array<F: Float>(&self, path: &str) -> ArrayD<F> {
        array_from_json(self.get(path), &self.what(path))
    }

    /// The 1-D array at `path`.
    pub fn array1<F: Float>(&self, path: &str) -> Array1<F> {
        array1_from_json(self.get(path), &self.what(path))
    }

    /// The 2-D array at `path`.
    pub fn array2<F: Float>(&self, path: &str) -> Array2<F> {
        array2_from_json(self.get(path), &self.what(path))
    }

    /// The 3-D array at `path`.
    pub fn array3<F: Float>(&self, path: &str) -> Array3<F> {
        array3_from_json(self.get(path), &self.what(path))
    }

    fn what(&self, path: &str) -> String {
        format!("{} `{path}`", self.name)
    }
}

/// A JSON number as f64 (exact for the shortest round-trip floats the cases are written in).
pub fn scalar_from_json(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what}: expected a number, found {v}"))
}

/// A rectangular nested JSON list as an array of any rank, each element converted to `F` by
/// [`Float::from_f64`] (exact for f64, rounding to nearest for f32). A bare number is rank 0.
pub fn array_from_json<F: Float>(v: &Value, what: &str) -> ArrayD<F> {
    // The shape, read down the first element of every level.
    let mut shape = Vec::new();
    let mut level = v;
    while let Value::Array(list) = level {
        shape.push(list.len());
        match list.first() {
            Some(first) => level = first,
            None => break,
        }
    }
    let mut data = Vec::with_capacity(shape.iter().product());
    flatten(v, &shape, 0, what, &mut data);
    ArrayD::from_shape_vec(IxDyn(&shape), data)
        .unwrap_or_else(|e| panic!("{what}: shape {shape:?}: {e}"))
}

fn flatten<F: Float>(v: &Value, shape: &[usize], depth: usize, what: &str, out: &mut Vec<F>) {
    if depth == shape.len() {
        out.push(F::from_f64(scalar_from_json(v, what)));
        return;
    }
    match v {
        Value::Array(list) if list.len() == shape[depth] => {
            for item in list {
                flatten(item, shape, depth + 1, what, out);
            }
        }
        _ => panic!(
            "{what}: not a rectangular array of shape {shape:?} (at depth {depth}: {})",
            short(v)
        ),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}…", &s[..60])
    } else {
        s
    }
}

fn ranked<F: Float, D: Dimension>(a: ArrayD<F>, what: &str) -> ndarray::Array<F, D> {
    let shape = a.shape().to_vec();
    a.into_dimensionality::<D>().unwrap_or_else(|_| {
        panic!(
            "{what}: expected a {}-D array, found shape {shape:?}",
            D::NDIM.unwrap_or(0)
        )
    })
}

/// A 1-D JSON list as `Array1<F>`.
pub fn array1_from_json<F: Float>(v: &Value, what: &str) -> Array1<F> {
    ranked::<F, Ix1>(array_from_json(v, what), what)
}

/// A 2-D JSON list as `Array2<F>`.
pub fn array2_from_json<F: Float>(v: &Value, what: &str) -> Array2<F> {
    ranked::<F, Ix2>(array_from_json(v, what), what)
}

/// A 3-D JSON list as `Array3<F>`.
pub fn array3_from_json<F: Float>(v: &Value, what: &str) -> Array3<F> {
    ranked::<F, Ix3>(array_from_json(v, what), what)
}

/// How far `got` is from `reference`, normwise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Discrepancy {
    /// `max_j |got_j − ref_j| / max_j |ref_j|` (the absolute error when the reference is all
    /// zeros; NaN when `got` has a NaN or an infinity).
    pub relative: f64,
    /// The flat (row-major) index of the largest `|got_j − ref_j|`.
    pub index: usize,
    /// `got` at that index.
    pub got: f64,
    /// `reference` at that index.
    pub reference: f64,
    /// `max_j |ref_j|`.
    pub scale: f64,
}

/// The normwise relative error of `got` against `reference`; both must have the same shape.
pub fn relative_error<F: Float, D: Dimension>(
    got: ArrayView<'_, F, D>,
    reference: ArrayView<'_, f64, D>,
) -> Discrepancy {
    assert_eq!(got.shape(), reference.shape(), "shapes differ");
    let scale = reference.iter().fold(0.0f64, |m, r| m.max(r.abs()));
    let mut worst = Discrepancy {
        relative: 0.0,
        index: 0,
        got: 0.0,
        reference: 0.0,
        scale,
    };
    let mut worst_diff = -1.0;
    for (j, (g, &r)) in got.iter().zip(reference.iter()).enumerate() {
        let g = as_f64(*g);
        let diff = (g - r).abs();
        if !diff.is_finite() {
            return Discrepancy {
                relative: f64::NAN,
                index: j,
                got: g,
                reference: r,
                scale,
            };
        }
        if diff > worst_diff {
            worst_diff = diff;
            worst.index = j;
            worst.got = g;
            worst.reference = r;
        }
    }
    worst.relative = if scale > 0.0 {
        worst_diff.max(0.0) / scale
    } else {
        worst_diff.max(0.0)
    };
    worst
}

/// The row-major multi-index of flat index `flat` in `shape` (for messages).
pub fn unravel(flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    let mut rest = flat;
    for (slot, &n) in index.iter_mut().zip(shape).rev() {
        if n > 0 {
            *slot = rest % n;
            rest /= n;
        }
    }
    index
}

/// Checks many arrays of one case (or many cases) against their references at one tolerance,
/// keeping the worst error seen. Every failed check panics with the case, the array, the error,
/// the tolerance and the worst entry.
#[derive(Debug, Clone)]
pub struct ErrorLog {
    /// `"f32"` or `"f64"`.
    pub precision: &'static str,
    /// The largest normwise relative error allowed.
    pub tolerance: f64,
    /// The worst error seen so far.
    pub worst: f64,
    /// Which array it was (`"lstm_basic grads.weight_hh"`).
    pub worst_at: String,
    /// Every `(case, array)` checked so far, as `"case array"`.
    pub checked: BTreeSet<String>,
}

impl ErrorLog {
    /// A log for computations in `F`, at [`tolerance::<F>()`](tolerance).
    pub fn new<F: Float>() -> Self {
        ErrorLog {
            precision: F::NAME,
            tolerance: tolerance::<F>(),
            worst: 0.0,
            worst_at: String::from("(nothing checked)"),
            checked: BTreeSet::new(),
        }
    }

    /// Asserts the normwise relative error of `got` against `reference` is within tolerance.
    pub fn check<F: Float, D: Dimension>(
        &mut self,
        case: &str,
        array: &str,
        got: ArrayView<'_, F, D>,
        reference: ArrayView<'_, f64, D>,
    ) -> f64 {
        assert_eq!(
            got.shape(),
            reference.shape(),
            "{case} {array} ({}): shape {:?}, reference shape {:?}",
            self.precision,
            got.shape(),
            reference.shape()
        );
        let shape = reference.shape().to_vec();
        let d = relative_error(got, reference);
        self.record(case, array, d.relative);
        assert!(
            d.relative <= self.tolerance,
            "{case} {array} ({}): normwise relative error {:e} exceeds {:e}; worst entry {:?} \
             got {:e}, reference {:e}, max |reference| {:e}",
            self.precision,
            d.relative,
            self.tolerance,
            unravel(d.index, &shape),
            d.got,
            d.reference,
            d.scale
        );
        d.relative
    }

    /// Asserts the relative error `|got − ref| / |ref|` of a scalar is within tolerance.
    pub fn check_scalar(&mut self, case: &str, what: &str, got: f64, reference: f64) -> f64 {
        let d = relative_error(ndarray::arr0(got).view(), ndarray::arr0(reference).view());
        self.record(case, what, d.relative);
        assert!(
            d.relative <= self.tolerance,
            "{case} {what} ({}): relative error {:e} exceeds {:e}: got {got:e}, reference {reference:e}",
            self.precision,
            d.relative,
            self.tolerance
        );
        d.relative
    }

    /// Asserts `array` of `case` was checked (to make sure no reference array was skipped).
    pub fn assert_checked(&self, case: &str, array: &str) {
        assert!(
            self.checked.contains(&format!("{case} {array}")),
            "{case} {array} ({}): the reference has it but the test never checked it",
            self.precision
        );
    }

    /// Folds another log (same precision) into this one.
    pub fn merge(&mut self, other: ErrorLog) {
        assert_eq!(
            self.precision, other.precision,
            "merging logs of two precisions"
        );
        if other.worst > self.worst || self.checked.is_empty() {
            self.worst = other.worst;
            self.worst_at = other.worst_at;
        }
        self.checked.extend(other.checked);
    }

    /// One line: the precision, the number of arrays checked and the worst error.
    pub fn summary(&self) -> String {
        format!(
            "{}: {} arrays checked, worst normwise relative error {:.3e} ({}), tolerance {:e}",
            self.precision,
            self.checked.len(),
            self.worst,
            self.worst_at,
            self.tolerance
        )
    }

    fn record(&mut self, case: &str, array: &str, relative: f64) {
        let key = format!("{case} {array}");
        if relative > self.worst || relative.is_nan() || self.checked.is_empty() {
            self.worst = relative;
            self.worst_at = key.clone();
        }
        self.checked.insert(key);
    }
}

/// `Σ_j a_j b_j` over two arrays of the same shape, in f64 with Neumaier's compensated
/// summation, so a loss built from many terms carries almost no rounding of its own.
pub fn dot<F: Float, D: Dimension>(a: ArrayView<'_, F, D>, b: ArrayView<'_, F, D>) -> f64 {
    assert_eq!(a.shape(), b.shape(), "dot of arrays of different shapes");
    let mut sum = 0.0f64;
    let mut compensation = 0.0f64;
    for (x, y) in a.iter().zip(b.iter()) {
        let term = as_f64(*x) * as_f64(*y);
        let t = sum + term;
        if sum.abs() >= term.abs() {
            compensation += (sum - t) + term;
        } else {
            compensation += (term - t) + sum;
        }
        sum = t;
    }
    sum + compensation
}
