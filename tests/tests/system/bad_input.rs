//! Bad input and bad states through the binary: the documented exit codes (0 ok, 1 failure,
//! 2 bad input: usage, invalid files), a message that names the problem, and nothing created.

use std::time::Duration;

use e2e::{TestStack, docker};

use crate::setup;

/// None of these commands should get far; a hang is a failure.
const LIMIT: Duration = Duration::from_secs(60);

/// Unknown and unscalable services and out-of-range counts are usage errors (2); scaling a stack
/// that is not running and `up` of an invalid stack file are failures (1); none of them leaves a
/// container, network or volume behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_with_the_documented_codes() {
    let (platform, docker) = setup().await;
    let stack = TestStack::dev_copy(&platform, "bad").unwrap();
    let s = stack.arg();

    let cases: [(&[&str], i32, &str); 6] = [
        (
            &["scale", "no-such-service", "3", "--stack", s],
            2,
            "unknown service `no-such-service`",
        ),
        (
            &["scale", "mariadb", "2", "--stack", s],
            2,
            "cannot be scaled",
        ),
        (
            &["scale", "order-service", "17", "--stack", s],
            2,
            "is not in",
        ),
        (
            &["up", "no-such-service", "--stack", s],
            2,
            "unknown service `no-such-service`",
        ),
        (
            &["scale", "order-service", "3", "--stack", s],
            1,
            "is not running",
        ),
        (
            &["up", "--stack", "no-such-stack-e2e"],
            2,
            "no stack `no-such-stack-e2e`",
        ),
    ];
    for (args, code, message) in cases {
        let run = platform.run(args, LIMIT).await.unwrap();
        eprintln!("{} -> {:?}", run.command, run.code);
        let run = run.expect_code(code).unwrap();
        assert!(
            run.stderr.contains(message),
            "`{}`: stderr lacks `{message}`:\n{}",
            run.command,
            run.stderr
        );
    }
    let left = docker::owned(&docker, &stack.name).await.unwrap();
    assert!(left.is_empty(), "bad input created {left:#?}");

    // An invalid stack file: the diagnostic names the file, line and key; exit 2; nothing created.
    let name = e2e::stack::unique_name("broken");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.toml");
    std::fs::write(
        &file,
        format!(
            "[stack]\nname = \"{name}\"\n\n\
             [services.api]\nimage = \"nothing:here\"\nport = 8080\ncolour = \"blue\"\n"
        ),
    )
    .unwrap();
    let file_arg = file.display().to_string();
    let run = platform
        .run(&["up", "--stack", &file_arg], LIMIT)
        .await
        .unwrap()
        .expect_code(2)
        .unwrap();
    assert!(
        run.stderr.contains("is invalid")
            && run.stderr.contains("broken.toml:7:1:")
            && run.stderr.contains("services.api.colour"),
        "{}",
        run.stderr
    );
    let left = docker::owned(&docker, &name).await.unwrap();
    assert!(left.is_empty(), "an invalid stack file created {left:#?}");
}
