//! The `supervisor` config section: how many checks run at once, and as whom.

use super::account::{self, Account};
use crate::config::reader::{Problems, Table};

/// The user checks run as by default when pipit is root, if it exists.
pub const DEFAULT_USER: &str = "nobody";

/// Settings of the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorConfig {
    /// The most checks running at once; further ones wait for a slot. Default 4. Daemons do not
    /// count.
    pub max_checks: usize,
    /// The user a command runs as when pipit is root and the command names none. Default:
    /// `nobody` if `/etc/passwd` has it, else none (commands then run as root).
    pub user: Option<Account>,
}

impl Default for SupervisorConfig {
    fn default() -> SupervisorConfig {
        SupervisorConfig {
            max_checks: 4,
            user: account::user(DEFAULT_USER).ok(),
        }
    }
}

/// Reads the `supervisor` section. `"user": ""` means no default user (commands that name none
/// run as pipit's own user, root included).
pub fn read(mut t: Table<'_>, problems: &mut Problems) -> SupervisorConfig {
    let d = SupervisorConfig::default();
    let max_checks = t.number_in("max_checks", d.max_checks as u64, 1, 1024, problems) as usize;
    let user = match t.field("user") {
        None => d.user,
        Some(field) => match field.as_str() {
            Some("") => None,
            Some(name) => account::user(name).map_err(|e| problems.at(&field, e)).ok(),
            None => {
                problems.expected(&field, "a user name");
                None
            }
        },
    };
    t.finish(problems);
    SupervisorConfig { max_checks, user }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::json;
    use crate::config::reader::Field;

    fn read_text(text: &str) -> (SupervisorConfig, Vec<String>) {
        let doc = json::parse(text).unwrap();
        let mut p = Problems::new("c.json");
        let t = Field::root(&doc).table(&mut p).unwrap();
        let config = read(t, &mut p);
        (
            config,
            p.into_errors().iter().map(|e| e.to_string()).collect(),
        )
    }

    #[test]
    fn reads_the_limit_and_the_user() {
        let (c, errors) = read_text(r#"{"max_checks": 8, "user": "root"}"#);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(c.max_checks, 8);
        assert_eq!(c.user.map(|u| u.uid), Some(0));
        let (c, _) = read_text(r#"{"user": ""}"#);
        assert_eq!(c.user, None, "an empty user means none");
    }

    #[test]
    fn refuses_a_zero_limit_and_unknown_users() {
        let (_, errors) =
            read_text(r#"{"max_checks": 0, "user": "no-such-user-here", "colour": 1}"#);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[1].ends_with("user: no user \"no-such-user-here\" in /etc/passwd"),
            "{}",
            errors[1]
        );
    }
}
