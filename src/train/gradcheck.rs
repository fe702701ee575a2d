//! Finite-difference gradient checks for the backward passes (tests only), in the manner of
//! Caffe's `GradientChecker`: the objective is a fixed random linear function of the
//! outputs, `L = Σ wᵢ·yᵢ` (accumulated in f64), so the top diff is `w`; each input element
//! is moved by ±`step` and the central difference is compared with the analytic gradient
//! using Caffe's rule `|analytic − numeric| ≤ threshold · max(|analytic|, |numeric|, 1)`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Seeded values in [lo, hi), for inputs and top weights.
pub fn uniform(len: usize, lo: f32, hi: f32, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(lo..hi)).collect()
}

/// Checks `analytic[i]` (the gradient of `Σ weights·forward(inputs)` wrt `inputs[i]`)
/// against central differences. `forward` maps every input to the concatenated outputs.
/// Returns the largest violation ratio (error / allowed) so callers can also report it;
/// panics with the first failing element's position when a check fails.
pub fn check(
    name: &str,
    inputs: &[Vec<f32>],
    weights: &[f32],
    analytic: &[Vec<f32>],
    forward: &mut dyn FnMut(&[Vec<f32>]) -> Vec<f32>,
    step: f32,
    threshold: f64,
) -> f64 {
    assert_eq!(
        inputs.len(),
        analytic.len(),
        "{name}: one gradient per input"
    );
    let objective = |out: &[f32]| -> f64 {
        assert_eq!(out.len(), weights.len(), "{name}: output size");
        out.iter()
            .zip(weights)
            .map(|(&y, &w)| f64::from(y) * f64::from(w))
            .sum()
    };
    let mut worst = 0.0f64;
    let mut x: Vec<Vec<f32>> = inputs.to_vec();
    for (k, grad) in analytic.iter().enumerate() {
        assert_eq!(grad.len(), x[k].len(), "{name}: gradient {k} size");
        for i in 0..x[k].len() {
            let orig = x[k][i];
            x[k][i] = orig + step;
            let plus = objective(&forward(&x));
            x[k][i] = orig - step;
            let minus = objective(&forward(&x));
            x[k][i] = orig;
            let numeric = (plus - minus) / (2.0 * f64::from(step));
            let a = f64::from(grad[i]);
            let allowed = threshold * a.abs().max(numeric.abs()).max(1.0);
            let err = (a - numeric).abs();
            worst = worst.max(err / allowed);
            assert!(
                err <= allowed,
                "{name}: input {k} element {i}: analytic {a}, numeric {numeric}"
            );
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x: &[Vec<f32>]) -> Vec<f32> {
        x[0].iter().map(|v| v * v).collect()
    }

    #[test]
    fn accepts_the_true_derivative() {
        let x = vec![uniform(6, -2.0, 2.0, 1)];
        let w = uniform(6, -1.0, 1.0, 2);
        // d(Σ w·x²)/dx = 2·w·x
        let g = vec![x[0].iter().zip(&w).map(|(x, w)| 2.0 * x * w).collect()];
        let worst = check("square", &x, &w, &g, &mut |x| square(x), 1e-2, 1e-3);
        assert!(worst < 0.5, "{worst}");
    }

    #[test]
    #[should_panic(expected = "element")]
    fn rejects_a_wrong_derivative() {
        let x = vec![uniform(4, 1.0, 2.0, 3)];
        let w = vec![1.0; 4];
        let g = vec![x[0].iter().map(|x| 1.9 * x).collect()];
        check("square", &x, &w, &g, &mut |x| square(x), 1e-2, 1e-3);
    }
}
