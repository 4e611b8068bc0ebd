//! Build script: records the git commit the CLI was built from, so `platform version` can name it.
//!
//! `PLATFORM_GIT_COMMIT` set in the build environment wins (CI builds from a tarball have no .git);
//! otherwise `git rev-parse` is asked, and when that fails the commit is simply unknown.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PLATFORM_GIT_COMMIT");
    let commit = std::env::var("PLATFORM_GIT_COMMIT")
        .ok()
        .or_else(git_commit);
    if let Some(commit) = commit {
        println!("cargo:rustc-env=PLATFORM_GIT_COMMIT={commit}");
    }
    // Rebuild when HEAD moves so the recorded commit stays true.
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={git_dir}/HEAD");
        println!("cargo:rerun-if-changed={git_dir}/refs/heads");
    }
}

fn git_commit() -> Option<String> {
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
