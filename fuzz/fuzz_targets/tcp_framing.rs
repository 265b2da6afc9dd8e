//! A TCP connection fed a byte stream cut at chunk boundaries taken from
//! the input (see `getapr::fuzzing::tcp_framing`), on a paused clock so
//! the idle timeout passes at once and a stuck connection fails the run.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    rt.block_on(getapr::fuzzing::tcp_framing(data));
});
