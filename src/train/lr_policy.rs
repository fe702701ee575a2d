//! Learning-rate policies, exactly as Caffe's `SGDSolver::GetLearningRate` computes them.
//!
//! `iter` is the number of updates already applied (Caffe's `iter_`), so update 0 uses
//! `iter = 0`. Where Caffe raises a float to an integer power (`step`, `multistep`, `exp`)
//! C++ promotes to double, so those are evaluated in f64 and rounded once to f32; `inv`,
//! `poly` and `sigmoid` work on floats throughout, as Caffe's `Dtype` expressions do.

/// One of Caffe's `lr_policy` strings with the parameters it reads.
#[derive(Debug, Clone, PartialEq)]
pub enum LrPolicy {
    /// `base_lr`.
    Fixed,
    /// `base_lr · gamma ^ floor(iter / stepsize)`.
    Step {
        /// `gamma`.
        gamma: f32,
        /// `stepsize` (> 0).
        stepsize: u32,
    },
    /// `base_lr · gamma ^ k` where k counts the `stepvalue`s reached so far.
    MultiStep {
        /// `gamma`.
        gamma: f32,
        /// `stepvalue`s, increasing.
        stepvalues: Vec<u32>,
    },
    /// `base_lr · gamma ^ iter`.
    Exp {
        /// `gamma`.
        gamma: f32,
    },
    /// `base_lr · (1 + gamma · iter) ^ (−power)`.
    Inv {
        /// `gamma`.
        gamma: f32,
        /// `power`.
        power: f32,
    },
    /// `base_lr · (1 − iter / max_iter) ^ power`.
    Poly {
        /// `power`.
        power: f32,
        /// `max_iter` (> 0).
        max_iter: u32,
    },
    /// `base_lr / (1 + exp(−gamma · (iter − stepsize)))`.
    Sigmoid {
        /// `gamma`.
        gamma: f32,
        /// `stepsize`.
        stepsize: u32,
    },
}

impl LrPolicy {
    /// Caffe's policy name.
    pub fn name(&self) -> &'static str {
        match self {
            LrPolicy::Fixed => "fixed",
            LrPolicy::Step { .. } => "step",
            LrPolicy::MultiStep { .. } => "multistep",
            LrPolicy::Exp { .. } => "exp",
            LrPolicy::Inv { .. } => "inv",
            LrPolicy::Poly { .. } => "poly",
            LrPolicy::Sigmoid { .. } => "sigmoid",
        }
    }

    /// The rate for update `iter`. `current_step` is Caffe's `current_step_`, which the
    /// solver state stores: `step` overwrites it with `iter / stepsize`, and `multistep`
    /// advances it by at most one per call when `iter` reaches the next step value (Caffe
    /// uses an `if`, not a loop, so a resumed run catches up one step per iteration).
    pub fn rate(&self, base_lr: f32, iter: u64, current_step: &mut u32) -> f32 {
        let pow_f64 = |gamma: f32, e: f64| (base_lr as f64 * (gamma as f64).powf(e)) as f32;
        match self {
            LrPolicy::Fixed => base_lr,
            LrPolicy::Step { gamma, stepsize } => {
                *current_step = (iter / u64::from(*stepsize)) as u32;
                pow_f64(*gamma, f64::from(*current_step))
            }
            LrPolicy::MultiStep { gamma, stepvalues } => {
                if let Some(&next) = stepvalues.get(*current_step as usize) {
                    if iter >= u64::from(next) {
                        *current_step += 1;
                    }
                }
                pow_f64(*gamma, f64::from(*current_step))
            }
            LrPolicy::Exp { gamma } => pow_f64(*gamma, iter as f64),
            LrPolicy::Inv { gamma, power } => base_lr * (1.0f32 + gamma * iter as f32).powf(-power),
            LrPolicy::Poly { power, max_iter } => {
                base_lr * (1.0f32 - iter as f32 / *max_iter as f32).powf(*power)
            }
            LrPolicy::Sigmoid { gamma, stepsize } => {
                base_lr * (1.0f32 / (1.0f32 + (-gamma * (iter as f32 - *stepsize as f32)).exp()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(p: &LrPolicy, base: f32, iters: &[u64]) -> Vec<f32> {
        let mut step = 0;
        iters.iter().map(|&i| p.rate(base, i, &mut step)).collect()
    }

    fn close(a: f32, b: f64) -> bool {
        ((a as f64) - b).abs() <= 1e-6 * b.abs().max(1e-12)
    }

    #[test]
    fn step_drops_by_gamma_every_stepsize_updates() {
        // The caffe-oracle step10 run logs lr 0.001 for updates 0-9, 1e-4 for 10-19 and
        // 1e-5 for 20-29.
        let p = LrPolicy::Step {
            gamma: 0.1,
            stepsize: 10,
        };
        let r = rates(&p, 0.001, &[0, 9, 10, 19, 20, 29]);
        for (got, want) in r.iter().zip([1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5]) {
            assert!(close(*got, want), "{r:?}");
        }
        let mut step = 0;
        p.rate(0.001, 25, &mut step);
        assert_eq!(step, 2);
    }

    #[test]
    fn multistep_advances_once_per_call_like_caffe() {
        let p = LrPolicy::MultiStep {
            gamma: 0.5,
            stepvalues: vec![3, 5],
        };
        let r = rates(&p, 1.0, &[0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(r, vec![1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25]);
        // Resuming at iter 10 with current_step 0 catches up one step per call.
        let mut step = 0;
        assert_eq!(p.rate(1.0, 10, &mut step), 0.5);
        assert_eq!(p.rate(1.0, 11, &mut step), 0.25);
        assert_eq!(p.rate(1.0, 12, &mut step), 0.25);
    }

    #[test]
    fn exp_inv_poly_sigmoid_match_hand_computed_values() {
        // exp: 0.01 · 0.9^3 = 0.00729
        let r = rates(&LrPolicy::Exp { gamma: 0.9 }, 0.01, &[3]);
        assert!(close(r[0], 0.00729), "{r:?}");
        // inv: 0.01 · (1 + 1e-4 · 100)^-0.75 = 0.01 · 1.01^-0.75 = 0.0092565...
        let r = rates(
            &LrPolicy::Inv {
                gamma: 1e-4,
                power: 0.75,
            },
            0.01,
            &[100],
        );
        assert!(close(r[0], 0.01 * 1.01f64.powf(-0.75)), "{r:?}");
        // poly: 0.1 · (1 − 250/1000)^2 = 0.05625; 0 at max_iter.
        let p = LrPolicy::Poly {
            power: 2.0,
            max_iter: 1000,
        };
        let r = rates(&p, 0.1, &[250, 1000]);
        assert!(close(r[0], 0.05625), "{r:?}");
        assert_eq!(r[1], 0.0);
        // sigmoid: 0.1 / (1 + e^(−0.5·(12 − 10))) = 0.1 / (1 + e^−1) = 0.0731059
        let r = rates(
            &LrPolicy::Sigmoid {
                gamma: 0.5,
                stepsize: 10,
            },
            0.1,
            &[12, 10],
        );
        assert!(close(r[0], 0.1 / (1.0 + (-1.0f64).exp())), "{r:?}");
        assert!(close(r[1], 0.05), "{r:?}");
        assert_eq!(rates(&LrPolicy::Fixed, 0.25, &[0, 7]), vec![0.25, 0.25]);
    }
}
