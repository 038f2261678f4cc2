//! Cost of the file watcher and of `tail`, each beside a peer doing the same work in the same run:
//!
//! - a polling look at a tree of 10,000 files (one `stat` each) vs GNU `find -printf` printing the
//!   same metadata for the same tree;
//! - an inotify tick after one file changed in that tree (no peer: the point is the ratio to a
//!   polling look);
//! - the memory the snapshot of that tree takes;
//! - counting the lines of a 50 MB log that match a pattern vs `grep -c`.
//!
//! Run: `cargo bench --bench watch` (the figures are medians of several runs).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pipit::pattern::{Selector, TextPattern};
use pipit::pollers::file::{FileWatcher, PollerChoice};
use pipit::pollers::follow::Follower;
use pipit::pollers::snapshot::{Snapshot, WatchSpec};

const FILES: usize = 10_000;
const RUNS: usize = 7;

fn median(mut f: impl FnMut() -> Duration) -> Duration {
    let mut times: Vec<Duration> = (0..RUNS).map(|_| f()).collect();
    times.sort();
    times[RUNS / 2]
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn rss_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    pipit::procfs::field_value(&status, "VmRSS").unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn make_tree(root: &Path) {
    for d in 0..100 {
        let dir = root.join(format!("d{d:03}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..FILES / 100 {
            fs::write(dir.join(format!("f{f:03}.log")), "x").unwrap();
        }
    }
}

fn spec(root: &Path) -> WatchSpec {
    WatchSpec {
        path: root.to_owned(),
        recursive: true,
        filter: Selector::default(),
    }
}

fn bench_tree(root: &Path) {
    let before = rss_kib();
    let mut snapshot = Snapshot::new(spec(root));
    snapshot.baseline();
    let grown = rss_kib().saturating_sub(before);
    let pipit = median(|| timed(|| drop(snapshot.rescan(&mut Vec::new()))));
    let find = median(|| {
        timed(|| {
            let ok = Command::new("find")
                .arg(root)
                .args(["-printf", "%i %s %T@ %C@\n"])
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success();
            assert!(ok);
        })
    });
    println!(
        "polling look at {} paths: pipit {:.2} ms, find -printf {:.2} ms, ratio {:.2}",
        snapshot.len(),
        ms(pipit),
        ms(find),
        pipit.as_secs_f64() / find.as_secs_f64()
    );
    println!(
        "snapshot of {} paths: {} KiB resident ({:.0} bytes per path)",
        snapshot.len(),
        grown,
        grown as f64 * 1024.0 / snapshot.len() as f64
    );

    let mut watcher = FileWatcher::new(spec(root), PollerChoice::Inotify, "bench/inotify", "bench");
    watcher.poll(&mut Vec::new()).unwrap();
    // The first ticks look again at directories watched after the first look.
    let mut out = Vec::new();
    watcher.poll(&mut out).unwrap();
    let target = root.join("d050/f050.log");
    let mut n = 0u32;
    let tick = median(|| {
        n += 1;
        fs::write(&target, n.to_string()).unwrap();
        // The tick that reports the change is the one timed; a tick before the kernel's event
        // arrived reports nothing and is not counted.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut out = Vec::new();
        let t = loop {
            let t = timed(|| watcher.poll(&mut out).unwrap());
            if !out.is_empty() {
                break t;
            }
            assert!(Instant::now() < deadline, "no change reported within 10 s");
            std::thread::sleep(Duration::from_millis(1));
        };
        assert_eq!(out.len(), 1, "{out:?}");
        t
    });
    println!(
        "inotify tick after one change among {} paths: {:.3} ms, {:.4} of a polling look",
        snapshot.len(),
        ms(tick),
        tick.as_secs_f64() / pipit.as_secs_f64()
    );
}

fn bench_tail(dir: &Path) {
    let log: PathBuf = dir.join("big.log");
    let mut f = fs::File::create(&log).unwrap();
    let mut size = 0usize;
    let mut i = 0u64;
    while size < 50_000_000 {
        let line = if i % 100 == 0 {
            format!(
                "Nov 22 14:00:00 router kernel: [{i}] ERROR link down on eth{}\n",
                i % 4
            )
        } else {
            format!(
                "Nov 22 14:00:00 router dnsmasq[1234]: query[A] host{i}.lan from 192.168.1.{}\n",
                i % 250
            )
        };
        f.write_all(line.as_bytes()).unwrap();
        size += line.len();
        i += 1;
    }
    drop(f);
    let pattern = TextPattern::new("ERROR");
    let mut counted = 0u64;
    let pipit = median(|| {
        timed(|| {
            let mut follower = Follower::new(&log, true);
            counted = 0;
            // Up to 4 MiB per tick: as many ticks as it takes.
            loop {
                let mut lines = 0u64;
                follower
                    .read(&mut |line| {
                        lines += 1;
                        counted += pattern.matches(line) as u64;
                    })
                    .unwrap();
                if lines == 0 {
                    break;
                }
            }
        })
    });
    let mut grep_count = String::new();
    let grep = median(|| {
        timed(|| {
            let out = Command::new("grep")
                .args(["-c", "ERROR"])
                .arg(&log)
                .env("LC_ALL", "C")
                .output()
                .unwrap();
            grep_count = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        })
    });
    assert_eq!(counted.to_string(), grep_count);
    let mb = size as f64 / 1e6;
    println!(
        "tail of a {mb:.0} MB log ({i} lines, {counted} matching): pipit {:.0} ms ({:.0} MB/s), grep -c {:.0} ms, ratio {:.2}",
        ms(pipit),
        mb / pipit.as_secs_f64(),
        ms(grep),
        pipit.as_secs_f64() / grep.as_secs_f64()
    );
}

fn main() {
    let dir = std::env::temp_dir().join(format!("pipit-bench-watch-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let tree = dir.join("tree");
    make_tree(&tree);
    bench_tree(&tree);
    bench_tail(&dir);
    let _ = fs::remove_dir_all(&dir);
}
