//! The sidecar's parsers of outside input over arbitrary bytes: the
//! Host/Origin guard and the `/pairs` query string (see
//! `getapr::api::exercise` for how the bytes are split).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    getapr::api::exercise(data);
});
