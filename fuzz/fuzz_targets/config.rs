//! The config parser (TOML, then validation) over arbitrary bytes (see
//! `getapr::config::Config::exercise`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    getapr::config::Config::exercise(data);
});
