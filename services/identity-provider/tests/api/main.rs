//! Integration tests of the identity provider: the real service on a free
//! loopback port, called over HTTP (set TEST_LOG=1 for its logs).

mod helpers;
mod oidc;
mod python;
mod rotation;
mod token;
