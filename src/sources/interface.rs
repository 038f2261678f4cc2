//! `interface`: traffic of each network interface per second, from `/proc/net/dev`.

use std::sync::{Arc, Mutex};

use super::naming::ServiceName;
use super::{Build, Emitter, MetricInfo, Settings, Source, SourceContext, SourceError, SourceType};
use crate::aggregate::Rates;
use crate::cache::lock;
use crate::config::reader::{Problems, Table};
use crate::pattern::Selector;
use crate::procfs::KeptFiles;

/// The counters reported, by their column in `/proc/net/dev` after the interface name.
const COUNTERS: [(usize, &str); 8] = [
    (0, "rx_bytes"),
    (1, "rx_packets"),
    (2, "rx_errors"),
    (3, "rx_dropped"),
    (8, "tx_bytes"),
    (9, "tx_packets"),
    (10, "tx_errors"),
    (11, "tx_dropped"),
];

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "interface",
    description: "bytes, packets, errors and drops per second of each network interface",
    needs_two_samples: true,
    metrics: &[
        MetricInfo {
            name: "interface.<name>.rx_bytes",
            unit: "bytes_per_second",
            description: "bytes received",
        },
        MetricInfo {
            name: "interface.<name>.rx_packets",
            unit: "per_second",
            description: "packets received",
        },
        MetricInfo {
            name: "interface.<name>.rx_errors",
            unit: "per_second",
            description: "receive errors",
        },
        MetricInfo {
            name: "interface.<name>.rx_dropped",
            unit: "per_second",
            description: "received packets dropped",
        },
        MetricInfo {
            name: "interface.<name>.tx_bytes",
            unit: "bytes_per_second",
            description: "bytes sent",
        },
        MetricInfo {
            name: "interface.<name>.tx_packets",
            unit: "per_second",
            description: "packets sent",
        },
        MetricInfo {
            name: "interface.<name>.tx_errors",
            unit: "per_second",
            description: "send errors",
        },
        MetricInfo {
            name: "interface.<name>.tx_dropped",
            unit: "per_second",
            description: "packets dropped before sending",
        },
    ],
    read: super::read::<Interface>,
};

/// Settings of the `interface` source.
#[derive(Debug, Clone, PartialEq)]
pub struct InterfaceSpec {
    /// Which interfaces, by name glob: `include` (default: all) minus `exclude` (default `lo`).
    pub select: Selector,
}

impl Settings for InterfaceSpec {
    fn read(t: &mut Table<'_>, problems: &mut Problems) -> Option<InterfaceSpec> {
        let include: Vec<String> = t.get_or("include", Vec::new(), problems);
        let exclude = t.get_or("exclude", vec!["lo".to_owned()], problems);
        Some(InterfaceSpec {
            select: Selector::from_lists(&include, &exclude),
        })
    }
}

impl Build for Interface {
    type Settings = InterfaceSpec;
    const NEVER_WAITS: bool = true;

    fn build(spec: &InterfaceSpec, ctx: &SourceContext) -> Interface {
        Interface {
            files: KeptFiles::new(ctx.procfs.clone()),
            select: spec.select.clone(),
            rates: ctx.rates(),
            buf: String::new(),
            name: ServiceName::default(),
        }
    }
}

struct Interface {
    files: KeptFiles,
    select: Selector,
    rates: Arc<Mutex<Rates>>,
    buf: String,
    name: ServiceName,
}

impl Source for Interface {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        self.files.read_into("proc/net/dev", &mut self.buf)?;
        let mut rates = lock(&self.rates);
        // Two header lines, then `name: 16 counters`.
        for line in self.buf.lines().skip(2) {
            let Some((iface, counters)) = line.split_once(':') else {
                continue;
            };
            let iface = iface.trim();
            if !self.select.accepts(iface) {
                continue;
            }
            let mut values = [0u64; 16];
            for (slot, field) in values.iter_mut().zip(counters.split_ascii_whitespace()) {
                *slot = field.parse().unwrap_or(0);
            }
            self.name.start("interface", iface);
            for (column, metric) in COUNTERS {
                emit.rate(&mut rates, self.name.with(metric), values[column]);
            }
        }
        rates.end_round();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{collect_at, lines, read_config};
    use super::*;
    use crate::cache::Cache;

    fn spec(include: &[&str], exclude: &[&str]) -> InterfaceSpec {
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        InterfaceSpec {
            select: Selector::from_lists(&list(include), &list(exclude)),
        }
    }

    #[test]
    fn router_rates_across_a_32_bit_wrap_and_a_reset() {
        let cache = Arc::new(Cache::in_memory());
        let spec = spec(&[], &["lo"]);
        assert_eq!(
            collect_at::<Interface>(&spec, "openwrt", &cache, 100),
            "",
            "the first sample gives no rate"
        );
        assert_eq!(
            collect_at::<Interface>(&spec, "openwrt-next", &cache, 110),
            lines(
                "interface.eth0.rx_bytes 2000
                 interface.eth0.rx_packets 10
                 interface.eth0.rx_errors 0
                 interface.eth0.rx_dropped 0
                 interface.eth0.tx_bytes 10000
                 interface.eth0.tx_packets 20
                 interface.eth0.tx_errors 0
                 interface.eth0.tx_dropped 0
                 interface.eth0_2.rx_bytes 5000
                 interface.eth0_2.rx_packets 5
                 interface.eth0_2.rx_errors 0
                 interface.eth0_2.rx_dropped 0.2
                 interface.eth0_2.tx_bytes 2000
                 interface.eth0_2.tx_packets 3
                 interface.eth0_2.tx_errors 0
                 interface.eth0_2.tx_dropped 0
                 interface.br-lan.rx_bytes 3000
                 interface.br-lan.rx_packets 4
                 interface.br-lan.rx_errors 0
                 interface.br-lan.rx_dropped 0
                 interface.br-lan.tx_bytes 8000
                 interface.br-lan.tx_packets 6
                 interface.br-lan.tx_errors 0
                 interface.br-lan.tx_dropped 0
                 interface.wlan0.rx_errors 0
                 interface.wlan0.tx_errors 0
                 interface.phy0-ap0.rx_bytes 1000
                 interface.phy0-ap0.rx_packets 1
                 interface.phy0-ap0.rx_errors 0
                 interface.phy0-ap0.rx_dropped 0
                 interface.phy0-ap0.tx_bytes 5000
                 interface.phy0-ap0.tx_packets 4
                 interface.phy0-ap0.tx_errors 0
                 interface.phy0-ap0.tx_dropped 0"
            ),
            "eth0's receive bytes wrapped at 32 bits; wlan0 was re-created, so its counters reset"
        );
    }

    #[test]
    fn server_rates_across_a_64_bit_wrap_with_an_include_list() {
        let cache = Arc::new(Cache::in_memory());
        let spec = spec(&["enp*"], &[]);
        collect_at::<Interface>(&spec, "debian", &cache, 100);
        assert_eq!(
            collect_at::<Interface>(&spec, "debian-next", &cache, 110),
            lines(
                "interface.enp1s0.rx_bytes 200
                 interface.enp1s0.rx_packets 100
                 interface.enp1s0.rx_errors 0
                 interface.enp1s0.rx_dropped 0
                 interface.enp1s0.tx_bytes 100000
                 interface.enp1s0.tx_packets 50
                 interface.enp1s0.tx_errors 0
                 interface.enp1s0.tx_dropped 0"
            )
        );
    }

    #[test]
    fn lo_is_left_out_by_default() {
        let spec = read_config("{}", InterfaceSpec::read).unwrap();
        let cache = Arc::new(Cache::in_memory());
        collect_at::<Interface>(&spec, "debian", &cache, 100);
        let out = collect_at::<Interface>(&spec, "debian-next", &cache, 110);
        assert!(!out.contains("interface.lo."), "{out}");
        assert!(out.contains("interface.docker0.tx_bytes 0\n"), "{out}");
    }
}
