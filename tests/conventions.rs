//! What the conventions ask of every source type and output type (CONTRIBUTING.md, "Adding a
//! source" and "Adding an output"), checked here so that nobody has to remember them: a README
//! table row, a docs page or heading, the Cargo feature of a component that has one (with its
//! `LEFT_OUT` line and its row in docs/packaging.md), and a fuzz target for every parser listed
//! below. Each failure says exactly what to add, and where.
//!
//! The registries are read as this build has them, together with the names `LEFT_OUT` gives for
//! what the build leaves out, so every type is checked whatever the features.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// The fuzz targets of each type's parsers; a type that parses nothing it did not make itself
/// has none. Every type is listed: a new one needs a line here.
const FUZZ_TARGETS: &[(&str, &[&str])] = &[
    ("cpu", &["proc_cpu"]),
    ("load", &["proc_load"]),
    ("memory", &["proc_memory"]),
    ("swap", &["proc_swap"]),
    ("uptime", &["proc_uptime"]),
    ("processes", &["proc_processes"]),
    ("interface", &["proc_interface"]),
    ("df", &["proc_df"]),
    ("disk", &["proc_disk"]),
    ("thermal", &["proc_thermal"]),
    ("wireless", &["proc_wireless"]),
    ("conntrack", &["proc_conntrack"]),
    ("dhcp_leases", &["dhcp_leases"]),
    ("qdisc", &["netlink_qdisc"]),
    ("tcpconns", &["proc_tcpconns", "netlink_sock_diag"]),
    ("nftables", &["netlink_nftables"]),
    ("wifi", &["netlink_nl80211"]),
    ("wireguard", &["netlink_wireguard"]),
    ("openvpn", &["openvpn_status"]),
    ("ping", &["icmp_echo"]),
    (
        "exec",
        &[
            "check_nagios",
            "check_graphite",
            "check_json",
            "check_value",
        ],
    ),
    // Reads file metadata and HTTP status lines through std and ureq, no parser of its own.
    ("watch", &[]),
    // The answer's status and body pattern go through ureq and `pattern` (fuzzed as `pattern`).
    ("http", &[]),
    // Only connects.
    ("tcp", &[]),
    ("tail", &["tail_lines"]),
    // Reads pipit's own counters and /proc/self through the `proc_*` parsers.
    ("self", &[]),
    ("stdout", &[]),
    ("graphite", &["graphite_name", "graphite_naming"]),
    ("riemann", &["riemann_ack"]),
    // The answer is an HTTP status and a JSON error text, read through ureq and serde_json.
    ("influxdb", &[]),
    ("mqtt", &["mqtt_packet"]),
    // The answer is an HTTP status and a text naming the refused samples, read through ureq.
    ("prometheus_remote_write", &[]),
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every source type: those of this build and those it leaves out.
fn source_types() -> BTreeSet<&'static str> {
    let built = pipit::sources::REGISTRY.iter().map(|t| t.name);
    built
        .chain(pipit::sources::LEFT_OUT.iter().map(|(name, _)| *name))
        .collect()
}

/// Every output type: those of this build and those it leaves out.
fn output_types() -> BTreeSet<&'static str> {
    let built = pipit::outputs::REGISTRY.iter().map(|t| t.name);
    built
        .chain(pipit::outputs::LEFT_OUT.iter().map(|(name, _)| *name))
        .collect()
}

/// The rows of the README table whose head is `| type | what | docs |`, `nth` of them (0: the
/// sources, 1: the outputs): the type names of each row's first cell, and its docs cell.
fn readme_rows(nth: usize) -> Vec<(Vec<String>, String)> {
    let readme = read("README.md");
    let table = readme.split("| type | what | docs |").nth(nth + 1).expect(
        "README.md has a `| type | what | docs |` table for the sources and one for the outputs",
    );
    table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let names = cells[1]
                .split(',')
                .map(|n| n.trim().trim_matches('`').to_owned())
                .collect();
            (names, cells.get(3).unwrap_or(&"").to_string())
        })
        .collect()
}

/// Checks that every type has a README row whose docs cell links a page that exists (or says
/// "below", for what README itself explains).
fn readme_table_lists(kind: &str, nth: usize, types: &BTreeSet<&str>) -> Vec<String> {
    let rows = readme_rows(nth);
    let mut missing = Vec::new();
    for name in types {
        match rows.iter().find(|(names, _)| names.iter().any(|n| n == name)) {
            None => missing.push(format!(
                "README.md: add `{name}` to the {kind} table (| type | what | docs |), with what it does and its docs page"
            )),
            Some((_, docs)) if docs == "below" => {}
            Some((_, docs)) => {
                let page = docs
                    .split_once("](")
                    .and_then(|(_, rest)| rest.split_once(')'))
                    .map(|(link, _)| link.split('#').next().unwrap_or(link));
                match page {
                    Some(page) if repo().join(page).is_file() => {}
                    _ => missing.push(format!(
                        "README.md: the {kind} row of `{name}` links no existing docs page ({docs:?}): write the page and link it"
                    )),
                }
            }
        }
    }
    missing
}

/// The `(feature, entry)` pairs of a registry in its source file: each entry line after a
/// `#[cfg(feature = "...")]` or `#[cfg(not(feature = "..."))]` line.
fn gated(text: &str, list: &str, negated: bool) -> Vec<(String, String)> {
    let start = text
        .find(list)
        .unwrap_or_else(|| panic!("no {list} in the registry"));
    let body = &text[start..text[start..].find("];").map_or(text.len(), |e| start + e)];
    let open = if negated {
        "#[cfg(not(feature = \""
    } else {
        "#[cfg(feature = \""
    };
    let mut out = Vec::new();
    let mut lines = body.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix(open) {
            let feature = rest.split('"').next().unwrap_or_default().to_owned();
            let entry = lines.next().unwrap_or_default().trim_end_matches(',');
            out.push((feature, entry.to_owned()));
        }
    }
    out
}

/// Checks that each registry entry behind a feature has a `LEFT_OUT` line naming that feature,
/// that the feature is in Cargo.toml, and that docs/packaging.md's feature table has its row.
fn features_are_declared(registry_file: &str) -> Vec<String> {
    let text = read(registry_file);
    let cargo = read("Cargo.toml");
    let packaging = read("docs/packaging.md");
    let built = gated(&text, "pub const REGISTRY", false);
    let left_out = gated(&text, "pub const LEFT_OUT", true);
    let mut missing = Vec::new();
    for (feature, entry) in &built {
        let behind = built.iter().filter(|(f, _)| f == feature).count();
        let named = left_out.iter().filter(|(f, _)| f == feature).count();
        if named < behind {
            missing.push(format!(
                "{registry_file}: `{entry}` is behind feature \"{feature}\": add `#[cfg(not(feature = \"{feature}\"))] (\"<its type>\", \"{feature}\"),` to LEFT_OUT"
            ));
        }
        if !cargo.contains(&format!("\n{feature} = [")) {
            missing.push(format!(
                "Cargo.toml: add the feature `{feature}` (with a comment saying what it adds) to [features]"
            ));
        }
        if !packaging.contains(&format!("| `{feature}` |")) {
            missing.push(format!(
                "docs/packaging.md: add a row for the feature `{feature}` to the table of Cargo features, with what it adds and its measured size"
            ));
        }
    }
    missing.sort();
    missing.dedup();
    missing
}

fn fuzz_targets_exist(types: &BTreeSet<&str>) -> Vec<String> {
    let cargo = read("fuzz/Cargo.toml");
    let fuzzing = read("FUZZING.md");
    let seeds = read("fuzz/seeds.py");
    let mut missing = Vec::new();
    for name in types {
        let Some((_, targets)) = FUZZ_TARGETS.iter().find(|(t, _)| t == name) else {
            missing.push(format!(
                "tests/conventions.rs: add (\"{name}\", &[...]) to FUZZ_TARGETS: the fuzz targets of its parsers, or none with a comment saying why"
            ));
            continue;
        };
        for target in *targets {
            let file = format!("fuzz/fuzz_targets/{target}.rs");
            if !repo().join(&file).is_file() {
                missing.push(format!(
                    "{file}: write the fuzz target of `{name}`'s parser"
                ));
            }
            if !cargo.contains(&format!("name = \"{target}\"")) {
                missing.push(format!(
                    "fuzz/Cargo.toml: add a [[bin]] with name = \"{target}\" and path = \"fuzz_targets/{target}.rs\""
                ));
            }
            if !fuzzing.contains(&format!("`{target}`")) {
                missing.push(format!(
                    "FUZZING.md: add `{target}` to the table of targets (what it feeds) and to the results"
                ));
            }
            // The `proc_*` targets are seeded from every fixture tree by one loop.
            let by_loop = target.starts_with("proc_") && seeds.contains("fuzz_targets/proc_*.rs");
            if !by_loop && !seeds.contains(&format!("\"{target}\"")) {
                missing.push(format!("fuzz/seeds.py: add a seed for \"{target}\""));
            }
        }
    }
    missing
}

fn assert_none(what: &str, missing: Vec<String>) {
    assert!(missing.is_empty(), "{what}:\n  {}", missing.join("\n  "));
}

#[test]
fn every_source_type_has_its_readme_row_feature_and_fuzz_targets() {
    let types = source_types();
    let mut missing = readme_table_lists("sources", 0, &types);
    missing.extend(features_are_declared("src/sources/mod.rs"));
    missing.extend(fuzz_targets_exist(&types));
    assert_none("what a source type still needs", missing);
}

/// The file of source type `name`, under src/sources/: named by its config type, with a trailing
/// underscore for a Rust keyword (`self` is in `self_.rs`), and a folder for a type that has
/// more than one file (`ping/mod.rs`).
fn source_files(name: &str) -> [String; 2] {
    let module = if name == "self" {
        "self_".to_owned()
    } else {
        name.to_owned()
    };
    [
        format!("src/sources/{module}.rs"),
        format!("src/sources/{module}/mod.rs"),
    ]
}

#[test]
fn every_source_type_is_in_the_file_named_by_its_type() {
    let missing = source_types()
        .into_iter()
        .filter(|name| {
            let [file, folder] = source_files(name);
            let holds = |path: &str| {
                fs::read_to_string(repo().join(path))
                    .is_ok_and(|text| text.contains(&format!("name: \"{name}\",")))
            };
            !holds(&file) && !holds(&folder)
        })
        .map(|name| {
            let [file, folder] = source_files(name);
            format!("the `{name}` source type belongs in {file} (or {folder}), its TYPE there")
        })
        .collect();
    assert_none("source types in other files", missing);
}

#[test]
fn every_source_type_has_a_docs_heading() {
    let mut docs = String::new();
    for entry in fs::read_dir(repo().join("docs")).unwrap() {
        docs += &fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
    }
    let headings: Vec<&str> = docs.lines().filter(|l| l.starts_with('#')).collect();
    let missing = source_types()
        .into_iter()
        // `self` is explained in README's source table itself.
        .filter(|name| *name != "self")
        .filter(|name| {
            !headings.iter().any(|h| {
                h.trim_start_matches('#').trim() == *name
                    || h.contains(&format!("`{name}`"))
            })
        })
        .map(|name| format!("docs/: add a heading `### {name}` (or `## `{name}``) to its family's page, with a table row per metric and its unit"))
        .collect();
    assert_none("what a source type still needs", missing);
}

#[test]
fn every_output_type_has_its_readme_row_docs_page_feature_and_fuzz_targets() {
    let types = output_types();
    let mut missing = readme_table_lists("outputs", 1, &types);
    missing.extend(features_are_declared("src/outputs/mod.rs"));
    missing.extend(fuzz_targets_exist(&types));
    assert_none("what an output type still needs", missing);
}

#[test]
fn the_fuzz_target_list_names_only_registered_types() {
    let types: BTreeSet<&str> = source_types().union(&output_types()).copied().collect();
    let stale: Vec<String> = FUZZ_TARGETS
        .iter()
        .filter(|(name, _)| !types.contains(name))
        .map(|(name, _)| {
            format!(
                "tests/conventions.rs: remove (\"{name}\", ...) from FUZZ_TARGETS: no such type"
            )
        })
        .collect();
    assert_none("FUZZ_TARGETS is out of date", stale);
}
