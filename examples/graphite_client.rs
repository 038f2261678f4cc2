//! Sends a few datapoints to carbon with pipit's Graphite client, without the agent.
//!
//! Run: `cargo run --example graphite_client -- 127.0.0.1:2004 pickle`
//! (or `HOST:2003 tcp`, `HOST:2003 udp`).

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use pipit::outputs::graphite::{
    Datapoint, GraphiteClient, Protocol, Timeouts, decode_path, encode_path,
};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:2003".to_owned());
    let protocol = match args.next().as_deref() {
        None | Some("tcp") => Protocol::Plaintext,
        Some("udp") => Protocol::Udp,
        Some("pickle") => Protocol::Pickle,
        Some(other) => {
            eprintln!("unknown protocol {other:?}: use tcp, udp or pickle");
            return ExitCode::FAILURE;
        }
    };
    match send(&addr, protocol) {
        Ok(path) => {
            println!("sent to {addr}; stored as {path}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn send(addr: &str, protocol: Protocol) -> Result<String, Box<dyn std::error::Error>> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let mut carbon = GraphiteClient::connect(addr, protocol, Timeouts::default())?;

    // One datapoint.
    carbon.send(&Datapoint::new("examples.pipit.up", 1i64, now)?)?;

    // Many at once, under a name made of any text: each section becomes one path node, and the
    // original text comes back with decode_path.
    let path = encode_path(&["examples", "wohnzimmer.lan", "temp °C"]);
    assert_eq!(
        decode_path(&path)?,
        ["examples", "wohnzimmer.lan", "temp °C"]
    );
    let minute: Vec<Datapoint> = (0..60)
        .map(|i| Datapoint::new(path.as_str(), 21.0 + i as f64 / 100.0, now - i))
        .collect::<Result<_, _>>()?;
    carbon.send_many(&minute)?;

    carbon.close()?;
    Ok(path)
}
