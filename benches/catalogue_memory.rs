//! Memory and time the metric catalogue costs, per metric, for 10,000 metrics.
//!
//! Run: `cargo bench --bench catalogue_memory`
//!
//! A counting global allocator measures the bytes the catalogue holds after recording 10,000
//! distinct metrics (names like `edge.router1.cpu.123.softirq`, 28 bytes on average), and compares
//! it with the plain alternative of keeping the last `Event` of each metric in a map. It then
//! times a round of updates of all 10,000, as the source threads do every interval.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use pipit::Event;
use pipit::sources::lookup;
use pipit::telemetry::catalogue::{Catalogue, CatalogueSource, Query};

/// Counts the bytes allocated and not yet freed.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
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
}
