//! The forward context every operator receives: phase, seeded RNG, thread budget, the state a
//! layer saves for its backward pass, and a pool of recycled buffers so that a run does not
//! allocate (and page-fault) fresh memory for every layer.

use crate::ir::{Phase, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::sync::Mutex;

/// Recycled f32 buffers. Fresh allocations of tens of megabytes cost a page fault per 4 KiB
/// on first touch, more than the arithmetic of a pooling or ReLU pass; reusing the buffers
/// of the previous forward/backward avoids that. Interior mutability lets a backward pass,
/// which only borrows its arguments, draw from the pool.
#[derive(Debug, Default)]
pub struct BufferPool {
    free: Mutex<Vec<Vec<f32>>>,
}

impl BufferPool {
    /// Buffers kept at most; beyond this the smallest are dropped, so that a training loop
    /// that allocates a few new small buffers per iteration does not grow without bound.
    const MAX_BUFFERS: usize = 256;

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<f32>>> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A tensor of `shape` whose contents are unspecified (a recycled buffer when one is
    /// large enough, the best fit). For outputs that are written in full.
    pub fn tensor(&self, shape: &[usize]) -> Tensor {
        let len: usize = shape.iter().product();
        let recycled = {
            let mut free = self.lock();
            let pick = free
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= len)
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i);
            pick.map(|i| free.swap_remove(i))
        };
        let mut data = recycled.unwrap_or_else(|| Vec::with_capacity(len));
        if data.len() > len {
            data.truncate(len);
        } else {
            data.resize(len, 0.0);
        }
        Tensor {
            shape: shape.to_vec(),
            data,
        }
    }

    /// A zero-filled tensor of `shape`, for outputs that are accumulated into (a bottom
    /// diff that several windows or GEMM columns add to).
    pub fn zeroed(&self, shape: &[usize]) -> Tensor {
        let mut t = self.tensor(shape);
        t.data.fill(0.0);
        t
    }

    /// A copy of `src` in a recycled buffer.
    pub fn copy_of(&self, src: &Tensor) -> Tensor {
        let mut t = self.tensor(&src.shape);
        t.data.copy_from_slice(&src.data);
        t
    }

    /// Returns a tensor's memory to the pool.
    pub fn recycle(&self, t: Tensor) {
        self.give(std::iter::once(t.data));
    }

    /// Adds buffers to the pool, keeping at most [`BufferPool::MAX_BUFFERS`] (the largest).
    pub fn give(&self, buffers: impl IntoIterator<Item = Vec<f32>>) {
        let mut free = self.lock();
        free.extend(buffers.into_iter().filter(|b| b.capacity() > 0));
        if free.len() > Self::MAX_BUFFERS {
            free.sort_unstable_by_key(|b| std::cmp::Reverse(b.capacity()));
            free.truncate(Self::MAX_BUFFERS);
        }
    }

    /// Takes every pooled buffer.
    pub fn take(&self) -> Vec<Vec<f32>> {
        std::mem::take(&mut *self.lock())
    }
}

/// Per-run state shared by the operators of one forward (and later backward) pass.
///
/// Caffe keeps the equivalent on the layer objects (`DropoutLayer::rand_vec_`, the phase in
/// `LayerParameter`); the IR layers are plain data, so the caller owns it here instead.
pub struct Ctx {
    /// TRAIN enables Dropout masks and batch statistics in BatchNorm; TEST is deployment.
    pub phase: Phase,
    /// Seeded generator for Dropout masks: the same seed gives the same masks.
    pub rng: StdRng,
    /// Threads an operator may use for one GEMM or one parallel loop (≥ 1).
    pub threads: usize,
    /// Tensors a forward leaves for its backward (Dropout's scaled mask; BatchNorm's batch
    /// mean and variance in TRAIN). The caller clears it before each layer and takes it after.
    pub saved: Vec<Tensor>,
    /// Recycled buffers for layer outputs (and, in training, for diffs).
    pub buffers: BufferPool,
}

impl Ctx {
    /// A context for `phase` whose RNG starts from `seed`, using up to `threads` threads.
    pub fn new(phase: Phase, seed: u64, threads: usize) -> Self {
        Self {
            phase,
            rng: StdRng::seed_from_u64(seed),
            threads: threads.max(1),
            saved: Vec::new(),
            buffers: BufferPool::default(),
        }
    }

    /// A tensor of `shape` whose contents are unspecified (a recycled buffer when one is
    /// large enough). Every operator writes all of its output, so no zeroing is needed.
    pub fn tensor(&mut self, shape: &[usize]) -> Tensor {
        self.buffers.tensor(shape)
    }

    /// Returns a tensor's memory to the pool for later layers.
    pub fn recycle(&mut self, t: Tensor) {
        self.buffers.recycle(t);
    }

    /// Takes every pooled buffer (to keep them across runs).
    pub fn take_pool(&mut self) -> Vec<Vec<f32>> {
        self.buffers.take()
    }

    /// Adds buffers kept from an earlier run to the pool.
    pub fn give_pool(&mut self, buffers: Vec<Vec<f32>>) {
        self.buffers.give(buffers);
    }
}

impl Default for Ctx {
    /// TEST phase, seed 0, one thread.
    fn default() -> Self {
        Self::new(Phase::Test, 0, 1)
    }
}
