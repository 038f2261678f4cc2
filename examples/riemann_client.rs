//! Sends a few events to a Riemann server with pipit's client, without the agent.
//!
//! `cargo run --example riemann_client -- 127.0.0.1:5555` (the address defaults to that).

use std::process::ExitCode;
use std::time::Duration;

use pipit::Event;
use pipit::outputs::riemann::{RiemannClient, Timeouts, Transport};

fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5555".to_owned());
    match run(&addr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("riemann_client: {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(addr: &str) -> Result<(), pipit::outputs::riemann::RiemannError> {
    let timeouts = Timeouts {
        connect: Duration::from_secs(2),
        write: Duration::from_secs(2),
        ack: Duration::from_secs(5),
    };
    let mut client = RiemannClient::connect(addr, Transport::Tcp, timeouts)?;

    // One event: returns once the server has acknowledged it.
    let mut disk = Event::new("disk.root.used_percent", "example-host")
        .with_metric(42.5)
        .with_state("ok");
    disk.ttl = Some(Duration::from_secs(60));
    disk.tags.push("example".to_owned());
    disk.attributes.insert("mount".to_owned(), "/".to_owned());
    client.send(&disk)?;

    // Many events: one message, one acknowledgement.
    let queues: Vec<Event> = (0..10i64)
        .map(|i| Event::new(format!("queue.{i}.length"), "example-host").with_metric(i * 3))
        .collect();
    client.send_many(&queues)?;

    client.close()?;
    println!("sent {} events to {addr}", 1 + queues.len());
    Ok(())
}
