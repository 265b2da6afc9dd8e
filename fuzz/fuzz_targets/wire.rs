//! Every wire entry point over arbitrary bytes: query parsing and
//! forwarding, reply validation, fitting to clients, truncation, reorder.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    getapr::fuzzing::wire(data);
});
