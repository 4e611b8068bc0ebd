//! Golden tests: the `--json` output of `stack show` and `stack validate` is an interface that
//! scripts read, so any change to it shows up as a snapshot diff.

use std::path::{Path, PathBuf};

use platform::commands::stack::{StackView, ValidateView};
use platform::output::json_string;
use platform::stack::validate::validate;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `platform stack show --json` for the shipped dev stack.
#[test]
fn stack_show_dev_json() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../stacks/dev.toml");
    let report = validate(&read(&path), &path, "stacks/dev.toml");
    let stack = report.stack.expect("dev stack is valid");
    let view = StackView::new(&stack, "stacks/dev.toml");
    // Bind mounts are resolved to absolute paths: keep the snapshot independent of the checkout.
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let repo = repo.canonicalize().unwrap_or(repo);
    let json = json_string(&view)
        .unwrap()
        .replace(&repo.display().to_string(), "<repo>");
    insta::assert_snapshot!("stack_show_dev", json);
}

/// `platform stack validate --json` for a file with one mistake of each kind: unknown
/// reference, missing port, cycle, port clash, bad duration, and a warning.
#[test]
fn stack_validate_broken_json() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cli/fixtures/broken.toml");
    let report = validate(&read(&path), &path, "broken.toml");
    let valid = report.is_valid();
    let mut view = ValidateView::new("broken.toml", valid, report.diagnostics);
    // The warning names an absolute path; keep the snapshot independent of the checkout.
    for w in &mut view.warnings {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests");
        let root = root.canonicalize().unwrap_or(root);
        w.message = w
            .message
            .replace(&root.display().to_string(), "<cli>/tests");
    }
    insta::assert_snapshot!("stack_validate_broken", json_string(&view).unwrap());
}
