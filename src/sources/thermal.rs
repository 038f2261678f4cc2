//! `thermal`: temperatures of thermal zones (`/sys/class/thermal/thermal_zone*`) and hardware
//! monitoring sensors (`/sys/class/hwmon/hwmon*/temp*_input`), in °C.
//!
//! A zone is named by its type (`cpu-thermal`), with `_<zone number>` when several zones share a
//! type; a sensor by its chip and its label (`coretemp_Core_0`) or input (`mt7915_phy0_temp1`).
//! A box without either reports nothing and logs nothing; a sensor that cannot be read right now
//! (some report an error while their device sleeps) is left out of that collection.

use std::fs;

use super::naming::ServiceName;
use super::{Build, Emitter, MetricInfo, Source, SourceContext, SourceError, SourceType};
use crate::procfs::Procfs;

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "thermal",
    description: "temperatures of thermal zones and hardware sensors, in °C",
    needs_two_samples: false,
    metrics: &[MetricInfo {
        name: "thermal.<sensor>.temperature",
        unit: "celsius",
        description: "temperature of a thermal zone (by type) or a hwmon sensor (by chip and label)",
    }],
    read: super::read::<Thermal>,
};

impl Build for Thermal {
    type Settings = ();
    const NEVER_WAITS: bool = true;

    fn build(_: &(), ctx: &SourceContext) -> Thermal {
        Thermal {
            procfs: ctx.procfs.clone(),
            buf: String::new(),
            name: ServiceName::default(),
        }
    }
}

struct Thermal {
    procfs: Procfs,
    buf: String,
    name: ServiceName,
}

/// One temperature found: its label and millidegrees.
type Reading = (String, i64);

impl Source for Thermal {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        let mut readings = self.zones();
        readings.extend(self.sensors());
        for (label, millidegrees) in readings {
            self.name.start("thermal", &label);
            emit.metric(self.name.with("temperature"), millidegrees as f64 / 1000.0);
        }
        Ok(())
    }
}

impl Thermal {
    /// Thermal zones, by zone number.
    fn zones(&mut self) -> Vec<Reading> {
        let mut zones: Vec<(u32, String, i64)> = Vec::new();
        for (n, dir) in numbered(&self.procfs, "sys/class/thermal", "thermal_zone") {
            let Some(temp) = self.number(&format!("{dir}/temp")) else {
                continue;
            };
            if self
                .procfs
                .read_into(&format!("{dir}/type"), &mut self.buf)
                .is_err()
            {
                continue;
            }
            zones.push((n, self.buf.trim().to_owned(), temp));
        }
        let shared = |kind: &str| zones.iter().filter(|(_, k, _)| k == kind).count() > 1;
        zones
            .iter()
            .map(|(n, kind, temp)| {
                (
                    if shared(kind) {
                        format!("{kind}_{n}")
                    } else {
                        kind.clone()
                    },
                    *temp,
                )
            })
            .collect()
    }

    /// hwmon temperature inputs, by chip number and input number.
    fn sensors(&mut self) -> Vec<Reading> {
        let mut out = Vec::new();
        for (_, dir) in numbered(&self.procfs, "sys/class/hwmon", "hwmon") {
            if self
                .procfs
                .read_into(&format!("{dir}/name"), &mut self.buf)
                .is_err()
            {
                continue;
            }
            let chip = self.buf.trim().to_owned();
            let mut inputs: Vec<u32> = list(&self.procfs, &dir)
                .iter()
                .filter_map(|f| f.strip_prefix("temp")?.strip_suffix("_input")?.parse().ok())
                .collect();
            inputs.sort_unstable();
            for i in inputs {
                let Some(temp) = self.number(&format!("{dir}/temp{i}_input")) else {
                    continue;
                };
                let label = match self
                    .procfs
                    .read_into(&format!("{dir}/temp{i}_label"), &mut self.buf)
                {
                    Ok(()) if !self.buf.trim().is_empty() => self.buf.trim().to_owned(),
                    _ => format!("temp{i}"),
                };
                out.push((format!("{chip}_{label}"), temp));
            }
        }
        out
    }

    fn number(&mut self, rel: &str) -> Option<i64> {
        self.procfs.read_into(rel, &mut self.buf).ok()?;
        self.buf.trim().parse().ok()
    }
}

/// The file names in the directory `rel`; none when it does not exist.
fn list(procfs: &Procfs, rel: &str) -> Vec<String> {
    let Ok(dir) = fs::read_dir(procfs.path(rel)) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect()
}

/// The entries `<prefix><n>` of the directory `rel` as `(n, "rel/<prefix><n>")`, sorted by n.
fn numbered(procfs: &Procfs, rel: &str, prefix: &str) -> Vec<(u32, String)> {
    let mut found: Vec<(u32, String)> = list(procfs, rel)
        .into_iter()
        .filter_map(|name| {
            Some((
                name.strip_prefix(prefix)?.parse().ok()?,
                format!("{rel}/{name}"),
            ))
        })
        .collect();
    found.sort_unstable();
    found
}

#[cfg(test)]
mod tests {
    use super::super::testing::{collect, lines};
    use super::*;

    #[test]
    fn a_router_s_zones_and_wifi_sensors() {
        assert_eq!(
            collect::<Thermal>(&(), "openwrt"),
            lines(
                "thermal.cpu-thermal.temperature 52.3
                 thermal.wifi-thermal.temperature 47.5
                 thermal.mt7915_phy0_temp1.temperature 48
                 thermal.mt7915_phy1_temp1.temperature 51"
            )
        );
    }

    #[test]
    fn a_server_s_shared_zone_types_and_labels() {
        assert_eq!(
            collect::<Thermal>(&(), "debian"),
            lines(
                "thermal.acpitz_0.temperature 27.8
                 thermal.acpitz_1.temperature 29.8
                 thermal.x86_pkg_temp.temperature 41
                 thermal.nvme_Composite.temperature 35.85
                 thermal.coretemp_Package_id_0.temperature 41
                 thermal.coretemp_Core_0.temperature 39
                 thermal.coretemp_Core_1.temperature 40"
            )
        );
    }

    #[test]
    fn a_box_without_sensors_reports_nothing() {
        assert_eq!(collect::<Thermal>(&(), "openwrt-next"), "");
    }
}
