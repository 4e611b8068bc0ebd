//! `platform render kubernetes`: the stack as Kubernetes manifests ([`crate::render`]), to stdout
//! as one multi-document YAML stream or into a directory, one file per object.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::Global;
use crate::render::{self, Exposure, Options};
use crate::stack::StackFile;
use crate::{Error, Result};

/// `platform render ...`.
#[derive(Debug, Subcommand)]
pub enum RenderCommand {
    /// Render the stack as Kubernetes manifests (Deployments, StatefulSets, Services, ConfigMaps,
    /// Secrets, an Ingress or LoadBalancer for the gateway) that a cluster accepts as they are.
    Kubernetes(KubernetesArgs),
}

/// `platform render kubernetes` arguments.
#[derive(Debug, Args)]
pub struct KubernetesArgs {
    /// Put every object in this namespace, and render the Namespace itself first (default:
    /// no namespace, objects go where `kubectl apply` points).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Registry prefix for the images built here, e.g. `registry.example:5000/` (images are
    /// `<prefix><name>:<tag>`; the default is the local repository name).
    #[arg(long, value_name = "REG/", default_value = "platform/")]
    pub image_prefix: String,
    /// Tag of the images built here, as pushed to the registry.
    #[arg(long, value_name = "TAG", default_value = env!("CARGO_PKG_VERSION"))]
    pub image_tag: String,
    /// Replicas of a service, overriding the stack's `instances` (repeatable: `--scale
    /// order-service=3`). Stateful services and the ones others reach by name keep one.
    #[arg(long, value_name = "SERVICE=N", value_parser = parse_scale)]
    pub scale: Vec<(String, u32)>,
    /// The service reachable from outside the cluster [default: api-gateway when the stack has it].
    #[arg(long, value_name = "SERVICE")]
    pub expose: Option<String>,
    /// Expose it through an Ingress on `/`.
    #[arg(long, conflicts_with = "load_balancer")]
    pub ingress: bool,
    /// Expose it through a Service of type LoadBalancer (the default).
    #[arg(long)]
    pub load_balancer: bool,
    /// The Ingress rule's host (default: every host).
    #[arg(long, value_name = "HOST", requires = "ingress")]
    pub ingress_host: Option<String>,
    /// The Ingress class (default: the cluster's default class).
    #[arg(long, value_name = "CLASS", requires = "ingress")]
    pub ingress_class: Option<String>,
    /// Image of the init containers that wait for dependencies of services whose image has no
    /// wait mode (ours wait with their own binary, `--wait-for`); it needs `sh` and `nc`.
    /// Mirror it into your registry if the cluster cannot pull it.
    #[arg(long, value_name = "IMAGE", default_value = render::DEFAULT_WAIT_IMAGE)]
    pub wait_image: String,
    /// Storage each PersistentVolumeClaim requests.
    #[arg(long, value_name = "SIZE", default_value = "1Gi")]
    pub volume_size: String,
    /// Render stack features that have no Kubernetes form approximately, with a warning each
    /// on stderr, instead of failing (a secret in a command or exec health check still fails).
    #[arg(long)]
    pub allow_lossy: bool,
    /// `-` for one YAML stream on stdout, or a directory for one file per object
    /// (`NN-kind-name.yaml`, ordered for `kubectl apply -f DIR`).
    #[arg(long, value_name = "DIR|-", default_value = "-")]
    pub out: String,
}

/// Most replicas `--scale` takes, as `platform scale`.
const MAX_REPLICAS: u32 = super::scale::MAX_INSTANCES;

/// Parses `SERVICE=N`.
fn parse_scale(text: &str) -> std::result::Result<(String, u32), String> {
    let (name, n) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not SERVICE=N (e.g. order-service=3)"))?;
    if name.trim().is_empty() {
        return Err(format!("`{text}` names no service: write SERVICE=N"));
    }
    let n: u32 = n
        .trim()
        .parse()
        .ok()
        .filter(|n| *n <= MAX_REPLICAS)
        .ok_or_else(|| format!("`{n}` is not a number of replicas from 0 to {MAX_REPLICAS}"))?;
    Ok((name.trim().to_string(), n))
}

impl KubernetesArgs {
    fn options(&self) -> Result<Options> {
        let mut scale = BTreeMap::new();
        for (name, n) in &self.scale {
            if scale.insert(name.clone(), *n).is_some() {
                return Err(render::RenderError::BadOption {
                    option: "--scale",
                    value: name.clone(),
                    why: "the service is given twice".to_string(),
                }
                .into());
            }
        }
        Ok(Options {
            namespace: self.namespace.clone(),
            image_prefix: self.image_prefix.clone(),
            image_tag: self.image_tag.clone(),
            scale,
            expose: self.expose.clone(),
            exposure: if self.ingress {
                Exposure::Ingress {
                    host: self.ingress_host.clone(),
                    class: self.ingress_class.clone(),
                }
            } else {
                Exposure::LoadBalancer
            },
            wait_image: self.wait_image.clone(),
            volume_size: self.volume_size.clone(),
            allow_lossy: self.allow_lossy,
        })
    }
}

pub fn run(g: &Global, cmd: RenderCommand) -> Result<()> {
    let RenderCommand::Kubernetes(args) = cmd;
    let stack = StackFile::resolve(&g.stack)?.load()?;
    let rendered = render::kubernetes(&stack, &args.options()?)?;
    for w in &rendered.warnings {
        eprintln!("warning: {w} (--allow-lossy)");
    }
    if args.out == "-" {
        crate::out!("{}", rendered.to_yaml());
        return Ok(());
    }
    let dir = PathBuf::from(&args.out);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Output(format!("cannot create {}: {e}", dir.display())))?;
    let mut names = std::collections::BTreeSet::new();
    for object in &rendered.objects {
        let path = dir.join(object.file_name());
        std::fs::write(&path, object.to_yaml())
            .map_err(|e| Error::Output(format!("cannot write {}: {e}", path.display())))?;
        names.insert(object.file_name());
    }
    let removed = remove_stale(&dir, &names)?;
    eprintln!(
        "wrote {} objects to {dir}{} (kubectl apply -f {dir})",
        rendered.objects.len(),
        if removed > 0 {
            format!(", removed {removed} stale file(s) of an earlier rendering")
        } else {
            String::new()
        },
        dir = dir.display()
    );
    Ok(())
}

/// Removes the files of an earlier rendering into `dir` that this one did not write (a service
/// removed from the stack must not be applied again). Only `.yaml` files this command wrote are
/// touched: they carry the `managed-by: platform` label; anything else in `dir` stays.
fn remove_stale(dir: &std::path::Path, keep: &std::collections::BTreeSet<String>) -> Result<usize> {
    let marker = format!("app.kubernetes.io/managed-by: {}", render::PART_OF);
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::Output(format!("cannot list {}: {e}", dir.display())))?;
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if !name.ends_with(".yaml") || keep.contains(&name) || !path.is_file() {
            continue;
        }
        if std::fs::read_to_string(&path).is_ok_and(|text| text.contains(&marker)) {
            std::fs::remove_file(&path)
                .map_err(|e| Error::Output(format!("cannot remove {}: {e}", path.display())))?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--scale` takes SERVICE=N with N from 0 to 16 and nothing else.
    #[test]
    fn scale_syntax() {
        assert_eq!(
            parse_scale("order-service=3").unwrap(),
            ("order-service".to_string(), 3)
        );
        assert!(parse_scale("order-service").is_err());
        assert!(parse_scale("=3").is_err());
        assert!(parse_scale("order-service=x").is_err());
        assert!(parse_scale("order-service=17").is_err());
        assert!(parse_scale("order-service=-1").is_err());
    }
}
