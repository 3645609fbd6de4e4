//! Arbitrary queue messages: a delivery job or an error, never a panic; a parsed job round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wechat_relay_core::delivery::jobs::Job;

fuzz_target!(|text: &str| {
    if let Ok(job) = Job::parse(text) {
        assert_eq!(Job::parse(&job.to_text()), Ok(job.clone()));
        let _ = job.destination();
    }
});
