//! berthlet's image store end to end, as root: a real multi-layer image built
//! with umoci (busybox rootfs, hard links, a device node, a fifo, setuid,
//! ownership, an xattr, a whiteout, an opaque directory) and copied with
//! skopeo, imported as an OCI layout (dir and tar) and as a docker-archive,
//! unpacked, mounted as an overlay snapshot, checked through the merged view,
//! run as a container with berth, then removed and garbage-collected with
//! nothing left behind.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_tests::*;
use berthlet::images::{GcOptions, Snapshot, Store};

const NAME: &str = "example.com/test/store:1";

#[track_caller]
fn sh(script: &str) {
    let out = Command::new("sh").arg("-ec").arg(script).output().expect("run sh");
    assert!(
        out.status.success(),
        "{script}\nfailed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn have(tool: &str) -> bool {
    ["/usr/bin", "/usr/sbin", "/bin", "/sbin"].iter().any(|d| Path::new(d).join(tool).is_file())
}

/// Needs root plus umoci and skopeo (Debian packages; `scripts/setup`).
fn setup() -> Option<Runtime> {
    let rt = Runtime::for_test()?;
    for tool in ["umoci", "skopeo"] {
        if !have(tool) {
            berth_tests::skip(format_args!("{tool} is not installed (scripts/setup installs it)"));
            return None;
        }
    }
    Some(rt)
}

/// Builds the test image into the OCI layout `<dir>/oci` tagged NAME:
/// 1. the busybox rootfs; 2. data/old, etc/gone, srv/file + hard link
/// srv/link (with a user xattr), srv/suid (4755, 1000:1001), dev/mydev (char
/// 1:3), srv/fifo; 3. a whiteout of etc/gone; 4. data made opaque with only
/// data/fresh; 5. /hello.txt. The command is `cat /hello.txt`.
fn build_image(dir: &Path) -> PathBuf {
    let busybox = rootfs();
    let d = dir.display();
    sh(&format!(
        r#"cd {d}
umoci init --layout build
umoci new --image build:app
umoci insert --image build:app {busybox} /
mkdir -p st/data st/etc st/srv st/dev
echo old > st/data/old
echo gone > st/etc/gone
echo kept > st/etc/kept
echo shared > st/srv/file
ln st/srv/file st/srv/link
python3 -c "import os; os.setxattr('st/srv/file', 'user.berth', b'yes')"
echo s > st/srv/suid
chown 1000:1001 st/srv/suid
chmod 4755 st/srv/suid
mknod st/dev/mydev c 1 3
mkfifo st/srv/fifo
umoci insert --image build:app st /
umoci insert --image build:app --whiteout /etc/gone
mkdir nd && echo fresh > nd/fresh
umoci insert --image build:app --opaque nd /data
echo 'hello from the store' > hello.txt
umoci insert --image build:app hello.txt /hello.txt
umoci config --image build:app --config.cmd cat --config.cmd /hello.txt --config.env PATH=/bin:/sbin
skopeo copy -q oci:build:app oci:oci:{NAME}
"#,
        busybox = busybox.display()
    ));
    dir.join("oci")
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Checks the merged view of the mounted snapshot.
fn check_merged(root: &Path) {
    assert!(!root.join("etc/gone").exists(), "whiteout hides etc/gone");
    assert!(root.join("etc/kept").exists());
    assert!(root.join("etc/passwd").exists(), "busybox layer below is visible");
    assert_eq!(names(&root.join("data")), vec!["fresh"], "opaque dir shows only the new content");
    let f = std::fs::metadata(root.join("srv/file")).unwrap();
    let l = std::fs::metadata(root.join("srv/link")).unwrap();
    assert_eq!(f.ino(), l.ino(), "hard link shares the inode");
    assert_eq!(f.nlink(), 2);
    assert_eq!(berthlet::images::lgetxattr(&root.join("srv/file"), "user.berth").unwrap().as_deref(), Some(&b"yes"[..]));
    let s = std::fs::metadata(root.join("srv/suid")).unwrap();
    assert_eq!((s.mode() & 0o7777, s.uid(), s.gid()), (0o4755, 1000, 1001));
    let dev = std::fs::symlink_metadata(root.join("dev/mydev")).unwrap();
    assert!(dev.file_type().is_char_device());
    assert_eq!(dev.rdev(), libc::makedev(1, 3));
    assert!(std::fs::symlink_metadata(root.join("srv/fifo")).unwrap().file_type().is_fifo());
    assert_eq!(std::fs::read_to_string(root.join("hello.txt")).unwrap(), "hello from the store\n");
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|r| r.count()).unwrap_or(0)
}

#[test]
fn oci_layout_import_snapshot_run_and_gc() {
    let Some(rt) = setup() else { return };
    let work = rt.path("store");
    std::fs::create_dir_all(&work).unwrap();
    let layout = build_image(&work);
    let store = Store::open(&work.join("images")).unwrap();
    let recs = store.import(&layout).unwrap();
    assert_eq!(recs.len(), 1);
    let rec = &recs[0];
    assert_eq!(rec.repo_tags, vec![NAME]);
    assert_eq!(rec.layers.len(), 5);
    assert_eq!(rec.config.cmd, vec!["cat", "/hello.txt"]);
    assert_eq!(count(&work.join("images/layers")), 5);

    // A restart sees the image.
    drop(store);
    let store = Store::open(&work.join("images")).unwrap();
    assert_eq!(store.get(NAME).unwrap().as_ref(), Some(rec));

    // Overlay snapshot, mounted; the merged view follows the OCI rules.
    let snaps = work.join("snapshots");
    let snap = store.prepare_snapshot(&snaps, "c1", &rec.id).unwrap();
    let target = work.join("rootfs");
    std::fs::create_dir(&target).unwrap();
    snap.mount(&target).unwrap();
    let result = std::panic::catch_unwind(|| {
        check_merged(&target);
        // A real container on the snapshot, writing into its upper dir.
        let mut b = rt.bundle();
        b.set("root.path", json!(target.to_str().unwrap()));
        b.args(&["sh", "-c", "cat /hello.txt; ls /data; echo c > /written; ls -l /srv/suid"]);
        let out = run_ok(&rt, &b);
        assert!(out.starts_with("hello from the store\nfresh\n"), "{out}");
        assert!(out.contains("-rwsr-xr-x"), "{out}");
    });
    Snapshot::unmount(&target).unwrap();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    assert_eq!(std::fs::read_to_string(snap.upperdir.join("written")).unwrap(), "c\n");
    assert!(leaks::mounts_under(&[work.clone()]).is_empty(), "overlay unmounted");

    // Removed image: its layers stay while the snapshot exists, then gc frees everything.
    assert!(store.remove(NAME).unwrap());
    let zero = GcOptions { grace: std::time::Duration::ZERO };
    let rep = store.gc_with(&zero).unwrap();
    assert_eq!(count(&work.join("images/layers")), 5, "snapshot keeps its layers");
    assert_eq!(rep.blobs_removed, 7, "manifest, config, 5 layer blobs: {rep:?}");
    assert!(store.remove_snapshot(&snaps, "c1").unwrap());
    let rep = store.gc_with(&zero).unwrap();
    assert_eq!(rep.layers_removed, 5);
    assert!(rep.bytes_freed > 1_000_000, "{rep:?}");
    assert_eq!(count(&work.join("images/blobs/sha256")), 0);
    assert_eq!(count(&work.join("images/layers")), 0);
    assert_eq!(count(&work.join("images/ingest")), 0);
    assert_eq!(count(&snaps), 0);
}

#[test]
fn docker_archive_and_layout_tar_import_the_same_image() {
    let Some(rt) = setup() else { return };
    let work = rt.path("store");
    std::fs::create_dir_all(&work).unwrap();
    let layout = build_image(&work);
    let w = work.display();
    sh(&format!(
        "cd {w} && skopeo copy -q oci:oci:{NAME} docker-archive:image.tar:example.com/test/store:2 \
         && tar -C oci -cf layout.tar . \
         && skopeo copy -q --dest-compress-format zstd --dest-compress oci:oci:{NAME} oci:zstd:{NAME}"
    ));
    let store = Store::open(&work.join("images")).unwrap();
    let from_dir = store.import(&layout).unwrap().remove(0);

    let from_archive = store.import(&work.join("image.tar")).unwrap().remove(0);
    assert_eq!(from_archive.id, from_dir.id, "same config");
    assert_eq!(from_archive.layers, from_dir.layers, "same diff ids, so the unpacked layers are shared");
    assert_eq!(from_archive.repo_tags, vec![NAME.to_string(), "example.com/test/store:2".to_string()]);
    assert_eq!(count(&work.join("images/layers")), 5);

    let from_tar = store.import(&work.join("layout.tar")).unwrap().remove(0);
    assert_eq!(from_tar.id, from_dir.id);

    // zstd layers: a second store, unpacked from zstd blobs.
    let zstore = Store::open(&work.join("zimages")).unwrap();
    let z = zstore.import(&work.join("zstd")).unwrap().remove(0);
    assert_eq!(z.layers, from_dir.layers);
    let man = String::from_utf8(std::fs::read(zstore.blob_path(&z.manifest_digest)).unwrap()).unwrap();
    assert!(man.contains("tar+zstd"), "{man}");

    // The docker-archive image mounts and shows the same tree.
    let snaps = work.join("snapshots");
    let snap = zstore.prepare_snapshot(&snaps, "z1", &z.id).unwrap();
    let target = work.join("rootfs");
    std::fs::create_dir(&target).unwrap();
    snap.mount(&target).unwrap();
    let r = std::panic::catch_unwind(|| check_merged(&target));
    Snapshot::unmount(&target).unwrap();
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
    zstore.remove_snapshot(&snaps, "z1").unwrap();
    assert!(leaks::mounts_under(&[work.clone()]).is_empty());

    for s in [&store, &zstore] {
        for r in s.list().unwrap() {
            s.remove(&r.id).unwrap();
        }
        s.gc_with(&GcOptions { grace: std::time::Duration::ZERO }).unwrap();
        assert_eq!(count(&s.root().join("blobs/sha256")), 0);
        assert_eq!(count(&s.root().join("layers")), 0);
    }
}
