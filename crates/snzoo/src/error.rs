//! The library's error type: every variant that is about a file names it.

use std::path::PathBuf;

use snzoo_fs::display_path;

/// An error of the snzoo library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened, read or written, or is not a regular file.
    #[error(transparent)]
    Fs(#[from] snzoo_fs::FsError),
    /// A checkpoint could not be read (format, truncation, a refused pickle global, ...).
    #[error("cannot read checkpoint {}", display_path(path))]
    Checkpoint {
        path: PathBuf,
        #[source]
        source: snzoo_convert::CheckpointError,
    },
    /// A checkpoint of another framework (TensorFlow, Caffe, Torch7) could not be read, or does
    /// not hold the network its format implies.
    #[error("cannot read {format} checkpoint {}", display_path(path))]
    Format {
        path: PathBuf,
        format: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The tensors of a file are not a network snzoo knows.
    #[error("{} is not a ResNet that snzoo knows", display_path(path))]
    NotAModel {
        path: PathBuf,
        #[source]
        source: Box<snzoo_model::ArchError>,
    },
    /// A weights file's architecture metadata contradicts its tensors, or is malformed.
    #[error("{}: {message}", display_path(path))]
    BadMetadata { path: PathBuf, message: String },
    /// Weights whose values a model cannot use (a negative running variance, ...).
    #[error("{}: {message}", display_path(path))]
    BadWeights { path: PathBuf, message: String },
    /// A tensor cannot be part of a model (not floating-point, non-finite values).
    #[error("{}", display_path(path))]
    BadTensor {
        path: PathBuf,
        #[source]
        source: snzoo_convert::InvalidTensor,
    },
    /// A safetensors file could not be written.
    #[error("cannot write {}", display_path(path))]
    Write {
        path: PathBuf,
        #[source]
        source: snzoo_convert::WriteError,
    },
    /// A safetensors file could not be parsed.
    #[error("{} is not a valid safetensors file", display_path(path))]
    Safetensors {
        path: PathBuf,
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// An image could not be decoded or preprocessed.
    #[error("cannot decode image {}", display_path(path))]
    Image {
        path: PathBuf,
        #[source]
        source: snzoo_preprocess::PreprocessError,
    },
    /// The model zoo: unknown source, checksum mismatch, transfer failure, ...
    #[error(transparent)]
    Zoo(Box<snzoo_zoo::store::ZooError>),
    /// A dataset could not be read.
    #[error(transparent)]
    Dataset(#[from] snzoo_eval::dataset::DatasetError),
    /// A resume journal is in use, corrupt or of another evaluation.
    #[error(transparent)]
    Journal(#[from] snzoo_eval::journal::JournalError),
    /// Shard reports that cannot be merged.
    #[error(transparent)]
    Merge(#[from] snzoo_eval::report::MergeError),
    /// A tensor operation failed (candle).
    #[error("{}", snzoo_model::error_message(.0))]
    Compute(#[from] candle_core::Error),
    /// An option out of its range (too many threads, a batch that cannot fit in memory, a
    /// non-finite learning rate, ...).
    #[error("{0}")]
    Invalid(String),
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}

impl From<snzoo_zoo::store::ZooError> for Error {
    fn from(e: snzoo_zoo::store::ZooError) -> Self {
        Error::Zoo(Box::new(e))
    }
}

impl Error {
    pub(crate) fn invalid(message: impl Into<String>) -> Error {
        Error::Invalid(message.into())
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
