//! `df`: space and inodes of each mounted file system, from `/proc/self/mounts` and `statvfs`.
//! The mount table is read again only when the kernel marks it changed ([`MountTable`]).
//!
//! Pseudo file systems (proc, sysfs, cgroup, …) are left out by default. A read-only file system,
//! such as OpenWrt's squashfs `/rom`, is full by design: only what it uses is reported, so no
//! "disk full" alert ever fires on it. On OpenWrt the overlay `/` shows the space of its writable
//! layer, the same as `/overlay`.

use std::io;
use std::path::Path;

use super::naming::ServiceName;
use super::{Build, Emitter, MetricInfo, Settings, Source, SourceContext, SourceError, SourceType};
use crate::complain::Complaint;
use crate::config::reader::{Problems, Table};
use crate::pattern::Selector;
use crate::procfs::{MountTable, Procfs};

/// File system types left out unless `exclude_types` is set: they hold no data on a disk.
pub const PSEUDO_TYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "proc",
    "pstore",
    "ramfs",
    "rootfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "sysfs",
    "tracefs",
];

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "df",
    description: "used, free and reserved space and inodes of each mounted file system",
    needs_two_samples: false,
    metrics: &[
        MetricInfo {
            name: "df.<mount>.used",
            unit: "bytes",
            description: "space in use",
        },
        MetricInfo {
            name: "df.<mount>.free",
            unit: "bytes",
            description: "space available to unprivileged users (not for read-only mounts)",
        },
        MetricInfo {
            name: "df.<mount>.reserved",
            unit: "bytes",
            description: "space only root may use (not for read-only mounts)",
        },
        MetricInfo {
            name: "df.<mount>.percent_used",
            unit: "percent",
            description: "used / (used + free), as df shows it (not for read-only mounts)",
        },
        MetricInfo {
            name: "df.<mount>.inodes_used",
            unit: "count",
            description: "inodes in use (not for file systems without inodes)",
        },
        MetricInfo {
            name: "df.<mount>.inodes_free",
            unit: "count",
            description: "inodes free (not for read-only mounts)",
        },
        MetricInfo {
            name: "df.<mount>.inodes_percent_used",
            unit: "percent",
            description: "inodes used as a share of all (not for read-only mounts)",
        },
    ],
    read: super::read::<Df>,
};

pub use crate::sys::FsStats;

/// How a file system is asked for its counts: `statvfs` on a real system, a table in tests.
pub type StatFn = fn(&Path) -> io::Result<FsStats>;

/// Settings of the `df` source.
#[derive(Debug, Clone, PartialEq)]
pub struct DfSpec {
    /// Which mount points, by glob: `include` (default: all) minus `exclude` (default: none).
    pub mount_points: Selector,
    /// Which file system types: `include_types` (default: all) minus `exclude_types` (default:
    /// [`PSEUDO_TYPES`]).
    pub types: Selector,
}

impl Settings for DfSpec {
    fn read(t: &mut Table<'_>, problems: &mut Problems) -> Option<DfSpec> {
        let include: Vec<String> = t.get_or("include", Vec::new(), problems);
        let exclude: Vec<String> = t.get_or("exclude", Vec::new(), problems);
        let include_types: Vec<String> = t.get_or("include_types", Vec::new(), problems);
        let exclude_types = t.get_or(
            "exclude_types",
            PSEUDO_TYPES
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
            problems,
        );
        Some(DfSpec {
            mount_points: Selector::from_lists(&include, &exclude),
            types: Selector::from_lists(&include_types, &exclude_types),
        })
    }
}

impl Build for Df {
    type Settings = DfSpec;

    fn build(spec: &DfSpec, ctx: &SourceContext) -> Df {
        Df::new(spec.clone(), ctx, crate::sys::statvfs)
    }
}

struct Df {
    spec: DfSpec,
    /// Where the mount points are asked for their counts.
    procfs: Procfs,
    mounts: MountTable,
    stat: StatFn,
    name: ServiceName,
    complaint: Complaint,
}

/// One line of `/proc/self/mounts`, with the mount point unescaped.
#[derive(Debug, PartialEq, Eq)]
struct Mount<'a> {
    point: String,
    kind: &'a str,
    read_only: bool,
}

impl Df {
    fn new(spec: DfSpec, ctx: &SourceContext, stat: StatFn) -> Df {
        let complaint = Complaint::new(super::log_target(&ctx.instance));
        Df {
            spec,
            procfs: ctx.procfs.clone(),
            mounts: MountTable::new(ctx.procfs.clone()),
            stat,
            name: ServiceName::default(),
            complaint,
        }
    }
}

impl Source for Df {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        let mounts: Vec<Mount<'_>> = self
            .mounts
            .read()?
            .lines()
            .filter_map(parse_mount)
            .collect();
        let mut failed = Vec::new();
        for (i, m) in mounts.iter().enumerate() {
            // A mount point mounted over again shows only the last (top) mount. Asked last, of
            // the mounts the filters keep: a host with hundreds of mounts (containers' among
            // them) compares a few of them with the rest, not every pair.
            if !self.spec.types.accepts(m.kind)
                || !self.spec.mount_points.accepts(&m.point)
                || mounts[i + 1..].iter().any(|later| later.point == m.point)
            {
                continue;
            }
            let stats = match (self.stat)(&self.procfs.path(&m.point)) {
                Ok(s) => s,
                Err(e) => {
                    failed.push(format!("{}: {e}", m.point));
                    continue;
                }
            };
            if stats.blocks == 0 {
                // A pseudo file system not in the type list: it has no size to report.
                continue;
            }
            self.name.start_mount("df", &m.point);
            report(emit, &mut self.name, &stats, m.read_only);
        }
        if failed.is_empty() {
            self.complaint.recover();
        } else {
            self.complaint
                .fail(&format!("cannot stat {}", failed.join(", ")));
        }
        Ok(())
    }
}

fn report(emit: &mut Emitter<'_>, name: &mut ServiceName, s: &FsStats, read_only: bool) {
    let bytes = |blocks: u64| blocks.saturating_mul(s.fragment_size);
    let used = bytes(s.blocks.saturating_sub(s.blocks_free));
    emit.metric(name.with("used"), used);
    if !read_only {
        let free = bytes(s.blocks_available);
        emit.metric(name.with("free"), free);
        emit.metric(
            name.with("reserved"),
            bytes(s.blocks_free.saturating_sub(s.blocks_available)),
        );
        if used + free > 0 {
            emit.metric(
                name.with("percent_used"),
                used as f64 * 100.0 / (used + free) as f64,
            );
        }
    }
    if s.inodes > 0 {
        let inodes_used = s.inodes.saturating_sub(s.inodes_free);
        emit.metric(name.with("inodes_used"), inodes_used);
        if !read_only {
            emit.metric(name.with("inodes_free"), s.inodes_free);
            emit.metric(
                name.with("inodes_percent_used"),
                inodes_used as f64 * 100.0 / s.inodes as f64,
            );
        }
    }
}

/// `device mount-point type options 0 0`, where the mount point escapes space, tab, newline and
/// backslash as octal (`\040`).
fn parse_mount(line: &str) -> Option<Mount<'_>> {
    let mut fields = line.split(' ');
    let _device = fields.next()?;
    let point = unescape(fields.next()?);
    let kind = fields.next()?;
    let read_only = fields.next()?.split(',').any(|o| o == "ro");
    Some(Mount {
        point,
        kind,
        read_only,
    })
}

fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testing::{collect_with, context, lines, read_config};
    use super::*;
    use crate::cache::Cache;

    /// What statvfs would say on the fixture router and server, by mount point.
    fn fixture_stats(path: &Path) -> io::Result<FsStats> {
        let fs = |blocks, blocks_free, blocks_available, inodes, inodes_free| {
            Ok(FsStats {
                fragment_size: 4096,
                blocks,
                blocks_free,
                blocks_available,
                inodes,
                inodes_free,
            })
        };
        let full = path.to_string_lossy();
        let rel = full
            .rsplit_once("/tests/fixtures/")
            .map_or("", |(_, rel)| rel);
        match rel.split_once('/').unwrap_or((rel, "")) {
            ("openwrt", "rom") => fs(1000, 0, 0, 1500, 0),
            ("openwrt", "tmp") => fs(30000, 29000, 29000, 30000, 29500),
            ("openwrt", "overlay" | "") => fs(2000, 1500, 1400, 0, 0),
            ("openwrt", "dev") => fs(128, 128, 128, 30000, 29900),
            ("debian", "") => fs(1_000_000, 400_000, 350_000, 500_000, 400_000),
            ("debian", "run") => fs(200_000, 199_000, 199_000, 1_000_000, 999_000),
            ("debian", "boot/efi") => fs(130_000, 120_000, 120_000, 0, 0),
            ("debian", "srv/data store") => Err(io::Error::from(io::ErrorKind::PermissionDenied)),
            _ => fs(0, 0, 0, 0, 0),
        }
    }

    fn collect(spec: DfSpec, root: &str) -> String {
        let ctx = context(root, &Arc::new(Cache::in_memory()));
        collect_with(&mut Df::new(spec, &ctx, fixture_stats), 100)
    }

    fn default_spec() -> DfSpec {
        read_config("{}", DfSpec::read).unwrap()
    }

    #[test]
    fn a_router_s_rom_overlay_and_tmp() {
        assert_eq!(
            collect(default_spec(), "openwrt"),
            lines(
                "df.rom.used 4096000
                 df.rom.inodes_used 1500
                 df.tmp.used 4096000
                 df.tmp.free 118784000
                 df.tmp.reserved 0
                 df.tmp.percent_used 3.333333
                 df.tmp.inodes_used 500
                 df.tmp.inodes_free 29500
                 df.tmp.inodes_percent_used 1.666667
                 df.overlay.used 2048000
                 df.overlay.free 5734400
                 df.overlay.reserved 409600
                 df.overlay.percent_used 26.315789
                 df.root.used 2048000
                 df.root.free 5734400
                 df.root.reserved 409600
                 df.root.percent_used 26.315789
                 df.dev.used 0
                 df.dev.free 524288
                 df.dev.reserved 0
                 df.dev.percent_used 0
                 df.dev.inodes_used 100
                 df.dev.inodes_free 29900
                 df.dev.inodes_percent_used 0.333333"
            )
        );
    }

    #[test]
    fn a_server_by_mount_point_and_type() {
        let spec = DfSpec {
            mount_points: Selector::from_lists(&[], &["/run".into()]),
            types: Selector::from_lists(&["ext4".into(), "vfat".into(), "xfs".into()], &[]),
        };
        assert_eq!(
            collect(spec, "debian"),
            lines(
                "df.root.used 2457600000
                 df.root.free 1433600000
                 df.root.reserved 204800000
                 df.root.percent_used 63.157895
                 df.root.inodes_used 100000
                 df.root.inodes_free 400000
                 df.root.inodes_percent_used 20
                 df.boot-efi.used 40960000
                 df.boot-efi.free 491520000
                 df.boot-efi.reserved 0
                 df.boot-efi.percent_used 7.692308"
            ),
            "the xfs mount cannot be read and is left out"
        );
    }

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(
            parse_mount("/dev/sdb1 /srv/data\\040store xfs ro,relatime 0 0"),
            Some(Mount {
                point: "/srv/data store".into(),
                kind: "xfs",
                read_only: true
            })
        );
        assert_eq!(unescape("a\\134b\\x"), "a\\b\\x");
    }
}
