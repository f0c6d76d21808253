//! The processes of one machine sharing a token file (not in a browser,
//! which has no file system: there tabs share a session through the
//! browser's own storage and locks).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use refresh_machine::coordination::{Lease, StoreUnavailable};

use crate::builder::BoxFuture;
use crate::coordinator::{ready, Coordinator, StoreCounters, Stored};
use crate::session::TokenPair;

/// The processes of one machine sharing a token file: the pair and its
/// generation in `path` (replaced atomically: a temporary file, fsync,
/// rename; owner-only on Unix), the lease an exclusive lock on
/// `path.lock` (fs4, `flock` on Unix), released by the OS when its holder
/// dies. A holder that hangs keeps the lease: the others give up by their
/// refresh deadline (`RefreshUnavailable`) and present nothing. Every write
/// (a publish, a login or logout) reads, checks and writes under a short
/// lock on `path.write`.
#[derive(Debug)]
pub struct FileCoordinator {
    path: PathBuf,
    lock_path: PathBuf,
    /// Locked around every write's read-check-write (`<path>.write`), for
    /// milliseconds: a publish and a login, or two logins, never write the
    /// same generation. It also holds the last generation written: the
    /// floor of a repair, should the token file become unreadable.
    write_lock_path: PathBuf,
    /// The locked lock file and its owner, while this process holds the lease.
    held: Mutex<Option<(u64, File)>>,
    recheck: Duration,
    counters: StoreCounters,
}

impl FileCoordinator {
    /// The token file at `path` and its lock file beside it
    /// (`<path>.lock`). Neither needs to exist.
    pub fn new(path: impl Into<PathBuf>) -> FileCoordinator {
        let path = path.into();
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".lock");
        let mut write_lock_path = path.clone().into_os_string();
        write_lock_path.push(".write");
        FileCoordinator {
            path,
            lock_path: lock_path.into(),
            write_lock_path: write_lock_path.into(),
            held: Mutex::new(None),
            recheck: Duration::from_millis(20),
            counters: StoreCounters::default(),
        }
    }

    /// How often a waiting process reads the file again (default 20 ms).
    pub fn with_recheck(mut self, every: Duration) -> FileCoordinator {
        self.recheck = every;
        self
    }

    /// Where the tokens are.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Store operations so far.
    pub fn counters(&self) -> &StoreCounters {
        &self.counters
    }

    fn load(&self) -> std::io::Result<Stored> {
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        let mut bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Stored::default()),
            Err(e) => return Err(e),
        };
        let stored = serde_json::from_slice::<Stored>(&bytes);
        zeroize::Zeroize::zeroize(&mut bytes);
        stored.map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))
    }

    fn store(&self, stored: &Stored) -> std::io::Result<()> {
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        crate::token_file::write_json(&self.path, stored)
    }

    fn lease(&self, owner: u64) -> std::io::Result<Lease> {
        self.counters.leases.fetch_add(1, Ordering::Relaxed);
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((o, _)) = &*held {
            // This process holds it (for another round, or this one).
            return Ok(if *o == owner {
                Lease::Taken
            } else {
                Lease::Held { expires_in: None }
            });
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {
                *held = Some((owner, file));
                Ok(Lease::Taken)
            }
            Err(fs4::TryLockError::WouldBlock) => Ok(Lease::Held { expires_in: None }),
            Err(fs4::TryLockError::Error(e)) => Err(e),
        }
    }

    /// The write lock, held until the returned file is dropped (blocks
    /// while another write is under way).
    fn write_lock(&self) -> std::io::Result<File> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&self.write_lock_path)?;
        fs4::FileExt::lock(&file)?;
        Ok(file)
    }

    /// The last generation written, as the write lock file records it
    /// (0 if it records none).
    fn floor(lock: &mut File) -> u64 {
        use std::io::{Read, Seek};
        let mut text = String::new();
        let read = lock
            .seek(std::io::SeekFrom::Start(0))
            .and_then(|_| lock.take(32).read_to_string(&mut text));
        read.ok()
            .and_then(|_| text.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Record `generation` as the last written (best effort: a repair also
    /// goes above the clock in milliseconds).
    fn set_floor(lock: &mut File, generation: u64) {
        use std::io::{Seek, Write};
        let _ = lock
            .set_len(0)
            .and_then(|()| lock.seek(std::io::SeekFrom::Start(0)))
            .and_then(|_| write!(lock, "{generation}"));
    }

    fn holds(&self, owner: u64) -> bool {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.as_ref().is_some_and(|(o, _)| *o == owner)
    }
}

/// Milliseconds since the Unix epoch (at least 1).
fn unix_millis() -> u64 {
    let since = crate::platform::SystemTime::now()
        .duration_since(crate::platform::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis())
        .unwrap_or(u64::MAX / 2)
        .max(1)
}

impl Coordinator for FileCoordinator {
    fn read(&self) -> BoxFuture<'_, Result<Stored, StoreUnavailable>> {
        ready(self.load().map_err(|_| StoreUnavailable))
    }

    fn take_lease(
        &self,
        owner: u64,
        _ttl: Duration,
    ) -> BoxFuture<'_, Result<Lease, StoreUnavailable>> {
        // No time-to-live: the OS releases the lock of a process that dies.
        ready(self.lease(owner).map_err(|_| StoreUnavailable))
    }

    fn publish<'a>(
        &'a self,
        owner: u64,
        expected: u64,
        tokens: &'a TokenPair,
    ) -> BoxFuture<'a, Result<bool, StoreUnavailable>> {
        let publish = || -> std::io::Result<bool> {
            if !self.holds(owner) {
                return Ok(false);
            }
            let mut write = self.write_lock()?;
            if self.load()?.generation != expected {
                return Ok(false);
            }
            self.store(&Stored {
                generation: expected + 1,
                tokens: Some(tokens.clone()),
            })?;
            Self::set_floor(&mut write, expected + 1);
            Ok(true)
        };
        ready(publish().map_err(|_| StoreUnavailable))
    }

    fn replace<'a>(
        &'a self,
        tokens: Option<&'a TokenPair>,
    ) -> BoxFuture<'a, Result<u64, StoreUnavailable>> {
        let replace = || -> std::io::Result<u64> {
            let mut write = self.write_lock()?;
            let generation = match self.load() {
                Ok(stored) => stored.generation + 1,
                // Unreadable (corrupt, or half-written by another tool):
                // a login or logout repairs it, with a generation above
                // any the file held, so every process adopts it: above the
                // last one written (the write lock file records it), and
                // above the clock in milliseconds, should that record be
                // lost too (generations count writes, one by one).
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    (Self::floor(&mut write) + 1).max(unix_millis())
                }
                Err(e) => return Err(e),
            };
            self.store(&Stored {
                generation,
                tokens: tokens.cloned(),
            })?;
            Self::set_floor(&mut write, generation);
            Ok(generation)
        };
        ready(replace().map_err(|_| StoreUnavailable))
    }

    fn release(&self, owner: u64) -> BoxFuture<'_, ()> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.as_ref().is_some_and(|(o, _)| *o == owner) {
            if let Some((_, file)) = held.take() {
                let _ = fs4::FileExt::unlock(&file);
            }
        }
        ready(())
    }

    fn recheck(&self) -> Duration {
        self.recheck
    }
}
