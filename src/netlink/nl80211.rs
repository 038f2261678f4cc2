//! Wi-Fi over nl80211, the generic netlink family of the kernel's wireless stack (cfg80211), the
//! way `iw` and OpenWrt's iwinfo ask it: the wireless interfaces with their radio, channel and
//! transmit power (`NL80211_CMD_GET_INTERFACE`), the stations of one interface with their signal,
//! rates and counters (`NL80211_CMD_GET_STATION`), and the channel survey with its noise floor
//! (`NL80211_CMD_GET_SURVEY`). Every one is a dump; none needs a privilege.
//!
//! Layouts are those of `include/uapi/linux/nl80211.h`.

use super::genl::Genl;
use super::{Attributes, NetlinkError, push_attribute, text, u16_at, u32_at, u64_at};

/// The family's name.
pub const FAMILY: &str = "nl80211";
/// `NL80211_CMD_GET_INTERFACE`, answered by one message per interface.
const CMD_GET_INTERFACE: u8 = 5;
/// `NL80211_CMD_GET_STATION`, answered by one message per station of the interface asked.
const CMD_GET_STATION: u8 = 17;
/// `NL80211_CMD_GET_SURVEY`, answered by one message per channel surveyed.
const CMD_GET_SURVEY: u8 = 50;

/// The radio (wiphy) index, u32 (`NL80211_ATTR_WIPHY`).
const ATTR_WIPHY: u16 = 1;
/// The network interface's index, u32 (`NL80211_ATTR_IFINDEX`).
const ATTR_IFINDEX: u16 = 3;
/// The network interface's name, NUL-terminated (`NL80211_ATTR_IFNAME`).
const ATTR_IFNAME: u16 = 4;
/// The interface type, u32 (`NL80211_ATTR_IFTYPE`, `enum nl80211_iftype`).
const ATTR_IFTYPE: u16 = 5;
/// A station's MAC address, 6 bytes (`NL80211_ATTR_MAC`).
const ATTR_MAC: u16 = 6;
/// A station's statistics, nested (`NL80211_ATTR_STA_INFO`).
const ATTR_STA_INFO: u16 = 21;
/// The operating frequency in MHz, u32 (`NL80211_ATTR_WIPHY_FREQ`).
const ATTR_WIPHY_FREQ: u16 = 38;
/// One channel's survey, nested (`NL80211_ATTR_SURVEY_INFO`).
const ATTR_SURVEY_INFO: u16 = 84;
/// The transmit power in mBm (hundredths of a dBm), u32 (`NL80211_ATTR_WIPHY_TX_POWER_LEVEL`).
const ATTR_WIPHY_TX_POWER_LEVEL: u16 = 98;

/// In `STA_INFO`: milliseconds since the station was last heard, u32.
const STA_INFO_INACTIVE_TIME: u16 = 1;
/// In `STA_INFO`: bytes received from the station, u32 (wraps; see the 64-bit one).
const STA_INFO_RX_BYTES: u16 = 2;
/// In `STA_INFO`: bytes sent to the station, u32.
const STA_INFO_TX_BYTES: u16 = 3;
/// In `STA_INFO`: the signal of the last frame received, dBm as a signed byte.
const STA_INFO_SIGNAL: u16 = 7;
/// In `STA_INFO`: the rate of the last frame sent, nested `enum nl80211_rate_info`.
const STA_INFO_TX_BITRATE: u16 = 8;
/// In `STA_INFO`: packets received, u32.
const STA_INFO_RX_PACKETS: u16 = 9;
/// In `STA_INFO`: packets sent, u32.
const STA_INFO_TX_PACKETS: u16 = 10;
/// In `STA_INFO`: the averaged signal, dBm as a signed byte.
const STA_INFO_SIGNAL_AVG: u16 = 13;
/// In `STA_INFO`: the rate of the last frame received, nested.
const STA_INFO_RX_BITRATE: u16 = 14;
/// In `STA_INFO`: seconds since the station connected, u32.
const STA_INFO_CONNECTED_TIME: u16 = 16;
/// In `STA_INFO`: bytes received, u64.
const STA_INFO_RX_BYTES64: u16 = 23;
/// In `STA_INFO`: bytes sent, u64.
const STA_INFO_TX_BYTES64: u16 = 24;

/// In a rate: the bitrate in 100 kbit/s, u16 (0 when it does not fit).
const RATE_INFO_BITRATE: u16 = 1;
/// In a rate: the bitrate in 100 kbit/s, u32.
const RATE_INFO_BITRATE32: u16 = 5;

/// In a survey: the channel's frequency in MHz, u32.
const SURVEY_INFO_FREQUENCY: u16 = 1;
/// In a survey: the noise floor, dBm as a signed byte.
const SURVEY_INFO_NOISE: u16 = 2;
/// In a survey: a flag, present on the channel the interface is on.
const SURVEY_INFO_IN_USE: u16 = 3;

/// One wireless interface (`enum nl80211_iftype` in [`Interface::iftype`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Interface {
    /// The network interface's index; 0 for one without a network interface (a P2P device).
    pub ifindex: u32,
    /// The network interface's name, such as `phy0-ap0` or `wlan0`; empty without one.
    pub name: String,
    /// The radio it runs on (`phy<wiphy>`).
    pub wiphy: u32,
    /// Its type: 2 a station (client), 3 an access point, 6 a monitor, 7 a mesh point, …
    pub iftype: u32,
    /// The operating frequency in MHz, when it is on a channel.
    pub frequency: Option<u32>,
    /// The transmit power in mBm (hundredths of a dBm), when the driver tells.
    pub tx_power_mbm: Option<i32>,
}

impl Interface {
    /// The type's name as `iw` prints it, lower case (`ap`, `station`, …).
    pub fn type_name(&self) -> &'static str {
        match self.iftype {
            1 => "adhoc",
            2 => "station",
            3 => "ap",
            4 => "ap_vlan",
            5 => "wds",
            6 => "monitor",
            7 => "mesh_point",
            8 => "p2p_client",
            9 => "p2p_go",
            10 => "p2p_device",
            11 => "ocb",
            12 => "nan",
            _ => "unknown",
        }
    }

    /// True for the types that have stations to list: an access point lists its clients, a
    /// client its access point, a mesh point its peers. Monitors and devices without a network
    /// interface have none.
    pub fn has_stations(&self) -> bool {
        self.ifindex != 0 && matches!(self.iftype, 1..=5 | 7..=9)
    }
}

/// One station of an interface: a client of an access point, or the access point a client is
/// connected to. Each value is `None` when the driver does not give it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Station {
    /// Its MAC address.
    pub mac: [u8; 6],
    /// The signal of the last frame received from it, in dBm (the average when only that is
    /// given).
    pub signal: Option<i8>,
    /// The rate of the last frame received from it, in bit/s.
    pub rx_bitrate: Option<u64>,
    /// The rate of the last frame sent to it, in bit/s.
    pub tx_bitrate: Option<u64>,
    /// Bytes received from it (a counter).
    pub rx_bytes: Option<u64>,
    /// Bytes sent to it (a counter).
    pub tx_bytes: Option<u64>,
    /// Packets received from it (a counter).
    pub rx_packets: Option<u32>,
    /// Packets sent to it (a counter).
    pub tx_packets: Option<u32>,
    /// Milliseconds since it was last heard.
    pub inactive_ms: Option<u32>,
    /// Seconds since it connected.
    pub connected_s: Option<u32>,
}

impl Station {
    /// Its MAC address as `iw` prints it: lower-case hex pairs joined by `:`.
    pub fn mac_text(&self) -> String {
        let m = self.mac;
        format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// The survey of one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Survey {
    /// The channel's frequency in MHz.
    pub frequency: u32,
    /// The noise floor measured on it, in dBm.
    pub noise: Option<i8>,
    /// True for the channel the interface is on.
    pub in_use: bool,
}

/// The interface in the attributes of one `NL80211_CMD_NEW_INTERFACE` answer; `None` when an
/// attribute runs past the end or has a wrong size.
pub fn parse_interface(attributes: &[u8]) -> Option<Interface> {
    let mut i = Interface::default();
    let mut attrs = Attributes::new(attributes);
    for (kind, p) in attrs.by_ref() {
        match kind {
            ATTR_IFINDEX => i.ifindex = u32_at(p, 0)?,
            ATTR_IFNAME => i.name = text(p),
            ATTR_WIPHY => i.wiphy = u32_at(p, 0)?,
            ATTR_IFTYPE => i.iftype = u32_at(p, 0)?,
            ATTR_WIPHY_FREQ => i.frequency = Some(u32_at(p, 0)?),
            ATTR_WIPHY_TX_POWER_LEVEL => i.tx_power_mbm = Some(u32_at(p, 0)? as i32),
            _ => {}
        }
    }
    attrs.whole().then_some(i)
}

/// A rate's bitrate in bit/s: the 32-bit attribute when given, else the 16-bit one (0 there
/// means it did not fit, so no rate).
fn bitrate(nested: &[u8]) -> Option<Option<u64>> {
    let (mut rate16, mut rate32) = (None, None);
    let mut attrs = Attributes::new(nested);
    for (kind, p) in attrs.by_ref() {
        match kind {
            RATE_INFO_BITRATE => rate16 = Some(u16_at(p, 0)?).filter(|&r| r > 0).map(u32::from),
            RATE_INFO_BITRATE32 => rate32 = Some(u32_at(p, 0)?),
            _ => {}
        }
    }
    attrs
        .whole()
        .then(|| rate32.or(rate16).map(|r| u64::from(r) * 100_000))
}

/// A signed byte's value in dBm.
fn dbm(p: &[u8]) -> Option<i8> {
    p.first().map(|&b| b as i8)
}

/// The station in the attributes of one `NL80211_CMD_NEW_STATION` answer; `None` when it has no
/// MAC address, or an attribute runs past the end or has a wrong size.
pub fn parse_station(attributes: &[u8]) -> Option<Station> {
    let mut s = Station::default();
    let mut mac = None;
    let (mut signal, mut signal_avg, mut rx64, mut tx64) = (None, None, None, None);
    let mut attrs = Attributes::new(attributes);
    for (kind, p) in attrs.by_ref() {
        match kind {
            ATTR_MAC => mac = Some(p.get(..6)?.try_into().ok()?),
            ATTR_STA_INFO => {
                let mut info = Attributes::new(p);
                for (kind, p) in info.by_ref() {
                    match kind {
                        STA_INFO_INACTIVE_TIME => s.inactive_ms = Some(u32_at(p, 0)?),
                        STA_INFO_RX_BYTES => s.rx_bytes = Some(u32_at(p, 0)?.into()),
                        STA_INFO_TX_BYTES => s.tx_bytes = Some(u32_at(p, 0)?.into()),
                        STA_INFO_RX_BYTES64 => rx64 = Some(u64_at(p, 0)?),
                        STA_INFO_TX_BYTES64 => tx64 = Some(u64_at(p, 0)?),
                        STA_INFO_SIGNAL => signal = Some(dbm(p)?),
                        STA_INFO_SIGNAL_AVG => signal_avg = Some(dbm(p)?),
                        STA_INFO_TX_BITRATE => s.tx_bitrate = bitrate(p)?,
                        STA_INFO_RX_BITRATE => s.rx_bitrate = bitrate(p)?,
                        STA_INFO_RX_PACKETS => s.rx_packets = Some(u32_at(p, 0)?),
                        STA_INFO_TX_PACKETS => s.tx_packets = Some(u32_at(p, 0)?),
                        STA_INFO_CONNECTED_TIME => s.connected_s = Some(u32_at(p, 0)?),
                        _ => {}
                    }
                }
                if !info.whole() {
                    return None;
                }
            }
            _ => {}
        }
    }
    s.mac = mac?;
    s.signal = signal.or(signal_avg);
    s.rx_bytes = rx64.or(s.rx_bytes);
    s.tx_bytes = tx64.or(s.tx_bytes);
    attrs.whole().then_some(s)
}

/// The channel survey in the attributes of one `NL80211_CMD_NEW_SURVEY_RESULTS` answer; `None`
/// when it has no survey, or an attribute runs past the end or has a wrong size.
pub fn parse_survey(attributes: &[u8]) -> Option<Survey> {
    let mut survey = None;
    let mut attrs = Attributes::new(attributes);
    for (kind, p) in attrs.by_ref() {
        if kind != ATTR_SURVEY_INFO {
            continue;
        }
        let mut s = Survey::default();
        let mut info = Attributes::new(p);
        for (kind, p) in info.by_ref() {
            match kind {
                SURVEY_INFO_FREQUENCY => s.frequency = u32_at(p, 0)?,
                SURVEY_INFO_NOISE => s.noise = Some(dbm(p)?),
                SURVEY_INFO_IN_USE => s.in_use = true,
                _ => {}
            }
        }
        if !info.whole() {
            return None;
        }
        survey = Some(s);
    }
    survey.filter(|_| attrs.whole())
}

/// The channel number of a frequency in MHz, as IEEE 802.11 (and the kernel's
/// `ieee80211_freq_khz_to_channel`) number them: 2.4 GHz channels 1 to 14, the 4.9 GHz band
/// from 4000 MHz, 5 GHz from 5000 MHz, 6 GHz from 5950 MHz (channel 2 at 5935), 60 GHz in steps
/// of 2160 MHz. `None` for a frequency outside those bands.
pub fn channel(mhz: u32) -> Option<u32> {
    match mhz {
        2484 => Some(14),
        2412..=2472 => Some((mhz - 2407) / 5),
        4910..=4980 => Some((mhz - 4000) / 5),
        5000..=5920 => Some((mhz - 5000) / 5),
        5935 => Some(2),
        5955..=7115 => Some((mhz - 5950) / 5),
        58320..=70200 => Some((mhz - 56160) / 2160),
        _ => None,
    }
}

/// Asks the kernel's nl80211 family.
#[derive(Debug)]
pub struct Nl80211 {
    genl: Genl,
    family: u16,
}

impl Nl80211 {
    /// Opens a generic netlink socket and finds the family; [`NetlinkError::NoFamily`] on a
    /// kernel without Wi-Fi (no cfg80211 loaded).
    pub fn open() -> Result<Nl80211, NetlinkError> {
        let mut genl = Genl::open()?;
        let family = genl.family(FAMILY)?;
        Ok(Nl80211 { genl, family })
    }

    /// Dumps `command` with `attributes`, handing what `parse` makes of each answer to `each`.
    /// A message that does not parse fails the whole listing, so no rate is built from part of
    /// an answer.
    fn dump<T>(
        &mut self,
        command: u8,
        attributes: &[u8],
        parse: fn(&[u8]) -> Option<T>,
        malformed: &'static str,
        each: &mut dyn FnMut(T),
    ) -> Result<(), NetlinkError> {
        let mut broken = false;
        self.genl.dump(
            self.family,
            command,
            0,
            attributes,
            &mut |a| match parse(a) {
                Some(t) => each(t),
                None => broken = true,
            },
        )?;
        if broken {
            return Err(NetlinkError::Malformed(malformed));
        }
        Ok(())
    }

    /// Hands every wireless interface to `each`.
    pub fn interfaces(&mut self, each: &mut dyn FnMut(Interface)) -> Result<(), NetlinkError> {
        self.dump(
            CMD_GET_INTERFACE,
            &[],
            parse_interface,
            "an nl80211 interface with an attribute past its end",
            each,
        )
    }

    /// Hands every station of the interface `ifindex` to `each`.
    pub fn stations(
        &mut self,
        ifindex: u32,
        each: &mut dyn FnMut(Station),
    ) -> Result<(), NetlinkError> {
        let mut attributes = Vec::new();
        push_attribute(&mut attributes, ATTR_IFINDEX, &ifindex.to_ne_bytes());
        self.dump(
            CMD_GET_STATION,
            &attributes,
            parse_station,
            "an nl80211 station without its address or with an attribute past its end",
            each,
        )
    }

    /// Hands the survey of every channel of the interface `ifindex` to `each`. Drivers that
    /// keep no survey refuse with `EOPNOTSUPP`.
    pub fn survey(
        &mut self,
        ifindex: u32,
        each: &mut dyn FnMut(Survey),
    ) -> Result<(), NetlinkError> {
        let mut attributes = Vec::new();
        push_attribute(&mut attributes, ATTR_IFINDEX, &ifindex.to_ne_bytes());
        self.dump(
            CMD_GET_SURVEY,
            &attributes,
            parse_survey,
            "an nl80211 survey without its channel or with an attribute past its end",
            each,
        )
    }
}

/// The message type of the fixtures built by `tests/fixtures/netlink/build_nl80211.py`; a real
/// kernel gives the family another id at every boot.
#[cfg(test)]
pub const FIXTURE_FAMILY: u16 = 0x1c;

/// What `parse` makes of every message of the fixture `tests/fixtures/netlink/<name>`, which
/// must parse whole.
#[cfg(test)]
pub fn fixture<T>(name: &str, parse: fn(&[u8]) -> Option<T>) -> Vec<T> {
    let path = format!(
        "{}/tests/fixtures/netlink/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let datagram = std::fs::read(path).unwrap();
    let mut got = Vec::new();
    let r = super::read_datagram(&datagram, FIXTURE_FAMILY, 7, &mut |m| {
        let attributes = super::genl::attributes_of(m).unwrap();
        got.push(parse(attributes).unwrap());
    });
    assert_eq!(r.unwrap(), super::Datagram::Done);
    got
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixtures are built from `include/uapi/linux/nl80211.h`'s layouts by
    /// `build_nl80211.py` beside them: this machine has no Wi-Fi device (nor mac80211_hwsim) to
    /// capture from.
    #[test]
    fn interfaces_with_their_radio_channel_and_power() {
        let got = fixture("nl80211-interfaces.bin", parse_interface);
        let i = |ifindex, name: &str, wiphy, iftype, frequency, mbm| Interface {
            ifindex,
            name: name.into(),
            wiphy,
            iftype,
            frequency: Some(frequency),
            tx_power_mbm: Some(mbm),
        };
        assert_eq!(
            got,
            [
                i(5, "phy0-ap0", 0, 3, 2437, 2000),
                i(6, "phy1-ap0", 1, 3, 5180, 2300),
                i(7, "phy1-sta0", 1, 2, 5180, 2300),
                Interface {
                    wiphy: 1,
                    iftype: 10,
                    ..Interface::default()
                },
            ]
        );
        let types: Vec<_> = got
            .iter()
            .map(|i| (i.type_name(), i.has_stations()))
            .collect();
        assert_eq!(
            types,
            [
                ("ap", true),
                ("ap", true),
                ("station", true),
                ("p2p_device", false)
            ]
        );
    }

    #[test]
    fn stations_with_64_bit_counters_and_32_bit_rates() {
        let got = fixture("nl80211-stations-5.bin", parse_station);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].mac_text(), "02:11:22:33:44:a1");
        assert_eq!(
            got[0],
            Station {
                mac: [2, 0x11, 0x22, 0x33, 0x44, 0xa1],
                signal: Some(-45),
                rx_bitrate: Some(130_000_000),
                tx_bitrate: Some(144_400_000),
                rx_bytes: Some(5_000_000_000),
                tx_bytes: Some(9_000_000_000),
                rx_packets: Some(4_000_000),
                tx_packets: Some(7_000_000),
                inactive_ms: Some(120),
                connected_s: Some(3600),
            },
            "the 64-bit byte counters win over the wrapped 32-bit ones"
        );
        assert_eq!(got[1].tx_bitrate, Some(6_500_000_000), "only in BITRATE32");
        assert_eq!(got[1].rx_bitrate, Some(6_000_000), "only in BITRATE");
        assert_eq!((got[1].signal, got[1].rx_bytes), (Some(-71), Some(123_456)));
        assert_eq!(
            (got[2].signal, got[2].rx_bitrate, got[2].connected_s),
            (None, None, Some(0)),
            "just associated"
        );
        let upstream = fixture("nl80211-stations-7.bin", parse_station);
        assert_eq!(
            upstream[0].signal,
            Some(-58),
            "the last frame's signal, not the average"
        );
    }

    #[test]
    fn the_survey_marks_the_channel_in_use_with_its_noise() {
        let got = fixture("nl80211-survey-6.bin", parse_survey);
        assert_eq!(
            got,
            [
                Survey {
                    frequency: 5180,
                    noise: Some(-92),
                    in_use: true
                },
                Survey {
                    frequency: 5200,
                    noise: Some(-95),
                    in_use: false
                },
                Survey {
                    frequency: 5220,
                    noise: None,
                    in_use: false
                },
            ]
        );
    }

    #[test]
    fn broken_or_short_attributes_are_refused() {
        let whole = std::fs::read(format!(
            "{}/tests/fixtures/netlink/nl80211-stations-7.bin",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        // The first message's attributes, past the nlmsghdr and genlmsghdr.
        let len = u32_at(&whole, 0).unwrap() as usize;
        let attributes = &whole[20..len];
        assert!(parse_station(attributes).is_some());
        // Index (8 bytes), address (10 and 2 of padding), generation (8), then the nested
        // statistics: a cut inside the address or the statistics leaves an attribute past the
        // end.
        for cut in (9..18).chain(32..attributes.len()) {
            if let Some(s) = parse_station(&attributes[..cut]) {
                panic!("a station cut at {cut} parsed: {s:?}");
            }
        }
        assert_eq!(parse_station(&attributes[..8]), None, "no address");
        let mut no_mac = Vec::new();
        push_attribute(&mut no_mac, ATTR_IFINDEX, &7u32.to_ne_bytes());
        assert_eq!(parse_station(&no_mac), None);
        let mut short_index = Vec::new();
        push_attribute(&mut short_index, ATTR_IFINDEX, &[7, 0]);
        assert_eq!(parse_interface(&short_index), None);
        assert_eq!(parse_survey(&no_mac), None, "no survey in it");
    }

    #[test]
    fn channels_of_each_band() {
        for (mhz, ch) in [
            (2412, Some(1)),
            (2437, Some(6)),
            (2484, Some(14)),
            (5180, Some(36)),
            (5825, Some(165)),
            (5920, Some(184)),
            (5935, Some(2)),
            (5955, Some(1)),
            (6415, Some(93)),
            (58320, Some(1)),
            (60480, Some(2)),
            (3000, None),
            (4990, None),
        ] {
            assert_eq!(channel(mhz), ch, "{mhz} MHz");
        }
    }

    /// Found by fuzzing (`netlink_nl80211`): the 4.9 GHz band was numbered from 5000 MHz, which
    /// underflowed.
    #[test]
    fn the_4_9_ghz_band_is_numbered_from_4000_mhz() {
        assert_eq!(channel(4910), Some(182));
        assert_eq!(channel(4940), Some(188));
        assert_eq!(channel(4980), Some(196));
    }

    #[test]
    fn a_kernel_without_wifi_says_so() {
        // This machine's kernel has no cfg80211; one that has it answers with its interfaces.
        match Nl80211::open() {
            Err(e) => {
                assert!(matches!(e, NetlinkError::NoFamily(FAMILY)), "{e:?}");
                assert!(e.is_unsupported());
            }
            Ok(mut nl) => nl.interfaces(&mut |_| {}).unwrap(),
        }
    }
}
