//! The persistent cache: the last counter samples of every source, kept across a restart so the
//! first interval after it already has rates.
//!
//! It is one JSON file, `cache.json` in the agent's `state_dir`, read once at start and written
//! atomically (a temporary file, synced, then renamed over the old one) at stop and at most every
//! `agent.cache_interval` otherwise: on a router the state directory may be flash, and flash
//! wears out. A missing or unreadable file means a fresh start and one warning. The directory and
//! the file go through [`crate::files`]: a state directory or cache file that fails its checks (a
//! symlink, another owner, a loose mode) is refused with one warning, and never written through.
//!
//! The file holds, per source instance and counter, the last value and when it was read:
//! `{"version":1,"sources":{"<instance>":{"<counter>":[<value>,<unix milliseconds>]}}}`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::aggregate::{Rates, Sample};
use crate::complain::Complaint;
use crate::config::json::{self, Node, Value};
use crate::files::{Dir, FilesError, Sharing};

/// The file name inside the state directory.
pub const FILE_NAME: &str = "cache.json";

/// The version written; a file of another version is ignored (with the one warning).
const VERSION: u32 = 1;

/// The counter samples of every source instance, shared by the sources and the agent.
#[derive(Debug)]
pub struct Cache {
    /// The state directory, or `None` for a cache that is never written (`pipit once`).
    dir: Option<PathBuf>,
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
        let saved = read(state_dir).unwrap_or_else(|e| {
            log::warn!(target: "cache", "{e}; starting without saved counters");
            BTreeMap::new()
        });
        Cache::with(Some(state_dir.to_owned()), saved)
    }

    /// A cache kept in memory only, never read from or written to a file.
    pub fn in_memory() -> Cache {
        Cache::with(None, BTreeMap::new())
    }

    fn with(dir: Option<PathBuf>, saved: BTreeMap<String, BTreeMap<String, Sample>>) -> Cache {
        let inner = Inner {
            saved,
            live: BTreeMap::new(),
            last_write: Instant::now(),
            complaint: Complaint::new("cache"),
        };
        Cache {
            dir,
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

    /// Writes the file now (nothing for an in-memory cache). The state directory is opened (and
    /// checked, made if missing) at every write, so a removed one comes back.
    pub fn flush(&self) -> Result<(), FilesError> {
        let mut inner = lock(&self.inner);
        inner.last_write = Instant::now();
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let mut text = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = write!(text, "{{\"version\":{VERSION},\"sources\":{{");
        for (i, (name, rates)) in inner.live.iter().enumerate() {
            if i > 0 {
                text.push(b',');
            }
            push_key(&mut text, name);
            text.push(b'{');
            for (j, (key, (value, at_ms))) in lock(rates).samples().enumerate() {
                if j > 0 {
                    text.push(b',');
                }
                push_key(&mut text, key);
                let _ = write!(text, "[{value},{at_ms}]");
            }
            text.push(b'}');
        }
        text.extend_from_slice(b"}}");
        let result = Dir::open(dir, Sharing::Private).and_then(|d| d.replace(FILE_NAME, &text));
        match &result {
            Ok(()) => inner.complaint.recover(),
            Err(e) => inner
                .complaint
                .fail(&format!("cannot save the counters: {e}")),
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

/// Appends `"key":`, the key escaped as JSON.
fn push_key(out: &mut Vec<u8>, key: &str) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, key);
    out.push(b':');
}

/// The samples in the text of a cache file. It is read with the config's JSON parser, which keeps
/// numbers as written, so counters above 2^53 come back exact.
fn parse(text: &str) -> Result<BTreeMap<String, BTreeMap<String, Sample>>, String> {
    let doc = json::parse(text).map_err(|e| {
        format!(
            "not JSON ({} at {}:{})",
            e.message, e.pos.line, e.pos.column
        )
    })?;
    let Value::Object(top) = &doc.value else {
        return Err("not a JSON object".into());
    };
    let field = |key: &str| {
        top.iter()
            .find(|(k, _)| k == key)
            .map(|(_, node)| &node.value)
    };
    match field("version") {
        Some(Value::Number { text }) if text.parse() == Ok(VERSION) => {}
        _ => return Err(format!("not version {VERSION}")),
    }
    let Some(Value::Object(sources)) = field("sources") else {
        return Err("no \"sources\" object".into());
    };
    let mut out = BTreeMap::new();
    for (name, node) in sources {
        let Value::Object(counters) = &node.value else {
            return Err(format!("sources.{name} is not an object"));
        };
        let mut samples = BTreeMap::new();
        for (key, node) in counters {
            let sample = match &node.value {
                Value::Array(pair) => match pair.as_slice() {
                    [
                        Node {
                            value: Value::Number { text: v },
                            ..
                        },
                        Node {
                            value: Value::Number { text: t },
                            ..
                        },
                    ] => v.parse().ok().zip(t.parse().ok()),
                    _ => None,
                },
                _ => None,
            };
            let sample = sample
                .ok_or_else(|| format!("sources.{name}.{key} is not [value, milliseconds]"))?;
            samples.insert(key.clone(), sample);
        }
        out.insert(name.clone(), samples);
    }
    Ok(out)
}

/// The samples `cache.json` in `state_dir` holds; the error names the path and what is wrong.
fn read(state_dir: &Path) -> Result<BTreeMap<String, BTreeMap<String, Sample>>, String> {
    let dir = Dir::open(state_dir, Sharing::Private).map_err(|e| e.to_string())?;
    let mut text = String::new();
    dir.open_file(FILE_NAME, false)
        .map_err(|e| e.to_string())?
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", dir.join(FILE_NAME).display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", dir.join(FILE_NAME).display()))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::OpenOptionsExt;
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
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
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
    fn files_of_another_shape_or_version_are_refused() {
        assert_eq!(
            parse(r#"{"version":1,"sources":{"disk":{"sda.reads":[18446744073709551610,5]}}}"#)
                .unwrap()["disk"]["sda.reads"],
            (u64::MAX - 5, 5)
        );
        assert_eq!(
            parse(r#"{"version":2,"sources":{}}"#).unwrap_err(),
            "not version 1"
        );
        assert_eq!(
            parse(r#"{"version":1,"sources":{"disk":{"sda.reads":[1]}}}"#).unwrap_err(),
            "sources.disk.sda.reads is not [value, milliseconds]"
        );
        assert_eq!(parse("[]").unwrap_err(), "not a JSON object");
    }

    #[test]
    fn a_corrupt_file_means_a_fresh_start() {
        let dir = temp_dir("corrupt");
        fs::create_dir_all(&dir).unwrap();
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join(FILE_NAME))
            .unwrap()
            .write_all(b"{\"version\": 1, \"sources\": {\"interface\": [")
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
