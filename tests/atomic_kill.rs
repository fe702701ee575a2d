//! Issue 8: "a test kills a write midway and shows that the old file is intact and no
//! temporary file is left". A child process (this test binary, re-run on one ignored
//! helper test) writes a destination through the atomic helper and stops halfway with 1 MiB
//! on disk; the parent kills it with SIGKILL, which no handler can catch. The destination
//! still holds its old bytes; the killed writer's temporary is there (nothing could remove
//! it) and the next write to that destination removes it.

use agegender::util::{atomic_write, atomic_write_with, AtomicDir};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "AGEGENDER_ATOMIC_KILL_CHILD";
const OLD: &[u8] = b"the old contents";

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The child: writes half of a 2 MiB file (flushed to the temporary), then waits forever
/// to be killed. It writes a file for `file` mode and an [`AtomicDir`] for `dir` mode.
#[test]
#[ignore = "child process of the kill tests below; run by them with AGEGENDER_ATOMIC_KILL_CHILD"]
fn child_writer() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (mode, dest) = spec.split_once(':').unwrap();
    let dest = Path::new(dest);
    let half = vec![0xA5u8; 1 << 20];
    if mode == "dir" {
        let d = AtomicDir::new(dest).unwrap();
        std::fs::write(d.path().join("data.mdb"), &half).unwrap();
        std::fs::write(dest.with_file_name("child.ready"), b"").unwrap();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    atomic_write_with(dest, |w| {
        w.write_all(&half)?;
        w.flush()?;
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    })
    .unwrap();
}

/// Starts the child on `dest`, waits until `ready` says it is mid-write, kills it (SIGKILL)
/// and returns its pid.
fn kill_midway(mode: &str, dest: &Path, ready: impl Fn() -> bool) -> u32 {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_writer", "--ignored", "--test-threads=1"])
        .env(CHILD_ENV, format!("{mode}:{}", dest.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !ready() {
        assert!(child.try_wait().unwrap().is_none(), "the child ended early");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the child never wrote"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    child.id()
}

#[test]
fn a_writer_killed_midway_leaves_the_old_file_and_its_temporary_is_cleared() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out.bin");
    std::fs::write(&dest, OLD).unwrap();
    let temp_with_data = || {
        names(tmp.path()).iter().any(|n| {
            n.starts_with(".out.bin.")
                && std::fs::metadata(tmp.path().join(n)).is_ok_and(|m| m.len() >= 1 << 20)
        })
    };
    let pid = kill_midway("file", &dest, temp_with_data);
    assert_eq!(std::fs::read(&dest).unwrap(), OLD, "old file damaged");
    let left = names(tmp.path());
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        left.iter()
            .any(|n| n.starts_with(&format!(".out.bin.{pid}."))),
        "{left:?}"
    );
    atomic_write(&dest, b"new").unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"new");
    assert_eq!(names(tmp.path()), vec!["out.bin".to_string()]);
}

#[test]
fn a_folder_writer_killed_midway_leaves_the_old_folder_and_is_cleared() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("db");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("data.mdb"), OLD).unwrap();
    let pid = kill_midway("dir", &dest, || tmp.path().join("child.ready").exists());
    assert_eq!(std::fs::read(dest.join("data.mdb")).unwrap(), OLD);
    // the killed writer's staging folder is inside the output folder, never beside it
    let stale = format!(".tmp-{pid}");
    assert!(dest.join(&stale).is_dir(), "{:?}", names(&dest));
    assert_eq!(
        names(tmp.path()),
        vec!["child.ready".to_string(), "db".to_string()]
    );
    std::fs::remove_file(tmp.path().join("child.ready")).unwrap();
    let d = AtomicDir::new(&dest).unwrap();
    std::fs::write(d.path().join("data.mdb"), b"new").unwrap();
    d.commit().unwrap();
    assert_eq!(std::fs::read(dest.join("data.mdb")).unwrap(), b"new");
    assert_eq!(names(tmp.path()), vec!["db".to_string()]);
    assert_eq!(names(&dest), vec!["data.mdb".to_string()]);
}
