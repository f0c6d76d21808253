//! Tokens kept in a file across restarts: read when the client is built,
//! written whenever they change, removed at logout. For CLIs, desktop apps
//! and services with one process per credential (several processes sharing
//! one file need the cross-process coordination, which this is not).
//!
//! Each write goes to a temporary file in the same directory, is flushed to
//! disk and renamed over the old one: a crash leaves the old pair or the new
//! one, never half of each. On Unix the file is readable by its owner only.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::session::TokenPair;

/// A file that keeps the session's tokens ([`Builder::token_file`](crate::Builder::token_file)).
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
    last_error: Mutex<Option<std::io::ErrorKind>>,
}

impl TokenFile {
    /// The file at `path`.
    pub(crate) fn new(path: impl Into<PathBuf>) -> TokenFile {
        TokenFile {
            path: path.into(),
            last_error: Mutex::new(None),
        }
    }

    /// Where the tokens are kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why the last write or removal failed, if it did (cleared by the next
    /// one that succeeds). The session goes on with its tokens in memory.
    pub fn last_error(&self) -> Option<std::io::ErrorKind> {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pair in the file; `Ok(None)` when there is no file. A file that
    /// is not such a pair is `InvalidData`.
    pub(crate) fn load(&self) -> std::io::Result<Option<TokenPair>> {
        let mut bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let pair = serde_json::from_slice::<TokenPair>(&bytes);
        zeroize::Zeroize::zeroize(&mut bytes);
        let pair = pair.map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
        Ok(Some(pair))
    }

    /// Store `tokens` (remove the file for `None`); a failure is kept for
    /// [`last_error`](Self::last_error).
    pub(crate) fn store(&self, tokens: Option<&TokenPair>) {
        let result = match tokens {
            Some(tokens) => self.write(tokens),
            None => match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            },
        };
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = result.err().map(|e| e.kind());
    }

    /// Record a failure found outside a write (stored tokens the session refused).
    pub(crate) fn set_error(&self, kind: std::io::ErrorKind) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(kind);
    }

    fn write(&self, tokens: &TokenPair) -> std::io::Result<()> {
        write_json(&self.path, tokens)
    }
}

/// Write `value` as JSON to `path` atomically: a temporary file in the same
/// directory (readable by its owner only: tempfile's default on Unix),
/// flushed to disk and renamed over `path`, then the directory flushed (the
/// rename is durable once it is). The serialised copy is wiped.
pub(crate) fn write_json(path: &Path, value: &impl serde::Serialize) -> std::io::Result<()> {
    let mut json = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let written = tempfile::NamedTempFile::new_in(dir).and_then(|mut file| {
        file.write_all(&json)?;
        file.as_file().sync_all()?;
        file.persist(path).map_err(|e| e.error)?;
        Ok(())
    });
    zeroize::Zeroize::zeroize(&mut json);
    written?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
