//! The crate's one error type.

/// Everything that can go wrong when a user's arrays or settings reach the crate.
///
/// Messages carry the numbers a user needs to find the problem, e.g.
/// `lstm input: expected shape [32, 24, 1], got [32, 24, 3]`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An array did not have the shape the operation needs.
    #[error("{what}: expected shape {expected:?}, got {got:?}")]
    Shape {
        /// Which array (e.g. `"lstm input"`).
        what: String,
        /// The shape that was required.
        expected: Vec<usize>,
        /// The shape that was given.
        got: Vec<usize>,
    },
    /// An array that must hold at least one element along an axis was empty.
    #[error("{what}: {axis} must be at least 1 (shape {shape:?})")]
    Empty {
        /// Which array.
        what: String,
        /// Which axis is empty (`"batch"`, `"steps"`, ...).
        axis: String,
        /// The shape that was given.
        shape: Vec<usize>,
    },
    /// A hyperparameter or size is out of range.
    #[error("invalid {what}: {reason}")]
    InvalidConfig {
        /// Which setting.
        what: String,
        /// Why it is rejected, with the value.
        reason: String,
    },
    /// A value that must be finite was NaN or infinite.
    #[error("non-finite value in {what} at index {index:?}")]
    NonFinite {
        /// Which array or quantity.
        what: String,
        /// Where the first non-finite value sits.
        index: Vec<usize>,
    },
    /// `backward` was called without a preceding training `forward`.
    #[error("{layer}: backward called without a preceding training forward")]
    BackwardBeforeForward {
        /// The layer's name.
        layer: String,
    },
    /// Training produced a non-finite loss or gradient norm; the weights were not updated.
    #[error(
        "training diverged at epoch {epoch}, batch {batch}: loss {loss}, gradient norm {grad_norm}"
    )]
    Diverged {
        /// The epoch (from 0).
        epoch: usize,
        /// The batch within the epoch (from 0).
        batch: usize,
        /// The loss of that batch.
        loss: f64,
        /// Its pre-clip gradient norm.
        grad_norm: f64,
    },
    /// A CSV file could not be read: the 1-based line and the column say where.
    #[error("{}line {line}, column {column:?}: {message}", file.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
    Csv {
        /// The file, when read from a path.
        file: Option<String>,
        /// The 1-based line.
        line: u64,
        /// The column's header.
        column: String,
        /// What is wrong.
        message: String,
    },
    /// A column was asked for by a name that is not there.
    #[error("no column {name:?}; the columns are {available:?}")]
    UnknownColumn {
        /// The name asked for.
        name: String,
        /// The names there are.
        available: Vec<String>,
    },
    /// Reading or writing a file failed.
    #[error("i/o error: {0}")]
    Io(String),
    /// Bytes that are not a file this crate wrote, or a file of another kind (a checkpoint
    /// where a model was expected).
    #[error("not a recurrent {expected} file: {reason}")]
    UnrecognizedFile {
        /// The kind of file that was expected (`"model"`, `"checkpoint"`).
        expected: String,
        /// What was found instead.
        reason: String,
    },
    /// A file written by a newer version of the format than this crate reads.
    #[error("{what} has format version {found}; this crate reads versions up to {supported}")]
    NewerFormat {
        /// The kind of file.
        what: String,
        /// The version in the file.
        found: u32,
        /// The newest version this crate reads.
        supported: u32,
    },
    /// A file of the right kind whose contents are truncated, corrupted or inconsistent.
    #[error("corrupt {what}: {reason}")]
    CorruptFile {
        /// The kind of file.
        what: String,
        /// What is wrong, with the numbers.
        reason: String,
    },
    /// The operation is not available for this object (e.g. a PyTorch export of a
    /// reset-before GRU, which PyTorch does not have).
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn shape(what: impl Into<String>, expected: &[usize], got: &[usize]) -> Self {
        Error::Shape {
            what: what.into(),
            expected: expected.to_vec(),
            got: got.to_vec(),
        }
    }

    pub(crate) fn config(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}
