//! `berth.images.v1.Images`: what CRI cannot express — a pull that streams
//! its progress, import from a file, and gc on demand.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::info;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::unbounded_channel;
use tokio_stream::wrappers::ReceiverStream;

use crate::cri::status_of;
use crate::image_manager::ImageManager;
use crate::images::pull::Progress;
use crate::images::reference::Reference;
use crate::images::registry::Auth;
use crate::images::ImageRecord;
use crate::proto::images_v1::{self as pb, images_server::Images, pull_progress::Event};

/// A layer's byte count goes to the client at most this often (and always at its end).
const LAYER_EVENT_INTERVAL: Duration = Duration::from_millis(100);

/// The request's credentials; empty fields mean none.
fn auth_of(a: &pb::Auth) -> Option<Auth> {
    if !a.username.is_empty() {
        Some(Auth::Basic { username: a.username.clone(), password: a.password.clone() })
    } else if !a.token.is_empty() {
        Some(Auth::Token(a.token.clone()))
    } else {
        None
    }
}

/// Turns pull events into stream messages, thinning per-layer byte counts.
#[derive(Default)]
struct Throttle {
    last: HashMap<String, Instant>,
}

impl Throttle {
    fn message(&mut self, ev: Progress, reference: &str) -> Option<pb::PullProgress> {
        let event = match ev {
            Progress::Resolved { manifest_digest, layers } => Event::Resolved(pb::Resolved {
                reference: reference.to_string(),
                manifest_digest,
                layers: layers.into_iter().map(|(digest, size)| pb::Layer { digest, size }).collect(),
            }),
            Progress::Layer { digest, done, total } => {
                let now = Instant::now();
                let due = self.last.get(&digest).is_none_or(|t| now.duration_since(*t) >= LAYER_EVENT_INTERVAL);
                if !due && done < total {
                    return None;
                }
                self.last.insert(digest.clone(), now);
                Event::Layer(pb::LayerProgress { digest, done, total })
            }
            Progress::LayerDone { digest } => Event::LayerDone(digest),
            Progress::Unpacking => Event::Unpacking(pb::Unpacking {}),
            // The record follows as the final `done` message.
            Progress::Done => return None,
        };
        Some(pb::PullProgress { event: Some(event) })
    }
}

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
        // Bad names fail the call itself, before any stream.
        let reference = Reference::parse(&req.image).map_err(|e| status_of(&e.into()))?.to_string();
        let auth = req.auth.and_then(|a| auth_of(&a));
        info!(image = req.image, "berth.images.v1 Pull");
        let (events_tx, mut events) = unbounded_channel();
        let (out, stream) = tokio::sync::mpsc::channel::<Result<pb::PullProgress, Status>>(64);
        let images = self.images.clone();
        tokio::spawn(async move {
            let pull = images.pull(&req.image, auth, Some(events_tx));
            tokio::pin!(pull);
            let mut throttle = Throttle::default();
            // A client that goes away stops the forwarding, not the pull.
            let result = loop {
                tokio::select! {
                    r = &mut pull => break r,
                    Some(ev) = events.recv() => {
                        if let Some(msg) = throttle.message(ev, &reference) {
                            let _ = out.send(Ok(msg)).await;
                        }
                    }
                }
            };
            while let Ok(ev) = events.try_recv() {
                if let Some(msg) = throttle.message(ev, &reference) {
                    let _ = out.send(Ok(msg)).await;
                }
            }
            let last = match result {
                Ok(rec) => Ok(pb::PullProgress { event: Some(Event::Done(image_of(&rec))) }),
                Err(e) => Err(status_of(&e)),
            };
            let _ = out.send(last).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(stream))))
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
