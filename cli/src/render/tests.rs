//! Unit tests of the rendering on small stacks written here (the shipped stacks have golden
//! and property tests in `cli/tests/render_kubernetes.rs`).

use super::*;
