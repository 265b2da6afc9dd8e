//! The sidecar's parsers of outside input over arbitrary bytes: the
//! Host/Origin guard and the `/pairs` query string (see
//! `getapr::fuzzing::api` for how the bytes are split).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    getapr::fuzzing::api(data);
});
