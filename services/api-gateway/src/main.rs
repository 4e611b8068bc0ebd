//! placeholder, replaced as the crate is written
#![forbid(unsafe_code)]
fn main() {}
