//! The Data layer of a training or test net: LMDB `Datum` records read in key order and
//! wrapped around at the end (Caffe's `DataLayer`), transformed as Caffe's
//! `DataTransformer` does, and batched. [`Prefetcher`] produces batches on a background
//! thread, as Caffe's `BasePrefetchingDataLayer` does, so the next batch is ready when the
//! solver asks.

use super::transform::{Pixels, TransformError, Transformer};
use crate::caffe::binaryproto::{read_binaryproto, BinaryProtoError};
use crate::io::datum::{datum_shape, datum_to_image, DatumError};
use crate::io::lmdb::{LmdbCursor, LmdbError, LmdbReader};
use crate::io::npy::{read_npy, NpyError};
use crate::ir::{Phase, Tensor};
use crate::ops::data::DataParams;
use crate::proto::caffe::Datum;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

/// Errors of a data source; each names the database (and the record where one is involved).
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The LMDB could not be read.
    #[error(transparent)]
    Lmdb(#[from] LmdbError),
    /// The database holds no record.
    #[error("{0}: the database holds no record")]
    Empty(PathBuf),
    /// A record's pixels could not be taken.
    #[error("{path}: record '{key}': {cause}")]
    Datum {
        /// Database.
        path: PathBuf,
        /// Record key.
        key: String,
        /// Cause.
        cause: DatumError,
    },
    /// A record whose shape differs from the first record's.
    #[error("{path}: record '{key}' is {found:?} (C, H, W) but the batch is {expected:?}")]
    Shape {
        /// Database.
        path: PathBuf,
        /// Record key.
        key: String,
        /// The first record's shape.
        expected: [usize; 3],
        /// This record's shape.
        found: [usize; 3],
    },
    /// The transform does not fit the records.
    #[error("{path}: transform_param: {cause}")]
    Transform {
        /// Database.
        path: PathBuf,
        /// Cause.
        cause: TransformError,
    },
    /// The mean file could not be read.
    #[error("mean_file: {0}")]
    MeanBinaryProto(#[from] BinaryProtoError),
    /// The mean file could not be read.
    #[error("mean_file: {0}")]
    MeanNpy(#[from] NpyError),
    /// `batch_size` is 0.
    #[error("{0}: batch_size must be positive")]
    BatchSize(PathBuf),
    /// The prefetch thread stopped.
    #[error("the data prefetch thread stopped unexpectedly")]
    Prefetch,
}

/// One batch: data `[N, C, H, W]` and labels `[N]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Transformed images.
    pub data: Tensor,
    /// Labels as floats (Caffe's label blob).
    pub labels: Tensor,
}

/// Reads a mean image from a binaryproto (Caffe's `mean_file`) or a `.npy`.
pub fn read_mean(path: &Path) -> Result<Tensor, DataError> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
    {
        Ok(read_npy(path)?)
    } else {
        Ok(read_binaryproto(path)?)
    }
}

/// A Data layer's record stream.
pub struct DataSource {
    path: PathBuf,
    cursor: LmdbCursor,
    // Keeps the environment open while the cursor lives.
    reader: LmdbReader,
    transformer: Transformer,
    batch: usize,
    record: [usize; 3],
    out: [usize; 3],
    seed: u64,
    served: u64,
}

/// The seed of batch `index` of a source seeded with `seed` (SplitMix64 of the pair), so
/// every batch's random crops and mirrors depend only on its position in the stream.
pub fn batch_seed(seed: u64, index: u64) -> u64 {
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl DataSource {
    /// Opens `params.source` (relative to the working directory, as in Caffe) for `phase`,
    /// reads the mean file, and takes the record shape from the first record.
    pub fn open(params: &DataParams, phase: Phase, seed: u64) -> Result<Self, DataError> {
        let mean = match &params.transform.mean_file {
            Some(m) => Some(read_mean(Path::new(m))?),
            None => None,
        };
        Self::open_with_mean(params, mean, phase, seed)
    }

    /// [`DataSource::open`] with the mean image given directly (`mean_file` is ignored).
    pub fn open_with_mean(
        params: &DataParams,
        mean: Option<Tensor>,
        phase: Phase,
        seed: u64,
    ) -> Result<Self, DataError> {
        let path = PathBuf::from(&params.source);
        if params.batch_size == 0 {
            return Err(DataError::BatchSize(path));
        }
        let reader = LmdbReader::open(&path)?;
        let mut cursor = reader.cursor()?;
        let (record, first) = match cursor.next_datum()? {
            Some(r) => r,
            None => return Err(DataError::Empty(path)),
        };
        let shape = Self::shape_of(&path, &record.key_str(), &first)?;
        cursor.rewind();
        let transformer =
            Transformer::new(params.transform.clone(), mean, phase, seed).map_err(|cause| {
                DataError::Transform {
                    path: path.clone(),
                    cause,
                }
            })?;
        let out = transformer.output_shape(shape);
        Ok(Self {
            path,
            cursor,
            reader,
            transformer,
            batch: params.batch_size,
            record: shape,
            out,
            seed,
            served: 0,
        })
    }

    fn shape_of(path: &Path, key: &str, d: &Datum) -> Result<[usize; 3], DataError> {
        let err = |cause| DataError::Datum {
            path: path.into(),
            key: key.into(),
            cause,
        };
        if d.encoded() {
            let img = datum_to_image(d).map_err(err)?;
            Ok([img.channels, img.height, img.width])
        } else {
            datum_shape(d).map_err(err)
        }
    }

    /// (C, H, W) of one transformed record.
    pub fn output_shape(&self) -> [usize; 3] {
        self.out
    }

    /// Records per batch.
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// Skips `batches` batches without transforming them (a resumed run continues where
    /// the interrupted one stopped, which Caffe itself does not do).
    pub fn skip(&mut self, batches: u64) -> Result<(), DataError> {
        let len = self.reader.len()?.max(1) as u64;
        for _ in 0..batches.saturating_mul(self.batch as u64) % len {
            if self.cursor.next_record()?.is_none() {
                self.cursor.rewind();
                self.cursor
                    .next_record()?
                    .ok_or_else(|| DataError::Empty(self.path.clone()))?;
            }
        }
        self.served += batches;
        Ok(())
    }

    /// The next batch, wrapping around at the end of the database.
    pub fn next_batch(&mut self) -> Result<Batch, DataError> {
        self.transformer.reseed(batch_seed(self.seed, self.served));
        self.served += 1;
        let [c, h, w] = self.out;
        let per = c * h * w;
        let mut data = Tensor::zeros(&[self.batch, c, h, w]);
        let mut labels = Tensor::zeros(&[self.batch]);
        for i in 0..self.batch {
            let (record, datum) = match self.cursor.next_datum()? {
                Some(r) => r,
                None => {
                    self.cursor.rewind();
                    self.cursor
                        .next_datum()?
                        .ok_or_else(|| DataError::Empty(self.path.clone()))?
                }
            };
            let key = record.key_str();
            let shape = Self::shape_of(&self.path, &key, &datum)?;
            if shape != self.record {
                return Err(DataError::Shape {
                    path: self.path.clone(),
                    key,
                    expected: self.record,
                    found: shape,
                });
            }
            let out = &mut data.data[i * per..(i + 1) * per];
            let result = if datum.encoded() {
                let img = datum_to_image(&datum).map_err(|cause| DataError::Datum {
                    path: self.path.clone(),
                    key: key.clone(),
                    cause,
                })?;
                self.transformer.apply(shape, Pixels::U8(&img.data), out)
            } else if !datum.data().is_empty() {
                self.transformer.apply(shape, Pixels::U8(datum.data()), out)
            } else {
                self.transformer
                    .apply(shape, Pixels::F32(&datum.float_data), out)
            };
            result.map_err(|cause| DataError::Transform {
                path: self.path.clone(),
                cause,
            })?;
            labels.data[i] = datum.label() as f32;
        }
        Ok(Batch { data, labels })
    }
}

/// Produces batches of a [`DataSource`] on a background thread, a few ahead.
pub struct Prefetcher {
    rx: Receiver<Result<Batch, DataError>>,
    handle: Option<JoinHandle<()>>,
    out: [usize; 3],
    batch: usize,
}

impl Prefetcher {
    /// Starts the thread; it keeps `depth` batches ready (Caffe keeps a few too).
    pub fn spawn(mut source: DataSource, depth: usize) -> Self {
        let (tx, rx) = sync_channel(depth.max(1));
        let (out, batch) = (source.output_shape(), source.batch_size());
        let handle = std::thread::spawn(move || loop {
            let b = source.next_batch();
            let failed = b.is_err();
            if tx.send(b).is_err() || failed {
                break;
            }
        });
        Self {
            rx,
            handle: Some(handle),
            out,
            batch,
        }
    }

    /// (C, H, W) of one record.
    pub fn output_shape(&self) -> [usize; 3] {
        self.out
    }

    /// Records per batch.
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// The next batch (waits for the thread when it is behind).
    pub fn next_batch(&mut self) -> Result<Batch, DataError> {
        self.rx.recv().map_err(|_| DataError::Prefetch)?
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        // Dropping the receiver makes the thread's next send fail, so it ends; drain one
        // pending batch so a blocked send returns.
        let (_, dummy) = sync_channel::<Result<Batch, DataError>>(1);
        let rx = std::mem::replace(&mut self.rx, dummy);
        drop(rx);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
