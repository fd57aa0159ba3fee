//! end-to-end test crate
