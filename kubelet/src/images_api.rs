//! `berth.images.v1.Images`: what CRI cannot express — a pull that streams
//! its progress (not wired in yet), import from a file, and gc on demand.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::info;

use crate::cri::status_of;
use crate::image_manager::ImageManager;
use crate::images::ImageRecord;
use crate::proto::images_v1::{self as pb, images_server::Images};

pub struct ImagesApi {
    images: Arc<ImageManager>,
}

impl ImagesApi {
    pub fn new(images: Arc<ImageManager>) -> Self {
        ImagesApi { images }
    }
}

fn image_of(r: &ImageRecord) -> pb::Image {
    pb::Image { id: r.id.clone(), repo_tags: r.repo_tags.clone(), repo_digests: r.repo_digests.clone(), size: r.size }
}

type PullStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::PullProgress, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Images for ImagesApi {
    type PullStream = PullStream;

    async fn pull(&self, request: Request<pb::PullRequest>) -> Result<Response<PullStream>, Status> {
        let req = request.into_inner();
        info!(image = req.image, "berth.images.v1 Pull");
        // The registry client (images::pull) is not wired in yet: say so, never pretend.
        Err(Status::unimplemented(format!(
            "pull {}: registry pulls are not wired into this berthlet build yet; import the image instead (berthlet image import)",
            req.image
        )))
    }

    async fn import(&self, request: Request<pb::ImportRequest>) -> Result<Response<pb::ImportResponse>, Status> {
        let req = request.into_inner();
        if req.path.is_empty() {
            return Err(Status::invalid_argument("import: empty path"));
        }
        let recs = self.images.import(Path::new(&req.path)).await.map_err(|e| status_of(&e))?;
        Ok(Response::new(pb::ImportResponse { images: recs.iter().map(image_of).collect() }))
    }

    async fn gc(&self, _request: Request<pb::GcRequest>) -> Result<Response<pb::GcResponse>, Status> {
        let r = self.images.gc().await.map_err(|e| status_of(&e))?;
        Ok(Response::new(pb::GcResponse {
            blobs_removed: r.blobs_removed,
            layers_removed: r.layers_removed,
            bytes_freed: r.bytes_freed,
        }))
    }
}
