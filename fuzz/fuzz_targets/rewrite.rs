//! An upstream reply through the rewrite under every policy: filtered and
//! reordered replies must parse and render, and hold no new address.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    getapr::fuzzing::rewrite(data);
});
