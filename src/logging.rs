//! Log setup: one line per message, `LEVEL component: message`, filtered by `RUST_LOG` (default
//! `info`). No timestamps: syslog and journald add their own.

use std::io::Write;

/// Installs the logger; a second call does nothing.
pub fn init() {
    let env = env_logger::Env::default().default_filter_or("info");
    let _ = env_logger::Builder::from_env(env)
        .format(|out, record| {
            writeln!(
                out,
                "{} {}: {}",
                record.level(),
                record.target(),
                record.args()
            )
        })
        .try_init();
}
