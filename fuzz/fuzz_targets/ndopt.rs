//! rtnetlink ND user option messages (router advertisement options, PREF64)
//! over arbitrary bytes (see `getapr::fuzzing::ndopt`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    getapr::fuzzing::ndopt(data);
});
