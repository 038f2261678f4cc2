//! An event read back from its JSON form (spool payloads, the stdout output's lines).
#![no_main]

use pipit::Event;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(event) = Event::from_json(&value) else {
        return;
    };
    // What was read writes back out and reads again as the same event.
    let text = serde_json::to_string(&event).expect("an event serializes");
    let value = serde_json::from_str(&text).expect("its JSON parses");
    let again = Event::from_json(&value).expect("its JSON reads back");
    assert_eq!(again.service, event.service);
    assert_eq!(again.metric, event.metric);
});
