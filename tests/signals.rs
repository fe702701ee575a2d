//! Issue 8: `data prepare` survives SIGINT and SIGTERM. The real binary is started as a
//! child process and signalled while it writes its LMDBs; it must exit with 130, leave no
//! output folder (complete or partial) and no temporary folder, and a rerun of the same
//! command must then produce the complete output.

use agegender::testutil::shared;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agegender"))
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn interrupted_prepare_leaves_nothing_and_reruns(signal: &str) {
    let Some(faces) = shared("data/utkface-asian") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("prepared");
    let prepare = || {
        let mut c = bin();
        c.args([
            "data", "prepare", "--json", "--limit", "400", "--size", "96",
        ])
        .arg("--utkface")
        .arg(&faces)
        .arg("--out")
        .arg(&out);
        c
    };
    let mut child = prepare()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the LMDBs are being written in the staging folder inside the output.
    let started = Instant::now();
    loop {
        let writing = out.is_dir()
            && names(&out)
                .iter()
                .any(|n| n.starts_with(".tmp-") && out.join(n).join("lmdb").exists());
        if writing {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "prepare ended before the signal"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no LMDB was started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let kill = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(names(tmp.path()), Vec::<String>::new(), "left behind");

    let rerun = prepare().output().unwrap();
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&rerun.stdout).unwrap();
    assert_eq!(names(tmp.path()), vec!["prepared".to_string()]);
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("stats.json")).unwrap()).unwrap();
    assert_eq!(stats, report);
    // Every LMDB the report counts holds that many records (read back independently of
    // the writer: one key per record in the LMDB's main table).
    for (name, count) in report["lmdb_records"].as_object().unwrap() {
        let db = agegender::io::lmdb::LmdbReader::open(&out.join("lmdb").join(name)).unwrap();
        assert_eq!(db.len().unwrap() as u64, count.as_u64().unwrap(), "{name}");
    }
}

#[test]
fn sigint_during_data_prepare_leaves_nothing_and_a_rerun_completes() {
    interrupted_prepare_leaves_nothing_and_reruns("-INT");
}

#[test]
fn sigterm_during_data_prepare_leaves_nothing_and_a_rerun_completes() {
    interrupted_prepare_leaves_nothing_and_reruns("-TERM");
}
