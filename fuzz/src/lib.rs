//! What the fuzz targets share: a scratch directory per fuzzing process, and the harness that
//! runs a `/proc` or `/sys` source on files written from the fuzz input.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use pipit::cache::Cache;
use pipit::procfs::Procfs;
use pipit::sources::{Emitter, SourceConfig, SourceContext};
use pipit::supervisor::{Supervisor, SupervisorConfig, SupervisorThread};
use pipit::telemetry::Telemetry;

/// A directory of this process's own under the temporary directory (`TMPDIR`, which
/// `fuzz/run.sh` points at a scratch directory it removes afterwards).
pub fn scratch(name: &str) -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    let root = ROOT
        .get_or_init(|| std::env::temp_dir().join(format!("pipit-fuzz-{}", std::process::id())));
    let dir = root.join(name);
    fs::create_dir_all(&dir).expect("the scratch directory can be made");
    dir
}

/// A handle to one supervisor thread that lives as long as the fuzzing process (the sources
/// fuzzed here run no commands, but their context needs one).
fn supervisor() -> Supervisor {
    static HANDLE: OnceLock<Supervisor> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let thread = SupervisorThread::start(SupervisorConfig::default())
                .expect("the supervisor thread starts");
            let handle = thread.handle();
            std::mem::forget(thread);
            handle
        })
        .clone()
}

/// Writes `parts[i]` to `files[i]` under `root`; a file without a part is removed, as a kernel
/// without that file would have it.
fn write_tree(root: &Path, files: &[&str], parts: &[&[u8]]) {
    for (i, rel) in files.iter().enumerate() {
        let path = root.join(rel);
        match parts.get(i) {
            Some(part) => {
                fs::create_dir_all(path.parent().expect("a relative file path has a parent"))
                    .expect("the fixture directory can be made");
                fs::write(&path, part).expect("the fixture file can be written");
            }
            None => {
                let _ = fs::remove_file(&path);
            }
        }
    }
}

/// Runs the source configured by `source_json` (one entry of `sources`) on a tree holding
/// `files`, collecting twice ten seconds apart so that rates are computed.
///
/// The input is split at NUL bytes: the first `files.len()` parts are the files of the first
/// collection, the next ones replace them for the second (a missing part keeps the first
/// round's file), so a counter may wrap, reset or vanish between the two.
pub fn source(source_json: &str, files: &[&str], data: &[u8]) {
    static CONFIG: OnceLock<SourceConfig> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let text = format!(
            r#"{{"agent": {{"hostname": "h"}}, "sources": [{source_json}],
                "outputs": [{{"type": "stdout"}}]}}"#
        );
        let mut config = pipit::config_file::parse("fuzz.json", &text).expect("the config is valid");
        config.sources.remove(0)
    });
    let root = scratch("tree");
    let parts: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    let (first, second) = parts.split_at(parts.len().min(files.len()));
    write_tree(&root, files, first);
    let ctx = SourceContext::new(
        Procfs::new(&root),
        Arc::new(Telemetry::default()),
        supervisor(),
        Arc::new(Cache::in_memory()),
    )
    .for_source(config);
    let mut source = config.spec.build(&ctx);
    for round in 0..2u64 {
        if round == 1 {
            for (i, part) in second.iter().enumerate().take(files.len()) {
                write_tree(&root, &files[i..=i], &[part]);
            }
        }
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + 10 * round);
        let mut emit = Emitter::new(&config.template, time);
        // An error is a fine answer to a malformed file; only a panic or a hang is a finding.
        let _ = source.collect(&mut emit);
        for event in emit.into_events() {
            if let Some(metric) = event.metric {
                let value = metric.as_f64();
                assert!(value.is_finite(), "{}: {value}", event.service);
            }
        }
    }
}
