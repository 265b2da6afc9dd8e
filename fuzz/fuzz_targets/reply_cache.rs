//! An upstream reply through validation, rewrite, the cache and rendering
//! for several kinds of client (see `getapr::dns::fuzz::reply_cache`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    getapr::dns::fuzz::reply_cache(data);
});
