//! berthlet's CRI ImageService and `berthlet image` end to end, on images
//! imported from an OCI layout (tests/src/images.rs builds them).

use berth_tests::berthlet_daemon::{cri, images_v1, Daemon};
use berth_tests::images::TestImages;

fn spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec { image: image.to_string(), ..Default::default() })
}

fn ids(d: &Daemon) -> Vec<String> {
    d.block_on(async {
        let r = d.cri_images().await.list_images(cri::ListImagesRequest::default()).await.unwrap();
        r.into_inner().images.into_iter().map(|i| i.id).collect()
    })
}

#[test]
fn import_list_status_remove_through_cri_and_restart() {
    let Some(mut d) = Daemon::for_test() else { return };
    let imgs = TestImages::build(&d.tmp.join("img"));
    d.start(&[]);

    // Import over berth.images.v1 (the daemon reads the layout itself).
    let r = d.block_on(async {
        let req = images_v1::ImportRequest { path: imgs.layout.display().to_string() };
        d.images().await.import(req).await
    });
    let imported: Vec<String> = r.unwrap().into_inner().images.into_iter().map(|i| i.id).collect();
    let busybox = imgs.busybox.config.digest.clone();
    let layered = imgs.layered.config.digest.clone();
    for id in [&busybox, &layered] {
        assert!(imported.contains(id), "{id} not in {imported:?}");
    }

    // Restart: everything is read back from disk.
    d.stop();
    d.start(&[]);
    let listed = ids(&d);
    for id in &imported {
        assert!(listed.contains(id), "{id} lost over a restart: {listed:?}");
    }

    let (status, missing, filtered, fs) = d.block_on(async {
        let mut c = d.cri_images().await;
        let st = c.image_status(cri::ImageStatusRequest { image: spec(&layered), verbose: true }).await.unwrap();
        let missing = c
            .image_status(cri::ImageStatusRequest { image: spec("127.0.0.1:1/no/such:image"), verbose: false })
            .await
            .unwrap();
        let f = cri::ImageFilter { image: spec(&busybox) };
        let filtered = c.list_images(cri::ListImagesRequest { filter: Some(f) }).await.unwrap();
        let fs = c.image_fs_info(cri::ImageFsInfoRequest {}).await.unwrap();
        (st.into_inner(), missing.into_inner(), filtered.into_inner(), fs.into_inner())
    });
    let img = status.image.expect("layered image status");
    assert_eq!(img.id, layered);
    assert!(img.size > 0);
    let info: serde_json::Value = serde_json::from_str(&status.info["info"]).unwrap();
    assert_eq!(info["id"], layered.as_str());
    assert_eq!(info["layers"].as_array().unwrap().len(), 4, "{info}");
    assert!(missing.image.is_none(), "unknown image must have no status");
    assert_eq!(filtered.images.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), [busybox.as_str()]);
    let u = &fs.image_filesystems[0];
    assert!(u.used_bytes.as_ref().unwrap().value > 0 && u.inodes_used.as_ref().unwrap().value > 0, "{fs:?}");
    assert!(!u.fs_id.as_ref().unwrap().mountpoint.is_empty());
    assert!(u.timestamp > 0);

    // RemoveImage, twice: the second is a no-op, as in containerd.
    d.block_on(async {
        let mut c = d.cri_images().await;
        c.remove_image(cri::RemoveImageRequest { image: spec(&layered) }).await.unwrap();
        c.remove_image(cri::RemoveImageRequest { image: spec(&layered) }).await.unwrap();
    });
    let listed = ids(&d);
    assert!(!listed.contains(&layered) && listed.contains(&busybox), "{listed:?}");
    d.stop();
}

#[test]
fn image_cli_end_to_end() {
    let Some(mut d) = Daemon::for_test() else { return };
    let imgs = TestImages::build(&d.tmp.join("img"));
    d.start(&[]);
    let busybox = imgs.busybox.config.digest.clone();
    let short = &busybox["sha256:".len().."sha256:".len() + 12];

    let out = d.cli(&["image", "import", &imgs.layout.display().to_string()]).ok();
    assert!(out.stdout.contains(&busybox), "{out}");

    let out = d.cli(&["image", "ls"]).ok();
    assert!(out.stdout.starts_with("IMAGE"), "{out}");
    assert!(out.stdout.contains(short), "{out}");

    let out = d.cli(&["image", "inspect", &busybox]).ok();
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    assert_eq!(doc["status"]["id"], busybox.as_str());
    assert_eq!(doc["info"]["info"]["id"], busybox.as_str());

    let out = d.cli(&["image", "rm", &busybox]).ok();
    assert!(out.stdout.contains("Deleted"), "{out}");
    let out = d.cli(&["image", "rm", &busybox]);
    assert_eq!(out.code(), 1, "{out}");
    assert_eq!(out.stderr.trim(), format!("berthlet: rm {busybox}: no such image"), "{out}");
    let out = d.cli(&["image", "inspect", &busybox]);
    assert_eq!(out.code(), 1, "{out}");

    let out = d.cli(&["image", "gc"]).ok();
    assert!(out.stdout.starts_with("removed "), "{out}");

    // A missing file is refused by the client in one line.
    let out = d.cli(&["image", "import", "/nonexistent/image.tar"]);
    assert_eq!(out.code(), 1, "{out}");
    assert_eq!(out.stderr.lines().count(), 1, "{out}");
    d.stop();
}
