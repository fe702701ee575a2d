//! The one atomic-write helper every writer goes through.
//!
//! A file is written to a temporary sibling in the same directory, flushed with `fsync`,
//! then renamed over the destination. A crash or error midway leaves the old file intact
//! and no partial file under the final name; the temporary is removed on error.
//!
//! Temporaries carry the writer's process id (`.<name>.<pid>.<random>.tmp` beside a file,
//! `<folder>/.tmp-<pid>` inside a folder). A process killed outright (SIGKILL, power loss)
//! cannot remove its temporary, so the next write to the same destination removes those
//! whose process no longer exists (issue 8: no temporary file is left behind, and nothing
//! is written outside the output the tool was given).

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Errors from atomic writes; they always name the destination path.
#[derive(Debug, thiserror::Error)]
pub enum AtomicWriteError {
    /// The temporary file could not be created, written, synced or renamed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// Destination path.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes `bytes` to `path` atomically (temp file in the same directory, fsync, rename).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
    atomic_write_with(path, |w| w.write_all(bytes))
}

/// Writes `path` atomically with a streaming closure. If the closure fails, the temporary
/// file is deleted and the destination is left untouched.
pub fn atomic_write_with<F>(path: &Path, write: F) -> Result<(), AtomicWriteError>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    let wrap = |source| AtomicWriteError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = parent_dir(path);
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    remove_stale(&dir, &format!(".{file_name}."), ".tmp");
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}.{}.", std::process::id()))
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(wrap)?;
    {
        let mut w = BufWriter::new(tmp.as_file());
        write(&mut w).map_err(wrap)?;
        w.flush().map_err(wrap)?;
    }
    set_final_permissions(tmp.as_file(), path).map_err(wrap)?;
    tmp.as_file().sync_all().map_err(wrap)?;
    tmp.persist(path).map_err(|e| wrap(e.error))?;
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Removes entries of `dir` named exactly `<prefix><pid><suffix>` whose process `pid` is
/// gone: the leftovers of a writer that was killed before it could clean up. For files the
/// suffix is `.<random>.tmp` (one dot-free random token, as `tempfile` makes), for folders
/// it is empty. Entries of live processes (a concurrent writer) and any name that does not
/// have exactly this form are left alone.
fn remove_stale(dir: &Path, prefix: &str, suffix: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .filter(|r| r.ends_with(suffix))
        else {
            continue;
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let tail = &rest[digits.len()..];
        let well_formed = if suffix.is_empty() {
            tail.is_empty()
        } else {
            tail.strip_suffix(suffix)
                .and_then(|t| t.strip_prefix('.'))
                .is_some_and(|token| !token.is_empty() && !token.contains('.'))
        };
        let Ok(pid) = digits.parse::<u32>() else {
            continue;
        };
        if !well_formed {
            continue;
        }
        if pid != std::process::id() && !process_alive(pid) {
            let path = entry.path();
            let _ = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
        }
    }
}

/// Whether process `pid` exists (signal 0 probes without sending anything).
fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: kill with signal 0 only checks for existence and permission.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// Temporary files are created private (0600); the result should look like any file the
/// user writes: keep the old file's mode when replacing one, else 0644.
fn set_final_permissions(tmp: &File, dest: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dest)
            .map(|m| m.permissions().mode())
            .unwrap_or(0o644);
        tmp.set_permissions(fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = (tmp, dest);
    Ok(())
}

/// An output folder whose new contents are built in a hidden staging folder *inside* it,
/// `<dest>/.tmp-<pid>`, and moved into place on [`AtomicDir::commit`]. Used for LMDBs and
/// output folders: the tool never writes outside the folder it was given (issue 8), and an
/// interrupted run leaves the old contents untouched (dropped without commit, the staging
/// folder deletes itself, and so does `dest` if this writer created it). A commit replaces
/// the old contents entry by entry, each with one rename.
pub struct AtomicDir {
    tmp: PathBuf,
    dest: PathBuf,
    created_dest: bool,
    committed: bool,
}

/// Prefix of the staging folder inside the destination.
const STAGING_PREFIX: &str = ".tmp-";

impl AtomicDir {
    /// Creates `dest` if needed and the staging folder `<dest>/.tmp-<pid>` in it; stale
    /// staging folders of dead writers are removed first.
    pub fn new(dest: &Path) -> Result<Self, AtomicWriteError> {
        let wrap = |source| AtomicWriteError::Io {
            path: dest.to_path_buf(),
            source,
        };
        if dest.exists() && !dest.is_dir() {
            return Err(wrap(io::Error::other("exists and is not a folder")));
        }
        let created_dest = !dest.exists();
        fs::create_dir_all(dest).map_err(wrap)?;
        remove_stale(dest, STAGING_PREFIX, "");
        let tmp = dest.join(format!("{STAGING_PREFIX}{}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(wrap)?;
        }
        fs::create_dir_all(&tmp).map_err(wrap)?;
        Ok(Self {
            tmp,
            dest: dest.to_path_buf(),
            created_dest,
            committed: false,
        })
    }

    /// The staging folder to write into.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Replaces the destination's contents with the staged ones: old entries that the new
    /// contents do not have are removed, then every staged entry is renamed into place.
    /// Staging folders of other live writers are left alone.
    pub fn commit(mut self) -> Result<(), AtomicWriteError> {
        let wrap = |source| AtomicWriteError::Io {
            path: self.dest.clone(),
            source,
        };
        let staged: Vec<std::ffi::OsString> = fs::read_dir(&self.tmp)
            .map_err(wrap)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(wrap)?;
        for entry in fs::read_dir(&self.dest).map_err(wrap)? {
            let entry = entry.map_err(wrap)?;
            let name = entry.file_name();
            let staging = name.to_string_lossy().starts_with(STAGING_PREFIX);
            if !staging && !staged.contains(&name) {
                remove_entry(&entry.path()).map_err(wrap)?;
            }
        }
        for name in &staged {
            let target = self.dest.join(name);
            if target.symlink_metadata().is_ok() {
                remove_entry(&target).map_err(wrap)?;
            }
            fs::rename(self.tmp.join(name), &target).map_err(wrap)?;
        }
        fs::remove_dir(&self.tmp).map_err(wrap)?;
        if let Ok(d) = File::open(&self.dest) {
            let _ = d.sync_all();
        }
        self.committed = true;
        Ok(())
    }
}

/// Removes a file, link or folder.
fn remove_entry(path: &Path) -> io::Result<()> {
    if path.is_dir() && !path.is_symlink() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

impl Drop for AtomicDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
            if self.created_dest {
                // only succeeds while empty: a folder this writer made and never filled
                let _ = fs::remove_dir(&self.dest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_keeps_old_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        atomic_write(&path, b"old contents").unwrap();
        let err = atomic_write_with(&path, |w| {
            w.write_all(b"half of the new")?;
            Err(io::Error::other("injected failure"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("out.bin"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"old contents");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "temp file left behind: {names:?}");
    }

    /// Only exact leftovers of dead processes go: a live writer's temporary (pid 1 always
    /// runs) and names of another form stay. Linux pids never exceed 2^22, so 4194305 is a
    /// process that cannot exist.
    #[test]
    fn only_temporaries_of_dead_writers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let keep = [
            ".out.bin.1.AbC123.tmp",
            ".out.bin.4194305.two.dots.tmp",
            ".out.bin.4194305.AbC123.tmp.bak",
            ".out.bin.x4194305.AbC123.tmp",
            "out.bin",
        ];
        for n in keep.iter().chain([&".out.bin.4194305.AbC123.tmp"]) {
            fs::write(dir.path().join(n), b"x").unwrap();
        }
        atomic_write(&dir.path().join("out.bin"), b"new").unwrap();
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want: Vec<String> = keep.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(left, want);
    }

    #[test]
    fn atomic_dir_is_removed_unless_committed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("db");
        {
            let d = AtomicDir::new(&dest).unwrap();
            assert!(d.path().starts_with(&dest), "staged outside the output");
            fs::write(d.path().join("x"), b"1").unwrap();
        }
        assert!(!dest.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        let d = AtomicDir::new(&dest).unwrap();
        fs::write(d.path().join("x"), b"1").unwrap();
        d.commit().unwrap();
        assert_eq!(fs::read(dest.join("x")).unwrap(), b"1");
        // a second commit replaces the contents: stale entries go, staged ones replace
        fs::write(dest.join("stale"), b"old").unwrap();
        fs::create_dir(dest.join("sub")).unwrap();
        let d = AtomicDir::new(&dest).unwrap();
        fs::write(d.path().join("x"), b"2").unwrap();
        fs::create_dir(d.path().join("sub")).unwrap();
        fs::write(d.path().join("sub").join("y"), b"3").unwrap();
        d.commit().unwrap();
        let mut names: Vec<String> = fs::read_dir(&dest)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["sub", "x"]);
        assert_eq!(fs::read(dest.join("x")).unwrap(), b"2");
        assert_eq!(fs::read(dest.join("sub").join("y")).unwrap(), b"3");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
