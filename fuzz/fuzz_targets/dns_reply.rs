//! A DNS server's reply to an A or AAAA query: the first byte picks the type, the rest is the
//! reply. The id and question are copied in from the query half the time, so the record parser
//! is reached and not only the checks before it.
#![no_main]

use pipit::dns::message::{self, TYPE_A, TYPE_AAAA};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, reply)) = data.split_first() else {
        return;
    };
    let qtype = if pick & 1 == 0 { TYPE_A } else { TYPE_AAAA };
    let Some(query) = message::query(0x1234, "host.example", qtype) else {
        return;
    };
    let mut reply = reply.to_vec();
    if pick & 2 != 0 && reply.len() >= query.len() {
        reply[..2].copy_from_slice(&query[..2]);
        reply[4..6].copy_from_slice(&query[4..6]);
        reply[12..query.len()].copy_from_slice(&query[12..]);
    }
    let _ = message::reply(&reply, &query);
});
