//! `load`: the system load averages from `/proc/loadavg`.

use super::{Build, Emitter, MetricInfo, Source, SourceContext, SourceError, SourceType};
use crate::procfs::KeptFiles;

/// The registry entry.
pub const TYPE: SourceType = SourceType {
    name: "load",
    description: "load averages over 1, 5 and 15 minutes",
    needs_two_samples: false,
    metrics: &[
        MetricInfo {
            name: "load.1",
            unit: "",
            description: "run-queue length averaged over 1 minute",
        },
        MetricInfo {
            name: "load.5",
            unit: "",
            description: "run-queue length averaged over 5 minutes",
        },
        MetricInfo {
            name: "load.15",
            unit: "",
            description: "run-queue length averaged over 15 minutes",
        },
    ],
    read: super::read::<Load>,
};

impl Build for Load {
    type Settings = ();
    const NEVER_WAITS: bool = true;

    fn build(_: &(), ctx: &SourceContext) -> Load {
        Load {
            files: KeptFiles::new(ctx.procfs.clone()),
            buf: String::new(),
        }
    }
}

struct Load {
    files: KeptFiles,
    buf: String,
}

impl Source for Load {
    fn collect(&mut self, emit: &mut Emitter<'_>) -> Result<(), SourceError> {
        self.files.read_into("proc/loadavg", &mut self.buf)?;
        let values = parse(&self.buf).ok_or_else(|| {
            SourceError::malformed("/proc/loadavg", "three load averages", &self.buf)
        })?;
        for (name, value) in ["load.1", "load.5", "load.15"].into_iter().zip(values) {
            emit.metric(name, value);
        }
        Ok(())
    }
}

/// The three averages from the text of `/proc/loadavg`.
fn parse(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_ascii_whitespace().map(|f| f.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

#[cfg(test)]
mod tests {
    use super::super::testing::{collect, lines};
    use super::*;

    #[test]
    fn a_router_s_load() {
        assert_eq!(
            collect::<Load>(&(), "openwrt"),
            lines("load.1 0.12\n load.5 0.18\n load.15 0.21")
        );
    }

    #[test]
    fn parses_loadavg() {
        assert_eq!(
            parse("0.07 0.09 0.03 1/81 4891\n"),
            Some([0.07, 0.09, 0.03])
        );
        assert_eq!(parse("0.07 x 0.03"), None);
        assert_eq!(parse(""), None);
    }
}
