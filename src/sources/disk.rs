//! `disk`: I/O of each block device per second, from `/proc/diskstats`.
//!
//! Partitions (told by `/sys/class/block/<name>/partition`) and loop and RAM disks are left out by
//! default. On a router the flash partitions show up as `mtdblock<n>`: each is a device of its own
//! and is reported.

use std::sync::{Arc, Mutex};

use super::naming::ServiceName;
use super::{Build, Emitter, MetricInfo, Settings, Source, SourceContext, SourceError, SourceType};
use crate::aggregate::Rates;
use crate::cache::lock;
use crate::config::reader::{Problems, Table};
use crate::pattern::Selector;
use crate::procfs::{KeptFiles, Procfs};

/// The size of a sector in `/proc/diskstats`, whatever the device's own.
const SECTOR_BYTES: f64 = 512.0;

/// The counters reported, by their column after the device name, and the factor from the
/// counter's unit to the metric's.
const COUNTERS: [(usize, &str, f64); 10] = [
    (0, "reads", 1.0),
    (4, "writes", 1.0),
    (2, "read_bytes", SECTOR_BYTES),
    (6, "write_bytes", SECTOR_BYTES),
    (1, "read_merged", 1.0),
    (5, "write_merged", 1.0),
    (3, "read_time", 1.0),
    (7, "write_time", 1.0),
    (9, "io_time", 1.0),
    (10, "weighted_io_time", 1.0),
];

/// The column of the I/O requests in flight, a gauge.
const IN_PROGRESS: usize = 8;

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "disk",
    description: "reads, writes, bytes and time spent per second of each block device",
    needs_two_samples: true,
    metrics: &[
        MetricInfo {
            name: "disk.<device>.reads",
            unit: "per_second",
            description: "reads completed",
        },
        MetricInfo {
            name: "disk.<device>.writes",
            unit: "per_second",
            description: "writes completed",
        },
        MetricInfo {
            name: "disk.<device>.read_bytes",
            unit: "bytes_per_second",
            description: "bytes read",
        },
        MetricInfo {
            name: "disk.<device>.write_bytes",
            unit: "bytes_per_second",
            description: "bytes written",
        },
        MetricInfo {
            name: "disk.<device>.read_merged",
            unit: "per_second",
            description: "reads merged with a neighbour before reaching the device",
        },
        MetricInfo {
            name: "disk.<device>.write_merged",
            unit: "per_second",
            description: "writes merged with a neighbour before reaching the device",
        },
        MetricInfo {
            name: "disk.<device>.read_time",
            unit: "ms_per_second",
            description: "time spent reading, summed over requests",
        },
        MetricInfo {
            name: "disk.<device>.write_time",
            unit: "ms_per_second",
            description: "time spent writing, summed over requests",
        },
        MetricInfo {
            name: "disk.<device>.io_time",
            unit: "ms_per_second",
            description: "time the device was busy (1000 is 100% busy)",
        },
        MetricInfo {
            name: "disk.<device>.weighted_io_time",
            unit: "ms_per_second",
            description: "busy time weighted by requests in flight",
        },
        MetricInfo {
            name: "disk.<device>.in_progress",
            unit: "count",
            description: "requests in flight now",
        },
    ],
    read: super::read::<Disk>,
};

/// Settings of the `disk` source.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskSpec {
    /// Which devices, by name glob: `include` (default: all) minus `exclude` (default `loop*`,
    /// `ram*`).
    pub select: Selector,
    /// Also report partitions; default false.
    pub partitions: bool,
}

impl Settings for DiskSpec {
    fn read(t: &mut Table<'_>, problems: &mut Problems) -> Option<DiskSpec> {
        let include: Vec<String> = t.get_or("include", Vec::new(), problems);
        let exclude = t.get_or(
            "exclude",
            vec!["loop*".to_owned(), "ram*".to_owned()],
            problems,
        );
        let partitions = t.get_or("partitions", false, problems);
        Some(DiskSpec {
            select: Selector::from_lists(&include, &exclude),
            partitions,
        })
    }
}

impl Build for Disk {
    type Settings = DiskSpec;
    const NEVER_WAITS: bool = true;

    fn build(spec: &DiskSpec, ctx: &SourceContext) -> Disk {
        Disk {
            spec: spec.clone(),
            files: KeptFiles::new(ctx.procfs.clone()),
            rates: ctx.rates(),
            buf: String::new(),
            name: ServiceName::default(),
            kinds: Vec::new(),
        }
    }
}

struct Disk {
    spec: DiskSpec,
    files: KeptFiles,
    rates: Arc<Mutex<Rates>>,
    buf: String,
    name: ServiceName,
    /// The devices of the last collection and whether each is a partition, asked of sysfs once
    /// per device while it is listed.
    kinds: Vec<DeviceKind>,
}

struct DeviceKind {
    name: String,
    partition: bool,
    /// Listed in the collection under way.
    listed: bool,
}

impl Source for Disk {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        self.files.read_into("proc/diskstats", &mut self.buf)?;
        self.kinds.iter_mut().for_each(|k| k.listed = false);
        let mut rates = lock(&self.rates);
        for line in self.buf.lines() {
            // `major minor name` and at least 11 counters.
            let mut fields = line.split_ascii_whitespace().skip(2);
            let Some(device) = fields.next() else {
                continue;
            };
            if !self.spec.select.accepts(device)
                || (!self.spec.partitions
                    && is_partition(&mut self.kinds, self.files.procfs(), device))
            {
                continue;
            }
            let mut values = [0u64; 11];
            let mut n = 0;
            for (slot, field) in values.iter_mut().zip(fields) {
                *slot = field.parse().unwrap_or(0);
                n += 1;
            }
            if n < values.len() {
                continue;
            }
            self.name.start("disk", device);
            for (column, metric, factor) in COUNTERS {
                let name = self.name.with(metric);
                if let Some(rate) = rates.rate(name, values[column], emit.time()) {
                    emit.metric(name, rate * factor);
                }
            }
            emit.metric(self.name.with("in_progress"), values[IN_PROGRESS]);
        }
        rates.end_round();
        self.kinds.retain(|k| k.listed);
        Ok(())
    }
}

/// Whether `device` is a partition, from `kinds` if it was listed before, else from sysfs.
fn is_partition(kinds: &mut Vec<DeviceKind>, procfs: &Procfs, device: &str) -> bool {
    if let Some(kind) = kinds.iter_mut().find(|k| k.name == device) {
        kind.listed = true;
        return kind.partition;
    }
    let partition = procfs
        .path(&format!("sys/class/block/{device}/partition"))
        .exists();
    kinds.push(DeviceKind {
        name: device.to_owned(),
        partition,
        listed: true,
    });
    partition
}

#[cfg(test)]
mod tests {
    use super::super::testing::{collect_at, collect_with, lines};
    use super::*;
    use crate::cache::Cache;

    fn disk_spec(include: &[&str], partitions: bool) -> DiskSpec {
        let include: Vec<String> = include.iter().map(|s| s.to_string()).collect();
        DiskSpec {
            select: Selector::from_lists(&include, &["loop*".into(), "ram*".into()]),
            partitions,
        }
    }

    #[test]
    fn a_router_s_flash_partitions() {
        let cache = Arc::new(Cache::in_memory());
        let spec = disk_spec(&["mtdblock3", "mtdblock4", "loop0"], false);
        assert_eq!(
            collect_at::<Disk>(&spec, "openwrt", &cache, 100),
            lines("disk.mtdblock3.in_progress 0\n disk.mtdblock4.in_progress 0"),
            "the first sample gives gauges only; loop devices are left out"
        );
        assert_eq!(
            collect_at::<Disk>(&spec, "openwrt-next", &cache, 110),
            lines(
                "disk.mtdblock3.reads 4
                 disk.mtdblock3.writes 0
                 disk.mtdblock3.read_bytes 16384
                 disk.mtdblock3.write_bytes 0
                 disk.mtdblock3.read_merged 0
                 disk.mtdblock3.write_merged 0
                 disk.mtdblock3.read_time 1
                 disk.mtdblock3.write_time 0
                 disk.mtdblock3.io_time 1
                 disk.mtdblock3.weighted_io_time 1
                 disk.mtdblock3.in_progress 0
                 disk.mtdblock4.reads 2
                 disk.mtdblock4.writes 5
                 disk.mtdblock4.read_bytes 8192
                 disk.mtdblock4.write_bytes 20480
                 disk.mtdblock4.read_merged 0
                 disk.mtdblock4.write_merged 0
                 disk.mtdblock4.read_time 2
                 disk.mtdblock4.write_time 20
                 disk.mtdblock4.io_time 20
                 disk.mtdblock4.weighted_io_time 22
                 disk.mtdblock4.in_progress 1"
            )
        );
    }

    #[test]
    fn a_server_s_disks_without_partitions() {
        let cache = Arc::new(Cache::in_memory());
        let spec = disk_spec(&[], false);
        assert_eq!(
            collect_at::<Disk>(&spec, "debian", &cache, 100),
            lines("disk.sda.in_progress 2\n disk.dm-0.in_progress 2\n disk.sr0.in_progress 0")
        );
        let next = collect_at::<Disk>(&spec, "debian-next", &cache, 110);
        assert!(
            next.starts_with(&lines(
                "disk.sda.reads 10
             disk.sda.writes 20
             disk.sda.read_bytes 819200
             disk.sda.write_bytes 1638400
             disk.sda.read_merged 1
             disk.sda.write_merged 2
             disk.sda.read_time 5
             disk.sda.write_time 30
             disk.sda.io_time 100
             disk.sda.weighted_io_time 150
             disk.sda.in_progress 3
             disk.dm-0.reads 10"
            )),
            "{next}"
        );
        let with_partitions = collect_at::<Disk>(
            &disk_spec(&["sda*"], true),
            "debian",
            &Arc::new(Cache::in_memory()),
            100,
        );
        assert_eq!(
            with_partitions,
            lines("disk.sda.in_progress 2\n disk.sda1.in_progress 0\n disk.sda2.in_progress 2")
        );
    }

    #[test]
    fn whether_a_device_is_a_partition_is_asked_once_while_it_is_listed() {
        let dir = crate::files::scratch::scratch("disk-kinds");
        let root = &dir.0;
        std::fs::create_dir_all(root.join("proc")).unwrap();
        std::fs::create_dir_all(root.join("sys/class/block/sda1")).unwrap();
        std::fs::write(root.join("sys/class/block/sda1/partition"), "1\n").unwrap();
        let line = |name| format!("8 0 {name} 1 0 8 1 2 0 16 3 4 5 6\n");
        let diskstats = root.join("proc/diskstats");
        std::fs::write(&diskstats, line("sda") + &line("sda1")).unwrap();
        let cache = Arc::new(Cache::in_memory());
        let ctx = SourceContext {
            procfs: Procfs::new(root),
            ..super::super::testing::context("debian", &cache)
        };
        let mut disk = Disk::build(&disk_spec(&[], false), &ctx);
        let only_sda = lines("disk.sda.in_progress 4");
        assert_eq!(collect_with(&mut disk, 100), only_sda);
        // sysfs is not asked again while sda1 is listed...
        std::fs::remove_file(root.join("sys/class/block/sda1/partition")).unwrap();
        assert!(collect_with(&mut disk, 110).ends_with("disk.sda.in_progress 4\n"));
        // ...but once it was gone from the list, it is.
        std::fs::write(&diskstats, line("sda")).unwrap();
        collect_with(&mut disk, 120);
        std::fs::write(&diskstats, line("sda") + &line("sda1")).unwrap();
        let out = collect_with(&mut disk, 130);
        assert!(out.contains("disk.sda1.in_progress 4\n"), "{out}");
    }
}
