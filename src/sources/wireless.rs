//! `wireless`: link quality, signal and noise of each wireless interface, from
//! `/proc/net/wireless`.
//!
//! A box without wireless (no such file, or no interface in it) reports nothing.

use std::io::ErrorKind;

use super::naming::ServiceName;
use super::{Build, Emitter, MetricInfo, Source, SourceContext, SourceError, SourceType};
use crate::procfs::KeptFiles;

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "wireless",
    description: "link quality, signal and noise of each wireless interface",
    needs_two_samples: false,
    metrics: &[
        MetricInfo {
            name: "wireless.<interface>.quality",
            unit: "",
            description: "link quality as the driver rates it",
        },
        MetricInfo {
            name: "wireless.<interface>.signal",
            unit: "dBm",
            description: "signal level (not sent when the driver gives none)",
        },
        MetricInfo {
            name: "wireless.<interface>.noise",
            unit: "dBm",
            description: "noise level (not sent when the driver gives none)",
        },
    ],
    read: super::read::<Wireless>,
};

impl Build for Wireless {
    type Settings = ();
    const NEVER_WAITS: bool = true;

    fn build(_: &(), ctx: &SourceContext) -> Wireless {
        Wireless {
            files: KeptFiles::new(ctx.procfs.clone()),
            buf: String::new(),
            name: ServiceName::default(),
        }
    }
}

struct Wireless {
    files: KeptFiles,
    buf: String,
    name: ServiceName,
}

impl Source for Wireless {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        match self.files.read_into("proc/net/wireless", &mut self.buf) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            other => other?,
        }
        // Two header lines, then `name: status quality level noise …`, numbers ending in a dot.
        for line in self.buf.lines().skip(2) {
            let Some((iface, rest)) = line.split_once(':') else {
                continue;
            };
            let mut fields = rest
                .split_ascii_whitespace()
                .skip(1)
                .map(|f| f.trim_end_matches('.').parse::<f64>().ok());
            let (Some(Some(quality)), Some(level), Some(noise)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            self.name.start("wireless", iface.trim());
            emit.metric(self.name.with("quality"), quality);
            if let Some(dbm) = level.and_then(dbm) {
                emit.metric(self.name.with("signal"), dbm);
            }
            if let Some(dbm) = noise.and_then(dbm) {
                emit.metric(self.name.with("noise"), dbm);
            }
        }
        Ok(())
    }
}

/// A level in dBm: drivers give it as a negative number or as an unsigned byte (256 - |dBm|);
/// 0 and -256 mean "no measurement".
fn dbm(level: f64) -> Option<f64> {
    let dbm = if level > 0.0 { level - 256.0 } else { level };
    (dbm < 0.0 && dbm > -256.0).then_some(dbm)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{collect, lines};
    use super::*;

    #[test]
    fn a_router_s_station_and_access_point() {
        assert_eq!(
            collect::<Wireless>(&(), "openwrt"),
            lines(
                "wireless.wlan0.quality 54
                 wireless.wlan0.signal -56
                 wireless.wlan0.noise -95
                 wireless.phy0-ap0.quality 0"
            )
        );
    }

    #[test]
    fn a_box_without_wireless_reports_nothing() {
        assert_eq!(collect::<Wireless>(&(), "debian"), "", "only the header");
        assert_eq!(collect::<Wireless>(&(), "openwrt-next"), "", "no file");
    }

    #[test]
    fn levels_in_either_encoding() {
        assert_eq!(dbm(-56.0), Some(-56.0));
        assert_eq!(dbm(200.0), Some(-56.0));
        assert_eq!(dbm(0.0), None);
        assert_eq!(dbm(-256.0), None);
    }
}
