//! The config parser (TOML, then validation) over arbitrary bytes (see
//! `getapr::fuzzing::config`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    getapr::fuzzing::config(data);
});
