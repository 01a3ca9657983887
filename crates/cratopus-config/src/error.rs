//! Config problems with the place they were found.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a config file: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<u32>,
    /// 1-based column, when known.
    pub column: Option<u32>,
    pub message: String,
    /// The key path of the value at fault (a JSON Pointer such as `/upstreams/api/targets/1`),
    /// for a problem found where the value's position was not kept; the loader turns it into
    /// the line and column ([`crate::locate`]).
    pub pointer: Option<String>,
}

impl ConfigError {
    pub fn new(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.into(),
            line: None,
            column: None,
            message: message.into(),
            pointer: None,
        }
    }

    /// An error about the value at key path `pointer` (`/listeners/0/bind`) of `file`; its
    /// place is looked up when the config's errors are placed ([`crate::locate::Sources`]).
    pub fn at_key(file: &Path, pointer: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            pointer: Some(pointer.into()),
            ..ConfigError::new(file, message)
        }
    }

    /// An error at a place a [`serde_saphyr::Spanned`] value recorded.
    pub fn at(file: &Path, loc: &serde_saphyr::Location, message: impl Into<String>) -> Self {
        let (line, column) = (loc.line(), loc.column());
        ConfigError {
            file: file.to_path_buf(),
            line: (line > 0).then_some(line as u32),
            column: (column > 0).then_some(column as u32),
            message: message.into(),
            pointer: None,
        }
    }

    pub fn with_position(mut self, line: u32, column: u32) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one load; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn one(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors::one(e)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
