//! LMDB databases as Caffe's `convert_imageset` writes and its `Data` layer reads them,
//! through `heed`.
//!
//! Layout: an LMDB environment directory (`data.mdb`, `lock.mdb`) with one unnamed
//! database; keys `%08d_<relative path>` ([`caffe_key`]), values serialized `caffe.Datum`.
//! LMDB keeps keys sorted, so the zero-padded index makes key order equal write order.
//!
//! Writing goes into an [`AtomicDir`] staging folder inside the destination whose files are
//! renamed into place only by [`LmdbWriter::finish`], so an interrupted run never leaves a
//! complete-looking LMDB.
//! Reading opens the environment read-only without a lock file (`MDB_RDONLY |
//! MDB_NOLOCK`), which also works on read-only media such as the shared fixtures.

use super::datum::{decode_datum, DatumError};
use crate::proto::caffe::Datum;
use crate::util::atomic::{AtomicDir, AtomicWriteError};
use heed::types::Bytes;
use heed::{Database, Env, EnvFlags, EnvOpenOptions, RoTxn, WithoutTls};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

/// LMDB's largest key (`mdb_env_get_maxkeysize` of a default build).
pub const MAX_KEY_BYTES: usize = 511;

/// Records buffered before a write transaction is committed (Caffe commits every 1,000).
const RECORDS_PER_TXN: usize = 1000;
/// Bytes buffered before a commit, whatever the record count.
const BYTES_PER_TXN: usize = 64 << 20;
/// Initial map size of a new LMDB; it doubles whenever a commit hits `MDB_MAP_FULL`.
const INITIAL_MAP_SIZE: usize = 1 << 30;

/// An LMDB error, naming the database directory and, where one is involved, the key.
#[derive(Debug, thiserror::Error)]
pub enum LmdbError {
    /// LMDB (or the file system under it) failed.
    #[error("LMDB {}: {source}", path.display())]
    Lmdb {
        /// Database directory.
        path: PathBuf,
        /// Cause.
        source: heed::Error,
    },
    /// The environment has no main database (an empty or foreign LMDB).
    #[error("LMDB {}: no database inside", path.display())]
    NoDatabase {
        /// Database directory.
        path: PathBuf,
    },
    /// A key is empty or longer than LMDB allows.
    #[error("LMDB {}: key of {len} bytes (LMDB keys hold 1 to {MAX_KEY_BYTES}): {key}", path.display())]
    KeyLength {
        /// Database directory.
        path: PathBuf,
        /// The key (lossy UTF-8).
        key: String,
        /// Its length.
        len: usize,
    },
    /// A record's value is not a valid Datum.
    #[error("LMDB {}, record {key}: {source}", path.display())]
    Datum {
        /// Database directory.
        path: PathBuf,
        /// The record's key (lossy UTF-8).
        key: String,
        /// Cause.
        source: DatumError,
    },
    /// The temporary directory could not be created or renamed.
    #[error(transparent)]
    Atomic(#[from] AtomicWriteError),
}

/// The key `convert_imageset` gives the `index`-th line of its list: the index zero-padded
/// to 8 digits, `_`, and the file name as written in the list (`caffe::format_int(i, 8)`).
pub fn caffe_key(index: usize, name: &str) -> String {
    format!("{index:08}_{name}")
}

/// Writes a new LMDB in key order, in a temporary directory renamed into place on
/// [`finish`](Self::finish). Dropped without `finish`, it deletes the temporary directory.
pub struct LmdbWriter {
    // Field order matters: the environment must close before the directory is removed.
    env: Env,
    db: Database<Bytes, Bytes>,
    pending: Vec<(Vec<u8>, Vec<u8>)>,
    pending_bytes: usize,
    map_size: usize,
    written: usize,
    dest: PathBuf,
    dir: AtomicDir,
}

impl LmdbWriter {
    /// Starts a new LMDB that will appear at `dest` (replacing an older one) on `finish`.
    pub fn create(dest: &Path) -> Result<Self, LmdbError> {
        Self::create_with_map_size(dest, INITIAL_MAP_SIZE)
    }

    /// As [`create`](Self::create) with a chosen initial map size (rounded up to 64 KiB);
    /// the map still doubles when full.
    pub fn create_with_map_size(dest: &Path, map_size: usize) -> Result<Self, LmdbError> {
        let dir = AtomicDir::new(dest)?;
        let map_size = map_size.max(1).div_ceil(1 << 16) << 16;
        let lmdb = |source| LmdbError::Lmdb {
            path: dest.to_path_buf(),
            source,
        };
        // SAFETY: the environment is fresh, private to this writer and closed before the
        // directory is renamed. NO_SYNC/NO_META_SYNC skip per-commit fsyncs; `finish`
        // forces one sync before the rename, so a finished LMDB is durable.
        let env = unsafe {
            EnvOpenOptions::new()
                .map_size(map_size)
                .flags(EnvFlags::NO_SYNC | EnvFlags::NO_META_SYNC)
                .open(dir.path())
        }
        .map_err(lmdb)?;
        let mut txn = env.write_txn().map_err(lmdb)?;
        let db = env.create_database(&mut txn, None).map_err(lmdb)?;
        txn.commit().map_err(lmdb)?;
        Ok(Self {
            env,
            db,
            pending: Vec::new(),
            pending_bytes: 0,
            map_size,
            written: 0,
            dest: dest.to_path_buf(),
            dir,
        })
    }

    /// Adds one record. Keys must be unique; LMDB stores them sorted.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), LmdbError> {
        if key.len() > MAX_KEY_BYTES || key.is_empty() {
            return Err(LmdbError::KeyLength {
                path: self.dest.clone(),
                key: String::from_utf8_lossy(key).into_owned(),
                len: key.len(),
            });
        }
        self.pending_bytes += key.len() + value.len();
        self.pending.push((key.to_vec(), value.to_vec()));
        if self.pending.len() >= RECORDS_PER_TXN || self.pending_bytes >= BYTES_PER_TXN {
            self.flush()?;
        }
        Ok(())
    }

    /// Adds a Datum under `caffe_key(index, name)`.
    pub fn put_datum(&mut self, index: usize, name: &str, datum: &Datum) -> Result<(), LmdbError> {
        self.put(
            caffe_key(index, name).as_bytes(),
            &super::datum::encode_datum(datum),
        )
    }

    /// Records written so far (including buffered ones).
    pub fn len(&self) -> usize {
        self.written + self.pending.len()
    }

    /// True when nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Commits the buffered records in one transaction, doubling the map until they fit.
    fn flush(&mut self) -> Result<(), LmdbError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        loop {
            match self.try_commit_pending() {
                Ok(()) => break,
                Err(heed::Error::Mdb(heed::MdbError::MapFull)) => {
                    self.map_size = self.map_size.saturating_mul(2);
                    // SAFETY: no transaction is alive (the failed one was dropped).
                    unsafe { self.env.resize(self.map_size) }.map_err(|e| self.lmdb(e))?;
                }
                Err(e) => return Err(self.lmdb(e)),
            }
        }
        self.written += self.pending.len();
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    fn try_commit_pending(&self) -> Result<(), heed::Error> {
        let mut txn = self.env.write_txn()?;
        for (k, v) in &self.pending {
            self.db.put(&mut txn, k, v)?;
        }
        txn.commit()
    }

    fn lmdb(&self, source: heed::Error) -> LmdbError {
        LmdbError::Lmdb {
            path: self.dest.clone(),
            source,
        }
    }

    /// Commits everything, syncs, closes the environment and renames the temporary
    /// directory to its destination. Returns the number of records.
    pub fn finish(mut self) -> Result<usize, LmdbError> {
        self.flush()?;
        self.env.force_sync().map_err(|e| self.lmdb(e))?;
        let Self {
            env, written, dir, ..
        } = self;
        let closing = env.prepare_for_closing();
        closing.wait();
        dir.commit()?;
        Ok(written)
    }
}

/// Read-only environments shared within the process: heed refuses to open one directory
/// twice at once, and parallel readers (tests, train + test nets) must not collide.
fn open_shared_env(path: &Path) -> Result<Arc<Env<WithoutTls>>, heed::Error> {
    static OPEN: Mutex<Vec<(PathBuf, Weak<Env<WithoutTls>>)>> = Mutex::new(Vec::new());
    let canonical = std::fs::canonicalize(path)?;
    let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
    open.retain(|(_, w)| w.strong_count() > 0);
    if let Some(env) = open
        .iter()
        .find(|(p, _)| *p == canonical)
        .and_then(|(_, w)| w.upgrade())
    {
        return Ok(env);
    }
    loop {
        // SAFETY: read-only; files in an LMDB being read must not be modified meanwhile,
        // which holds for finished databases (they are only ever replaced by rename).
        let result = unsafe {
            EnvOpenOptions::new()
                .read_txn_without_tls()
                .flags(EnvFlags::READ_ONLY | EnvFlags::NO_LOCK)
                .open(&canonical)
        };
        match result {
            Ok(env) => {
                let env = Arc::new(env);
                open.push((canonical, Arc::downgrade(&env)));
                return Ok(env);
            }
            // The last handle is being closed by another thread: wait for it, then retry.
            Err(heed::Error::EnvAlreadyOpened) => {
                if let Some(event) = heed::env_closing_event(&canonical) {
                    event.wait();
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// A read-only LMDB as Caffe's tools write it.
pub struct LmdbReader {
    path: PathBuf,
    env: Arc<Env<WithoutTls>>,
    db: Database<Bytes, Bytes>,
}

/// One record, copied out of the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LmdbRecord {
    /// The key (`%08d_<name>` for Caffe's tools).
    pub key: Vec<u8>,
    /// The value (a serialized Datum for Caffe's tools).
    pub value: Vec<u8>,
}

impl LmdbRecord {
    /// The key as text (lossy UTF-8).
    pub fn key_str(&self) -> String {
        String::from_utf8_lossy(&self.key).into_owned()
    }

    /// The name part of a `%08d_<name>` key, or the whole key when it has no such prefix.
    pub fn name(&self) -> String {
        let key = self.key_str();
        match key.split_once('_') {
            Some((index, name))
                if index.len() == 8 && index.bytes().all(|b| b.is_ascii_digit()) =>
            {
                name.to_string()
            }
            _ => key,
        }
    }
}

impl LmdbReader {
    /// Opens an LMDB directory read-only (no lock file is created or needed).
    pub fn open(path: &Path) -> Result<Self, LmdbError> {
        let lmdb = |source| LmdbError::Lmdb {
            path: path.to_path_buf(),
            source,
        };
        let env = open_shared_env(path).map_err(lmdb)?;
        let txn = env.read_txn().map_err(lmdb)?;
        let db = env
            .open_database::<Bytes, Bytes>(&txn, None)
            .map_err(lmdb)?
            .ok_or_else(|| LmdbError::NoDatabase {
                path: path.to_path_buf(),
            })?;
        drop(txn);
        Ok(Self {
            path: path.to_path_buf(),
            env,
            db,
        })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of records (from LMDB's statistics, without reading them).
    pub fn len(&self) -> Result<usize, LmdbError> {
        let txn = self.env.read_txn().map_err(|e| self.lmdb(e))?;
        let n = self.db.len(&txn).map_err(|e| self.lmdb(e))?;
        Ok(n as usize)
    }

    /// True when the database holds no record.
    pub fn is_empty(&self) -> Result<bool, LmdbError> {
        Ok(self.len()? == 0)
    }

    /// A cursor over all records in key order (a consistent snapshot).
    pub fn cursor(&self) -> Result<LmdbCursor, LmdbError> {
        let txn = Env::clone(&self.env)
            .static_read_txn()
            .map_err(|e| self.lmdb(e))?;
        Ok(LmdbCursor {
            path: self.path.clone(),
            _env: Arc::clone(&self.env),
            db: self.db,
            txn,
            last_key: None,
        })
    }

    fn lmdb(&self, source: heed::Error) -> LmdbError {
        LmdbError::Lmdb {
            path: self.path.clone(),
            source,
        }
    }
}

/// Walks an LMDB in key order, as Caffe's `Data` layer does; [`rewind`](Self::rewind)
/// starts over (Caffe wraps around at the end of an epoch).
pub struct LmdbCursor {
    path: PathBuf,
    // Keeps the shared environment registered while the cursor lives.
    _env: Arc<Env<WithoutTls>>,
    db: Database<Bytes, Bytes>,
    txn: RoTxn<'static, WithoutTls>,
    last_key: Option<Vec<u8>>,
}

impl LmdbCursor {
    /// Goes back to the first record.
    pub fn rewind(&mut self) {
        self.last_key = None;
    }

    /// The next record, or `None` at the end.
    pub fn next_record(&mut self) -> Result<Option<LmdbRecord>, LmdbError> {
        let found = match &self.last_key {
            None => self.db.first(&self.txn),
            Some(k) => self.db.get_greater_than(&self.txn, k),
        }
        .map_err(|source| LmdbError::Lmdb {
            path: self.path.clone(),
            source,
        })?;
        Ok(found.map(|(k, v)| {
            self.last_key = Some(k.to_vec());
            LmdbRecord {
                key: k.to_vec(),
                value: v.to_vec(),
            }
        }))
    }

    /// The next record decoded as a validated Datum, with its key.
    pub fn next_datum(&mut self) -> Result<Option<(LmdbRecord, Datum)>, LmdbError> {
        let Some(record) = self.next_record()? else {
            return Ok(None);
        };
        let datum = decode_datum(&record.value).map_err(|source| LmdbError::Datum {
            path: self.path.clone(),
            key: record.key_str(),
            source,
        })?;
        Ok(Some((record, datum)))
    }
}

impl Iterator for LmdbCursor {
    type Item = Result<LmdbRecord, LmdbError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::datum::{datum_from_image, datum_to_image, encode_datum};
    use crate::io::image::ChwImage;
    use crate::testutil::shared;

    /// `utkface24_list.txt` as (file, label) pairs.
    fn caffe_list() -> Option<Vec<(String, i32)>> {
        let p = shared("fixtures-real/caffe-oracle/utkface24_list.txt")?;
        let text = std::fs::read_to_string(p).unwrap();
        Some(
            text.lines()
                .map(|l| {
                    let (f, label) = l.rsplit_once(' ').unwrap();
                    (f.to_string(), label.parse().unwrap())
                })
                .collect(),
        )
    }

    #[test]
    fn reads_the_caffe_written_lmdb_with_its_keys_and_labels() {
        let (Some(db), Some(list)) = (
            shared("fixtures-real/caffe-oracle/utkface24_lmdb"),
            caffe_list(),
        ) else {
            return;
        };
        let reader = LmdbReader::open(&db).unwrap();
        assert_eq!(reader.len().unwrap(), 24);
        let mut cursor = reader.cursor().unwrap();
        let mut seen = 0;
        while let Some((record, datum)) = cursor.next_datum().unwrap() {
            let (file, label) = &list[seen];
            assert_eq!(record.key_str(), format!("{seen:08}_{file}"));
            assert_eq!(record.name(), *file);
            assert_eq!(datum.label(), *label);
            assert_eq!(
                (datum.channels(), datum.height(), datum.width()),
                (3, 227, 227)
            );
            assert_eq!(datum.data().len(), 154_587);
            assert!(!datum.encoded() && datum.float_data.is_empty());
            // Re-encoding the decoded record gives Caffe's bytes back exactly.
            assert_eq!(encode_datum(&datum), record.value, "{}", record.key_str());
            seen += 1;
        }
        assert_eq!(seen, 24);
        cursor.rewind();
        assert_eq!(
            cursor.next_record().unwrap().unwrap().key_str(),
            format!("00000000_{}", list[0].0)
        );
        // Two readers of one directory at once (heed refuses a second open by itself).
        let again = LmdbReader::open(&db).unwrap();
        assert_eq!(again.cursor().unwrap().count(), 24);
    }

    #[test]
    fn written_lmdb_reads_back_in_key_order_and_grows_its_map() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x_lmdb");
        // A 64 KiB map cannot hold 40 records of 12 KiB: the writer must grow it.
        let mut w = LmdbWriter::create_with_map_size(&dest, 1).unwrap();
        let images: Vec<ChwImage> = (0..40u8)
            .map(|i| ChwImage {
                channels: 3,
                height: 64,
                width: 64,
                data: vec![i; 3 * 64 * 64],
            })
            .collect();
        // Written out of order: LMDB sorts the keys, and %08d makes that the index order.
        for i in (0..40).rev() {
            w.put_datum(
                i,
                &format!("dir/img{i}.jpg"),
                &datum_from_image(&images[i], i as i32 % 9),
            )
            .unwrap();
        }
        // until finish the destination holds only the hidden staging folder
        assert!(
            !dest.join("data.mdb").exists(),
            "the LMDB must not appear before finish"
        );
        assert_eq!(w.finish().unwrap(), 40);
        assert!(dest.join("data.mdb").exists());
        let reader = LmdbReader::open(&dest).unwrap();
        assert_eq!(reader.len().unwrap(), 40);
        let mut cursor = reader.cursor().unwrap();
        for (i, image) in images.iter().enumerate() {
            let (record, datum) = cursor.next_datum().unwrap().unwrap();
            assert_eq!(record.key_str(), format!("{i:08}_dir/img{i}.jpg"));
            assert_eq!(datum.label(), i as i32 % 9);
            assert_eq!(&datum_to_image(&datum).unwrap(), image);
        }
        assert!(cursor.next_record().unwrap().is_none());
    }

    #[test]
    fn an_unfinished_writer_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("y_lmdb");
        {
            let mut w = LmdbWriter::create(&dest).unwrap();
            w.put(b"00000000_a", b"value").unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn overlong_keys_and_corrupt_records_are_errors_naming_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("z_lmdb");
        let mut w = LmdbWriter::create(&dest).unwrap();
        let e = w.put(&[b'k'; 600], b"v").unwrap_err().to_string();
        assert!(e.contains("z_lmdb") && e.contains("600 bytes"), "{e}");
        w.put(b"00000000_bad", b"\x22\x05\x01").unwrap();
        w.finish().unwrap();
        let mut cursor = LmdbReader::open(&dest).unwrap().cursor().unwrap();
        let e = cursor.next_datum().unwrap_err().to_string();
        assert!(e.contains("z_lmdb") && e.contains("00000000_bad"), "{e}");
        let missing = LmdbReader::open(&dir.path().join("missing")).err().unwrap();
        assert!(missing.to_string().contains("missing"), "{missing}");
    }
}
