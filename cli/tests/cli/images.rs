//! Local image builds against the real engine: a FROM-scratch image of a binary of this crate
//! runs and prints, and rebuilding unchanged inputs is a no-op.

use std::path::Path;
use std::time::Duration;

use platform::runtime::build::{self, Builder, ImageState, Silent, scratch};
use platform::runtime::{ContainerSpec, Runtime};
use platform::stack::Recipe;

use crate::support::{eventually, runtime, unique_stack, with_stack, workspace};

/// The `platform` binary itself, imaged from scratch with only its `ldd` libraries, runs in
/// a container of a project-made network and prints its version as JSON; the image carries
/// our labels and its content-hash tag.
#[tokio::test]
async fn scratch_image_of_own_binary_runs() {
    let rt = runtime().await;
    let binary = Path::new(env!("CARGO_BIN_EXE_platform"));
    let image = scratch::prepare("platform-selftest", binary, false).unwrap();
    let tag = format!("platform/platform-selftest:{}", &image.hash[..12]);
    let labels = build::labels_for("platform-selftest", &image.hash, "binary");
    build::docker_build(&rt, &image.context, &tag, &labels, &Silent)
        .await
        .unwrap();
    let listed = rt.list_images(Some("platform-selftest")).await.unwrap();
    assert!(
        listed
            .iter()
            .any(|i| i.tags.contains(&tag) && i.content_hash == image.hash)
    );

    let stack = unique_stack("scratch");
    with_stack(&rt, &stack, || async {
        let network = format!("platform-{stack}");
        rt.ensure_network(&network, &stack).await.unwrap();
        let name = format!("platform-{stack}-selftest-1");
        rt.create_container(&ContainerSpec {
            name: name.clone(),
            image: tag.clone(),
            stack: stack.clone(),
            service: "selftest".into(),
            instance: 1,
            cmd: vec!["version".into(), "--json".into()],
            network: network.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
        rt.start_container(&name).await.unwrap();
        let info = eventually("the container to exit", Duration::from_secs(30), || async {
            let info = rt.inspect_container(&name).await.unwrap();
            (info.state == "exited").then_some(info)
        })
        .await;
        assert_eq!(info.exit_code, Some(0));
        let out = collect_logs(&rt, &name).await;
        let json: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
        // No Docker socket inside the container: reported, not fatal.
        assert_eq!(json["docker"]["reachable"], false);
    })
    .await;
    rt.remove_image(&tag).await.unwrap();
}

async fn collect_logs(rt: &Runtime, name: &str) -> String {
    use futures::StreamExt;
    let lines: Vec<_> = rt
        .logs(name, &platform::runtime::LogOptions::default())
        .collect()
        .await;
    lines
        .into_iter()
        .map(|l| l.unwrap().text)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The nisshi recipe builds a current image; a second build of unchanged inputs builds nothing
/// and `status` calls it current.
#[tokio::test]
async fn nisshi_image_is_cached_by_content() {
    let rt = runtime().await;
    let builder = Builder::new(&rt, workspace());
    assert_nisshi_binary(&builder);
    let first = builder.build(&nisshi(), false, &Silent).await.unwrap();
    let second = builder.build(&nisshi(), false, &Silent).await.unwrap();
    assert_eq!(first.tag, second.tag);
    assert!(!second.built, "unchanged inputs must not rebuild");
    let status = builder.status(&nisshi()).await.unwrap();
    assert_eq!(status.state, ImageState::Current);
    assert_eq!(status.wanted.as_deref(), Some(first.tag.as_str()));
}

/// The dev stack's broker recipe.
pub fn nisshi() -> Recipe {
    Recipe::Broker {
        name: "nisshi".into(),
    }
}

/// Fails with the way to get nisshi when the binary is not installed.
pub fn assert_nisshi_binary(builder: &Builder<'_>) {
    let path = builder.binary_path(&nisshi()).unwrap();
    assert!(
        path.is_file(),
        "nisshi is not at {}: run ./install.sh or set PLATFORM_NISSHI_BIN",
        path.display()
    );
}
