//! Reading a [`Command`] from the config of a source that runs one (`exec`, `tail`): the keys
//! `command`, `shell`, `env`, `cwd`, `user`, `group`, `kill_grace` and `max_output`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::{Command, account};
use crate::config::reader::{Problems, Table};

/// Time between SIGTERM and SIGKILL when the config says nothing.
const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(2);
/// The most bytes kept of stdout and of stderr (for a daemon: of one line) by default.
const DEFAULT_MAX_OUTPUT: u64 = 64 * 1024;

/// Reads the command keys of `t`; `timeout` is how long a check may run (`None` for a daemon).
/// `None` when the command is missing or wrong (the problems are recorded); the other keys are
/// still read, so their problems are reported at the same time.
pub fn read(
    t: &mut Table<'_>,
    problems: &mut Problems,
    timeout: Option<Duration>,
) -> Option<Command> {
    let shell = t.get_or("shell", false, problems);
    let argv = read_argv(t, shell, problems);
    let kill_grace =
        t.duration_at_least("kill_grace", DEFAULT_KILL_GRACE, Duration::ZERO, problems);
    let env = t.get_or("env", BTreeMap::new(), problems);
    let cwd = t.get::<PathBuf>("cwd", problems);
    let user = t.field("user").and_then(|field| {
        let name = field.parse::<String>(problems)?;
        account::user(&name)
            .map_err(|e| problems.at(&field, e))
            .ok()
    });
    let group = t.field("group").and_then(|field| {
        let name = field.parse::<String>(problems)?;
        account::group(&name)
            .map_err(|e| problems.at(&field, e))
            .ok()
    });
    let max_output = t.number_in(
        "max_output",
        DEFAULT_MAX_OUTPUT,
        256,
        16 * 1024 * 1024,
        problems,
    ) as usize;
    Some(Command {
        argv: argv?,
        env,
        cwd,
        user,
        group,
        timeout,
        kill_grace,
        max_output,
    })
}

/// The `command` key: an array of strings, or with `shell` one string for `/bin/sh -c`.
fn read_argv(t: &mut Table<'_>, shell: bool, problems: &mut Problems) -> Option<Vec<String>> {
    let Some(field) = t.field("command") else {
        problems.at(t.as_field(), "missing required key \"command\"");
        return None;
    };
    if shell {
        return match field.as_str() {
            Some(line) if !line.trim().is_empty() => {
                Some(vec!["/bin/sh".into(), "-c".into(), line.into()])
            }
            _ => {
                problems.expected(
                    &field,
                    "with \"shell\": true, a non-empty string of shell code",
                );
                None
            }
        };
    }
    if field.as_str().is_some() {
        problems.expected(&field, "an array such as [\"/usr/lib/nagios/plugins/check_ping\", \"-H\", \"192.0.2.1\"] (a single string needs \"shell\": true)");
        return None;
    }
    let argv: Vec<String> = field.parse(problems)?;
    if argv.first().is_none_or(|p| p.is_empty()) {
        problems.expected(
            &field,
            "a non-empty array whose first item names the program",
        );
        return None;
    }
    Some(argv)
}
