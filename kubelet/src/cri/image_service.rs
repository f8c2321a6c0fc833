//! CRI `runtime.v1.ImageService`: translation to [`ImageManager`].

use std::sync::Arc;

use k8s_cri::v1::image_service_server::ImageService;
use k8s_cri::v1::*;
use tonic::{Request, Response, Status};
use tracing::info;

use super::status_of;
use crate::image_manager::{ImageError, ImageManager};
use crate::images::registry::Auth;
use crate::images::ImageRecord;

pub struct ImageServiceImpl {
    images: Arc<ImageManager>,
}

impl ImageServiceImpl {
    pub fn new(images: Arc<ImageManager>) -> Self {
        ImageServiceImpl { images }
    }
}

fn image_name(spec: Option<&ImageSpec>) -> Result<&str, Status> {
    match spec.map(|s| s.image.as_str()) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(Status::invalid_argument("image spec is missing or names no image")),
    }
}

/// CRI's `AuthConfig` as pull credentials: username/password, else the
/// base64 `auth` ("user:password"), else the registry token (a bearer token, sent
/// as is), else the identity token (an OAuth2 refresh token, exchanged).
pub fn auth_of(a: &AuthConfig) -> Result<Option<Auth>, Status> {
    if !a.username.is_empty() {
        return Ok(Some(Auth::Basic { username: a.username.clone(), password: a.password.clone() }));
    }
    if !a.auth.is_empty() {
        let bytes = base64_decode(a.auth.trim())
            .ok_or_else(|| Status::invalid_argument("AuthConfig.auth is not valid base64"))?;
        let text = String::from_utf8(bytes).map_err(|_| Status::invalid_argument("AuthConfig.auth is not UTF-8"))?;
        let (u, p) = text
            .split_once(':')
            .ok_or_else(|| Status::invalid_argument("AuthConfig.auth does not decode to user:password"))?;
        return Ok(Some(Auth::Basic { username: u.into(), password: p.into() }));
    }
    if !a.registry_token.is_empty() {
        return Ok(Some(Auth::Token(a.registry_token.clone())));
    }
    if !a.identity_token.is_empty() {
        // A refresh token, not a bearer token: exchanged at the token endpoint.
        return Ok(Some(Auth::IdentityToken(a.identity_token.clone())));
    }
    Ok(None)
}

/// Standard base64, padding optional (clients differ).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::engine::{general_purpose::GeneralPurpose, general_purpose::GeneralPurposeConfig, DecodePaddingMode};
    use base64::Engine as _;
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT.decode(s).ok()
}

/// An image record as CRI's `Image`. The config's user is a uid when
/// numeric (`1000`, `1000:1000`), else a user name.
pub fn cri_image(r: &ImageRecord) -> Image {
    let user = r.config.user.split(':').next().unwrap_or("");
    let (uid, username) = match user.parse::<i64>() {
        Ok(n) => (Some(Int64Value { value: n }), String::new()),
        Err(_) => (None, user.to_string()),
    };
    Image {
        id: r.id.clone(),
        repo_tags: r.repo_tags.clone(),
        repo_digests: r.repo_digests.clone(),
        size: r.size,
        uid,
        username,
        spec: None,
        pinned: r.pinned,
    }
}

fn err(e: ImageError) -> Status {
    status_of(&e)
}

#[tonic::async_trait]
impl ImageService for ImageServiceImpl {
    async fn list_images(&self, request: Request<ListImagesRequest>) -> Result<Response<ListImagesResponse>, Status> {
        let filter = request.into_inner().filter.and_then(|f| f.image).map(|s| s.image).filter(|s| !s.is_empty());
        let images = match filter {
            // A filter names one image (as containerd reads it).
            Some(name) => self.images.resolve(&name).await.map_err(err)?.into_iter().collect(),
            None => self.images.list().await.map_err(err)?,
        };
        Ok(Response::new(ListImagesResponse { images: images.iter().map(cri_image).collect() }))
    }

    async fn image_status(&self, request: Request<ImageStatusRequest>) -> Result<Response<ImageStatusResponse>, Status> {
        let req = request.into_inner();
        let name = image_name(req.image.as_ref())?;
        // An absent image is no error: the response just carries none.
        let Some(rec) = self.images.resolve(name).await.map_err(err)? else {
            return Ok(Response::new(ImageStatusResponse::default()));
        };
        let mut info = std::collections::HashMap::new();
        if req.verbose {
            let json = serde_json::to_string(&rec).map_err(|e| Status::internal(format!("image {}: encode record: {e}", rec.id)))?;
            info.insert("info".to_string(), json);
        }
        Ok(Response::new(ImageStatusResponse { image: Some(cri_image(&rec)), info }))
    }

    async fn pull_image(&self, request: Request<PullImageRequest>) -> Result<Response<PullImageResponse>, Status> {
        let req = request.into_inner();
        let name = image_name(req.image.as_ref())?;
        let auth = match &req.auth {
            Some(a) => auth_of(a)?,
            None => None,
        };
        info!(image = name, "PullImage");
        let rec = self.images.pull(name, auth, None).await.map_err(err)?;
        // As containerd answers: the image id is the reference to run it by.
        Ok(Response::new(PullImageResponse { image_ref: rec.id }))
    }

    async fn remove_image(&self, request: Request<RemoveImageRequest>) -> Result<Response<RemoveImageResponse>, Status> {
        let req = request.into_inner();
        let name = image_name(req.image.as_ref())?;
        // Removing an absent image succeeds (containerd does the same; kubelet retries).
        self.images.remove(name).await.map_err(err)?;
        Ok(Response::new(RemoveImageResponse {}))
    }

    async fn image_fs_info(&self, _request: Request<ImageFsInfoRequest>) -> Result<Response<ImageFsInfoResponse>, Status> {
        let u = self.images.fs_info().await.map_err(err)?;
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let fs = FilesystemUsage {
            timestamp,
            fs_id: Some(FilesystemIdentifier { mountpoint: u.mountpoint.to_string_lossy().into_owned() }),
            used_bytes: Some(UInt64Value { value: u.used_bytes }),
            inodes_used: Some(UInt64Value { value: u.inodes_used }),
        };
        Ok(Response::new(ImageFsInfoResponse { image_filesystems: vec![fs], container_filesystems: vec![] }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_config_forms() {
        let basic = AuthConfig { username: "u".into(), password: "p".into(), ..Default::default() };
        assert_eq!(auth_of(&basic).unwrap(), Some(Auth::Basic { username: "u".into(), password: "p".into() }));
        // "user:pa:ss" in base64
        let b64 = AuthConfig { auth: "dXNlcjpwYTpzcw==".into(), ..Default::default() };
        assert_eq!(auth_of(&b64).unwrap(), Some(Auth::Basic { username: "user".into(), password: "pa:ss".into() }));
        let tok = AuthConfig { registry_token: "t".into(), ..Default::default() };
        assert_eq!(auth_of(&tok).unwrap(), Some(Auth::Token("t".into())));
        let id = AuthConfig { identity_token: "r".into(), ..Default::default() };
        assert_eq!(auth_of(&id).unwrap(), Some(Auth::IdentityToken("r".into())));
        assert_eq!(auth_of(&AuthConfig::default()).unwrap(), None);
        assert!(auth_of(&AuthConfig { auth: "!!".into(), ..Default::default() }).is_err());
        // Without padding ("u:p" is "dTpw").
        let unpadded = AuthConfig { auth: "dTpw".into(), ..Default::default() };
        assert_eq!(auth_of(&unpadded).unwrap(), Some(Auth::Basic { username: "u".into(), password: "p".into() }));
    }

    #[test]
    fn image_user() {
        let mut r = ImageRecord { id: "sha256:x".into(), ..Default::default() };
        r.config.user = "1000:1000".into();
        assert_eq!(cri_image(&r).uid, Some(Int64Value { value: 1000 }));
        r.config.user = "nginx".into();
        let i = cri_image(&r);
        assert_eq!((i.uid, i.username.as_str()), (None, "nginx"));
        r.config.user = String::new();
        let i = cri_image(&r);
        assert_eq!((i.uid, i.username.as_str()), (None, ""));
    }
}
