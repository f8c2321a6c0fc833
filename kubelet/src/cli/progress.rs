//! Pull progress for humans: on a terminal, one line per layer redrawn in
//! place; otherwise plain lines (a log reads well, a pipe is not flooded).

use std::io::{self, Write};
use std::time::{Duration, Instant};

use crate::proto::images_v1::{pull_progress::Event, Image, PullProgress};

use super::human_bytes;

/// Terminal redraws at most this often.
const REDRAW: Duration = Duration::from_millis(100);
/// Plain output repeats a layer's byte count at most this often.
const PLAIN_EVERY: Duration = Duration::from_secs(2);

struct LayerLine {
    digest: String,
    done: u64,
    total: u64,
    finished: bool,
    last_plain: Option<Instant>,
}

pub struct PullView {
    tty: bool,
    layers: Vec<LayerLine>,
    drawn: usize,
    last_draw: Option<Instant>,
    status: String,
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

impl PullView {
    pub fn new(tty: bool) -> PullView {
        PullView {
            tty,
            layers: Vec::new(),
            drawn: 0,
            last_draw: None,
            status: String::new(),
        }
    }

    /// Shows one event; returns the image once the pull is done.
    pub fn event(&mut self, out: &mut impl Write, msg: PullProgress) -> io::Result<Option<Image>> {
        let mut force = false;
        match msg.event {
            Some(Event::Resolved(r)) => {
                let total: u64 = r.layers.iter().map(|l| l.size).sum();
                let head = format!(
                    "{}: manifest {}, {} layers, {}",
                    r.reference,
                    r.manifest_digest,
                    r.layers.len(),
                    human_bytes(total)
                );
                if self.tty {
                    writeln!(out, "{head}")?;
                } else {
                    writeln!(out, "resolved {head}")?;
                }
                self.layers = r
                    .layers
                    .into_iter()
                    .map(|l| LayerLine {
                        digest: l.digest,
                        done: 0,
                        total: l.size,
                        finished: false,
                        last_plain: None,
                    })
                    .collect();
                self.status = "downloading".into();
                force = true;
            }
            Some(Event::Layer(p)) => {
                let idx = self.layer_index(&p.digest, p.total);
                let l = &mut self.layers[idx];
                l.done = p.done;
                l.total = p.total.max(l.total);
                if !self.tty {
                    let now = Instant::now();
                    if l.last_plain
                        .is_none_or(|t| now.duration_since(t) >= PLAIN_EVERY)
                    {
                        l.last_plain = Some(now);
                        writeln!(
                            out,
                            "layer {}: {} / {}",
                            short(&l.digest),
                            human_bytes(l.done),
                            human_bytes(l.total)
                        )?;
                    }
                }
            }
            Some(Event::LayerDone(digest)) => {
                let idx = self.layer_index(&digest, 0);
                let l = &mut self.layers[idx];
                l.finished = true;
                l.done = l.total.max(l.done);
                if !self.tty {
                    writeln!(
                        out,
                        "layer {}: done ({})",
                        short(&l.digest),
                        human_bytes(l.total)
                    )?;
                }
                force = true;
            }
            Some(Event::Unpacking(_)) => {
                self.status = "unpacking".into();
                if !self.tty {
                    writeln!(out, "unpacking")?;
                }
                force = true;
            }
            Some(Event::Done(img)) => {
                self.status = "done".into();
                self.redraw(out, true)?;
                return Ok(Some(img));
            }
            None => {}
        }
        self.redraw(out, force)?;
        Ok(None)
    }

    fn layer_index(&mut self, digest: &str, total: u64) -> usize {
        match self.layers.iter().position(|l| l.digest == digest) {
            Some(i) => i,
            None => {
                self.layers.push(LayerLine {
                    digest: digest.into(),
                    done: 0,
                    total,
                    finished: false,
                    last_plain: None,
                });
                self.layers.len() - 1
            }
        }
    }

    fn redraw(&mut self, out: &mut impl Write, force: bool) -> io::Result<()> {
        if !self.tty {
            return Ok(());
        }
        let now = Instant::now();
        if !force
            && self
                .last_draw
                .is_some_and(|t| now.duration_since(t) < REDRAW)
        {
            return Ok(());
        }
        self.last_draw = Some(now);
        if self.drawn > 0 {
            write!(out, "\x1b[{}A", self.drawn)?;
        }
        for l in &self.layers {
            let state = if l.finished {
                format!("done      {}", human_bytes(l.total))
            } else if l.done == 0 {
                "waiting".to_string()
            } else {
                let pct = if l.total > 0 {
                    l.done * 100 / l.total
                } else {
                    0
                };
                format!(
                    "{pct:>3}%      {} / {}",
                    human_bytes(l.done),
                    human_bytes(l.total)
                )
            };
            write!(out, "\r\x1b[2K{}  {}\n", short(&l.digest), state)?;
        }
        write!(out, "\r\x1b[2K{}\n", self.status)?;
        self.drawn = self.layers.len() + 1;
        out.flush()
    }

    pub fn finish(&mut self, out: &mut impl Write) -> io::Result<()> {
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::images_v1::{Layer, LayerProgress, Resolved, Unpacking};

    fn ev(e: Event) -> PullProgress {
        PullProgress { event: Some(e) }
    }

    /// The `Resolved` event of image "r" (manifest "m") with one layer.
    fn resolved_one(digest: &str, size: u64) -> PullProgress {
        let layers = vec![Layer { digest: digest.into(), size }];
        ev(Event::Resolved(Resolved { reference: "r".into(), manifest_digest: "m".into(), layers }))
    }

    #[test]
    fn plain_lines() {
        let mut v = PullView::new(false);
        let mut out = Vec::new();
        v.event(&mut out, resolved_one("sha256:aaaaaaaaaaaaaaaa", 2048)).unwrap();
        v.event(
            &mut out,
            ev(Event::Layer(LayerProgress {
                digest: "sha256:aaaaaaaaaaaaaaaa".into(),
                done: 1024,
                total: 2048,
            })),
        )
        .unwrap();
        v.event(
            &mut out,
            ev(Event::LayerDone("sha256:aaaaaaaaaaaaaaaa".into())),
        )
        .unwrap();
        v.event(&mut out, ev(Event::Unpacking(Unpacking {})))
            .unwrap();
        let done = v
            .event(
                &mut out,
                ev(Event::Done(Image {
                    id: "sha256:1".into(),
                    ..Default::default()
                })),
            )
            .unwrap();
        assert_eq!(done.unwrap().id, "sha256:1");
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "resolved r: manifest m, 1 layers, 2.0 KiB\nlayer aaaaaaaaaaaa: 1.0 KiB / 2.0 KiB\n\
             layer aaaaaaaaaaaa: done (2.0 KiB)\nunpacking\n"
        );
    }

    #[test]
    fn terminal_redraws_in_place() {
        let mut v = PullView::new(true);
        let mut out = Vec::new();
        v.event(&mut out, resolved_one("sha256:bbbbbbbbbbbbbbbb", 100)).unwrap();
        v.event(
            &mut out,
            ev(Event::LayerDone("sha256:bbbbbbbbbbbbbbbb".into())),
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\x1b[2A"), "{text:?}");
        assert!(text.contains("bbbbbbbbbbbb  done"), "{text:?}");
    }
}
