//! The STUN Binding response parser over arbitrary bytes (see
//! `getapr::fuzzing::stun`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    getapr::fuzzing::stun(data);
});
