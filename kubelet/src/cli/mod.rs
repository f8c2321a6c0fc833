//! `berthlet image ...` and `berthlet version`: clients of the running daemon.
//! Listing, inspecting and removing go through CRI's ImageService (what crictl
//! would call); pull with progress, import and gc through `berth.images.v1`.

mod progress;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ImageSpec, ImageStatusRequest, ListImagesRequest, RemoveImageRequest, VersionRequest,
};
use tonic::transport::Channel;

use crate::client::{connect, ConnectError};
use crate::proto::images_v1::{self, images_client::ImagesClient};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{what}: {}", status_text(.status))]
    Rpc { what: String, status: tonic::Status },
    #[error("{0}")]
    Invalid(String),
    #[error("write output: {0}")]
    Output(#[from] std::io::Error),
}

fn status_text(s: &tonic::Status) -> String {
    let msg = s.message().trim();
    let code = format!("{:?}", s.code());
    if msg.is_empty() {
        code
    } else {
        format!("{msg} ({code})")
    }
}

fn rpc(what: impl Into<String>) -> impl FnOnce(tonic::Status) -> CliError {
    let what = what.into();
    move |status| CliError::Rpc { what, status }
}

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

async fn channel(socket: &Path) -> Result<Channel, CliError> {
    Ok(connect(socket).await?)
}

/// `berthlet version`: the CRI Version call, printed as crictl does.
pub async fn version(socket: &Path) -> Result<(), CliError> {
    let mut c = RuntimeServiceClient::new(channel(socket).await?);
    let v = c
        .version(VersionRequest {
            version: String::new(),
        })
        .await
        .map_err(rpc("Version"))?
        .into_inner();
    let mut out = std::io::stdout().lock();
    writeln!(out, "Version:  {}", v.version)?;
    writeln!(out, "RuntimeName:  {}", v.runtime_name)?;
    writeln!(out, "RuntimeVersion:  {}", v.runtime_version)?;
    writeln!(out, "RuntimeApiVersion:  {}", v.runtime_api_version)?;
    Ok(())
}

/// `berthlet image pull REF [--creds user:pass]`: progress per layer on a
/// terminal, plain lines otherwise; the image id last.
pub async fn pull(socket: &Path, image: &str, creds: Option<&str>) -> Result<(), CliError> {
    let auth = match creds {
        None => None,
        Some(c) => match c.split_once(':') {
            Some((u, p)) if !u.is_empty() => Some(images_v1::Auth {
                username: u.into(),
                password: p.into(),
                token: String::new(),
            }),
            _ => {
                return Err(CliError::Invalid(format!(
                    "--creds {c:?}: expected USER:PASSWORD"
                )))
            }
        },
    };
    let mut c = ImagesClient::new(channel(socket).await?);
    let what = format!("pull {image}");
    let mut stream = c
        .pull(images_v1::PullRequest {
            image: image.into(),
            auth,
        })
        .await
        .map_err(rpc(what.clone()))?
        .into_inner();
    let stdout = std::io::stdout();
    let mut view = progress::PullView::new(stdout.is_terminal());
    let mut out = stdout.lock();
    while let Some(msg) = stream.message().await.map_err(rpc(what.clone()))? {
        if let Some(done) = view.event(&mut out, msg)? {
            view.finish(&mut out)?;
            writeln!(out, "Image is up to date for {}", done.id)?;
            return Ok(());
        }
    }
    view.finish(&mut out)?;
    Err(CliError::Rpc {
        what,
        status: tonic::Status::unknown("the daemon ended the pull without a result"),
    })
}

/// `berthlet image import FILE`: the daemon reads FILE, so the path is made absolute here.
pub async fn import(socket: &Path, file: &Path) -> Result<(), CliError> {
    let path: PathBuf = std::path::absolute(file)
        .map_err(|e| CliError::Invalid(format!("import {}: {e}", file.display())))?;
    if !path.exists() {
        return Err(CliError::Invalid(format!(
            "import {}: no such file or directory",
            path.display()
        )));
    }
    let mut c = ImagesClient::new(channel(socket).await?);
    let r = c
        .import(images_v1::ImportRequest {
            path: path.to_string_lossy().into_owned(),
        })
        .await
        .map_err(rpc(format!("import {}", path.display())))?
        .into_inner();
    let mut out = std::io::stdout().lock();
    for img in r.images {
        let names = if img.repo_tags.is_empty() {
            img.repo_digests.join(", ")
        } else {
            img.repo_tags.join(", ")
        };
        writeln!(out, "imported {} {}", img.id, names)?;
    }
    Ok(())
}

/// `berthlet image ls`: the CRI ListImages call as a table.
pub async fn list(socket: &Path) -> Result<(), CliError> {
    let mut c = ImageServiceClient::new(channel(socket).await?);
    let r = c
        .list_images(ListImagesRequest { filter: None })
        .await
        .map_err(rpc("ListImages"))?
        .into_inner();
    let mut rows = vec![[
        "IMAGE".to_string(),
        "TAG".into(),
        "IMAGE ID".into(),
        "SIZE".into(),
    ]];
    for img in &r.images {
        let id = short_id(&img.id);
        let size = human_bytes(img.size);
        if img.repo_tags.is_empty() {
            let repo = img
                .repo_digests
                .first()
                .and_then(|d| d.split_once('@'))
                .map(|(r, _)| r)
                .unwrap_or("<none>");
            rows.push([repo.into(), "<none>".into(), id.clone(), size.clone()]);
        }
        for tag in &img.repo_tags {
            let (repo, t) = split_tag(tag);
            rows.push([repo.into(), t.into(), id.clone(), size.clone()]);
        }
    }
    let mut widths = [0usize; 4];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = std::io::stdout().lock();
    for r in &rows {
        writeln!(
            out,
            "{:<w0$}   {:<w1$}   {:<w2$}   {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )?;
    }
    Ok(())
}

/// `berthlet image inspect REF`: ImageStatus with verbose info, as JSON.
pub async fn inspect(socket: &Path, image: &str) -> Result<(), CliError> {
    let mut c = ImageServiceClient::new(channel(socket).await?);
    let r = c
        .image_status(ImageStatusRequest {
            image: spec(image),
            verbose: true,
        })
        .await
        .map_err(rpc(format!("inspect {image}")))?
        .into_inner();
    let Some(status) = r.image else {
        return Err(CliError::Invalid(format!("inspect {image}: no such image")));
    };
    let info: serde_json::Map<String, serde_json::Value> = r
        .info
        .into_iter()
        .map(|(k, v)| {
            let v = serde_json::from_str(&v).unwrap_or(serde_json::Value::String(v));
            (k, v)
        })
        .collect();
    let doc = serde_json::json!({ "status": status, "info": info });
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &doc).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// `berthlet image rm REF...`: unlike the idempotent CRI call, an absent image is an error here.
pub async fn remove(socket: &Path, images: &[String]) -> Result<(), CliError> {
    let mut c = ImageServiceClient::new(channel(socket).await?);
    for image in images {
        let r = c
            .image_status(ImageStatusRequest {
                image: spec(image),
                verbose: false,
            })
            .await
            .map_err(rpc(format!("rm {image}")))?
            .into_inner();
        let Some(img) = r.image else {
            return Err(CliError::Invalid(format!("rm {image}: no such image")));
        };
        c.remove_image(RemoveImageRequest { image: spec(image) })
            .await
            .map_err(rpc(format!("rm {image}")))?;
        println!("Deleted: {} ({})", image, img.id);
    }
    Ok(())
}

/// `berthlet image gc`: unreferenced blobs and layers, now.
pub async fn gc(socket: &Path) -> Result<(), CliError> {
    let mut c = ImagesClient::new(channel(socket).await?);
    let r = c
        .gc(images_v1::GcRequest {})
        .await
        .map_err(rpc("gc"))?
        .into_inner();
    println!(
        "removed {} blobs and {} layers, freed {}",
        r.blobs_removed,
        r.layers_removed,
        human_bytes(r.bytes_freed)
    );
    Ok(())
}

/// `sha256:0123456789abcdef...` → `0123456789ab` (as docker shows ids).
pub fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

/// `host:5000/a/b:tag` → (`host:5000/a/b`, `tag`).
fn split_tag(name: &str) -> (&str, &str) {
    let slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    match name[slash..].rfind(':') {
        Some(i) => (&name[..slash + i], &name[slash + i + 1..]),
        None => (name, "<none>"),
    }
}

/// 1536 → "1.5 KiB".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(
            split_tag("127.0.0.1:5000/a/b:v1"),
            ("127.0.0.1:5000/a/b", "v1")
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/a"),
            ("127.0.0.1:5000/a", "<none>")
        );
    }
}
