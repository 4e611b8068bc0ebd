//! Local image builds: nothing is ever pulled. Our services and the broker become FROM-scratch images
//! of one binary plus its shared libraries ([`scratch`]); MariaDB is a debootstrapped Debian root
//! with an entrypoint on top ([`mariadb`]). Every image is tagged by the hash of its inputs and
//! labelled, so `platform images` can tell current from stale and unchanged inputs are never
//! rebuilt.

pub mod context;
pub mod ldd;
pub mod mariadb;
pub mod scratch;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bollard::query_parameters::BuildImageOptionsBuilder;
use futures::StreamExt;
use serde::Serialize;

use super::{ImageInfo, Runtime, RuntimeError, labels};
use crate::paths::Workspace;
use crate::stack::Recipe;

/// Image build failures.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The release binary an image needs is not there.
    #[error("binary for `{name}` not found at {}", path.display())]
    MissingBinary { name: String, path: PathBuf },
    /// `cargo build` failed.
    #[error("cargo build of `{package}` failed ({status}):\n{output}")]
    Cargo {
        package: String,
        status: String,
        output: String,
    },
    /// `ldd` failed or a library is missing.
    #[error("cannot list the libraries of {}: {message}", binary.display())]
    Ldd { binary: PathBuf, message: String },
    /// A file could not be read or written.
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// An external tool is not installed.
    #[error("`{tool}` is not installed")]
    ToolMissing { tool: String, package: String },
    /// An external tool failed.
    #[error("{tool} failed ({status}); last output:\n{output}")]
    Tool {
        tool: String,
        status: String,
        output: String,
    },
    /// A step needs root.
    #[error("{step} needs root")]
    NeedsRoot { step: String },
    /// The engine reported a failed build step.
    #[error("building {image} failed: {message}")]
    Engine { image: String, message: String },
    /// Docker itself failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl BuildError {
    /// A next step for the user.
    pub fn hint(&self) -> Option<String> {
        match self {
            BuildError::MissingBinary { name, .. }
                if crate::stack::model::BROKERS.contains(&name.as_str()) =>
            {
                Some(format!(
                    "run ./install.sh (it installs {name} into .tools/bin), or set PLATFORM_{}_BIN to a {name} 0.6.0 binary",
                    name.to_uppercase()
                ))
            }
            BuildError::MissingBinary { name, .. } => Some(format!(
                "`platform build {name}` runs `cargo build --release -p {name}` first (unless --no-cargo)"
            )),
            BuildError::ToolMissing { package, .. } => Some(format!(
                "install it: `apt-get install {package}` (install.sh does)"
            )),
            BuildError::NeedsRoot { .. } => {
                Some("run it with sudo once; the image is cached afterwards".into())
            }
            BuildError::Runtime(e) => e.hint(),
            _ => None,
        }
    }
}

/// Where build progress goes: the CLI shows it with indicatif, tests ignore it.
pub trait Progress: Send + Sync {
    /// The current step, replacing the previous one.
    fn status(&self, message: &str);
    /// A line of output from a tool or the engine (shown when verbose, kept for errors).
    fn output(&self, _line: &str) {}
}

/// Progress that goes nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn status(&self, _message: &str) {}
}

/// The labels every image built here carries.
pub fn labels_for(name: &str, hash: &str, recipe: &str) -> HashMap<String, String> {
    HashMap::from([
        (labels::IMAGE.to_string(), name.to_string()),
        (labels::CONTENT_HASH.to_string(), hash.to_string()),
        (labels::RECIPE.to_string(), recipe.to_string()),
    ])
}

/// The repository our binary images use.
pub fn repo_of(name: &str) -> String {
    format!("platform/{name}")
}

/// Whether a recipe's image is there and up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageState {
    /// An image built from the current inputs exists.
    Current,
    /// Only images from older inputs exist.
    Stale,
    /// No image of this recipe exists.
    Missing,
    /// The inputs are not there (e.g. the release binary is not built yet).
    NoInputs,
}

/// One recipe's image status, for `platform images`.
#[derive(Debug, Clone, Serialize)]
pub struct ImageStatus {
    pub name: String,
    pub recipe: &'static str,
    pub state: ImageState,
    /// The tag the current inputs produce, when they are there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wanted: Option<String>,
    /// Why the inputs are missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Images of this recipe that exist, newest first.
    pub existing: Vec<ImageInfo>,
}

/// What a build did.
#[derive(Debug, Clone, Serialize)]
pub struct Built {
    pub name: String,
    pub tag: String,
    /// False when an image from the same inputs already existed.
    pub built: bool,
    pub seconds: f64,
}

/// Builds images for stack recipes on one engine.
#[derive(Debug, Clone)]
pub struct Builder<'a> {
    rt: &'a Runtime,
    ws: Workspace,
    /// Run `cargo build --release` for our binaries before imaging them.
    pub cargo: bool,
}

/// The inputs of a recipe, gathered.
enum Prepared {
    Scratch(scratch::ScratchImage),
    Mariadb { tag: String },
}

impl<'a> Builder<'a> {
    /// A builder for `ws`'s binaries on `rt`.
    pub fn new(rt: &'a Runtime, ws: Workspace) -> Self {
        Self {
            rt,
            ws,
            cargo: true,
        }
    }

    /// The binary a recipe images, if it has one.
    pub fn binary_path(&self, recipe: &Recipe) -> Option<PathBuf> {
        match recipe {
            Recipe::Binary { name } => Some(self.ws.target_dir().join("release").join(name)),
            Recipe::Broker { name } => Some(
                std::env::var_os(format!("PLATFORM_{}_BIN", name.to_uppercase()))
                    .map(PathBuf::from)
                    .unwrap_or_else(|| self.ws.tools_bin_dir().join(name)),
            ),
            Recipe::Mariadb => None,
        }
    }

    fn prepare(&self, recipe: &Recipe) -> Result<Prepared, BuildError> {
        match recipe {
            Recipe::Binary { .. } | Recipe::Broker { .. } => {
                let name = recipe.image_name();
                let path = self.binary_path(recipe).unwrap_or_default();
                if !path.is_file() {
                    return Err(BuildError::MissingBinary {
                        name: name.to_string(),
                        path,
                    });
                }
                let probe = matches!(recipe, Recipe::Binary { .. });
                Ok(Prepared::Scratch(scratch::prepare(name, &path, probe)?))
            }
            Recipe::Mariadb => Ok(Prepared::Mariadb {
                tag: mariadb::tag(),
            }),
        }
    }

    /// The tag the recipe's current inputs produce (without building).
    pub fn wanted_tag(&self, recipe: &Recipe) -> Result<String, BuildError> {
        Ok(match self.prepare(recipe)? {
            Prepared::Scratch(s) => format!("{}:{}", repo_of(&s.name), &s.hash[..12]),
            Prepared::Mariadb { tag } => tag,
        })
    }

    /// Whether the recipe's image is current, stale or missing.
    pub async fn status(&self, recipe: &Recipe) -> Result<ImageStatus, BuildError> {
        let name = recipe.image_name().to_string();
        let existing = self.rt.list_images(Some(&name)).await?;
        let (wanted, reason) = match self.wanted_tag(recipe) {
            Ok(tag) => (Some(tag), None),
            Err(BuildError::MissingBinary { path, .. }) => {
                (None, Some(format!("no binary at {}", path.display())))
            }
            Err(e) => return Err(e),
        };
        let state = match &wanted {
            None => ImageState::NoInputs,
            Some(tag) if existing.iter().any(|i| i.tags.contains(tag)) => ImageState::Current,
            Some(_) if existing.is_empty() => ImageState::Missing,
            Some(_) => ImageState::Stale,
        };
        Ok(ImageStatus {
            name,
            recipe: recipe_kind(recipe),
            state,
            wanted,
            reason,
            existing,
        })
    }

    /// Builds the recipe's image unless one from the same inputs exists (or `force`), then
    /// removes older images of the same recipe that no container uses.
    pub async fn build(
        &self,
        recipe: &Recipe,
        force: bool,
        progress: &dyn Progress,
    ) -> Result<Built, BuildError> {
        let started = Instant::now();
        let name = recipe.image_name().to_string();
        if let (Recipe::Binary { name }, true) = (recipe, self.cargo) {
            self.cargo_build(name, progress).await?;
        }
        let (tag, built) = match self.prepare(recipe)? {
            Prepared::Scratch(image) => {
                let tag = format!("{}:{}", repo_of(&image.name), &image.hash[..12]);
                if !force && self.rt.image_exists(&tag).await? {
                    (tag, false)
                } else {
                    progress.status(&format!(
                        "building {tag} ({} MiB context)",
                        image.context.size() / (1 << 20)
                    ));
                    let labels = labels_for(&image.name, &image.hash, recipe_kind(recipe));
                    docker_build(self.rt, &image.context, &tag, &labels, progress).await?;
                    (tag, true)
                }
            }
            Prepared::Mariadb { tag } => {
                if !force && self.rt.image_exists(&tag).await? {
                    (tag, false)
                } else {
                    let base = mariadb::ensure_base(self.rt, progress).await?;
                    let ctx = mariadb::context(&base);
                    progress.status(&format!("building {tag}"));
                    let labels = labels_for("mariadb", &mariadb::hash(), "mariadb");
                    docker_build(self.rt, &ctx, &tag, &labels, progress).await?;
                    (tag, true)
                }
            }
        };
        if built {
            self.remove_older(&name, &tag).await;
        }
        Ok(Built {
            name,
            tag,
            built,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Removes images of `name` other than `keep`; images in use stay (Docker refuses).
    async fn remove_older(&self, name: &str, keep: &str) {
        let Ok(images) = self.rt.list_images(Some(name)).await else {
            return;
        };
        for image in images {
            if image.tags.iter().any(|t| t == keep) {
                continue;
            }
            for tag in &image.tags {
                if let Err(e) = self.rt.remove_image(tag).await {
                    tracing::debug!("keeping old image {tag}: {e}");
                }
            }
        }
    }

    /// Runs `cargo build --release` for one binary, streaming cargo's lines into the progress
    /// (a cold release build takes minutes; the user should see it move).
    async fn cargo_build(&self, package: &str, progress: &dyn Progress) -> Result<(), BuildError> {
        progress.status(&format!("cargo build --release -p {package}"));
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut child = tokio::process::Command::new(cargo)
            .args(["build", "--release", "-p", package, "--bin", package])
            .current_dir(self.ws.root())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BuildError::Io {
                what: "run cargo".to_string(),
                source: e,
            })?;
        let mut lines = mariadb::lines_of(child.stderr.take().map(tokio::io::BufReader::new));
        let mut tail: Vec<String> = Vec::new();
        while let Some(line) = lines.next().await {
            progress.output(&line);
            let trimmed = line.trim_start();
            if trimmed.starts_with("Compiling ") || trimmed.starts_with("Blocking ") {
                progress.status(&format!("cargo: {trimmed}"));
            }
            tail.push(line);
            if tail.len() > 30 {
                tail.remove(0);
            }
        }
        let status = child.wait().await.map_err(|e| BuildError::Io {
            what: "wait for cargo".to_string(),
            source: e,
        })?;
        if !status.success() {
            return Err(BuildError::Cargo {
                package: package.to_string(),
                status: status.to_string(),
                output: tail.join("\n"),
            });
        }
        Ok(())
    }
}

/// The recipe kind recorded in the `platform.recipe` label.
pub fn recipe_kind(recipe: &Recipe) -> &'static str {
    match recipe {
        Recipe::Binary { .. } => "binary",
        Recipe::Broker { .. } => "broker",
        Recipe::Mariadb => "mariadb",
    }
}

/// Sends `context` to the engine's build API (classic builder, never pulling) and reports its
/// output as progress.
pub async fn docker_build(
    rt: &Runtime,
    context: &context::Context,
    tag: &str,
    labels: &HashMap<String, String>,
    progress: &dyn Progress,
) -> Result<(), BuildError> {
    // The labels go into the Dockerfile as one LABEL line (after hashing, since they hold the
    // hash): the classic builder turns each build-API label into a step of its own.
    let mut context = context.clone();
    if let Some(dockerfile) = context.get("Dockerfile") {
        let mut pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        pairs.sort();
        let text = format!(
            "{}LABEL {}\n",
            String::from_utf8_lossy(dockerfile),
            pairs.join(" ")
        );
        context.add_bytes("Dockerfile", text, 0o644);
    }
    let tar = context.to_tar().map_err(|e| BuildError::Io {
        what: "write the build context".to_string(),
        source: e,
    })?;
    let options = BuildImageOptionsBuilder::new()
        .dockerfile("Dockerfile")
        .t(tag)
        .rm(true)
        .forcerm(true)
        .build();
    let docker = rt.docker().clone().with_timeout(Duration::from_secs(3600));
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(tar.into())));
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(text) = info.stream {
                    for line in text.lines().filter(|l| !l.trim().is_empty()) {
                        progress.output(line);
                        if line.starts_with("Step ") {
                            progress.status(&format!("{tag}: {line}"));
                        }
                    }
                }
            }
            Err(e) => {
                let message = match e {
                    bollard::errors::Error::DockerStreamError { error } => error,
                    other => other.to_string(),
                };
                return Err(BuildError::Engine {
                    image: tag.to_string(),
                    message,
                });
            }
        }
    }
    if !rt.image_exists(tag).await? {
        return Err(BuildError::Engine {
            image: tag.to_string(),
            message: "the build ended without producing the image".to_string(),
        });
    }
    Ok(())
}
