//! pipit's config file as a whole: each room's section read by that room's own reader into one
//! [`Config`].
//!
//! Loading is two stages: [`json`] checks syntax and keeps positions, then each component reads its
//! own section through a [`crate::config::reader::Table`]. Everything after [`load`] trusts the result.
//!
//! This room sits above every room whose section it reads (sources, outputs, the control socket,
//! the endpoint, the supervisor); they read their keys with the ground floor, [`crate::config`].

use std::fs;
use std::path::Path;

use crate::config::reader::{Field, Problems};
use crate::config::{AgentConfig, ConfigError, ConfigErrors, agent, duration, json};
use crate::control::{self, ControlConfig};
use crate::delivery::config::{self as delivery, OutputConfig};
use crate::http_server::{self, HttpServerConfig};
use crate::prometheus_name::SourceNames;
use crate::sources::{self, SourceConfig};
use crate::supervisor::{self, SupervisorConfig};

/// The config that runs when no `-c` is given and [`crate::config::DEFAULT_PATH`] does not exist: host sources
/// to stdout, so that `pipit run` on a fresh box shows something at once.
pub const EMBEDDED: &str = include_str!("embedded.json");

/// The name [`EMBEDDED`] goes by in messages.
pub const EMBEDDED_NAME: &str = "<embedded default config>";

/// A whole, validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, as named (or [`EMBEDDED_NAME`]).
    pub file: String,
    /// Settings for the agent as a whole.
    pub agent: AgentConfig,
    /// Settings for the child processes of `exec` sources.
    pub supervisor: SupervisorConfig,
    /// The source instances, in config order.
    pub sources: Vec<SourceConfig>,
    /// The outputs, in config order.
    pub outputs: Vec<OutputConfig>,
    /// The control socket.
    pub control: ControlConfig,
    /// The opt-in local HTTP endpoint.
    pub http_server: HttpServerConfig,
}

/// Reads and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let name = path.display().to_string();
    let text = fs::read(path).map_err(|e| {
        let message = match e.kind() {
            std::io::ErrorKind::NotFound => {
                "no such file; name an existing config file with -c".to_owned()
            }
            std::io::ErrorKind::PermissionDenied => {
                "cannot read the file: permission denied".to_owned()
            }
            _ => format!("cannot read the file: {e}"),
        };
        ConfigErrors(vec![ConfigError {
            file: name.clone(),
            pos: None,
            path: String::new(),
            message,
        }])
    })?;
    let text = String::from_utf8(text).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: name.clone(),
            pos: None,
            path: String::new(),
            message: format!(
                "not UTF-8 text (bad byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        }])
    })?;
    parse(&name, &text)
}

/// Validates config text; `file` is the name used in messages.
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigErrors> {
    let doc = json::parse(text).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: file.to_owned(),
            pos: Some(e.pos),
            path: String::new(),
            message: format!("invalid JSON: {}", e.message),
        }])
    })?;
    let mut problems = Problems::new(file);
    let config = read(&doc, file, &mut problems);
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => Err(ConfigErrors(problems.into_errors())),
    }
}

fn read(doc: &json::Node, file: &str, problems: &mut Problems) -> Option<Config> {
    let mut top = Field::root(doc).table(problems)?;
    let agent = match top.field("agent") {
        Some(field) => field
            .table(problems)
            .map(|t| agent::read(t, problems))
            .unwrap_or_default(),
        None => AgentConfig::default(),
    };
    let supervisor = match top.field("supervisor") {
        Some(field) => field
            .table(problems)
            .map(|t| supervisor::read_config(t, problems))
            .unwrap_or_default(),
        None => SupervisorConfig::default(),
    };
    let sources = match top.field("sources") {
        Some(field) => sources::read_all(&field, &agent, problems),
        None => Vec::new(),
    };
    let mut outputs = match top.field("outputs") {
        Some(field) => delivery::read_all(&field, &agent, problems),
        None => Vec::new(),
    };
    tell_outputs_the_sources(&mut outputs, &sources);
    let control = match top.field("control") {
        Some(field) => field
            .table(problems)
            .map(|t| control::read_config(t, problems))
            .unwrap_or_default(),
        None => ControlConfig::default(),
    };
    let http_server = match top.field("http_server") {
        Some(field) => field
            .table(problems)
            .map(|t| http_server::read_config(t, problems))
            .unwrap_or_default(),
        None => HttpServerConfig::default(),
    };
    top.finish(problems);
    if outputs.is_empty() && problems.is_empty() {
        problems.at(
            &Field::root(doc),
            "no outputs: add at least one to \"outputs\", such as {\"type\": \"stdout\"}",
        );
    }
    Some(Config {
        file: file.to_owned(),
        agent,
        supervisor,
        sources,
        outputs,
        control,
        http_server,
    })
}

impl Config {
    /// A summary of what this config runs, one line per source and output, as `pipit check` prints.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{}: OK, {} source(s), {} output(s), host \"{}\"\n",
            self.file,
            self.sources.len(),
            self.outputs.len(),
            self.agent.hostname
        );
        for s in &self.sources {
            out += &format!(
                "  source {:<16} type {:<12} every {}\n",
                s.name,
                s.kind,
                duration::format(s.interval)
            );
        }
        for o in &self.outputs {
            out += &format!(
                "  output {:<16} type {:<12} {}\n",
                o.name,
                o.kind,
                o.spec.describe()
            );
        }
        out
    }
}

/// Gives the outputs that name series by the sources' declared metrics (remote write) the
/// declarations and prefixes of the configured sources.
fn tell_outputs_the_sources(outputs: &mut [OutputConfig], sources: &[SourceConfig]) {
    let names: Vec<SourceNames> = sources
        .iter()
        .map(|s| {
            let declared = s.source_type().metrics.iter().map(|m| (m.name, m.unit));
            SourceNames::new(&s.template.prefix, declared)
        })
        .collect();
    for output in outputs {
        if let Some(spec) = output.spec.with_sources(&names) {
            output.spec = spec;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::outputs;

    fn errors(text: &str) -> Vec<String> {
        parse("pipit.json", text)
            .unwrap_err()
            .0
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    /// Every component type pipit has, whatever the build.
    const EVERY_SOURCE: &[&str] = &[
        "cpu",
        "load",
        "memory",
        "swap",
        "uptime",
        "processes",
        "interface",
        "df",
        "disk",
        "thermal",
        "wireless",
        "wifi",
        "wireguard",
        "openvpn",
        "conntrack",
        "dhcp_leases",
        "qdisc",
        "nftables",
        "tcpconns",
        "exec",
        "watch",
        "http",
        "tcp",
        "ping",
        "tail",
        "mqtt",
        "self",
    ];
    const EVERY_OUTPUT: &[&str] = &[
        "stdout",
        "graphite",
        "riemann",
        "influxdb",
        "mqtt",
        "prometheus_remote_write",
    ];

    fn built_and_left_out(built: Vec<&str>, left_out: &[(&str, &str)]) -> Vec<String> {
        let mut all: Vec<String> = built.iter().map(|n| n.to_string()).collect();
        for (name, _) in left_out {
            assert!(
                !built.contains(name),
                "{name} is built yet named as left out"
            );
            all.push(name.to_string());
        }
        all.sort();
        all
    }

    fn sorted(names: &[&str]) -> Vec<String> {
        let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn every_type_is_either_built_or_named_as_left_out() {
        let sources = sources::REGISTRY.iter().map(|t| t.name).collect();
        assert_eq!(
            built_and_left_out(sources, sources::LEFT_OUT),
            sorted(EVERY_SOURCE)
        );
        let outputs = outputs::REGISTRY.iter().map(|t| t.name).collect();
        assert_eq!(
            built_and_left_out(outputs, outputs::LEFT_OUT),
            sorted(EVERY_OUTPUT)
        );
    }

    #[test]
    fn a_type_left_out_of_this_build_is_named_with_its_feature() {
        for (name, feature) in sources::LEFT_OUT {
            let e = errors(&format!(
                r#"{{"sources": [{{"type": "{name}"}}], "outputs": [{{"type": "stdout"}}]}}"#
            ));
            assert_eq!(
                e,
                [format!(
                    "pipit.json:1:23: sources[0].type: source type \"{name}\" is not in this build (feature {feature})"
                )]
            );
        }
        for (name, feature) in outputs::LEFT_OUT {
            let e = errors(&format!(
                r#"{{"sources": [{{"type": "load"}}], "outputs": [{{"type": "{name}"}}]}}"#
            ));
            assert!(
                e.len() == 1 && e[0].ends_with(&format!(
                    "outputs[0].type: output type \"{name}\" is not in this build (feature {feature})"
                )),
                "{e:?}"
            );
        }
    }

    #[test]
    fn the_embedded_config_is_valid() {
        let config = parse(EMBEDDED_NAME, EMBEDDED).unwrap();
        assert!(config.sources.len() >= 3);
        assert_eq!(config.outputs[0].kind, "stdout");
    }

    #[test]
    fn agent_defaults_apply_to_sources() {
        let c = parse(
            "c.json",
            r#"{"agent": {"hostname": "r1", "interval": "2s"},
            "sources": [{"type": "load"}], "outputs": [{"type": "stdout"}]}"#,
        )
        .unwrap();
        assert_eq!(c.sources[0].interval, Duration::from_secs(2));
        assert_eq!(c.sources[0].template.host, "r1");
        assert_eq!(c.sources[0].template.ttl, Duration::from_secs(4));
    }

    #[test]
    fn all_errors_are_reported_at_once() {
        let e = errors(
            r#"{"agent": {"interval": "ten", "colour": "red"},
  "sources": [{"type": "load", "intervl": "1s"}, {"type": "nope"}],
  "outputs": [{"type": "stdout", "format": "xml"}]}"#,
        );
        assert_eq!(e.len(), 5, "{e:#?}");
        assert!(
            e[0].starts_with("pipit.json:1:24: agent.interval: expected a duration"),
            "{}",
            e[0]
        );
        assert!(
            e[1].starts_with("pipit.json:1:41: agent.colour: unknown key; expected one of: "),
            "{}",
            e[1]
        );
        assert!(
            e[2].starts_with("pipit.json:2:43: sources[0].intervl: unknown key; expected one of: "),
            "{}",
            e[2]
        );
        assert!(e[2].contains("interval"), "{}", e[2]);
        assert!(
            e[3].starts_with("pipit.json:2:59: sources[1].type: expected one of "),
            "{}",
            e[3]
        );
        assert_eq!(
            e[4],
            "pipit.json:3:44: outputs[0].format: expected one of \"graphite\", \"json\", got \"xml\""
        );
    }

    #[test]
    fn a_config_without_outputs_is_refused() {
        assert_eq!(
            errors(r#"{"sources": [{"type": "load"}]}"#),
            vec![
                "pipit.json:1:1: no outputs: add at least one to \"outputs\", such as {\"type\": \"stdout\"}"
            ]
        );
    }

    #[test]
    fn syntax_errors_have_a_position_and_no_path() {
        assert_eq!(
            errors("{\"outputs\": [}"),
            vec!["pipit.json:1:14: invalid JSON: expected a value, found '}'"]
        );
    }

    #[test]
    fn duplicate_names_are_refused() {
        let e = errors(
            r#"{"sources": [{"type": "load"}, {"type": "load"}], "outputs": [{"type": "stdout"}]}"#,
        );
        assert_eq!(
            e,
            vec![
                "pipit.json:1:32: sources[1].name: \"load\" is taken by sources[0]; give each its own \"name\""
            ]
        );
    }
}
