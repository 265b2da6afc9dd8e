//! An upstream reply through validation, rewrite, the cache and rendering
//! for several kinds of client (see `getapr::fuzzing::reply_cache`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    getapr::fuzzing::reply_cache(data);
});
