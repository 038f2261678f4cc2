//! Log setup: one line per message, `LEVEL component: message`, filtered by `RUST_LOG` (default
//! `info`). No timestamps: syslog and journald add their own.
//!
//! ureq's trace messages are never logged: at that level it dumps every byte of each request and
//! answer, credentials included (release builds leave trace messages out altogether).

use std::io::Write;

use log::{Level, Log, Metadata, Record};

/// Installs the logger; a second call does nothing.
pub fn init() {
    let env = env_logger::Env::default().default_filter_or("info");
    let logger = env_logger::Builder::from_env(env)
        .format(|out, record| {
            writeln!(
                out,
                "{} {}: {}",
                record.level(),
                record.target(),
                record.args()
            )
        })
        .build();
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(WithoutTraffic(logger))).is_ok() {
        log::set_max_level(max);
    }
}

/// The logger, less the messages that could show a secret.
struct WithoutTraffic(env_logger::Logger);

impl WithoutTraffic {
    fn shows_traffic(metadata: &Metadata<'_>) -> bool {
        metadata.level() == Level::Trace && metadata.target().starts_with("ureq")
    }
}

impl Log for WithoutTraffic {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        !Self::shows_traffic(metadata) && self.0.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !Self::shows_traffic(record.metadata()) {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}
