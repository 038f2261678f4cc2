//! What the supervisor costs per check, against spawning the same command straight from a thread
//! with std (`Command::output`, the floor any supervisor builds on).
//!
//! Run: `cargo bench --bench supervisor`. Prints runs per second for both, sequentially (one run at
//! a time: the latency a check pays) and with 4 at once (throughput under `max_checks = 4`).

use std::collections::BTreeMap;
use std::process::{Command as StdCommand, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pipit::supervisor::{Command, Exit, Supervisor, SupervisorConfig, SupervisorThread};

/// Runs per figure under `cargo bench`; `cargo test --all-targets` runs a few, as a smoke test.
fn runs() -> u32 {
    if std::env::args().any(|a| a == "--bench") {
        2000
    } else {
        20
    }
}
const PROGRAM: &str = "/bin/true";

fn command() -> Arc<Command> {
    Arc::new(Command {
        argv: vec![PROGRAM.to_owned()],
        env: BTreeMap::new(),
        cwd: None,
        user: None,
        group: None,
        timeout: Some(Duration::from_secs(10)),
        kill_grace: Duration::from_secs(1),
        max_output: 64 * 1024,
    })
}

/// Runs [`runs`] checks split over `threads` threads with `run`; returns runs per second.
fn rate(threads: u32, run: impl Fn(u32) + Sync) -> f64 {
    let runs = runs();
    let start = Instant::now();
    thread::scope(|s| {
        for t in 0..threads {
            let run = &run;
            s.spawn(move || {
                for _ in 0..runs / threads {
                    run(t);
                }
            });
        }
    });
    f64::from(runs) / start.elapsed().as_secs_f64()
}

fn supervised(h: &Supervisor, cmd: &Arc<Command>, t: u32) {
    let run = h.run(&format!("bench-{t}"), cmd.clone()).expect("runs");
    assert_eq!(run.exit, Exit::Code(0));
}

fn direct(_: u32) {
    let out = StdCommand::new(PROGRAM)
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    assert!(out.status.success());
}

fn main() {
    let mut sup = SupervisorThread::start(SupervisorConfig {
        max_checks: 4,
        user: None,
    })
    .expect("starts");
    let h = sup.handle();
    let cmd = command();
    // Warm up both paths (page cache, allocator).
    rate(1, |t| supervised(&h, &cmd, t));
    rate(1, direct);
    for threads in [1, 4] {
        let sup_rate = rate(threads, |t| supervised(&h, &cmd, t));
        let std_rate = rate(threads, direct);
        println!(
            "{threads} at once: supervisor {sup_rate:.0} runs/s, std Command::output {std_rate:.0} runs/s, ratio {:.2}",
            sup_rate / std_rate
        );
    }
    sup.stop(Instant::now() + Duration::from_secs(2));
}
