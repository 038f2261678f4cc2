//! One output's bounded queue and the blocking writer thread that drains it in batches.
//!
//! The queue outlives its writer: when a reload changes an output's config, the old writer finishes
//! the batch in its hands and the new writer carries on from the same queue, so nothing queued is
//! lost. At shutdown the queue's senders are dropped and the writer drains what is left.

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, select};

use crate::complain::Complaint;
use crate::event::Event;
use crate::outputs::{self, Output, OutputConfig, OutputError};
use crate::telemetry::{OutputStats, add, get, sub};

/// A running output: its queue, its counters and its writer thread.
#[derive(Debug)]
pub struct OutputHandle {
    /// The output's config.
    pub config: OutputConfig,
    /// Its counters, shared with the router and the `self` source.
    pub stats: Arc<OutputStats>,
    queue: Option<Sender<Event>>,
    receiver: Receiver<Event>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl OutputHandle {
    /// Builds the output and starts its writer on a fresh queue.
    pub fn start(config: OutputConfig) -> Result<OutputHandle, OutputError> {
        let output = config.spec.build()?;
        let (queue, receiver) = bounded(config.queue_size);
        let stats = Arc::new(OutputStats::new(&config.name));
        let mut handle = OutputHandle {
            config,
            stats,
            queue: Some(queue),
            receiver,
            stop: None,
            thread: None,
        };
        handle.spawn_writer(output)?;
        Ok(handle)
    }

    fn spawn_writer(&mut self, output: Box<dyn Output>) -> Result<(), OutputError> {
        let (stop, stop_rx) = bounded::<()>(0);
        let writer = Writer {
            output,
            queue: self.receiver.clone(),
            stop: stop_rx,
            stats: self.stats.clone(),
            batch_size: self.config.batch_size,
            batch_timeout: self.config.batch_timeout,
            complaint: Complaint::new(outputs::log_target(&self.config.name)),
        };
        let thread = thread::Builder::new()
            .name(format!("out/{}", self.config.name))
            .spawn(move || writer.run())
            .map_err(|e| OutputError(format!("cannot start the writer thread: {e}")))?;
        self.stop = Some(stop);
        self.thread = Some(thread);
        Ok(())
    }

    /// A sender into this output's queue, for the router.
    pub fn sender(&self) -> Option<Sender<Event>> {
        self.queue.clone()
    }

    /// Replaces the writer with one built from `config`, keeping the queue and the counters. The
    /// new output is built first: on a build error the old writer keeps running untouched.
    pub fn replace(&mut self, config: OutputConfig) -> Result<(), OutputError> {
        let output = config.spec.build()?;
        // Stop the old writer: it finishes the batch in its hands and leaves the queue as it is.
        self.stop = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.config = config;
        self.spawn_writer(output)
    }

    /// Closes the queue: the writer delivers what is left and exits.
    pub fn close(&mut self) {
        self.queue = None;
    }

    /// Waits for the writer until `deadline`; what is still queued then is counted as dropped.
    pub fn join_until(&mut self, deadline: Instant) -> bool {
        let Some(thread) = self.thread.take() else {
            return true;
        };
        while !thread.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
            return true;
        }
        let left = get(&self.stats.queued);
        add(&self.stats.dropped_shutdown, left);
        log::error!(target: &outputs::log_target(&self.config.name), "stop deadline passed with {left} event(s) undelivered");
        false
    }
}

struct Writer {
    output: Box<dyn Output>,
    queue: Receiver<Event>,
    stop: Receiver<()>,
    stats: Arc<OutputStats>,
    batch_size: usize,
    batch_timeout: Duration,
    complaint: Complaint,
}

impl Writer {
    fn run(mut self) {
        let mut batch: Vec<Event> = Vec::with_capacity(self.batch_size.min(4096));
        loop {
            let first = select! {
                recv(self.queue) -> msg => match msg {
                    Ok(event) => event,
                    Err(_) => return,
                },
                recv(self.stop) -> _ => return,
            };
            sub(&self.stats.queued, 1);
            batch.push(first);
            let (closed, stopping) = self.fill(&mut batch);
            self.deliver(&mut batch);
            if closed || stopping {
                if closed {
                    log::debug!(target: &outputs::log_target(&self.stats.name), "queue closed and drained");
                }
                return;
            }
        }
    }

    /// Adds events until the batch is full or its time is up; says whether the queue was closed
    /// (and drained) or the writer asked to stop.
    fn fill(&mut self, batch: &mut Vec<Event>) -> (bool, bool) {
        let deadline = Instant::now() + self.batch_timeout;
        while batch.len() < self.batch_size {
            let wait = deadline.saturating_duration_since(Instant::now());
            select! {
                recv(self.queue) -> msg => match msg {
                    Ok(event) => {
                        sub(&self.stats.queued, 1);
                        batch.push(event);
                    }
                    Err(_) => return (true, false),
                },
                recv(self.stop) -> _ => return (false, true),
                default(wait) => {
                    // A closed queue may still hold events: keep draining it without waiting.
                    if self.queue.is_empty() {
                        return (false, false);
                    }
                }
            }
        }
        (false, false)
    }

    fn deliver(&mut self, batch: &mut Vec<Event>) {
        let result = self.output.write(batch);
        let unencodable = self.output.take_unencodable();
        add(&self.stats.dropped_unencodable, unencodable);
        let n = (batch.len() as u64).saturating_sub(unencodable);
        match result {
            Ok(()) => {
                add(&self.stats.events_out, n);
                self.complaint.recover();
            }
            Err(e) if self.output.rejected() => {
                add(&self.stats.dropped_rejected, n);
                self.complaint
                    .fail(&format!("dropped {n} event(s) the backend refused: {e}"));
            }
            Err(e) => {
                add(&self.stats.failed, n);
                self.complaint
                    .fail(&format!("delivery of {n} event(s) failed: {e}"));
            }
        }
        batch.clear();
    }
}
