//! The STUN Binding response parser over arbitrary bytes (see
//! `getapr::probe::stun::exercise`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    getapr::probe::stun::exercise(data);
});
