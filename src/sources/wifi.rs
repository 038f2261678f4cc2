//! `wifi`: each Wi-Fi interface's channel, transmit power, noise floor and stations, and each
//! station's signal, rates and traffic, over nl80211 as `iw` and OpenWrt's iwinfo ask for them
//! (what collectd's iwinfo plugin gives luci-app-statistics, plus the stations one by one).
//!
//! Stations are reported one by one up to `max_stations` per interface (the rest are counted),
//! or not at all with `per_station: false`; the interface's own lines summarise them either
//! way. A station that leaves is no longer reported. A kernel without nl80211 (no Wi-Fi driver)
//! reports nothing, said once; the `wireless` source still reads `/proc/net/wireless` there.

use std::sync::{Arc, Mutex};

use super::bound::Bound;
use super::naming::push_segment;
use super::{Build, Emitter, MetricInfo, Settings, Source, SourceContext, SourceError, SourceType};
use crate::aggregate::Rates;
use crate::cache::lock;
use crate::config::reader::{Problems, Table};
use crate::netlink::NetlinkError;
use crate::netlink::nl80211::{Interface, Nl80211, Station, channel};
use crate::pattern::Selector;

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "wifi",
    description: "channel, transmit power, noise and stations of each Wi-Fi interface, and each station's signal, rates and traffic (nl80211)",
    needs_two_samples: true,
    metrics: &[
        MetricInfo {
            name: "wifi.<interface>.frequency",
            unit: "MHz",
            description: "the operating frequency",
        },
        MetricInfo {
            name: "wifi.<interface>.channel",
            unit: "",
            description: "the IEEE 802.11 channel number of that frequency",
        },
        MetricInfo {
            name: "wifi.<interface>.tx_power",
            unit: "dBm",
            description: "the transmit power",
        },
        MetricInfo {
            name: "wifi.<interface>.noise",
            unit: "dBm",
            description: "the noise floor of the channel in use, from the driver's channel survey (not sent by drivers without one)",
        },
        MetricInfo {
            name: "wifi.<interface>.stations",
            unit: "count",
            description: "stations: an access point's clients, a client's access point, a mesh point's peers",
        },
        MetricInfo {
            name: "wifi.<interface>.signal",
            unit: "dBm",
            description: "the mean signal of the stations (for a client: its access point's)",
        },
        MetricInfo {
            name: "wifi.<interface>.rx_bitrate",
            unit: "bits_per_second",
            description: "the mean rate of the last frame received from each station",
        },
        MetricInfo {
            name: "wifi.<interface>.tx_bitrate",
            unit: "bits_per_second",
            description: "the mean rate of the last frame sent to each station",
        },
        MetricInfo {
            name: "wifi.<interface>.stations_not_reported",
            unit: "count",
            description: "stations past max_stations, counted in `stations` but not reported one by one",
        },
        MetricInfo {
            name: "wifi.<interface>.station.<station>.signal",
            unit: "dBm",
            description: "the signal of the last frame received from the station (`<station>` is its MAC address, also in the attribute `station`)",
        },
        MetricInfo {
            name: "wifi.<interface>.station.<station>.rx_bitrate",
            unit: "bits_per_second",
            description: "the rate of the last frame received from it",
        },
        MetricInfo {
            name: "wifi.<interface>.station.<station>.tx_bitrate",
            unit: "bits_per_second",
            description: "the rate of the last frame sent to it",
        },
        MetricInfo {
            name: "wifi.<interface>.station.<station>.rx_bytes",
            unit: "bytes_per_second",
            description: "bytes received from it",
        },
        MetricInfo {
            name: "wifi.<interface>.station.<station>.tx_bytes",
            unit: "bytes_per_second",
            description: "bytes sent to it",
        },
        MetricInfo {
            name: "wifi.<interface>.station.<station>.rx_packets",
            unit: "per_second",
            description: "packets received from it",
        },
        MetricInfo {
            name: "wifi.<interface>.station.<station>.tx_packets",
            unit: "per_second",
            description: "packets sent to it",
        },
        MetricInfo {
            name: "wifi.<interface>.station.<station>.inactive",
            unit: "seconds",
            description: "time since it was last heard",
        },
        MetricInfo {
            name: "wifi.<interface>.station.<station>.connected",
            unit: "seconds",
            description: "time since it connected",
        },
    ],
    read: super::read::<Wifi>,
};

/// Settings of the `wifi` source.
#[derive(Debug, Clone, PartialEq)]
pub struct WifiSpec {
    /// Which interfaces, by name glob: `include` (default: all) minus `exclude` (default: none).
    pub select: Selector,
    /// Whether stations are reported one by one (default), or only summarised per interface.
    pub per_station: bool,
    /// At most this many stations per interface are reported one by one (default 64).
    pub max_stations: usize,
}

impl Settings for WifiSpec {
    fn read(t: &mut Table<'_>, problems: &mut Problems) -> Option<WifiSpec> {
        let include: Vec<String> = t.get_or("include", Vec::new(), problems);
        let exclude: Vec<String> = t.get_or("exclude", Vec::new(), problems);
        let per_station = t.get_or("per_station", true, problems);
        let max_stations = t.number_in("max_stations", 64, 1, 10_000, problems) as usize;
        Some(WifiSpec {
            select: Selector::from_lists(&include, &exclude),
            per_station,
            max_stations,
        })
    }
}

impl Build for Wifi {
    type Settings = WifiSpec;
    const NEVER_WAITS: bool = true;

    fn build(spec: &WifiSpec, ctx: &SourceContext) -> Wifi {
        let target = super::log_target(&ctx.instance);
        Wifi {
            spec: spec.clone(),
            rates: ctx.rates(),
            bound: Bound::new(spec.max_stations, "stations", "max_stations", &target),
            target,
            nl: None,
            told: false,
            radios: Vec::new(),
            name: String::new(),
        }
    }
}

/// One interface as listed, with what was asked about it.
#[derive(Debug)]
struct Radio {
    interface: Interface,
    /// The noise floor of the channel in use, from the survey.
    noise: Option<i8>,
    stations: Vec<Station>,
}

struct Wifi {
    spec: WifiSpec,
    rates: Arc<Mutex<Rates>>,
    bound: Bound,
    target: String,
    /// The nl80211 socket, opened at the first collection and kept.
    nl: Option<Nl80211>,
    /// Whether a kernel without nl80211 was logged.
    told: bool,
    radios: Vec<Radio>,
    /// A reused service name.
    name: String,
}

impl Source for Wifi {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        match self.list() {
            Err(e) if e.is_unsupported() => {
                self.nl = None;
                if !self.told {
                    log::info!(
                        target: &self.target,
                        "no Wi-Fi to report ({e}); the `wireless` source reads /proc/net/wireless"
                    );
                    self.told = true;
                }
                return Ok(());
            }
            Err(e) => {
                // A fresh socket next time: a half-read dump must not confuse the next one.
                self.nl = None;
                return Err(SourceError::Netlink(e));
            }
            Ok(()) => {}
        }
        self.report(emit);
        Ok(())
    }
}

/// What `listed` gave, with a refusal for lack of support (a driver without a survey, an
/// interface gone since it was listed) taken as nothing.
fn or_none(listed: Result<(), NetlinkError>) -> Result<(), NetlinkError> {
    match listed {
        Err(e) if e.is_unsupported() => Ok(()),
        other => other,
    }
}

impl Wifi {
    /// Lists the selected interfaces with their survey and stations.
    fn list(&mut self) -> Result<(), NetlinkError> {
        self.radios.clear();
        let nl = match &mut self.nl {
            Some(nl) => nl,
            None => self.nl.insert(Nl80211::open()?),
        };
        let mut interfaces = Vec::new();
        nl.interfaces(&mut |i| interfaces.push(i))?;
        for interface in interfaces {
            // Without a network interface (a P2P device) there is nothing to name it by.
            if interface.ifindex == 0 || !self.spec.select.accepts(&interface.name) {
                continue;
            }
            let mut noise = None;
            or_none(nl.survey(interface.ifindex, &mut |s| {
                if s.in_use {
                    noise = s.noise;
                }
            }))?;
            let mut stations = Vec::new();
            if interface.has_stations() {
                or_none(nl.stations(interface.ifindex, &mut |s| stations.push(s)))?;
            }
            self.radios.push(Radio {
                interface,
                noise,
                stations,
            });
        }
        Ok(())
    }

    /// Emits what was listed.
    fn report(&mut self, emit: &mut Emitter<'_>) {
        let mut rates = lock(&self.rates);
        for radio in &self.radios {
            let i = &radio.interface;
            let from = emit.len();
            self.name.clear();
            self.name.push_str("wifi.");
            push_segment(&mut self.name, &i.name);
            self.name.push('.');
            let stem = self.name.len();
            let mut metric = |emit: &mut Emitter<'_>, metric: &str, value: f64| {
                self.name.truncate(stem);
                self.name.push_str(metric);
                emit.metric(&self.name, value);
            };
            if let Some(mhz) = i.frequency {
                metric(emit, "frequency", mhz.into());
                if let Some(ch) = channel(mhz) {
                    metric(emit, "channel", ch.into());
                }
            }
            if let Some(mbm) = i.tx_power_mbm {
                metric(emit, "tx_power", f64::from(mbm) / 100.0);
            }
            if let Some(noise) = radio.noise {
                metric(emit, "noise", noise.into());
            }
            if i.has_stations() {
                let s = &radio.stations;
                metric(emit, "stations", s.len() as f64);
                for (name, mean) in [
                    ("signal", mean(s, |s| s.signal.map(f64::from))),
                    ("rx_bitrate", mean(s, |s| s.rx_bitrate.map(|r| r as f64))),
                    ("tx_bitrate", mean(s, |s| s.tx_bitrate.map(|r| r as f64))),
                ] {
                    if let Some(mean) = mean {
                        metric(emit, name, mean);
                    }
                }
            }
            if self.spec.per_station && i.has_stations() {
                let macs: Vec<String> = radio.stations.iter().map(Station::mac_text).collect();
                let chosen = self.bound.choose(&i.name, &macs);
                let left_out = chosen.iter().filter(|c| !**c).count();
                self.name.truncate(stem);
                self.name.push_str("stations_not_reported");
                emit.metric(&self.name, left_out as u64);
                for ((station, mac), _) in radio
                    .stations
                    .iter()
                    .zip(&macs)
                    .zip(&chosen)
                    .filter(|(_, c)| **c)
                {
                    self.name.truncate(stem);
                    self.name.push_str("station.");
                    push_segment(&mut self.name, mac);
                    self.name.push('.');
                    let from = emit.len();
                    report_station(emit, &mut rates, &mut self.name, station);
                    emit.attribute_since(from, "station", mac);
                }
            }
            emit.attribute_since(from, "radio", &format!("phy{}", i.wiphy));
            emit.attribute_since(from, "mode", i.type_name());
        }
        self.bound.end_round();
        rates.end_round();
    }
}

/// Emits one station's lines, each named `name` (its stem) and the metric.
fn report_station(emit: &mut Emitter<'_>, rates: &mut Rates, name: &mut String, s: &Station) {
    let stem = name.len();
    let mut named = |metric: &str| {
        name.truncate(stem);
        name.push_str(metric);
        name.clone()
    };
    let gauges = [
        ("signal", s.signal.map(f64::from)),
        ("rx_bitrate", s.rx_bitrate.map(|r| r as f64)),
        ("tx_bitrate", s.tx_bitrate.map(|r| r as f64)),
    ];
    for (metric, value) in gauges {
        if let Some(v) = value {
            emit.metric(&named(metric), v);
        }
    }
    let counters = [
        ("rx_bytes", s.rx_bytes),
        ("tx_bytes", s.tx_bytes),
        ("rx_packets", s.rx_packets.map(u64::from)),
        ("tx_packets", s.tx_packets.map(u64::from)),
    ];
    for (metric, value) in counters {
        if let Some(v) = value {
            emit.rate(rates, &named(metric), v);
        }
    }
    if let Some(ms) = s.inactive_ms {
        emit.metric(&named("inactive"), f64::from(ms) / 1000.0);
    }
    if let Some(secs) = s.connected_s {
        emit.metric(&named("connected"), secs);
    }
}

/// The mean of what `value` gives for the stations that have it; `None` when none has.
fn mean(stations: &[Station], value: impl Fn(&Station) -> Option<f64>) -> Option<f64> {
    let (sum, n) = stations
        .iter()
        .filter_map(value)
        .fold((0.0, 0u32), |(sum, n), v| (sum + v, n + 1));
    (n > 0).then(|| sum / f64::from(n))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{collect_with, context, emitter, lines, read_config, render};
    use super::*;
    use crate::cache::Cache;
    use crate::config::reader::Problems;
    use crate::netlink::nl80211::{fixture, parse_interface, parse_station, parse_survey};

    /// The box of `tests/fixtures/netlink/build_nl80211.py`: `phy0-ap0` with three clients,
    /// `phy1-ap0` with none and a survey, `phy1-sta0` connected to its access point.
    fn radios() -> Vec<Radio> {
        let interfaces = fixture("nl80211-interfaces.bin", parse_interface);
        let noise = fixture("nl80211-survey-6.bin", parse_survey)
            .iter()
            .find(|s| s.in_use)
            .and_then(|s| s.noise);
        interfaces
            .into_iter()
            .filter(|i| i.ifindex != 0)
            .map(|interface| Radio {
                noise: noise.filter(|_| interface.ifindex == 6),
                stations: match interface.ifindex {
                    5 => fixture("nl80211-stations-5.bin", parse_station),
                    7 => fixture("nl80211-stations-7.bin", parse_station),
                    _ => Vec::new(),
                },
                interface,
            })
            .collect()
    }

    fn spec(per_station: bool, max_stations: usize) -> WifiSpec {
        WifiSpec {
            select: Selector::from_lists(&[], &[]),
            per_station,
            max_stations,
        }
    }

    fn on_fixtures(spec: WifiSpec) -> Wifi {
        let mut source = Wifi::build(&spec, &context("openwrt", &Arc::new(Cache::in_memory())));
        source.radios = radios();
        source
    }

    fn report_at(source: &mut Wifi, secs: u64) -> Vec<crate::Event> {
        let template = super::super::testing::template();
        let mut emit = emitter(&template, secs);
        source.report(&mut emit);
        emit.into_events()
    }

    const PHY0: &str = "
        wifi.phy0-ap0.frequency 2437
        wifi.phy0-ap0.channel 6
        wifi.phy0-ap0.tx_power 20
        wifi.phy0-ap0.stations 3
        wifi.phy0-ap0.signal -58
        wifi.phy0-ap0.rx_bitrate 68000000
        wifi.phy0-ap0.tx_bitrate 3322200000";

    const PHY1: &str = "
        wifi.phy1-ap0.frequency 5180
        wifi.phy1-ap0.channel 36
        wifi.phy1-ap0.tx_power 23
        wifi.phy1-ap0.noise -92
        wifi.phy1-ap0.stations 0";

    const PHY1_STA: &str = "
        wifi.phy1-sta0.frequency 5180
        wifi.phy1-sta0.channel 36
        wifi.phy1-sta0.tx_power 23
        wifi.phy1-sta0.stations 1
        wifi.phy1-sta0.signal -58
        wifi.phy1-sta0.rx_bitrate 480400000
        wifi.phy1-sta0.tx_bitrate 576500000";

    #[test]
    fn interfaces_and_stations_with_rates_from_the_second_collection() {
        let mut source = on_fixtures(spec(true, 64));
        let first = report_at(&mut source, 100);
        assert_eq!(
            render(&first),
            lines(&format!(
                "{PHY0}
                 wifi.phy0-ap0.stations_not_reported 0
                 wifi.phy0-ap0.station.02:11:22:33:44:a1.signal -45
                 wifi.phy0-ap0.station.02:11:22:33:44:a1.rx_bitrate 130000000
                 wifi.phy0-ap0.station.02:11:22:33:44:a1.tx_bitrate 144400000
                 wifi.phy0-ap0.station.02:11:22:33:44:a1.inactive 0.12
                 wifi.phy0-ap0.station.02:11:22:33:44:a1.connected 3600
                 wifi.phy0-ap0.station.02:11:22:33:44:a2.signal -71
                 wifi.phy0-ap0.station.02:11:22:33:44:a2.rx_bitrate 6000000
                 wifi.phy0-ap0.station.02:11:22:33:44:a2.tx_bitrate 6500000000
                 wifi.phy0-ap0.station.02:11:22:33:44:a2.inactive 2.5
                 wifi.phy0-ap0.station.02:11:22:33:44:a2.connected 42
                 wifi.phy0-ap0.station.02:11:22:33:44:a3.inactive 0
                 wifi.phy0-ap0.station.02:11:22:33:44:a3.connected 0
                 {PHY1}
                 wifi.phy1-ap0.stations_not_reported 0
                 {PHY1_STA}
                 wifi.phy1-sta0.stations_not_reported 0
                 wifi.phy1-sta0.station.02:11:22:33:44:01.signal -58
                 wifi.phy1-sta0.station.02:11:22:33:44:01.rx_bitrate 480400000
                 wifi.phy1-sta0.station.02:11:22:33:44:01.tx_bitrate 576500000
                 wifi.phy1-sta0.station.02:11:22:33:44:01.inactive 0.01
                 wifi.phy1-sta0.station.02:11:22:33:44:01.connected 86400"
            )),
            "one sample: no rate yet"
        );
        let a1 = first
            .iter()
            .find(|e| e.service.ends_with("a1.signal"))
            .unwrap();
        assert_eq!(a1.attributes["station"], "02:11:22:33:44:a1");
        assert_eq!(a1.attributes["radio"], "phy0");
        assert_eq!(a1.attributes["mode"], "ap");
        let sta = first
            .iter()
            .find(|e| e.service == "wifi.phy1-sta0.signal")
            .unwrap();
        assert_eq!(
            (
                sta.attributes["radio"].as_str(),
                sta.attributes["mode"].as_str()
            ),
            ("phy1", "station")
        );
        assert!(!sta.attributes.contains_key("station"));

        // Ten seconds later: a2 left; a1 and the upstream access point moved traffic.
        source.radios[0].stations.remove(1);
        for radio in &mut source.radios {
            for s in &mut radio.stations {
                s.rx_bytes = s.rx_bytes.map(|b| b + 10_000);
                s.tx_bytes = s.tx_bytes.map(|b| b + 50_000);
                s.rx_packets = s.rx_packets.map(|p| p + 10);
                s.tx_packets = s.tx_packets.map(|p| p + 20);
            }
        }
        let second = render(&report_at(&mut source, 110));
        let a1: Vec<&str> = second
            .lines()
            .filter(|l| l.contains(":a1.") && l.contains("_"))
            .collect();
        assert_eq!(
            a1,
            [
                "wifi.phy0-ap0.station.02:11:22:33:44:a1.rx_bitrate 130000000",
                "wifi.phy0-ap0.station.02:11:22:33:44:a1.tx_bitrate 144400000",
                "wifi.phy0-ap0.station.02:11:22:33:44:a1.rx_bytes 1000",
                "wifi.phy0-ap0.station.02:11:22:33:44:a1.tx_bytes 5000",
                "wifi.phy0-ap0.station.02:11:22:33:44:a1.rx_packets 1",
                "wifi.phy0-ap0.station.02:11:22:33:44:a1.tx_packets 2",
            ]
        );
        assert!(
            !second.contains(":a2."),
            "a station that left is not reported"
        );
        assert!(second.contains("wifi.phy0-ap0.stations 2\n"));
        assert!(second.contains("wifi.phy1-sta0.station.02:11:22:33:44:01.rx_bytes 1000\n"));
    }

    #[test]
    fn past_max_stations_the_rest_are_counted() {
        let mut source = on_fixtures(spec(true, 2));
        let got = render(&report_at(&mut source, 100));
        assert!(got.contains("wifi.phy0-ap0.stations 3\n"), "{got}");
        assert!(
            got.contains("wifi.phy0-ap0.stations_not_reported 1\n"),
            "{got}"
        );
        assert!(got.contains(":a1.signal") && got.contains(":a2.signal"));
        assert!(!got.contains(":a3."), "{got}");
        assert!(source.bound.is_over("phy0-ap0"));
        assert!(!source.bound.is_over("phy1-sta0"));
    }

    #[test]
    fn without_per_station_only_the_interfaces_are_reported() {
        let mut source = on_fixtures(spec(false, 64));
        assert_eq!(
            render(&report_at(&mut source, 100)),
            lines(&format!("{PHY0}{PHY1}{PHY1_STA}"))
        );
    }

    #[test]
    fn the_config_keys_and_their_limits() {
        let given = read_config(
            r#"{"exclude": ["phy1-*"], "per_station": false, "max_stations": 5}"#,
            WifiSpec::read,
        )
        .unwrap();
        let expected = WifiSpec {
            select: Selector::from_lists(&[], &["phy1-*".to_owned()]),
            per_station: false,
            max_stations: 5,
        };
        assert_eq!(format!("{given:?}"), format!("{expected:?}"));
        let defaults = read_config("{}", WifiSpec::read).unwrap();
        assert_eq!(format!("{defaults:?}"), format!("{:?}", spec(true, 64)));
        let doc = crate::config::json::parse(r#"{"max_stations": 0}"#).unwrap();
        let mut problems = Problems::new("pipit.json");
        let mut t = crate::config::reader::Field::root(&doc)
            .table(&mut problems)
            .unwrap();
        WifiSpec::read(&mut t, &mut problems);
        let errors = format!("{:?}", problems.into_errors());
        assert!(
            errors.contains("max_stations") && errors.contains("from 1 to 10000"),
            "{errors}"
        );
    }

    #[test]
    fn a_kernel_without_nl80211_reports_nothing_and_says_so_once() {
        let mut source = Wifi::build(
            &spec(true, 64),
            &context("openwrt", &Arc::new(Cache::in_memory())),
        );
        let first = collect_with(&mut source, 100);
        if Nl80211::open().is_ok() {
            // A kernel with Wi-Fi (not the one this was written on) answers without complaint.
            assert!(!source.told);
            return;
        }
        assert_eq!(first, "");
        assert!(source.told, "logged");
        assert_eq!(collect_with(&mut source, 110), "");
    }
}
