//! What sources whose service names carry their instance name share.

use crate::config::reader::Table;

/// The instance name as the source list reads it: `name`, or the type's name when unset. The
/// list itself reports a `name` that is not a string; here it counts as unset.
pub fn name(t: &mut Table<'_>, kind: &str) -> String {
    t.field("name")
        .and_then(|f| f.as_str())
        .unwrap_or(kind)
        .to_owned()
}
