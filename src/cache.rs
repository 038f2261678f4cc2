//! The persistent cache: the last counter samples of every source, kept across a restart so the
//! first interval after it already has rates.
//!
//! It is one JSON file, `cache.json` in the agent's `state_dir`, read once at start and written
//! atomically (a temporary file, synced, then renamed over the old one) at stop and at most every
//! `agent.cache_interval` otherwise: on a router the state directory may be flash, and flash
//! wears out. A missing or unreadable file means a fresh start and one warning.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::aggregate::{Rates, Sample};
use crate::complain::Complaint;

/// The file name inside the state directory.
pub const FILE_NAME: &str = "cache.json";

/// The version written; a file of another version is ignored (with the one warning).
const VERSION: u32 = 1;

/// The file's content: per source instance, per counter, `[value, unix milliseconds]`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    sources: BTreeMap<String, BTreeMap<String, Sample>>,
}

/// The counter samples of every source instance, shared by the sources and the agent.
#[derive(Debug)]
pub struct Cache {
    /// The file, or `None` for a cache that is never written (`pipit once`).
    path: Option<PathBuf>,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Samples read at start that no source has claimed yet.
    saved: BTreeMap<String, BTreeMap<String, Sample>>,
    /// The rates each running source instance updates.
    live: BTreeMap<String, Arc<Mutex<Rates>>>,
    last_write: Instant,
    complaint: Complaint,
}

/// Locks `m`, going on with the data even if a panicking source poisoned the lock: the samples are
/// plain numbers and stay consistent.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cache {
    /// Opens the cache in `state_dir`, reading what the last run saved. A missing or corrupt file
    /// logs one warning and starts empty.
    pub fn open(state_dir: &Path) -> Cache {
        let path = state_dir.join(FILE_NAME);
        let saved = match fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<CacheFile>(&bytes) {
                Ok(file) if file.version == VERSION => file.sources,
                Ok(file) => {
                    log::warn!(target: "cache", "{}: version {} is not {VERSION}; starting without saved counters", path.display(), file.version);
                    BTreeMap::new()
                }
                Err(e) => {
                    log::warn!(target: "cache", "{}: unreadable ({e}); starting without saved counters", path.display());
                    BTreeMap::new()
                }
            },
            Err(e) => {
                log::warn!(target: "cache", "{}: {e}; starting without saved counters", path.display());
                BTreeMap::new()
            }
        };
        Cache::with(Some(path), saved)
    }

    /// A cache kept in memory only, never read from or written to a file.
    pub fn in_memory() -> Cache {
        Cache::with(None, BTreeMap::new())
    }

    fn with(path: Option<PathBuf>, saved: BTreeMap<String, BTreeMap<String, Sample>>) -> Cache {
        let inner = Inner {
            saved,
            live: BTreeMap::new(),
            last_write: Instant::now(),
            complaint: Complaint::new("cache"),
        };
        Cache {
            path,
            inner: Mutex::new(inner),
        }
    }

    /// The rates of the source instance `instance`, whose samples count while younger than
    /// `max_age`. A rebuilt instance (after a panic or a reload) gets the same rates back; the
    /// first one gets the samples the last run saved.
    pub fn rates(&self, instance: &str, max_age: Duration) -> Arc<Mutex<Rates>> {
        let mut inner = lock(&self.inner);
        if let Some(rates) = inner.live.get(instance) {
            return rates.clone();
        }
        let saved = inner.saved.remove(instance).unwrap_or_default();
        let rates = Arc::new(Mutex::new(Rates::restore(max_age, saved)));
        inner.live.insert(instance.to_owned(), rates.clone());
        rates
    }

    /// Forgets the rates of every instance not named in `instances`: after a reload, those of the
    /// sources it removed.
    pub fn keep_only<'a>(&self, instances: impl IntoIterator<Item = &'a str>) {
        let keep: Vec<&str> = instances.into_iter().collect();
        let mut inner = lock(&self.inner);
        inner.live.retain(|name, _| keep.contains(&name.as_str()));
        inner.saved.retain(|name, _| keep.contains(&name.as_str()));
    }

    /// Writes the file now (nothing for an in-memory cache).
    pub fn flush(&self) -> io::Result<()> {
        let mut inner = lock(&self.inner);
        inner.last_write = Instant::now();
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut file = CacheFile {
            version: VERSION,
            sources: BTreeMap::new(),
        };
        for (name, rates) in &inner.live {
            let samples = lock(rates)
                .samples()
                .map(|(k, s)| (k.to_owned(), s))
                .collect();
            file.sources.insert(name.clone(), samples);
        }
        let result = serde_json::to_vec(&file)
            .map_err(io::Error::other)
            .and_then(|bytes| write_atomically(path, &bytes));
        match &result {
            Ok(()) => inner.complaint.recover(),
            Err(e) => inner
                .complaint
                .fail(&format!("cannot write {}: {e}", path.display())),
        }
        result
    }

    /// Writes the file if the last write is at least `every` ago.
    pub fn flush_if_due(&self, every: Duration) {
        if lock(&self.inner).last_write.elapsed() >= every {
            // A failure is logged (once while it repeats) by `flush`.
            let _ = self.flush();
        }
    }
}

/// Replaces `path` with `bytes` so that a crash or power loss leaves the old file or the new one,
/// never a mix: write a temporary file beside it (owner-only), sync it, rename it over.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pipit-cache-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn samples_survive_a_restart() {
        let dir = temp_dir("restart");
        let max_age = Duration::from_secs(20);
        {
            let cache = Cache::open(&dir);
            let rates = cache.rates("interface", max_age);
            assert_eq!(lock(&rates).rate("eth0.rx", 1000, at(100)), None);
            lock(&rates).end_round();
            cache.flush().unwrap();
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(FILE_NAME))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!dir.join("cache.json.tmp").exists());
        let cache = Cache::open(&dir);
        let rates = cache.rates("interface", max_age);
        assert_eq!(
            lock(&rates).rate("eth0.rx", 3000, at(110)),
            Some(200.0),
            "a rate on the first interval"
        );
        let other = cache.rates("disk", max_age);
        assert_eq!(
            lock(&other).rate("eth0.rx", 3000, at(110)),
            None,
            "samples belong to their instance"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_file_means_a_fresh_start() {
        let dir = temp_dir("corrupt");
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join(FILE_NAME),
            b"{\"version\": 1, \"sources\": {\"interface\": [",
        )
        .unwrap();
        let cache = Cache::open(&dir);
        let rates = cache.rates("interface", Duration::from_secs(20));
        assert_eq!(lock(&rates).rate("eth0.rx", 3000, at(110)), None);
        cache.flush().unwrap();
        let text = fs::read_to_string(dir.join(FILE_NAME)).unwrap();
        assert_eq!(
            text,
            r#"{"version":1,"sources":{"interface":{"eth0.rx":[3000,110000]}}}"#
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rebuilt_sources_share_their_rates_and_removed_ones_are_forgotten() {
        let dir = temp_dir("drop");
        let cache = Cache::open(&dir);
        let first = cache.rates("disk", Duration::from_secs(20));
        assert!(Arc::ptr_eq(
            &first,
            &cache.rates("disk", Duration::from_secs(20))
        ));
        lock(&first).rate("sda.reads", 1, at(1));
        cache.keep_only(["cpu"]);
        cache.flush().unwrap();
        assert_eq!(
            fs::read_to_string(dir.join(FILE_NAME)).unwrap(),
            r#"{"version":1,"sources":{}}"#
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
