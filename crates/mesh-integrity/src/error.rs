//! Typed errors.

/// What can go wrong in the engine itself. Bad *objects* never produce an `Error`: they become
/// `MSH0001` findings so that one broken object never stops the ingestion of the others.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite failed (opening, a statement, a transaction).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Applying the schema migrations failed.
    #[error("schema migration: {0}")]
    Migration(#[from] refinery::Error),
    /// An object could not be turned into JSON (typed input).
    #[error("serialising an object: {0}")]
    Serialize(#[from] serde_json::Error),
    /// An object without the identity the operation needs (apiVersion, kind, metadata.name).
    #[error("object has no usable identity: {0}")]
    Identity(String),
    /// An external suppression that is neither `CODE` nor `CODE=Kind/namespace/name`.
    #[error("bad suppression {0:?}: expected CODE or CODE=Kind/namespace/name")]
    BadSuppression(String),
}

/// Where a YAML or JSON text could not be read. `line` and `column` are 1-based; the CLI prints
/// `file:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ParseError {
    /// The file name given to [`crate::parse_documents`].
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    /// What is wrong.
    pub message: String,
    /// Which kind of problem.
    pub kind: ParseErrorKind,
}

/// The kinds of [`ParseError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// Not well-formed YAML or JSON (or nesting/size limits exceeded).
    Syntax,
    /// A document that is not a mapping (a bare scalar or list at top level that is not `kind: List`).
    NotAnObject,
    /// A mapping without `apiVersion` or `kind`: not a Kubernetes object. Reported, not skipped,
    /// so a CI run never silently ignores a file it was asked to check.
    MissingTypeMeta,
}
