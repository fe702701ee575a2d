//! The net and solver files the pipeline trains from, written in Caffe's current (V2)
//! syntax so that `caffe train` could run them too.
//!
//! The net is Levi & Hassner's (CVPR-W 2015, `age_net_definitions/train_val_*.prototxt`):
//! conv1 96@7×7/4 → ReLU → max-pool 3/2 → LRN(5, 1e-4, 0.75) → conv2 256@5×5 pad 2 → ReLU
//! → max-pool 3/2 → LRN → conv3 384@3×3 pad 1 → ReLU → max-pool 3/2 → fc6 512 → ReLU →
//! dropout 0.5 → fc7 512 → ReLU → dropout 0.5 → fc8 (9 age buckets or 2 genders), with the
//! original fillers (conv gaussian 0.01; fc6/fc7 gaussian 0.005 with bias 1; conv2 bias 1),
//! `lr_mult` 1/2 and `decay_mult` 1/0. Data layers read the LMDBs of `data prepare`
//! (227×227 records) with the original transform: mirror in TRAIN, crop 227, mean file.

use std::fmt::Write as _;
use std::path::Path;

/// Which of the two nets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetKind {
    /// AgeNet: 9 age buckets.
    Age,
    /// GenderNet: male / female.
    Gender,
}

impl NetKind {
    /// `AgeNet` or `GenderNet`: the stem of every file of this net.
    pub fn name(self) -> &'static str {
        match self {
            NetKind::Age => "AgeNet",
            NetKind::Gender => "GenderNet",
        }
    }

    /// Output classes.
    pub fn classes(self) -> usize {
        match self {
            NetKind::Age => 9,
            NetKind::Gender => 2,
        }
    }

    /// `age` or `gender`, the prefix of the LMDBs `data prepare` writes.
    pub fn key(self) -> &'static str {
        match self {
            NetKind::Age => "age",
            NetKind::Gender => "gender",
        }
    }
}

/// The solver settings that differ between schedules.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Caffe solver `type` (`SGD`, `Adam`).
    pub method: &'static str,
    /// `base_lr`.
    pub base_lr: f32,
    /// `lr_policy` and its parameters, as prototxt lines.
    pub lr_policy: String,
    /// `momentum` (β₁ for Adam).
    pub momentum: f32,
    /// `weight_decay`.
    pub weight_decay: f32,
    /// `max_iter`.
    pub max_iter: u64,
    /// `test_iter` (batches per test pass).
    pub test_iter: u64,
    /// `test_interval`.
    pub test_interval: u64,
    /// `display`.
    pub display: u64,
    /// `snapshot`.
    pub snapshot: u64,
    /// Training batch size.
    pub batch: usize,
}

impl Schedule {
    /// Levi & Hassner's `solver_test_fold_is_*.prototxt`: SGD lr 0.001, step ×0.1 every
    /// 10,000 iterations, momentum 0.9, weight decay 5e-4, 50,000 iterations of batch 50,
    /// test every 1,000 iterations.
    pub fn original() -> Self {
        Self {
            method: "SGD",
            base_lr: 0.001,
            lr_policy: "lr_policy: \"step\"\ngamma: 0.1\nstepsize: 10000\n".into(),
            momentum: 0.9,
            weight_decay: 0.0005,
            max_iter: 50_000,
            test_iter: 1000,
            test_interval: 1000,
            display: 20,
            snapshot: 1000,
            batch: 50,
        }
    }

    /// Our schedule for a 2-core CPU: Adam lr 3e-4 (plain SGD at 1e-2 diverged in pilots,
    /// Adam 1e-4 and 3e-4 learned; BASELINES.md), decayed linearly to 0 (`poly`, power 1)
    /// over `max_iter` iterations of batch `batch`, tested `tests` times.
    pub fn tuned(max_iter: u64, batch: usize, test_iter: u64, tests: u64) -> Self {
        let max_iter = max_iter.max(1);
        Self {
            method: "Adam",
            base_lr: 3e-4,
            lr_policy: "lr_policy: \"poly\"\npower: 1\n".into(),
            momentum: 0.9,
            weight_decay: 0.0005,
            max_iter,
            test_iter: test_iter.max(1),
            test_interval: (max_iter / tests.max(1)).max(1),
            display: (max_iter / 20).clamp(1, 20),
            snapshot: max_iter,
            batch,
        }
    }
}

/// A solver prototxt for `net_file`, snapshots under `snapshot_prefix`.
pub fn solver_prototxt(schedule: &Schedule, net_file: &Path, snapshot_prefix: &Path) -> String {
    let s = schedule;
    let mut out = String::new();
    let _ = write!(
        out,
        "# Written by agegender pipeline.\nnet: \"{}\"\ntype: \"{}\"\nbase_lr: {}\n{}momentum: {}\n\
         weight_decay: {}\nmax_iter: {}\ntest_iter: {}\ntest_interval: {}\ndisplay: {}\n\
         snapshot: {}\nsnapshot_prefix: \"{}\"\nsolver_mode: CPU\nrandom_seed: 1701\n",
        net_file.display(),
        s.method,
        s.base_lr,
        s.lr_policy,
        s.momentum,
        s.weight_decay,
        s.max_iter,
        s.test_iter,
        s.test_interval,
        s.display,
        s.snapshot,
        snapshot_prefix.display(),
    );
    if s.method == "Adam" {
        out.push_str("momentum2: 0.999\ndelta: 1e-8\n");
    }
    out
}

/// The layers from conv1 to fc8, shared by the train_val and deploy files.
fn body(classes: usize) -> String {
    let conv = |name: &str,
                bottom: &str,
                n: usize,
                k: usize,
                stride: usize,
                pad: usize,
                bias: f32| {
        format!(
            "layer {{\n  name: \"{name}\"\n  type: \"Convolution\"\n  bottom: \"{bottom}\"\n  top: \"{name}\"\n  \
             param {{ lr_mult: 1 decay_mult: 1 }}\n  param {{ lr_mult: 2 decay_mult: 0 }}\n  \
             convolution_param {{\n    num_output: {n}\n    kernel_size: {k}\n    stride: {stride}\n    pad: {pad}\n    \
             weight_filler {{ type: \"gaussian\" std: 0.01 }}\n    bias_filler {{ type: \"constant\" value: {bias} }}\n  }}\n}}\n"
        )
    };
    let relu = |name: &str, blob: &str| {
        format!("layer {{\n  name: \"{name}\"\n  type: \"ReLU\"\n  bottom: \"{blob}\"\n  top: \"{blob}\"\n}}\n")
    };
    let pool = |name: &str, bottom: &str| {
        format!(
            "layer {{\n  name: \"{name}\"\n  type: \"Pooling\"\n  bottom: \"{bottom}\"\n  top: \"{name}\"\n  \
             pooling_param {{ pool: MAX kernel_size: 3 stride: 2 }}\n}}\n"
        )
    };
    let lrn = |name: &str, bottom: &str| {
        format!(
            "layer {{\n  name: \"{name}\"\n  type: \"LRN\"\n  bottom: \"{bottom}\"\n  top: \"{name}\"\n  \
             lrn_param {{ local_size: 5 alpha: 0.0001 beta: 0.75 }}\n}}\n"
        )
    };
    let fc = |name: &str, bottom: &str, n: usize, std: f32, bias: f32, mult: (u32, u32)| {
        format!(
            "layer {{\n  name: \"{name}\"\n  type: \"InnerProduct\"\n  bottom: \"{bottom}\"\n  top: \"{name}\"\n  \
             param {{ lr_mult: {} decay_mult: 1 }}\n  param {{ lr_mult: {} decay_mult: 0 }}\n  \
             inner_product_param {{\n    num_output: {n}\n    \
             weight_filler {{ type: \"gaussian\" std: {std} }}\n    bias_filler {{ type: \"constant\" value: {bias} }}\n  }}\n}}\n",
            mult.0, mult.1
        )
    };
    let drop = |name: &str, blob: &str| {
        format!(
            "layer {{\n  name: \"{name}\"\n  type: \"Dropout\"\n  bottom: \"{blob}\"\n  top: \"{blob}\"\n  \
             dropout_param {{ dropout_ratio: 0.5 }}\n}}\n"
        )
    };
    [
        conv("conv1", "data", 96, 7, 4, 0, 0.0),
        relu("relu1", "conv1"),
        pool("pool1", "conv1"),
        lrn("norm1", "pool1"),
        conv("conv2", "norm1", 256, 5, 1, 2, 1.0),
        relu("relu2", "conv2"),
        pool("pool2", "conv2"),
        lrn("norm2", "pool2"),
        conv("conv3", "norm2", 384, 3, 1, 1, 0.0),
        relu("relu3", "conv3"),
        pool("pool5", "conv3"),
        fc("fc6", "pool5", 512, 0.005, 1.0, (1, 2)),
        relu("relu6", "fc6"),
        drop("drop6", "fc6"),
        fc("fc7", "fc6", 512, 0.005, 1.0, (1, 2)),
        relu("relu7", "fc7"),
        drop("drop7", "fc7"),
        fc("fc8", "fc7", classes, 0.01, 0.0, (10, 20)),
    ]
    .concat()
}

/// The train_val net: LMDB Data layers for TRAIN (`train_lmdb`, batch `batch`, mirror) and
/// TEST (`test_lmdb`, batch 50), the mean file, then the body, `SoftmaxWithLoss` and a TEST
/// `Accuracy`.
pub fn train_val_prototxt(
    kind: NetKind,
    train_lmdb: &Path,
    test_lmdb: &Path,
    mean_file: &Path,
    batch: usize,
    test_batch: usize,
    input: usize,
) -> String {
    let data = |phase: &str, source: &Path, batch: usize, mirror: bool| {
        format!(
            "layer {{\n  name: \"data\"\n  type: \"Data\"\n  top: \"data\"\n  top: \"label\"\n  \
             include {{ phase: {phase} }}\n  transform_param {{\n    mirror: {mirror}\n    crop_size: {input}\n    \
             mean_file: \"{}\"\n  }}\n  data_param {{\n    source: \"{}\"\n    batch_size: {batch}\n    backend: LMDB\n  }}\n}}\n",
            mean_file.display(),
            source.display()
        )
    };
    format!(
        "# Written by agegender pipeline: Levi & Hassner's {} (V2 syntax).\nname: \"{}\"\n{}{}{}\
         layer {{\n  name: \"accuracy\"\n  type: \"Accuracy\"\n  bottom: \"fc8\"\n  bottom: \"label\"\n  top: \"accuracy\"\n  include {{ phase: TEST }}\n}}\n\
         layer {{\n  name: \"loss\"\n  type: \"SoftmaxWithLoss\"\n  bottom: \"fc8\"\n  bottom: \"label\"\n  top: \"loss\"\n}}\n",
        kind.name(),
        kind.name(),
        data("TRAIN", train_lmdb, batch, true),
        data("TEST", test_lmdb, test_batch, false),
        body(kind.classes())
    )
}

/// The deploy net: an `Input` of 1×3×`input`×`input` (227 in Levi & Hassner), the body
/// and a `Softmax` named `prob`.
pub fn deploy_prototxt(kind: NetKind, input: usize) -> String {
    format!(
        "# Written by agegender pipeline: Levi & Hassner's {} for deployment.\nname: \"{}\"\n\
         layer {{\n  name: \"data\"\n  type: \"Input\"\n  top: \"data\"\n  input_param {{ shape {{ dim: 1 dim: 3 dim: {input} dim: {input} }} }}\n}}\n\
         {}layer {{\n  name: \"prob\"\n  type: \"Softmax\"\n  bottom: \"fc8\"\n  top: \"prob\"\n}}\n",
        kind.name(),
        kind.name(),
        body(kind.classes())
    )
}
