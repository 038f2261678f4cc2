//! `uptime`: time since the system booted, from `/proc/uptime`.

use super::{Build, Emitter, MetricInfo, Source, SourceContext, SourceError, SourceType};
use crate::procfs::KeptFiles;

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "uptime",
    description: "time since the system booted",
    needs_two_samples: false,
    metrics: &[MetricInfo {
        name: "uptime.seconds",
        unit: "seconds",
        description: "time since boot",
    }],
    read: super::read::<Uptime>,
};

impl Build for Uptime {
    type Settings = ();
    const NEVER_WAITS: bool = true;

    fn build(_: &(), ctx: &SourceContext) -> Uptime {
        Uptime {
            files: KeptFiles::new(ctx.procfs.clone()),
            buf: String::new(),
        }
    }
}

struct Uptime {
    files: KeptFiles,
    buf: String,
}

impl Source for Uptime {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        self.files.read_into("proc/uptime", &mut self.buf)?;
        let seconds = self
            .buf
            .split_ascii_whitespace()
            .next()
            .and_then(|f| f.parse::<f64>().ok());
        let seconds = seconds.ok_or_else(|| {
            SourceError::malformed("/proc/uptime", "the seconds since boot", &self.buf)
        })?;
        emit.metric("uptime.seconds", seconds);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{collect, lines};
    use super::*;

    #[test]
    fn reads_seconds_since_boot() {
        assert_eq!(
            collect::<Uptime>(&(), "openwrt"),
            lines("uptime.seconds 4523.17")
        );
        assert_eq!(
            collect::<Uptime>(&(), "debian"),
            lines("uptime.seconds 864012.33")
        );
    }
}
