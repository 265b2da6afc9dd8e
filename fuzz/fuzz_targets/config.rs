//! The config parser (TOML, then validation) and the resolv.conf parser
//! over arbitrary bytes (see `getapr::fuzzing::config`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    getapr::fuzzing::config(data);
});
