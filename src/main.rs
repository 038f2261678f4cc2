//! The `pipit` command: parses arguments, calls the library, maps errors to exit codes.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use pipit::config::{self, ConfigErrors};
use pipit::once;
use pipit::outputs::stdout::Format;
use pipit::run::{self, ConfigSource, RunError};

const HELP: &str = "\
pipit: a small, dependable monitoring agent for routers and edge boxes

Usage: pipit <command> [options]

Commands:
  run      Run the agent until SIGTERM or SIGINT. SIGHUP reloads the config:
           a valid one replaces the running one, an invalid one is logged and
           refused. A second SIGTERM or SIGINT while stopping exits at once.
  check    Validate the config; print a summary of its sources and outputs,
           or every error found.
  once     Collect every source once (twice where a rate needs two samples)
           and print the events. No output is contacted.
  ctl      Ask the running agent over its control socket:
             pipit ctl metrics [--selector RE | --name N ...] [--prefix P]
                               [--infix I] [--limit N] [--no-metadata] [--hidden]
             pipit ctl status | reload | stop
           --selector is a regex searched in each name (anchor with ^...$);
           --name (repeatable) selects exact names; --hidden adds the agent's
           own self.* metrics. The socket is --socket PATH, else control.socket
           of the config (-c), else the default (see docs/control.md).

Options:
  -c, --config FILE  The config file. Default: /etc/pipit/pipit.json; when no
                     -c is given and that file does not exist, an embedded
                     default (host sources to stdout) is used.
      --json         once: print JSON lines instead of Graphite lines.
                     ctl: print the agent's JSON answer instead of tables.
      --socket PATH  ctl: the control socket to talk to.
  -h, --help         Print this help.
  -V, --version      Print the version.

Exit codes:
  0  success
  1  the config is invalid or missing (every error is printed); for ctl
     reload, the agent refused the new config and keeps the running one
  2  the command line is wrong
  3  the agent could not run, or (once) a source failed, or (ctl) the agent
     answered with an error
  4  ctl: the agent is not running, or its socket is not accessible

Environment:
  RUST_LOG  log filter such as debug, warn or info,src.cpu=debug (default: info).
            Log lines name their component: src.<source>, out.<output>, agent,
            control.
";

/// Exit code: the config is invalid or missing.
const EXIT_CONFIG: u8 = 1;
/// Exit code: the command line is wrong.
const EXIT_USAGE: u8 = 2;
/// Exit code: the agent could not run, or a source failed in `once`.
const EXIT_RUNTIME: u8 = 3;
/// Exit code: `ctl` found no agent, or may not talk to it.
const EXIT_UNREACHABLE: u8 = 4;

#[derive(Debug, Default)]
struct Args {
    command: Option<String>,
    config: Option<PathBuf>,
    json: bool,
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args::default();
    while let Some(arg) = argv.next() {
        match arg.as_str() {
            "-c" | "--config" => {
                let file = argv
                    .next()
                    .ok_or_else(|| format!("{arg} needs a file name"))?;
                args.config = Some(PathBuf::from(file));
            }
            "--json" => args.json = true,
            _ if arg.starts_with("--config=") => {
                args.config = Some(PathBuf::from(&arg["--config=".len()..]))
            }
            _ if arg.starts_with('-') => return Err(format!("unknown option {arg}")),
            _ if args.command.is_none() => args.command = Some(arg),
            _ => return Err(format!("unexpected argument {arg}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    pipit::supervisor::claim_every_child();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.iter().any(|a| a == "-h" || a == "--help") {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    }
    if argv.iter().any(|a| a == "-V" || a == "--version") {
        println!("pipit {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if argv.first().map(String::as_str) == Some("ctl") {
        return match parse_ctl(argv.into_iter().skip(1)) {
            Ok(ctl) => cmd_ctl(&ctl),
            Err(e) => usage_error(&e),
        };
    }
    let args = match parse_args(argv.into_iter()) {
        Ok(args) => args,
        Err(e) => return usage_error(&e),
    };
    pipit::logging::init();
    let source = config_source(args.config.as_deref());
    match args.command.as_deref() {
        Some("run") => cmd_run(source),
        Some("check") => cmd_check(&source),
        Some("once") => cmd_once(
            &source,
            if args.json {
                Format::Json
            } else {
                Format::Graphite
            },
        ),
        Some(other) => usage_error(&format!("unknown command {other}")),
        None => usage_error("no command given"),
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("pipit: {message}; see pipit --help");
    ExitCode::from(EXIT_USAGE)
}

/// The file named with `-c` (which must exist), else the default file, else the embedded config.
fn config_source(named: Option<&Path>) -> ConfigSource {
    match named {
        Some(path) => ConfigSource::File(path.to_owned()),
        None if Path::new(config::DEFAULT_PATH).exists() => {
            ConfigSource::File(PathBuf::from(config::DEFAULT_PATH))
        }
        None => {
            log::info!(
                target: "agent",
                "{} does not exist: using the embedded default config (host sources to stdout)",
                config::DEFAULT_PATH
            );
            ConfigSource::Embedded
        }
    }
}

fn print_config_errors(errors: &ConfigErrors) {
    for e in &errors.0 {
        eprintln!("{e}");
    }
}

fn cmd_run(source: ConfigSource) -> ExitCode {
    match run::run(source) {
        Ok(report) if report.undelivered == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(EXIT_RUNTIME),
        Err(RunError::Config(errors)) => {
            print_config_errors(&errors);
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("pipit: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn cmd_check(source: &ConfigSource) -> ExitCode {
    match source.load() {
        Ok(config) => {
            print!("{}", config.summary());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            print_config_errors(&errors);
            eprintln!("{} error(s)", errors.0.len());
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn cmd_once(source: &ConfigSource, format: Format) -> ExitCode {
    let config = match source.load() {
        Ok(config) => config,
        Err(errors) => {
            print_config_errors(&errors);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let (events, failures) = once::collect(&config);
    let mut out = io::stdout().lock();
    if let Err(e) = once::print(&events, format, &mut out).and_then(|()| out.flush()) {
        eprintln!("pipit: cannot write to standard output: {e}");
        return ExitCode::from(EXIT_RUNTIME);
    }
    for f in &failures {
        eprintln!("pipit: source {}: {}", f.source, f.outcome);
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_RUNTIME)
    }
}

/// The arguments of `pipit ctl`.
#[derive(Debug, Default)]
struct Ctl {
    call: Option<String>,
    socket: Option<PathBuf>,
    config: Option<PathBuf>,
    json: bool,
    /// The request's keys, each with its value as JSON text.
    request: Vec<(&'static str, String)>,
}

impl Ctl {
    fn set(&mut self, key: &'static str, json: String) {
        self.request.retain(|(k, _)| *k != key);
        self.request.push((key, json));
    }

    fn has(&self, key: &str) -> bool {
        self.request.iter().any(|(k, _)| *k == key)
    }

    /// The request as one line of JSON.
    fn line(&self) -> String {
        let members: Vec<String> = self
            .request
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        format!("{{{}}}", members.join(","))
    }
}

/// A string as JSON text, escaped.
fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

fn parse_ctl(mut argv: impl Iterator<Item = String>) -> Result<Ctl, String> {
    let mut ctl = Ctl::default();
    let mut names = Vec::new();
    while let Some(arg) = argv.next() {
        let mut value = || argv.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--socket" => ctl.socket = Some(PathBuf::from(value()?)),
            "-c" | "--config" => ctl.config = Some(PathBuf::from(value()?)),
            "--json" => ctl.json = true,
            "--selector" => {
                let re = value()?;
                ctl.set("selector", json_string(&re));
            }
            "--name" => names.push(json_string(&value()?)),
            "--prefix" => {
                let text = value()?;
                ctl.set("prefix", json_string(&text));
            }
            "--infix" => {
                let text = value()?;
                ctl.set("infix", json_string(&text));
            }
            "--limit" => {
                let n = value()?;
                let n: u64 = n
                    .parse()
                    .map_err(|_| format!("--limit needs a number, got {n}"))?;
                ctl.set("limit", n.to_string());
            }
            "--no-metadata" => {
                ctl.set("metadata", "false".into());
            }
            "--hidden" => {
                ctl.set("hidden", "true".into());
            }
            _ if arg.starts_with('-') => return Err(format!("unknown option {arg}")),
            _ if ctl.call.is_none() => ctl.call = Some(arg),
            _ => return Err(format!("unexpected argument {arg}")),
        }
    }
    if !names.is_empty() {
        if ctl.has("selector") {
            return Err("--selector and --name cannot be used together".into());
        }
        ctl.set("selector", format!("[{}]", names.join(",")));
    }
    let call = match ctl.call.as_deref() {
        Some("metrics") => "get_metrics",
        Some(call @ ("status" | "reload" | "stop")) => {
            if !ctl.request.is_empty() {
                return Err(format!("metric options do not apply to ctl {call}"));
            }
            call
        }
        Some(other) => return Err(format!("unknown ctl call {other}")),
        None => return Err("ctl needs a call: metrics, status, reload or stop".into()),
    };
    ctl.request.insert(0, ("call", json_string(call)));
    Ok(ctl)
}

fn cmd_ctl(ctl: &Ctl) -> ExitCode {
    use pipit::control::client::{self, ClientError};
    let path = match client::socket_path(ctl.socket.as_deref(), ctl.config.as_deref()) {
        Ok(path) => path,
        Err(e) => {
            eprintln!("pipit: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let request = ctl.line();
    let timeout = pipit::control::REPLY_TIMEOUT + std::time::Duration::from_secs(10);
    match client::call(&path, &request, timeout) {
        Ok(answer) => {
            let text = if ctl.json {
                format!("{}\n", answer.line)
            } else {
                match ctl.call.as_deref() {
                    Some("metrics") => client::metrics_table(&answer.result),
                    Some("status") => client::status_table(&answer.result),
                    Some("reload") => client::reload_text(&answer.result),
                    _ => "stopping\n".to_owned(),
                }
            };
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pipit: {e}");
            match e {
                ClientError::Agent { code, .. } if code == "reload_failed" => {
                    ExitCode::from(EXIT_CONFIG)
                }
                ClientError::NotRunning(_)
                | ClientError::Stale(_)
                | ClientError::PermissionDenied(_)
                | ClientError::Forbidden { .. } => ExitCode::from(EXIT_UNREACHABLE),
                _ => ExitCode::from(EXIT_RUNTIME),
            }
        }
    }
}
