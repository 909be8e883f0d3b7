//! Saving and loading: whole models, forecasters with their pipeline, and training checkpoints,
//! in JSON or a compact binary form, written atomically.
//!
//! # Files
//!
//! Every file starts with a magic number and a format version, so a file of another kind, or
//! one written by a newer version of this crate, is recognised before anything else is read:
//!
//! * [`Format::Json`]: a JSON object whose first two members are `"magic": "recurrent"` and
//!   `"format_version": 1`, then `"kind"` (`"model"`, `"forecaster"`, `"checkpoint"`),
//!   `"element"` (`"f32"`, `"f64"`) and `"body"`. Floats are written so that they read back
//!   bit for bit (serde_json's `float_roundtrip`); values that may be non-finite (a loss in a
//!   history) are written as the strings `"nan"`, `"inf"` or `"-inf"`.
//! * [`Format::Binary`]: the 8 bytes `RECURRNT`, the format version as a little-endian `u32`,
//!   then the same document in CBOR (RFC 8949, via `ciborium`).
//!
//! Loading accepts either format (it looks at the first bytes). A truncated or corrupted file,
//! a file of another kind, or one from a newer format version is a typed [`Error`], never a
//! panic, and a file that declares absurd sizes (a hidden size of 10¹²) is rejected before
//! anything is allocated: the architecture's parameter count is worked out from its
//! description, with checked arithmetic, and must equal the number of weights the file holds.
//!
//! # Atomic saves
//!
//! [`atomic_write`] writes to a temporary file in the destination's folder, flushes and syncs
//! it, renames it over the destination and syncs the folder: a crash or a failing writer
//! leaves the previous file intact (and no temporary file behind).
//!
//! ```
//! use recurrent::persist::Format;
//! use recurrent::{Layer, Sequential};
//!
//! let model = Sequential::<f32>::builder(1).lstm(8).dense(1).build(7)?;
//! let path = std::env::temp_dir().join(format!("recurrent-doc-{}.json", std::process::id()));
//! model.save(&path, Format::Json)?;
//! let loaded = Sequential::<f32>::load(&path)?;
//! let x = ndarray::Array3::<f32>::ones((2, 5, 1));
//! assert_eq!(model.predict(x.view())?, loaded.predict(x.view())?); // bit-identical
//! # std::fs::remove_file(&path).ok();
//! # Ok::<(), recurrent::Error>(())
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rand_chacha::ChaCha8Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::data::{Pipeline, WindowSpec};
use crate::forecast::Forecaster;
use crate::model::{LayerSpec, Merge, RecurrentKind, Sequential, SequentialBuilder};
use crate::{Error, Float, Layer, Result};

/// The newest file format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The first 8 bytes of a binary file.
pub const BINARY_MAGIC: [u8; 8] = *b"RECURRNT";

/// The `"magic"` member of a JSON file.
pub const JSON_MAGIC: &str = "recurrent";

/// The largest size (hidden units, features, steps, repeats) a loaded file may declare.
pub const MAX_DIMENSION: usize = 1 << 24;

/// The most time steps a loaded layer may add (a repeat count, a decoder horizon): a small
/// file must not be able to make one prediction allocate gigabytes.
pub const MAX_STEPS: usize = 1 << 16;

/// The most weights a loaded model may declare (2³⁰, 4 GiB of f32).
pub const MAX_PARAMETERS: u128 = 1 << 30;

/// How a file is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Human-readable JSON (floats exact).
    Json,
    /// Compact CBOR behind an 8-byte magic number and a version.
    Binary,
}

/// What a file holds; a file of one kind is refused where another is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    Model,
    Forecaster,
    Checkpoint,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Model => "model",
            Kind::Forecaster => "forecaster",
            Kind::Checkpoint => "checkpoint",
        }
    }
}

/// The document inside both formats.
#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    magic: String,
    format_version: u32,
    kind: Kind,
    element: String,
    body: T,
}

/// The first members of a JSON document, read before the body.
#[derive(Deserialize)]
struct JsonHeader {
    magic: Option<String>,
    format_version: Option<u32>,
    kind: Option<String>,
}

/// Encodes `body` as a file of `kind`.
pub(crate) fn encode<T: Serialize>(
    kind: Kind,
    element: &str,
    body: &T,
    format: Format,
    out: &mut dyn Write,
) -> Result<()> {
    let envelope = Envelope {
        magic: JSON_MAGIC.to_string(),
        format_version: FORMAT_VERSION,
        kind,
        element: element.to_string(),
        body,
    };
    let write_error = |e: String| Error::Io(format!("writing a {} file: {e}", kind.name()));
    match format {
        Format::Json => {
            serde_json::to_writer(&mut *out, &envelope).map_err(|e| write_error(e.to_string()))?
        }
        Format::Binary => {
            out.write_all(&BINARY_MAGIC)?;
            out.write_all(&FORMAT_VERSION.to_le_bytes())?;
            ciborium::into_writer(&envelope, &mut *out).map_err(|e| write_error(e.to_string()))?;
        }
    }
    Ok(())
}

/// Decodes a file of `kind` from `bytes` (either format): its body and element type.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], kind: Kind) -> Result<(T, String)> {
    let what = kind.name();
    let unrecognized = |reason: String| Error::UnrecognizedFile {
        expected: what.to_string(),
        reason,
    };
    let corrupt = |reason: String| Error::CorruptFile {
        what: format!("{what} file"),
        reason,
    };
    let newer = |found: u32| Error::NewerFormat {
        what: format!("this {what} file"),
        found,
        supported: FORMAT_VERSION,
    };
    let envelope: Envelope<T> = if bytes.starts_with(&BINARY_MAGIC) {
        let Some(version) = bytes.get(8..12) else {
            return Err(corrupt(format!(
                "{} bytes end inside the 12-byte header",
                bytes.len()
            )));
        };
        let version = u32::from_le_bytes([version[0], version[1], version[2], version[3]]);
        if version > FORMAT_VERSION {
            return Err(newer(version));
        }
        if version == 0 {
            return Err(corrupt("format version 0 does not exist".into()));
        }
        // The header first (the body skipped), so another kind is reported as such.
        let header: Envelope<serde::de::IgnoredAny> =
            ciborium::from_reader(&bytes[12..]).map_err(|e| corrupt(e.to_string()))?;
        if header.kind != kind {
            return Err(unrecognized(format!("it holds a {}", header.kind.name())));
        }
        ciborium::from_reader(&bytes[12..]).map_err(|e| corrupt(e.to_string()))?
    } else if bytes.trim_ascii_start().starts_with(b"{") {
        // The header first, so a newer version or another kind is reported as such rather
        // than as whatever its body fails on.
        let header: JsonHeader = serde_json::from_slice(bytes).map_err(|e| {
            if e.is_eof() {
                corrupt(format!("truncated JSON: {e}"))
            } else {
                corrupt(format!("invalid JSON: {e}"))
            }
        })?;
        if header.magic.as_deref() != Some(JSON_MAGIC) {
            return Err(unrecognized(format!(
                "the JSON has magic {:?}, not {JSON_MAGIC:?}",
                header.magic
            )));
        }
        match header.format_version {
            Some(v) if v > FORMAT_VERSION => return Err(newer(v)),
            Some(0) | None => return Err(corrupt("no valid format_version".into())),
            Some(_) => {}
        }
        if header.kind.as_deref() != Some(what) {
            return Err(unrecognized(format!(
                "it holds a {}",
                header.kind.as_deref().unwrap_or("file of no kind")
            )));
        }
        serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?
    } else {
        let shown: Vec<u8> = bytes.iter().copied().take(8).collect();
        return Err(unrecognized(format!(
            "it starts with the bytes {shown:02x?}, neither {:?} nor a JSON object",
            String::from_utf8_lossy(&BINARY_MAGIC)
        )));
    };
    if envelope.magic != JSON_MAGIC {
        return Err(unrecognized(format!("magic {:?}", envelope.magic)));
    }
    if envelope.format_version > FORMAT_VERSION {
        return Err(newer(envelope.format_version));
    }
    if envelope.format_version == 0 {
        return Err(corrupt("format version 0 does not exist".into()));
    }
    if envelope.kind != kind {
        return Err(unrecognized(format!("it holds a {}", envelope.kind.name())));
    }
    Ok((envelope.body, envelope.element))
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}

/// Writes the file at `path` atomically: `write` fills a temporary file in the same folder,
/// which is flushed, synced and renamed over `path`; then (on Unix) the folder is synced so the
/// rename itself is durable. When `write`, the flush, the file's sync or the rename fails, the
/// temporary file is removed and `path` keeps its previous contents. If only the final folder
/// sync fails, the new contents are in place but the error says the rename may not survive a
/// power loss.
pub fn atomic_write(
    path: impl AsRef<Path>,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let path = path.as_ref();
    let name = path
        .file_name()
        .ok_or_else(|| Error::Io(format!("{}: not a file path", path.display())))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let io = |what: &str, e: std::io::Error| Error::Io(format!("{what} {}: {e}", tmp.display()));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| io("creating", e))?;
    let written = (|| -> Result<()> {
        let mut out = BufWriter::new(file);
        write(&mut out)?;
        out.flush().map_err(|e| io("flushing", e))?;
        let file = out
            .into_inner()
            .map_err(|e| io("flushing", e.into_error()))?;
        file.sync_all().map_err(|e| io("syncing", e))?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::Io(format!(
            "renaming {} to {}: {e}",
            tmp.display(),
            path.display()
        )));
    }
    // The rename is durable only once the folder's entry is on disk (folders cannot be opened
    // as files on every platform; on Unix they can and must be synced).
    #[cfg(unix)]
    File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| {
        Error::Io(format!(
            "{} was written, but syncing its folder {} failed: {e}",
            path.display(),
            dir.display()
        ))
    })?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Weights

/// One parameter as stored: name, shape, values (f64, which holds every f32 exactly).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SavedParam {
    name: String,
    shape: Vec<usize>,
    values: Vec<f64>,
}

/// Every parameter of `model`, in visiting order; an error if a weight is not finite.
pub(crate) fn save_params<F: Float>(model: &dyn Layer<F>) -> Result<Vec<SavedParam>> {
    let mut params = Vec::new();
    let mut bad = None;
    model.visit_params(&mut |p| {
        if bad.is_none()
            && let Some(i) = p.value.iter().position(|v| !v.is_finite())
        {
            bad = Some((params.len(), p.name.to_string(), i));
        }
        params.push(SavedParam {
            name: p.name.to_string(),
            shape: p.shape.to_vec(),
            values: p.value.iter().map(|&v| Float::to_f64(v)).collect(),
        });
    });
    if let Some((index, name, at)) = bad {
        return Err(Error::NonFinite {
            what: format!("weights to save (parameter {index}, {name})"),
            index: vec![at],
        });
    }
    Ok(params)
}

/// Values taken by [`crate::train::snapshot`] of `model`, named and shaped as `model`'s.
pub(crate) fn saved_from_values<F: Float>(
    model: &dyn Layer<F>,
    values: &[Vec<F>],
) -> Vec<SavedParam> {
    let mut params = Vec::new();
    model.visit_params(&mut |p| {
        let index = params.len();
        params.push(SavedParam {
            name: p.name.to_string(),
            shape: p.shape.to_vec(),
            values: values
                .get(index)
                .map(|v| v.iter().map(|&x| Float::to_f64(x)).collect())
                .unwrap_or_default(),
        });
    });
    params
}

/// The values of `params` as a [`crate::train::snapshot`] of `model`, after the checks of
/// [`load_params`].
pub(crate) fn values_from_saved<F: Float>(
    model: &dyn Layer<F>,
    params: &[SavedParam],
    what: &str,
) -> Result<Vec<Vec<F>>> {
    check_params(model, params, what)?;
    Ok(params
        .iter()
        .map(|p| p.values.iter().map(|&v| F::from_f64(v)).collect())
        .collect())
}

/// Writes `params` into `model`, checking count, names, shapes and finiteness first (the model
/// is untouched on error).
pub(crate) fn load_params<F: Float>(
    model: &mut dyn Layer<F>,
    params: &[SavedParam],
    what: &str,
) -> Result<()> {
    check_params(model, params, what)?;
    let mut it = params.iter();
    model.visit_params_mut(&mut |p| {
        if let Some(saved) = it.next() {
            for (v, &s) in p.value.iter_mut().zip(&saved.values) {
                *v = F::from_f64(s);
            }
        }
    });
    Ok(())
}

/// Checks `params` fit `model`: count, names, shapes, value counts, finiteness.
fn check_params<F: Float>(model: &dyn Layer<F>, params: &[SavedParam], what: &str) -> Result<()> {
    let corrupt = |reason: String| Error::CorruptFile {
        what: what.to_string(),
        reason,
    };
    let mut expected = Vec::new();
    model.visit_params(&mut |p| expected.push((p.name.to_string(), p.shape.to_vec())));
    if expected.len() != params.len() {
        return Err(corrupt(format!(
            "the architecture has {} parameter arrays, the file holds {}",
            expected.len(),
            params.len()
        )));
    }
    for (i, ((name, shape), saved)) in expected.iter().zip(params).enumerate() {
        if *name != saved.name || *shape != saved.shape {
            return Err(corrupt(format!(
                "parameter {i} should be {name} {shape:?}, the file has {} {:?}",
                saved.name, saved.shape
            )));
        }
        if saved.values.len() != shape.iter().product::<usize>() {
            return Err(corrupt(format!(
                "parameter {i} ({name} {shape:?}) holds {} values",
                saved.values.len()
            )));
        }
        // Finite in the model's element type too (1e300 is no f32).
        if let Some(at) = saved
            .values
            .iter()
            .position(|&v| !F::from_f64(v).is_finite())
        {
            return Err(corrupt(format!(
                "parameter {i} ({name}) has a non-finite value at {at}"
            )));
        }
    }
    Ok(())
}

/// The generators of every dropout layer, in visiting order.
pub(crate) fn save_rngs<F: Float>(model: &dyn Layer<F>) -> Vec<ChaCha8Rng> {
    let mut rngs = Vec::new();
    model.visit_rngs(&mut |r| rngs.push(r.clone()));
    rngs
}

/// Restores generators taken by [`save_rngs`]; an error when the count differs.
pub(crate) fn load_rngs<F: Float>(
    model: &mut dyn Layer<F>,
    rngs: &[ChaCha8Rng],
    what: &str,
) -> Result<()> {
    let mut count = 0;
    model.visit_rngs(&mut |_| count += 1);
    if count != rngs.len() {
        return Err(Error::CorruptFile {
            what: what.to_string(),
            reason: format!(
                "the model has {count} random generators (dropout), the file holds {}",
                rngs.len()
            ),
        });
    }
    let mut it = rngs.iter();
    model.visit_rngs_mut(&mut |r| {
        if let Some(saved) = it.next() {
            *r = saved.clone();
        }
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Models

/// A whole model as stored: the architecture, its weights and its dropout generators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ModelBody {
    input_size: usize,
    layers: Vec<LayerSpec>,
    params: Vec<SavedParam>,
    #[serde(default)]
    rngs: Vec<ChaCha8Rng>,
}

impl ModelBody {
    fn of<F: Float>(model: &Sequential<F>) -> Result<Self> {
        if let Some(name) = custom_layer(model.specs()) {
            return Err(Error::Unsupported(format!(
                "saving a model with the user-defined layer {name:?}: only built-in layers have a \
                 description to load them from"
            )));
        }
        Ok(ModelBody {
            input_size: model.input_size(),
            layers: model.specs().to_vec(),
            params: save_params(model)?,
            rngs: save_rngs(model),
        })
    }

    fn build<F: Float>(&self, what: &str) -> Result<Sequential<F>> {
        let corrupt = |reason: String| Error::CorruptFile {
            what: what.to_string(),
            reason,
        };
        // Work out the parameter count from the description before building anything, so a
        // file that declares absurd sizes allocates nothing.
        let (declared, _) = plan(self.input_size, &self.layers).map_err(corrupt)?;
        let stored: u128 = self.params.iter().map(|p| p.values.len() as u128).sum();
        if declared != stored {
            return Err(corrupt(format!(
                "the architecture declares {declared} weights, the file holds {stored}"
            )));
        }
        let mut model = SequentialBuilder::<F>::from_specs(self.input_size, &self.layers)?
            .build(0)
            .map_err(|e| corrupt(format!("the architecture does not build: {e}")))?;
        load_params(&mut model, &self.params, what)?;
        load_rngs(&mut model, &self.rngs, what)?;
        Ok(model)
    }
}

fn custom_layer(specs: &[LayerSpec]) -> Option<String> {
    specs.iter().find_map(|s| match s {
        LayerSpec::Custom { name } => Some(name.clone()),
        LayerSpec::Parallel { branches } => branches.iter().find_map(|b| custom_layer(b)),
        _ => None,
    })
}

fn gates(kind: RecurrentKind) -> u128 {
    match kind {
        RecurrentKind::RnnTanh | RecurrentKind::RnnRelu => 1,
        RecurrentKind::Lstm => 4,
        RecurrentKind::Gru | RecurrentKind::GruResetBefore => 3,
    }
}

/// The parameter count and output features of `specs` reading `input` features, in checked
/// arithmetic with every size bounded, without building anything.
fn plan(input: usize, specs: &[LayerSpec]) -> std::result::Result<(u128, usize), String> {
    let dim = |what: &str, n: usize| {
        if n == 0 || n > MAX_DIMENSION {
            Err(format!("{what} {n} is outside 1..={MAX_DIMENSION}"))
        } else {
            Ok(n)
        }
    };
    let steps = |what: &str, n: usize| {
        if n == 0 || n > MAX_STEPS {
            Err(format!("{what} {n} is outside 1..={MAX_STEPS}"))
        } else {
            Ok(n)
        }
    };
    let recurrent = |kind: RecurrentKind, i: usize, h: usize| {
        let (i, h, g) = (i as u128, h as u128, gates(kind));
        g * h * (i + h) + 2 * g * h
    };
    let mut features = dim("input size", input)?;
    let mut total: u128 = 0;
    for spec in specs {
        let (params, out) = match spec {
            LayerSpec::Recurrent {
                kind, hidden_size, ..
            } => {
                let h = dim("hidden size", *hidden_size)?;
                (recurrent(*kind, features, h), h)
            }
            LayerSpec::Bidirectional {
                kind,
                hidden_size,
                merge,
                ..
            } => {
                let h = dim("hidden size", *hidden_size)?;
                let out = if *merge == Merge::Concat { 2 * h } else { h };
                (2 * recurrent(*kind, features, h), out)
            }
            LayerSpec::EncoderDecoder {
                kind,
                hidden_size,
                horizon,
            } => {
                let h = dim("hidden size", *hidden_size)?;
                steps("horizon", *horizon)?;
                (recurrent(*kind, features, h) + recurrent(*kind, h, h), h)
            }
            LayerSpec::Dense { units, .. } => {
                let u = dim("dense units", *units)?;
                (u as u128 * (features as u128 + 1), u)
            }
            LayerSpec::Dropout { .. } => (0, features),
            LayerSpec::Repeat { times } => {
                steps("repeat count", *times)?;
                (0, features)
            }
            LayerSpec::Flatten { steps } => {
                let t = dim("flatten steps", *steps)?;
                (0, dim("flattened features", t.saturating_mul(features))?)
            }
            LayerSpec::Unflatten { horizon } => {
                let h = steps("unflatten horizon", *horizon)?;
                if !features.is_multiple_of(h) {
                    return Err(format!("{features} features do not split into {h} steps"));
                }
                (0, features / h)
            }
            LayerSpec::Parallel { branches } => {
                if branches.is_empty() {
                    return Err("a parallel layer has no branches".into());
                }
                let mut params = 0u128;
                let mut out = 0usize;
                for branch in branches {
                    let (p, o) = plan(features, branch)?;
                    params += p;
                    out = out.saturating_add(o);
                }
                (params, dim("parallel output features", out)?)
            }
            LayerSpec::Custom { name } => {
                return Err(format!("the user-defined layer {name:?} cannot be loaded"));
            }
        };
        total += params;
        if total > MAX_PARAMETERS {
            return Err(format!(
                "the architecture declares more than {MAX_PARAMETERS} weights"
            ));
        }
        features = out;
    }
    Ok((total, features))
}

impl<F: Float> Sequential<F> {
    /// Writes the model (architecture, weights, dropout generators) to `out` in `format`.
    ///
    /// Errors: [`Error::Unsupported`] when the model holds a user-defined layer (it could not
    /// be loaded back), [`Error::NonFinite`] for a NaN or infinite weight, [`Error::Io`].
    pub fn write_to(&self, out: &mut dyn Write, format: Format) -> Result<()> {
        encode(Kind::Model, F::NAME, &ModelBody::of(self)?, format, out)
    }

    /// The model as the bytes of a file in `format`.
    pub fn to_bytes(&self, format: Format) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.write_to(&mut bytes, format)?;
        Ok(bytes)
    }

    /// Saves the model to `path` atomically (see [`atomic_write`]).
    pub fn save(&self, path: impl AsRef<Path>, format: Format) -> Result<()> {
        let body = ModelBody::of(self)?;
        atomic_write(path, |out| encode(Kind::Model, F::NAME, &body, format, out))
    }

    /// A model from the bytes of a model file (either format). A file saved in f32 loads
    /// exactly into f64 and the other way round rounds each weight to f32.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (body, _element): (ModelBody, String) = decode(bytes, Kind::Model)?;
        body.build("model file")
    }

    /// Loads a model saved by [`save`](Self::save).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_bytes(&read_file(path.as_ref())?)
    }
}

// ---------------------------------------------------------------------------------------------
// Forecasters

/// A trained model with everything needed to forecast in original units: the fitted
/// [`Pipeline`], the [`WindowSpec`] and the column names. Saved and loaded as one file.
#[derive(Debug)]
pub struct ForecastModel<F: Float = f32> {
    /// The model.
    pub model: Sequential<F>,
    /// The transforms fitted on the training rows.
    pub pipeline: Pipeline,
    /// Lookback, horizon, input and target columns.
    pub spec: WindowSpec,
    /// The names of the table's columns, in order.
    pub columns: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct ForecasterBody {
    model: ModelBody,
    pipeline: Pipeline,
    spec: WindowSpec,
    columns: Vec<String>,
}

impl<F: Float> ForecastModel<F> {
    /// Bundles the parts, checking they agree (column count, the model's inputs and outputs
    /// against the window spec).
    pub fn new(
        model: Sequential<F>,
        pipeline: Pipeline,
        spec: WindowSpec,
        columns: Vec<String>,
    ) -> Result<Self> {
        let bundle = ForecastModel {
            model,
            pipeline,
            spec,
            columns,
        };
        bundle.check()?;
        Ok(bundle)
    }

    fn check(&self) -> Result<()> {
        self.pipeline.check()?;
        if self.columns.len() != self.pipeline.columns() {
            return Err(Error::config(
                "forecast model columns",
                format!(
                    "{} names for a pipeline of {} columns",
                    self.columns.len(),
                    self.pipeline.columns()
                ),
            ));
        }
        self.forecaster().map(|_| ())
    }

    /// The [`Forecaster`] over these parts.
    pub fn forecaster(&self) -> Result<Forecaster<'_, F>> {
        Forecaster::new(&self.model, &self.pipeline, &self.spec)
    }

    fn body(&self) -> Result<ForecasterBody> {
        // The fields are public: check again, so no file is written that could not be loaded.
        self.check()?;
        Ok(ForecasterBody {
            model: ModelBody::of(&self.model)?,
            pipeline: self.pipeline.clone(),
            spec: self.spec.clone(),
            columns: self.columns.clone(),
        })
    }

    /// Writes the bundle to `out` in `format`.
    pub fn write_to(&self, out: &mut dyn Write, format: Format) -> Result<()> {
        encode(Kind::Forecaster, F::NAME, &self.body()?, format, out)
    }

    /// The bundle as the bytes of a file in `format`.
    pub fn to_bytes(&self, format: Format) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.write_to(&mut bytes, format)?;
        Ok(bytes)
    }

    /// Saves the bundle to `path` atomically (see [`atomic_write`]).
    pub fn save(&self, path: impl AsRef<Path>, format: Format) -> Result<()> {
        let body = self.body()?;
        atomic_write(path, |out| {
            encode(Kind::Forecaster, F::NAME, &body, format, out)
        })
    }

    /// A bundle from the bytes of a forecaster file (either format).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (body, _element): (ForecasterBody, String) = decode(bytes, Kind::Forecaster)?;
        let what = "forecaster file";
        let bundle = ForecastModel {
            model: body.model.build(what)?,
            pipeline: body.pipeline,
            spec: body.spec,
            columns: body.columns,
        };
        bundle.check().map_err(|e| Error::CorruptFile {
            what: what.into(),
            reason: e.to_string(),
        })?;
        Ok(bundle)
    }

    /// Loads a bundle saved by [`save`](Self::save).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_bytes(&read_file(path.as_ref())?)
    }
}

// ---------------------------------------------------------------------------------------------
// Floats that may be non-finite

/// Serde adapters for floats that may be NaN or infinite (JSON has neither): a finite value is
/// a number, the others the strings `"nan"`, `"inf"`, `"-inf"`.
pub(crate) mod tagged {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Number(f64),
        Special(String),
    }

    fn to_repr(x: f64) -> Repr {
        if x.is_finite() {
            Repr::Number(x)
        } else if x.is_nan() {
            Repr::Special("nan".into())
        } else if x > 0.0 {
            Repr::Special("inf".into())
        } else {
            Repr::Special("-inf".into())
        }
    }

    fn from_repr<E: serde::de::Error>(r: Repr) -> Result<f64, E> {
        match r {
            Repr::Number(x) => Ok(x),
            Repr::Special(s) => match s.as_str() {
                "nan" => Ok(f64::NAN),
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                other => Err(E::custom(format!(
                    "expected a number, \"nan\", \"inf\" or \"-inf\", got {other:?}"
                ))),
            },
        }
    }

    /// One f64.
    pub(crate) mod one {
        use super::*;
        pub(crate) fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
            to_repr(*x).serialize(s)
        }
        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
            from_repr(Repr::deserialize(d)?)
        }
    }

    /// An optional f64.
    pub(crate) mod option {
        use super::*;
        pub(crate) fn serialize<S: Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
            x.map(to_repr).serialize(s)
        }
        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<f64>, D::Error> {
            Option::<Repr>::deserialize(d)?.map(from_repr).transpose()
        }
    }

    /// A list of f64.
    pub(crate) mod list {
        use super::*;
        pub(crate) fn serialize<S: Serializer>(x: &[f64], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(x.iter().map(|&v| to_repr(v)))
        }
        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
            Vec::<Repr>::deserialize(d)?
                .into_iter()
                .map(from_repr)
                .collect()
        }
    }

    /// Named f64 values.
    pub(crate) mod named {
        use super::*;
        pub(crate) fn serialize<S: Serializer>(
            x: &[(String, f64)],
            s: S,
        ) -> Result<S::Ok, S::Error> {
            s.collect_seq(x.iter().map(|(n, v)| (n, to_repr(*v))))
        }
        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Vec<(String, f64)>, D::Error> {
            Vec::<(String, Repr)>::deserialize(d)?
                .into_iter()
                .map(|(n, r)| from_repr(r).map(|v| (n, v)))
                .collect()
        }
    }
}
