//! The parameter update, in the order of Caffe's `SGDSolver::ApplyUpdate`:
//!
//! 1. `GetLearningRate` for the current iteration;
//! 2. `ClipGradients`: when the global L2 norm of all diffs exceeds `clip_gradients`, every
//!    diff is scaled by `clip_gradients / norm` (before regularisation, as Caffe does);
//! 3. per parameter: `Normalize` (divide by `iter_size`), `Regularize` (L2 `∇ += λ·m·W` or
//!    L1 `∇ += λ·m·sign(W)`, with m = `decay_mult`), `ComputeUpdateValue` (SGD
//!    `V ← μV + lr·lr_mult·∇`, the diff becomes V; Nesterov, AdaGrad, RMSProp, AdaDelta and
//!    Adam as Caffe's solvers);
//! 4. `Net::Update`: `W ← W − diff`.
//!
//! This is Caffe's form, not PyTorch's (`v ← μv + ∇; W ← W − lr·v`); the two differ right
//! after an lr step. The arithmetic is f32 in Caffe's operation order.

use super::config::{Method, Regularization, SolverConfig};
use crate::ir::Tensor;

/// Learnable parameters that do not fit the solver's history (e.g. a solverstate from
/// another net).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SolverError {
    /// A different number of learnable blobs.
    #[error(
        "the net has {found} learnable parameter blobs but the solver history holds {expected}"
    )]
    ParamCount {
        /// Blobs the history was made for.
        expected: usize,
        /// Blobs given.
        found: usize,
    },
    /// A blob of another size, or a diff whose size differs from its value's.
    #[error("learnable parameter {index}: {found} values where {expected} were expected")]
    ParamSize {
        /// Position in the learnable list.
        index: usize,
        /// Size of the history blob.
        expected: usize,
        /// Size given.
        found: usize,
    },
}

/// One learnable blob with its gradient and multipliers (Caffe's `learnable_params_` entry
/// with `params_lr_` and `params_weight_decay_`).
pub struct Learnable<'a> {
    /// The weights, updated in place.
    pub value: &'a mut [f32],
    /// The accumulated gradient; overwritten with the update step, as in Caffe.
    pub diff: &'a mut [f32],
    /// `lr_mult`.
    pub lr_mult: f32,
    /// `decay_mult`.
    pub decay_mult: f32,
}

/// The solver: configuration, iteration counter and history (momentum and the other
/// per-method buffers), i.e. exactly what a `.solverstate` stores.
#[derive(Debug, Clone, PartialEq)]
pub struct Solver {
    /// The resolved solver file.
    pub config: SolverConfig,
    /// Updates applied so far (Caffe's `iter_`).
    pub iter: u64,
    /// Caffe's `current_step_` (for `step` and `multistep`).
    pub current_step: u32,
    /// History blobs: one per learnable blob, then (AdaDelta, Adam) a second set.
    pub history: Vec<Tensor>,
}

impl Solver {
    /// A fresh solver with zero history shaped like the learnable blobs.
    pub fn new(config: SolverConfig, param_shapes: &[Vec<usize>]) -> Self {
        let sets = config.method.histories_per_param();
        let history = (0..sets)
            .flat_map(|_| param_shapes.iter().map(|s| Tensor::zeros(s)))
            .collect();
        Self {
            config,
            iter: 0,
            current_step: 0,
            history,
        }
    }

    /// Number of learnable blobs the history was made for.
    pub fn param_count(&self) -> usize {
        self.history.len() / self.config.method.histories_per_param()
    }

    /// The learning rate of the current iteration (updates `current_step` as Caffe does).
    pub fn learning_rate(&mut self) -> f32 {
        let c = &self.config;
        c.lr_policy
            .rate(c.base_lr, self.iter, &mut self.current_step)
    }

    /// Applies one update to every parameter and returns the rate used. Does not advance
    /// `iter`; the training loop does, after the update, as Caffe's `Step` does.
    pub fn apply_update(&mut self, params: &mut [Learnable<'_>]) -> Result<f32, SolverError> {
        let n = self.param_count();
        if params.len() != n {
            return Err(SolverError::ParamCount {
                expected: n,
                found: params.len(),
            });
        }
        for (index, p) in params.iter().enumerate() {
            let expected = self.history[index].len();
            for found in [p.value.len(), p.diff.len()] {
                if found != expected {
                    return Err(SolverError::ParamSize {
                        index,
                        expected,
                        found,
                    });
                }
            }
        }
        let rate = self.learning_rate();
        self.clip_gradients(params);
        for (i, p) in params.iter_mut().enumerate() {
            self.normalize(p);
            self.regularize(p);
            self.compute_update_value(i, p, rate);
            for (w, d) in p.value.iter_mut().zip(p.diff.iter()) {
                *w -= *d;
            }
        }
        Ok(rate)
    }

    fn clip_gradients(&self, params: &mut [Learnable<'_>]) {
        let Some(clip) = self.config.clip_gradients else {
            return;
        };
        let sumsq: f64 = params
            .iter()
            .flat_map(|p| p.diff.iter())
            .map(|&d| f64::from(d) * f64::from(d))
            .sum();
        let norm = sumsq.sqrt() as f32;
        if norm > clip {
            let scale = clip / norm;
            for d in params.iter_mut().flat_map(|p| p.diff.iter_mut()) {
                *d *= scale;
            }
        }
    }

    fn normalize(&self, p: &mut Learnable<'_>) {
        if self.config.iter_size != 1 {
            let s = 1.0f32 / self.config.iter_size as f32;
            p.diff.iter_mut().for_each(|d| *d *= s);
        }
    }

    fn regularize(&self, p: &mut Learnable<'_>) {
        let decay = self.config.weight_decay * p.decay_mult;
        if decay == 0.0 {
            return;
        }
        let zip = p.diff.iter_mut().zip(p.value.iter());
        match self.config.regularization {
            Regularization::L2 => zip.for_each(|(d, &w)| *d += decay * w),
            Regularization::L1 => zip.for_each(|(d, &w)| {
                // caffe_cpu_sign: (0 < x) − (x < 0), so sign(0) = 0.
                let s = f32::from(u8::from(w > 0.0)) - f32::from(u8::from(w < 0.0));
                *d += decay * s
            }),
        }
    }

    fn compute_update_value(&mut self, i: usize, p: &mut Learnable<'_>, rate: f32) {
        let c = &self.config;
        let lr = rate * p.lr_mult;
        let (mu, delta) = (c.momentum, c.delta);
        let n = self.param_count();
        let (first, second) = self.history.split_at_mut(n);
        let h = &mut first[i].data;
        match c.method {
            Method::Sgd => {
                for (g, h) in p.diff.iter_mut().zip(h.iter_mut()) {
                    *h = lr * *g + mu * *h;
                    *g = *h;
                }
            }
            Method::Nesterov => {
                for (g, h) in p.diff.iter_mut().zip(h.iter_mut()) {
                    let previous = *h;
                    *h = lr * *g + mu * *h;
                    *g = (1.0 + mu) * *h - mu * previous;
                }
            }
            Method::AdaGrad => {
                for (g, h) in p.diff.iter_mut().zip(h.iter_mut()) {
                    *h += *g * *g;
                    *g = lr * (*g / (h.sqrt() + delta));
                }
            }
            Method::RmsProp => {
                let d = c.rms_decay;
                for (g, h) in p.diff.iter_mut().zip(h.iter_mut()) {
                    *h = (1.0 - d) * (*g * *g) + d * *h;
                    *g = lr * (*g / (h.sqrt() + delta));
                }
            }
            Method::AdaDelta => {
                let hu = &mut second[i].data;
                for ((g, h), hu) in p.diff.iter_mut().zip(h.iter_mut()).zip(hu.iter_mut()) {
                    *h = (1.0 - mu) * (*g * *g) + mu * *h;
                    let step = *g * ((delta + *hu) / (delta + *h)).sqrt();
                    *hu = (1.0 - mu) * (step * step) + mu * *hu;
                    *g = lr * step;
                }
            }
            Method::Adam => {
                let (b1, b2) = (c.momentum, c.momentum2);
                // Caffe: pow(float, int) promotes to double; the quotient is stored as float.
                let t = (self.iter + 1).min(i32::MAX as u64) as i32;
                let correction =
                    ((1.0 - f64::from(b2).powi(t)).sqrt() / (1.0 - f64::from(b1).powi(t))) as f32;
                let scale = lr * correction;
                let v = &mut second[i].data;
                for ((g, m), v) in p.diff.iter_mut().zip(h.iter_mut()).zip(v.iter_mut()) {
                    *m = (1.0 - b1) * *g + b1 * *m;
                    *v = (1.0 - b2) * (*g * *g) + b2 * *v;
                    *g = scale * (*m / (v.sqrt() + delta));
                }
            }
        }
    }
}

/// The displayed loss: Caffe's `UpdateSmoothedLoss`, a running mean over the last
/// `average_loss` iterations (a ring buffer indexed by `iter − start_iter`).
#[derive(Debug, Clone, PartialEq)]
pub struct SmoothedLoss {
    window: usize,
    losses: Vec<f32>,
    value: f32,
}

impl SmoothedLoss {
    /// An empty average over `window` (≥ 1) iterations.
    pub fn new(window: usize) -> Self {
        Self {
            window: window.max(1),
            losses: Vec::new(),
            value: 0.0,
        }
    }

    /// Adds the loss of iteration `iter` of a run that started at `start_iter`; returns the
    /// smoothed value.
    pub fn update(&mut self, loss: f32, iter: u64, start_iter: u64) -> f32 {
        if self.losses.len() < self.window {
            self.losses.push(loss);
            let size = self.losses.len() as f32;
            self.value = (self.value * (size - 1.0) + loss) / size;
        } else {
            let idx = ((iter - start_iter) % self.window as u64) as usize;
            self.value += (loss - self.losses[idx]) / self.window as f32;
            self.losses[idx] = loss;
        }
        self.value
    }

    /// The current smoothed loss.
    pub fn value(&self) -> f32 {
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::NetSource;
    use super::super::lr_policy::LrPolicy;
    use super::*;

    fn config(method: Method, policy: LrPolicy) -> SolverConfig {
        SolverConfig {
            method,
            base_lr: 0.1,
            lr_policy: policy,
            momentum: 0.9,
            momentum2: 0.999,
            delta: 1e-8,
            rms_decay: 0.99,
            weight_decay: 0.01,
            regularization: Regularization::L2,
            clip_gradients: None,
            iter_size: 1,
            max_iter: 10,
            display: 0,
            average_loss: 1,
            test_interval: 0,
            test_initialization: true,
            snapshot: 0,
            snapshot_prefix: None,
            snapshot_after_train: true,
            random_seed: None,
            train_net: NetSource::File("n".into()),
            test_nets: vec![],
        }
    }

    /// One update of a single-value parameter with gradient `g`.
    fn step(s: &mut Solver, w: &mut f32, g: f32, lr_mult: f32, decay_mult: f32) -> f32 {
        let mut value = [*w];
        let mut diff = [g];
        let rate = s
            .apply_update(&mut [Learnable {
                value: &mut value,
                diff: &mut diff,
                lr_mult,
                decay_mult,
            }])
            .unwrap();
        s.iter += 1;
        *w = value[0];
        rate
    }

    fn assert_close(got: f32, want: f64) {
        assert!(
            ((got as f64) - want).abs() <= 1e-6 * want.abs().max(1e-6),
            "got {got}, want {want}"
        );
    }

    #[test]
    fn two_momentum_steps_across_an_lr_step_follow_caffes_form() {
        // base_lr 0.1, step policy stepsize 1 gamma 0.1, μ 0.9, λ 0.01, lr_mult 2.
        // Update 0: rate 0.1, ∇ = 0.5 + 0.01·1 = 0.51, V = 0.2·0.51 = 0.102, W = 0.898.
        // Update 1: rate 0.01, ∇ = 0.5 + 0.01·0.898 = 0.50898,
        //           V = 0.02·0.50898 + 0.9·0.102 = 0.1019796, W = 0.7960204.
        // (PyTorch's form would give v = 0.9·0.51 + 0.50898 and W = 0.898 − 0.01·2·v.)
        let policy = LrPolicy::Step {
            gamma: 0.1,
            stepsize: 1,
        };
        let mut s = Solver::new(config(Method::Sgd, policy), &[vec![1]]);
        let mut w = 1.0f32;
        assert_close(step(&mut s, &mut w, 0.5, 2.0, 1.0), 0.1);
        assert_close(w, 0.898);
        assert_close(s.history[0].data[0], 0.102);
        assert_close(step(&mut s, &mut w, 0.5, 2.0, 1.0), 0.01);
        assert_close(s.history[0].data[0], 0.1019796);
        assert_close(w, 0.7960204);
    }

    #[test]
    fn l1_decay_adds_the_sign_and_decay_mult_zero_skips_it() {
        let mut c = config(Method::Sgd, LrPolicy::Fixed);
        c.regularization = Regularization::L1;
        c.momentum = 0.0;
        let mut s = Solver::new(c, &[vec![1]]);
        // ∇ = 0.5 + 0.01·sign(−3) = 0.49; W = −3 − 0.1·0.49 = −3.049.
        let mut w = -3.0f32;
        step(&mut s, &mut w, 0.5, 1.0, 1.0);
        assert_close(w, -3.049);
        // decay_mult 0: ∇ = 0.5; W = −3.049 − 0.05.
        step(&mut s, &mut w, 0.5, 1.0, 0.0);
        assert_close(w, -3.099);
    }

    #[test]
    fn clipping_scales_all_diffs_by_the_global_norm_before_decay() {
        let mut c = config(Method::Sgd, LrPolicy::Fixed);
        c.clip_gradients = Some(1.0);
        c.momentum = 0.0;
        let mut s = Solver::new(c, &[vec![1], vec![1]]);
        // Diffs (3, 4): norm 5 > 1, scaled to (0.6, 0.8); then decay 0.01·W is added:
        // W0 = 1 − 0.1·(0.6 + 0.01) = 0.939; W1 = 2 − 0.1·(0.8 + 0.02) = 1.918.
        let (mut a, mut b) = ([1.0f32], [2.0f32]);
        let (mut da, mut db) = ([3.0f32], [4.0f32]);
        s.apply_update(&mut [
            Learnable {
                value: &mut a,
                diff: &mut da,
                lr_mult: 1.0,
                decay_mult: 1.0,
            },
            Learnable {
                value: &mut b,
                diff: &mut db,
                lr_mult: 1.0,
                decay_mult: 1.0,
            },
        ])
        .unwrap();
        assert_close(a[0], 0.939);
        assert_close(b[0], 1.918);
    }

    #[test]
    fn iter_size_divides_the_accumulated_gradient() {
        let mut c = config(Method::Sgd, LrPolicy::Fixed);
        c.iter_size = 4;
        c.weight_decay = 0.0;
        c.momentum = 0.0;
        let mut s = Solver::new(c, &[vec![1]]);
        let mut w = 1.0f32;
        // Four passes accumulated a diff of 2.0: mean 0.5, W = 1 − 0.1·0.5.
        step(&mut s, &mut w, 2.0, 1.0, 1.0);
        assert_close(w, 0.95);
    }

    #[test]
    fn nesterov_adagrad_rmsprop_adadelta_adam_match_hand_computed_steps() {
        let mut c = config(Method::Nesterov, LrPolicy::Fixed);
        c.weight_decay = 0.0;
        // Nesterov: h = 0.1·1 = 0.1, step = 1.9·0.1 − 0.9·0 = 0.19; then
        // h = 0.1 + 0.09 = 0.19, step = 1.9·0.19 − 0.9·0.1 = 0.271.
        let mut s = Solver::new(c.clone(), &[vec![1]]);
        let mut w = 0.0f32;
        step(&mut s, &mut w, 1.0, 1.0, 1.0);
        assert_close(w, -0.19);
        step(&mut s, &mut w, 1.0, 1.0, 1.0);
        assert_close(w, -0.461);

        // AdaGrad: h = 4, step = 0.1·2/(2 + 1e-8) ≈ 0.1; then h = 8, step = 0.1·2/√8.
        c.method = Method::AdaGrad;
        c.momentum = 0.0;
        let mut s = Solver::new(c.clone(), &[vec![1]]);
        let mut w = 0.0f32;
        step(&mut s, &mut w, 2.0, 1.0, 1.0);
        assert_close(w, -0.1);
        step(&mut s, &mut w, 2.0, 1.0, 1.0);
        assert_close(w, -0.1 - 0.2 / 8f64.sqrt());

        // RMSProp: h = 0.01·4 = 0.04, step = 0.1·2/0.2 = 1.
        c.method = Method::RmsProp;
        let mut s = Solver::new(c.clone(), &[vec![1]]);
        let mut w = 0.0f32;
        step(&mut s, &mut w, 2.0, 1.0, 1.0);
        assert_close(w, -1.0);

        // AdaDelta (μ 0.9, δ 1e-8 → use δ = 0.01 to make it visible): h = 0.1·4 = 0.4,
        // step = 2·√(0.01/0.41), hu = 0.1·step², update = 0.1·step.
        c.method = Method::AdaDelta;
        c.momentum = 0.9;
        c.delta = 0.01;
        let mut s = Solver::new(c.clone(), &[vec![1]]);
        let mut w = 0.0f32;
        step(&mut s, &mut w, 2.0, 1.0, 1.0);
        let st = 2.0 * (0.01f64 / 0.41).sqrt();
        assert_close(w, -0.1 * st);
        assert_close(s.history[1].data[0], 0.1 * st * st);

        // Adam (β1 0.9, β2 0.999, ε 1e-8): m = 0.1·g, v = 0.001·g², correction
        // √0.001/0.1, so the first step is lr·g/|g| = 0.1 regardless of g.
        c.method = Method::Adam;
        c.delta = 1e-8;
        let mut s = Solver::new(c, &[vec![1]]);
        let mut w = 0.0f32;
        step(&mut s, &mut w, 3.0, 1.0, 1.0);
        assert!((w + 0.1).abs() < 1e-5, "{w}");
        assert_eq!(s.history.len(), 2);
    }

    #[test]
    fn mismatched_params_are_errors() {
        let mut s = Solver::new(config(Method::Sgd, LrPolicy::Fixed), &[vec![2]]);
        let (mut v, mut d) = ([0.0f32; 3], [0.0f32; 3]);
        let e = s
            .apply_update(&mut [Learnable {
                value: &mut v,
                diff: &mut d,
                lr_mult: 1.0,
                decay_mult: 1.0,
            }])
            .unwrap_err();
        assert_eq!(
            e,
            SolverError::ParamSize {
                index: 0,
                expected: 2,
                found: 3
            }
        );
        assert!(matches!(
            s.apply_update(&mut []),
            Err(SolverError::ParamCount {
                expected: 1,
                found: 0
            })
        ));
    }

    #[test]
    fn smoothed_loss_is_a_running_mean_over_the_window() {
        let mut s = SmoothedLoss::new(3);
        assert_eq!(s.update(3.0, 0, 0), 3.0);
        assert_eq!(s.update(6.0, 1, 0), 4.5);
        assert_eq!(s.update(9.0, 2, 0), 6.0);
        // Window full: replaces the loss of iteration 0 (3.0) → (6 + 9 + 12) / 3.
        assert_eq!(s.update(12.0, 3, 0), 9.0);
        assert_eq!(s.value(), 9.0);
    }
}
