//! The forward context every operator receives: phase, seeded RNG, thread budget, the state a
//! layer saves for its backward pass, and a pool of recycled buffers so that a run does not
//! allocate (and page-fault) fresh memory for every layer.

use crate::ir::{Phase, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;

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
    free: Vec<Vec<f32>>,
}

impl Ctx {
    /// A context for `phase` whose RNG starts from `seed`, using up to `threads` threads.
    pub fn new(phase: Phase, seed: u64, threads: usize) -> Self {
        Self {
            phase,
            rng: StdRng::seed_from_u64(seed),
            threads: threads.max(1),
            saved: Vec::new(),
            free: Vec::new(),
        }
    }

    /// A tensor of `shape` whose contents are unspecified (a recycled buffer when one is
    /// large enough). Every operator writes all of its output, so no zeroing is needed.
    pub fn tensor(&mut self, shape: &[usize]) -> Tensor {
        let len: usize = shape.iter().product();
        // Best fit: the smallest free buffer that already holds `len` values.
        let pick = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        let mut data = match pick {
            Some(i) => self.free.swap_remove(i),
            None => Vec::with_capacity(len),
        };
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

    /// Returns a tensor's memory to the pool for later layers.
    pub fn recycle(&mut self, t: Tensor) {
        if t.data.capacity() > 0 {
            self.free.push(t.data);
        }
    }

    /// Takes every pooled buffer (to keep them across runs).
    pub fn take_pool(&mut self) -> Vec<Vec<f32>> {
        std::mem::take(&mut self.free)
    }

    /// Adds buffers kept from an earlier run to the pool.
    pub fn give_pool(&mut self, buffers: Vec<Vec<f32>>) {
        self.free.extend(buffers);
    }
}

impl Default for Ctx {
    /// TEST phase, seed 0, one thread.
    fn default() -> Self {
        Self::new(Phase::Test, 0, 1)
    }
}
