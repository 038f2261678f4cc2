//! Memory and time the metric catalogue costs, per metric, for 10,000 metrics.
//!
//! Run: `cargo bench --bench catalogue_memory`
//!
//! A counting global allocator measures the bytes the catalogue holds after recording 10,000
//! distinct metrics (names like `edge.router1.cpu.123.softirq`, 28 bytes on average), and compares
//! it with the plain alternative of keeping the last `Event` of each metric in a map. It then
//! times a round of updates of all 10,000, as the source threads do every interval.
//!
//! Then the same with real sources: the host sources of the router set, collected twice on this
//! machine, and an `exec` source printing 10,000 Graphite lines, recorded as the agent records
//! them. Besides the bytes asked for, it counts what the allocator hands out for them
//! (`malloc_usable_size`: its rounding included), and the peak while a `get_metrics` answer with
//! metadata and a Prometheus exposition are written, against the catalogue's steady size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use pipit::Event;
use pipit::cache::Cache;
use pipit::control::protocol::write_metrics_result;
use pipit::http_server::exposition;
use pipit::procfs::Procfs;
use pipit::sources::runner::collect_once;
use pipit::sources::{SourceConfig, SourceContext, lookup};
use pipit::supervisor::SupervisorThread;
use pipit::telemetry::Telemetry;
use pipit::telemetry::catalogue::{Catalogue, CatalogueSource, Query};

/// Counts the bytes allocated and not yet freed: as asked for, as handed out by the allocator,
/// and the highest the latter reached since [`reset_peak`].
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static USABLE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

unsafe extern "C" {
    /// glibc: how many bytes the block at `ptr` really has.
    fn malloc_usable_size(ptr: *mut u8) -> usize;
}

fn usable(ptr: *mut u8) -> isize {
    if ptr.is_null() {
        return 0;
    }
    // SAFETY: `ptr` is a live block of the system allocator (glibc's malloc).
    unsafe { malloc_usable_size(ptr) as isize }
}

fn add_usable(bytes: isize) {
    let now = USABLE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        let ptr = unsafe { System.alloc(layout) };
        add_usable(usable(ptr));
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        USABLE.fetch_sub(usable(ptr), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        let before = usable(ptr);
        // SAFETY: forwarded unchanged to the system allocator.
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        if !moved.is_null() {
            add_usable(usable(moved) - before);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const METRICS: usize = 10_000;
const STATES: [&str; 10] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "total",
];

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn live_usable() -> isize {
    USABLE.load(Ordering::Relaxed)
}

/// Starts a new peak at what is held now.
fn reset_peak() {
    PEAK.store(live_usable(), Ordering::Relaxed);
}

/// The router set's host sources and an `exec` source printing 10,000 Graphite lines, as a
/// config file holds them.
const REAL_SOURCES: &str = r#"{
  "agent": {"hostname": "router1"},
  "outputs": [{"type": "stdout"}],
  "sources": [
    {"type": "cpu"}, {"type": "load"}, {"type": "memory"}, {"type": "swap"},
    {"type": "uptime"}, {"type": "processes"}, {"type": "interface"}, {"type": "df"},
    {"type": "disk"}, {"type": "thermal"}, {"type": "wireless"}, {"type": "conntrack"},
    {"type": "tcpconns"},
    {"type": "exec", "name": "queues", "format": "graphite", "shell": true, "max_output": 1048576,
     "command": "awk 'BEGIN { for (i = 0; i < 10000; i++) printf \"app.queue.%d.depth %d\\n\", i, i }'"}
  ]
}"#;

/// Collects every source of [`REAL_SOURCES`] twice (rates need two samples), one second apart:
/// each instance's catalogue view and the events of its second collection.
fn collect_real() -> Vec<(Arc<CatalogueSource>, Vec<Event>)> {
    let config = pipit::config_file::parse("real.json", REAL_SOURCES).expect("the config is valid");
    let mut supervisor = SupervisorThread::start(config.supervisor.clone()).expect("supervisor");
    let ctx = SourceContext::new(
        Procfs::new(&config.agent.host_root),
        Arc::new(Telemetry::default()),
        supervisor.handle(),
        Arc::new(Cache::in_memory()),
    );
    let mut built: Vec<_> = config
        .sources
        .iter()
        .map(|s: &SourceConfig| s.spec.build(&ctx.for_source(s)))
        .collect();
    for (cfg, source) in config.sources.iter().zip(&mut built) {
        let _ = collect_once(source.as_mut(), cfg);
    }
    // Rates need two samples, a gap apart, as `pipit once` takes them.
    std::thread::sleep(pipit::once::SAMPLE_GAP);
    let collected = config
        .sources
        .iter()
        .zip(&mut built)
        .map(|(cfg, source)| {
            let (events, outcome) = collect_once(source.as_mut(), cfg);
            if let Err(e) = outcome {
                eprintln!("  ({} collected nothing here: {e:?})", cfg.name);
            }
            (Arc::new(cfg.catalogue_source()), events)
        })
        .collect();
    drop(built);
    supervisor.stop(Instant::now() + Duration::from_secs(5));
    collected
}

/// Records `collected` into a new catalogue and prints what it holds per metric, steady and at
/// its peak while answering.
fn measure_real(label: &str, collected: &[(Arc<CatalogueSource>, Vec<Event>)]) -> (f64, f64) {
    let (asked, handed) = (live(), live_usable());
    let catalogue = Catalogue::default();
    for (source, events) in collected {
        catalogue.record(source, events);
    }
    let steady = live_usable() - handed;
    let metrics = catalogue.len();
    let per = steady as f64 / metrics as f64;
    println!(
        "  {label}: {metrics} metrics, {:.1} bytes/metric asked, {per:.1} bytes/metric handed out",
        (live() - asked) as f64 / metrics as f64
    );
    let mut peak_ratio: f64 = 0.0;
    // The 16 KiB buffer the control socket and the endpoint write through, made beforehand: the
    // figures are what an answer holds beyond it.
    let out = RefCell::new(io::BufWriter::with_capacity(16 * 1024, io::sink()));
    let answers: [(&str, &dyn Fn()); 2] = [
        ("get_metrics with metadata", &|| {
            let all = Query {
                hidden: true,
                ..Query::default()
            };
            write_metrics_result(&mut *out.borrow_mut(), &catalogue, &all, true)
                .expect("a sink takes everything");
        }),
        ("Prometheus exposition", &|| {
            exposition::write(
                &catalogue,
                SystemTime::now(),
                &mut *out.borrow_mut(),
                |_| Ok(()),
            )
            .expect("a sink takes everything");
        }),
    ];
    for (what, answer) in answers {
        reset_peak();
        let before = live_usable();
        let started = Instant::now();
        answer();
        let took = started.elapsed().as_secs_f64() * 1000.0;
        let extra = PEAK.load(Ordering::Relaxed) - before;
        let ratio = (steady + extra) as f64 / steady as f64;
        peak_ratio = peak_ratio.max(ratio);
        println!(
            "    while answering {what} ({took:.2} ms): +{extra} bytes beyond the write buffer, \
             peak / steady {ratio:.2}"
        );
    }
    (per, peak_ratio)
}

fn events() -> Vec<Event> {
    (0..METRICS)
        .map(|i| {
            let service = format!("edge.router1.cpu.{}.{}", i / 10, STATES[i % 10]);
            let mut e = Event::new(service, "router1").with_metric(i as f64 / 3.0);
            e.ttl = Some(Duration::from_secs(20));
            e.tags = vec!["lab".into()];
            e
        })
        .collect()
}

fn main() {
    let events = events();
    let name_bytes: usize = events.iter().map(|e| e.service.len()).sum();
    let source = Arc::new(CatalogueSource {
        name: "cpu".into(),
        kind: "cpu",
        metrics: lookup("cpu").expect("cpu is registered").metrics,
        prefix: "edge.router1".into(),
        interval: Duration::from_secs(10),
        ttl: Duration::from_secs(20),
        tags: vec!["lab".into()],
        host: "router1".into(),
        attributes: Default::default(),
    });

    let before = live();
    let catalogue = Catalogue::default();
    catalogue.record(&source, &events);
    let catalogue_bytes = live() - before;
    assert_eq!(catalogue.len(), METRICS);
    let declared = catalogue
        .query(&Query::default())
        .rows
        .iter()
        .filter(|r| r.info.is_some())
        .count();
    assert_eq!(declared, METRICS, "every name matched its declaration");

    let before = live();
    let mut naive: HashMap<String, Event> = HashMap::new();
    for e in &events {
        naive.insert(e.service.clone(), e.clone());
    }
    let naive_bytes = live() - before;

    let rounds = 50;
    let started = Instant::now();
    for _ in 0..rounds {
        catalogue.record(&source, &events);
    }
    let per_update = started.elapsed() / (rounds * METRICS as u32);

    let per = |bytes: isize| bytes as f64 / METRICS as f64;
    println!(
        "catalogue of {METRICS} metrics (names {:.1} bytes on average)",
        name_bytes as f64 / METRICS as f64
    );
    println!(
        "  catalogue:        {:>9} bytes  {:>6.1} bytes/metric",
        catalogue_bytes,
        per(catalogue_bytes)
    );
    println!(
        "  last Event each:  {:>9} bytes  {:>6.1} bytes/metric",
        naive_bytes,
        per(naive_bytes)
    );
    println!(
        "  ratio catalogue / last Event: {:.2}",
        catalogue_bytes as f64 / naive_bytes as f64
    );
    println!("  update of a known metric: {} ns", per_update.as_nanos());
    drop(naive);
    drop(catalogue);

    println!("catalogue of real sources (bytes handed out by the allocator, rounding included)");
    let collected = collect_real();
    let (host, exec): (Vec<_>, Vec<_>) = collected
        .into_iter()
        .partition(|(source, _)| source.kind != "exec");
    let (_, host_peak) = measure_real("host sources", &host);
    let all: Vec<_> = host.into_iter().chain(exec).collect();
    let (per, all_peak) = measure_real("host sources and exec", &all);
    println!("  real sources bytes per metric: {per:.1}");
    println!(
        "  real sources peak / steady, the higher of both: {:.2}",
        host_peak.max(all_peak)
    );
}
