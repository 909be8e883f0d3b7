//! Weight initializers, all drawn from a caller's seeded RNG (same seed, same weights).

use ndarray::{Array1, Array2, s};
use ndarray_rand::RandomExt;
use ndarray_rand::rand_distr::{StandardNormal, Uniform};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::{Error, Float, Result};

/// How a layer's parameters are first drawn.
///
/// * [`Init::Glorot`] (the default, Keras's): input weights Glorot/Xavier uniform
///   U(−a, a) with a = √(6 / (fan_in + fan_out)), where a recurrent layer's fans are `I` and `G·H`
///   (the fused gate matrix); recurrent weights orthogonal, each gate's `H×H` block on its own;
///   biases zero, except the LSTM forget gate's `bias_ih` block, which is 1.
/// * [`Init::Torch`]: PyTorch's default, every parameter (biases included) from
///   U(−1/√H, 1/√H) for a recurrent layer and U(−1/√in, 1/√in) for a dense one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// Glorot uniform input weights, orthogonal recurrent blocks, zero biases (LSTM forget bias 1).
    #[default]
    Glorot,
    /// PyTorch's U(−1/√fan, 1/√fan) for every parameter.
    Torch,
}

/// A `[rows, cols]` matrix from U(−limit, limit).
pub fn uniform<F: Float, R: Rng + ?Sized>(
    rows: usize,
    cols: usize,
    limit: f64,
    rng: &mut R,
) -> Result<Array2<F>> {
    let dist = uniform_dist(limit)?;
    Ok(Array2::<f64>::random_using((rows, cols), dist, rng).mapv(F::from_f64))
}

/// A length-`len` vector from U(−limit, limit).
pub fn uniform_vector<F: Float, R: Rng + ?Sized>(
    len: usize,
    limit: f64,
    rng: &mut R,
) -> Result<Array1<F>> {
    let dist = uniform_dist(limit)?;
    Ok(Array1::<f64>::random_using(len, dist, rng).mapv(F::from_f64))
}

fn uniform_dist(limit: f64) -> Result<Uniform<f64>> {
    if !(limit.is_finite() && limit > 0.0) {
        return Err(Error::config(
            "initializer limit",
            format!("{limit} is not a positive finite number"),
        ));
    }
    Uniform::new_inclusive(-limit, limit)
        .map_err(|e| Error::config("initializer limit", e.to_string()))
}

/// Glorot/Xavier uniform `[fan_out, fan_in]` matrix (PyTorch's weight layout):
/// U(−a, a), a = √(6 / (fan_in + fan_out)).
pub fn glorot_uniform<F: Float, R: Rng + ?Sized>(
    fan_out: usize,
    fan_in: usize,
    rng: &mut R,
) -> Result<Array2<F>> {
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
    uniform(fan_out, fan_in, limit, rng)
}

/// A random `n×n` orthogonal matrix: Q of the QR factorization of a standard Gaussian matrix,
/// with each column's sign set so that diag(R) > 0 (which makes Q Haar-distributed).
///
/// The QR is a hand-written Householder factorization in f64; no LAPACK.
pub fn orthogonal<F: Float, R: Rng + ?Sized>(n: usize, rng: &mut R) -> Array2<F> {
    let gaussian = Array2::<f64>::random_using((n, n), StandardNormal, rng);
    householder_q(gaussian).mapv(F::from_f64)
}

/// The orthogonal factor Q of A = QR (square A), with sign(diag R) folded into Q.
fn householder_q(mut a: Array2<f64>) -> Array2<f64> {
    let n = a.nrows();
    // Householder vectors v_k (unit, stored densely) and the signs of R's diagonal.
    let mut vectors: Vec<Array1<f64>> = Vec::with_capacity(n);
    let mut diag_sign = vec![1.0; n];
    for k in 0..n {
        let x = a.slice(s![k.., k]).to_owned();
        let norm = x.dot(&x).sqrt();
        let mut v = x;
        if norm == 0.0 {
            vectors.push(Array1::zeros(n - k));
            continue;
        }
        // alpha = −sign(x0)·‖x‖ avoids cancellation in v = x − alpha·e0.
        let alpha = if v[0] >= 0.0 { -norm } else { norm };
        v[0] -= alpha;
        let v_norm = v.dot(&v).sqrt();
        if v_norm > 0.0 {
            v /= v_norm;
            // A[k.., k..] ← (I − 2 v vᵀ) A[k.., k..]
            let mut block = a.slice_mut(s![k.., k..]);
            let w = v.dot(&block); // vᵀ A
            for (i, &vi) in v.iter().enumerate() {
                let mut row = block.row_mut(i);
                row.scaled_add(-2.0 * vi, &w);
            }
        }
        diag_sign[k] = if a[[k, k]] < 0.0 { -1.0 } else { 1.0 };
        vectors.push(v);
    }
    // Q = H_0 H_1 … H_{n−1}: apply the reflections to the identity from the last one back.
    let mut q = Array2::<f64>::eye(n);
    for k in (0..n).rev() {
        let v = &vectors[k];
        let mut block = q.slice_mut(s![k.., ..]);
        let w = v.dot(&block);
        for (i, &vi) in v.iter().enumerate() {
            block.row_mut(i).scaled_add(-2.0 * vi, &w);
        }
    }
    for (j, &sign) in diag_sign.iter().enumerate() {
        if sign < 0.0 {
            q.column_mut(j).mapv_inplace(|x| -x);
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn orthogonal_matrices_are_orthogonal() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for n in [1, 2, 5, 16, 33] {
            let q: Array2<f64> = orthogonal(n, &mut rng);
            let qtq = q.t().dot(&q);
            let err = (&qtq - &Array2::<f64>::eye(n))
                .mapv(f64::abs)
                .fold(0.0, |m: f64, &x| m.max(x));
            assert!(err < 1e-12, "n = {n}: ‖QᵀQ − I‖∞ = {err}");
        }
    }

    #[test]
    fn same_seed_gives_same_weights() {
        let a: Array2<f32> = glorot_uniform(8, 3, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        let b: Array2<f32> = glorot_uniform(8, 3, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        assert_eq!(a, b);
        let limit = (6.0f32 / 11.0).sqrt();
        assert!(a.iter().all(|&x| x.abs() <= limit));
    }
}
