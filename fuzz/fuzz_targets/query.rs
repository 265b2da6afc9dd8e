//! A client's query through the server's triage and forwarding, with a
//! prefilled cache and no upstream (see `getapr::fuzzing::query`): every
//! answer parses, has the query's ID and question, and fits the client.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    getapr::fuzzing::query(data);
});
