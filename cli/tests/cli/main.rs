//! Integration tests of the platform library: golden `--json` output of the stack commands,
//! and the Docker facade and image builds against the real engine. Docker-backed tests make
//! their own labelled networks, volumes and containers with unique names and remove them,
//! pass or fail.

mod binary;
mod devstack;
mod golden;
mod images;
mod kubernetes;
mod mariadb;
mod operate;
mod registry;
mod runtime;
mod support;
mod up;
