//! What one time step of a cell does, and its derivative. The time loop lives in the driver
//! ([`Recurrent`](crate::Recurrent)); a cell never sees more than one step.

use std::fmt::Debug;
use std::ops::Range;

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2, Axis, linalg::general_mat_mul, s};

use super::kernels::{self, Init, Packed};
use crate::Float;

/// The recurrent weights as one step sees them: `W_hh` `[G·H, H]` and `b_hh` `[G·H]`, packed
/// once per sequence for the per-step products.
///
/// Cells reach the recurrent matrix only through [`project`](Self::project) and
/// [`back_project`](Self::back_project), so the product kernel changes in one place. The driver
/// builds one kernel per forward ([`for_forward`](Self::for_forward): `W_hhᵀ` packed per gate
/// block) and one per backward ([`for_backward`](Self::for_backward): `W_hh` packed), before its
/// step loop; the per-step products then neither allocate nor repack. They run on the crate's
/// own micro-kernels: AVX-512F or AVX2 + FMA for `f32` when the CPU has them (detected at run
/// time), a portable kernel otherwise and for `f64`
/// ([`force_portable`](Self::force_portable) selects it everywhere).
#[derive(Debug, Clone)]
pub struct RecurrentKernel<'a, F: Float> {
    weight_hh: ArrayView2<'a, F>,
    bias_hh: ArrayView1<'a, F>,
    hidden: usize,
    /// Gate block g: `W_hh[g·H .. (g+1)·H, :]ᵀ` `[H, H]` packed (for `project`).
    forward: Vec<Packed<F>>,
    /// `W_hh` `[G·H, H]` packed (for `back_project`).
    backward: Option<Packed<F>>,
}

impl<'a, F: Float> RecurrentKernel<'a, F> {
    /// A kernel for forward steps ([`project`](Self::project)): packs `W_hhᵀ` (`[G·H, H]` in,
    /// `G` = rows / H) once.
    pub fn for_forward(weight_hh: ArrayView2<'a, F>, bias_hh: ArrayView1<'a, F>) -> Self {
        let mut kernel = Self::unpacked(weight_hh, bias_hh);
        let (rows, h) = weight_hh.dim();
        if h > 0 && rows % h == 0 {
            let backend = kernels::backend_for::<F>();
            kernel.forward = (0..rows / h)
                .map(|g| Packed::new(h, h, backend, |k, j| weight_hh[[g * h + j, k]]))
                .collect();
        }
        kernel
    }

    /// A kernel for backward steps ([`back_project`](Self::back_project)): packs `W_hh` once.
    pub fn for_backward(weight_hh: ArrayView2<'a, F>, bias_hh: ArrayView1<'a, F>) -> Self {
        let mut kernel = Self::unpacked(weight_hh, bias_hh);
        let (rows, h) = weight_hh.dim();
        let backend = kernels::backend_for::<F>();
        kernel.backward = Some(match weight_hh.as_slice() {
            // Row-major: whole panel rows copied at once.
            Some(w) => Packed::from_row_major(rows, h, w, h, backend),
            None => Packed::new(rows, h, backend, |k, j| weight_hh[[k, j]]),
        });
        kernel
    }

    fn unpacked(weight_hh: ArrayView2<'a, F>, bias_hh: ArrayView1<'a, F>) -> Self {
        RecurrentKernel {
            weight_hh,
            bias_hh,
            hidden: weight_hh.ncols(),
            forward: Vec::new(),
            backward: None,
        }
    }

    /// Makes every kernel built from now on (in this process) use the portable micro-kernel
    /// (`true`), or the fastest one the CPU supports again (`false`). The environment variable
    /// `RECURRENT_PORTABLE=1`, read once, sets `true` from the start. Results agree within
    /// floating-point rounding (the sums run in a different order).
    pub fn force_portable(on: bool) {
        kernels::force_portable(on);
    }

    /// Sets how many threads a recurrent layer's forward and backward may split the batch over
    /// (process-wide; 0 restores the default: the environment variable `RECURRENT_NUM_THREADS`,
    /// read once, else every available core). Only passes with enough work split (about the
    /// M benchmark configuration and up: B·T·G·H² ≥ 5·10⁷ and at least 8 rows per thread);
    /// results are the same for any thread count (rows never interact within a pass).
    pub fn set_threads(threads: usize) {
        kernels::set_threads(threads);
    }

    /// The thread count recurrent passes may use (see [`set_threads`](Self::set_threads)).
    pub fn threads() -> usize {
        kernels::threads()
    }

    /// The micro-kernel a kernel built now would use for `F` on this machine: `"avx512f"`,
    /// `"avx2+fma"` or `"portable"`.
    pub fn backend_name() -> &'static str {
        kernels::backend_for::<F>().name()
    }

    /// `out [B, rows.len()] = h [B, H] · W_hh[rows]ᵀ + b_hh[rows]`.
    ///
    /// On the packed path (a kernel from [`for_forward`](Self::for_forward), `rows` a range of
    /// whole gate blocks, rows of `h` and `out` contiguous) nothing is allocated.
    pub fn project(&self, h: ArrayView2<'_, F>, rows: Range<usize>, mut out: ArrayViewMut2<'_, F>) {
        let hid = self.hidden;
        let (b, k) = h.dim();
        assert_eq!(k, hid, "h has H columns");
        assert_eq!(out.dim(), (b, rows.len()), "out is [B, rows]");
        let aligned = hid > 0 && rows.start.is_multiple_of(hid) && rows.end.is_multiple_of(hid);
        if aligned && !self.forward.is_empty() && row_major(&h) && row_major(&out.view()) {
            let (lda, ldc) = (h.strides()[0] as usize, out.strides()[0] as usize);
            let bias = self.bias_hh.as_slice().expect("bias_hh is contiguous");
            // A zero state (the first step of a sequence started from zeros): the product is
            // the bias alone, so skip it. The test stops at the first non-zero value, so other
            // steps pay one comparison. (A non-finite W_hh then gives the bias on that step
            // instead of 0·∞ = NaN; the next step's product carries the NaN.)
            if h.iter().all(|&v| v == F::zero()) {
                for mut row in out.rows_mut() {
                    row.as_slice_mut()
                        .expect("row-major out")
                        .copy_from_slice(&bias[rows.clone()]);
                }
                return;
            }
            let out_ptr = out.as_mut_ptr();
            for g in rows.start / hid..rows.end / hid {
                let col = g * hid - rows.start;
                // SAFETY: h is [b, H] with row stride lda; out is [b, rows.len()] with row stride
                // ldc, so columns col .. col + H of every row are inside it, and `out` is
                // borrowed mutably for the call.
                unsafe {
                    self.forward[g].gemm_raw(
                        b,
                        0,
                        hid,
                        h.as_ptr(),
                        lda,
                        1,
                        out_ptr.add(col),
                        ldc,
                        Init::Row(&bias[g * hid..(g + 1) * hid]),
                    );
                }
            }
            return;
        }
        let bias = self.bias_hh.slice(s![rows.clone()]);
        let dim = out.raw_dim();
        out.assign(&bias.broadcast(dim).expect("bias row matches output width"));
        let w = self.weight_hh.slice(s![rows, ..]);
        general_mat_mul(F::one(), &h, &w.t(), F::one(), &mut out);
    }

    /// `out [B, H] = β·out + d [B, rows.len()] · W_hh[rows]`, with β = 1 when `accumulate`.
    ///
    /// On the packed path (a kernel from [`for_backward`](Self::for_backward), rows of `d` and
    /// `out` contiguous) nothing is allocated.
    pub fn back_project(
        &self,
        d: ArrayView2<'_, F>,
        rows: Range<usize>,
        mut out: ArrayViewMut2<'_, F>,
        accumulate: bool,
    ) {
        let (b, k) = d.dim();
        assert_eq!(k, rows.len(), "d has rows.len() columns");
        assert_eq!(out.dim(), (b, self.hidden), "out is [B, H]");
        if let Some(packed) = &self.backward
            && rows.end <= packed.rows()
            && row_major(&d)
            && row_major(&out.view())
        {
            let (lda, ldc) = (d.strides()[0] as usize, out.strides()[0] as usize);
            let init = if accumulate {
                Init::Accumulate
            } else {
                Init::Zero
            };
            // SAFETY: d is [b, rows.len()] with row stride lda, out is [b, H] with row stride
            // ldc and borrowed mutably for the call.
            unsafe {
                packed.gemm_raw(
                    b,
                    rows.start,
                    rows.len(),
                    d.as_ptr(),
                    lda,
                    1,
                    out.as_mut_ptr(),
                    ldc,
                    init,
                );
            }
            return;
        }
        let w = self.weight_hh.slice(s![rows, ..]);
        let beta = if accumulate { F::one() } else { F::zero() };
        general_mat_mul(F::one(), &d, &w, beta, &mut out);
    }
}

/// Runs `f` inside a function compiled for AVX2 + FMA when the CPU has them and the portable
/// path is not forced, so the element-wise loops `f` inlines vectorize 8 lanes wide; else runs
/// `f` as is. The arithmetic is the same either way (Rust never fuses a·b + c on its own).
#[inline(always)]
pub(crate) fn elementwise<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if kernels::avx2_elementwise() {
        // SAFETY: the CPU has AVX2 and FMA (checked at run time).
        return unsafe { elementwise_avx2(f) };
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn elementwise_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

simd_fn! {
    /// `out[k] += Σ_r d[r, k]` for `d` row-major with `out.len()` columns.
    fn column_sums<F: Float>(d: &[F], out: &mut [F]) {
        kernels::add_column_sums(d, out.len(), out);
    }
}

/// Whether `a` has contiguous rows at a non-negative row stride (what the packed kernels read).
fn row_major<F>(a: &ArrayView2<'_, F>) -> bool {
    let (rows, cols) = a.dim();
    let s = a.strides();
    (cols <= 1 || s[1] == 1) && (rows <= 1 || s[0] >= cols as isize) && s[0] >= 0
}

/// One forward step, as the driver hands it to a cell. Every buffer is row-major with one
/// row per batch entry (`B` rows); `H` is the hidden size and `G` the cell's gate count.
#[derive(Debug)]
pub struct ForwardStep<'a, 'k, F: Float> {
    /// Batch size `B`.
    pub batch: usize,
    /// Hidden size `H`.
    pub hidden: usize,
    /// `[B, G·H]`: on entry `W_ih x_t + b_ih`; the cell leaves here what its backward needs
    /// (usually the activated gates).
    pub gates: &'a mut [F],
    /// `[B, E·H]`: further values the backward needs (`E` = [`Cell::extra_blocks`]). Its
    /// contents on entry are unspecified (the driver reuses buffers between passes): a cell
    /// writes every element it will read.
    pub extra: &'a mut [F],
    /// `[B, G·H]` scratch for the recurrent product.
    pub scratch: &'a mut [F],
    /// `[B, H]`: h_{t−1}.
    pub h_prev: &'a [F],
    /// `[B, H]`: h_t, every element written by the cell (contents on entry unspecified).
    pub h: &'a mut [F],
    /// `[B, H]`: c_{t−1} for cells with a cell state, else empty.
    pub c_prev: &'a [F],
    /// `[B, H]`: c_t, every element written by cells with a cell state (contents on entry
    /// unspecified), else empty.
    pub c: &'a mut [F],
    /// The recurrent weights, packed for this pass.
    pub kernel: &'k RecurrentKernel<'k, F>,
}

/// One backward step: given ∂L/∂h_t (and ∂L/∂c_t), a cell writes the gradients of its
/// pre-activations and of the previous state.
#[derive(Debug)]
pub struct BackwardStep<'a, 'k, F: Float> {
    /// Batch size `B`.
    pub batch: usize,
    /// Hidden size `H`.
    pub hidden: usize,
    /// `[B, G·H]`: on entry what the forward step left in its `gates`; on exit ∂L/∂(W_ih x_t +
    /// b_ih), the input-side pre-activations' gradient (overwritten in place, so the backward
    /// needs no second `[T·B, G·H]` buffer).
    pub gates: &'a mut [F],
    /// `[B, E·H]`: what the forward step left in `extra`.
    pub extra: &'a [F],
    /// `[B, H]`: h_{t−1}.
    pub h_prev: &'a [F],
    /// `[B, H]`: h_t.
    pub h: &'a [F],
    /// `[B, H]`: c_{t−1}, or empty.
    pub c_prev: &'a [F],
    /// `[B, H]`: ∂L/∂h_t, everything that reaches h_t (the output's gradient plus step t+1's).
    pub d_h: &'a [F],
    /// `[B, H]`: on entry ∂L/∂c_t, on exit ∂L/∂c_{t−1}; empty without a cell state.
    pub d_c: &'a mut [F],
    /// `[B, G·H]`, written when [`Cell::separate_recurrent_grad`]: ∂L/∂(W_hh h_{t−1} + b_hh);
    /// otherwise empty (the two are equal).
    pub d_recurrent: &'a mut [F],
    /// `[B, H]`, written: ∂L/∂h_{t−1}.
    pub d_h_prev: &'a mut [F],
    /// `[B, H]` scratch.
    pub scratch: &'a mut [F],
    /// The recurrent weights, packed for this pass.
    pub kernel: &'k RecurrentKernel<'k, F>,
}

/// A recurrent cell: what one step computes and its derivative. Implemented by
/// [`SimpleRnnCell`](crate::SimpleRnnCell), [`LstmCell`](crate::LstmCell) and
/// [`GruCell`](crate::GruCell); a new cell needs only this trait to get the whole
/// [`Recurrent`](crate::Recurrent) layer (sequence forward, BPTT, state passing).
pub trait Cell: Debug + Clone + Send + Sync + 'static {
    /// Short lower-case name (`"lstm"`).
    fn name(&self) -> &'static str;
    /// The number of gate blocks `G` fused in `W_ih` and `W_hh` (1, 4 or 3).
    fn gates(&self) -> usize;
    /// Whether the state has a cell part `c` besides `h` (LSTM).
    fn has_cell_state(&self) -> bool {
        false
    }
    /// How many `[B, H]` blocks of extra per-step cache the backward needs.
    fn extra_blocks(&self) -> usize {
        0
    }
    /// Whether ∂L/∂(W_hh h + b_hh) differs from ∂L/∂(W_ih x + b_ih) (the reset-after GRU).
    fn separate_recurrent_grad(&self) -> bool {
        false
    }
    /// Sets the initial `bias_ih` (`[G·H]`, zero on entry) for the Glorot scheme.
    fn init_bias_ih<F: Float>(&self, _hidden: usize, _bias_ih: &mut [F]) {}

    /// One forward step.
    fn forward_step<F: Float>(&self, step: ForwardStep<'_, '_, F>);

    /// One backward step.
    fn backward_step<F: Float>(&self, step: BackwardStep<'_, '_, F>);

    /// Adds ∂L/∂W_hh (`[G·H, H]`) given every step's recurrent pre-activation gradient
    /// `d_recurrent` `[N, G·H]`, the previous states `h_prev` `[N, H]` and the extra cache
    /// `[N, E·H]`, `N` rows of steps (`T·B`, or `(T−1)·B` when the first step's `h_{t−1}` is
    /// all zeros: the driver then leaves that step's rows out of all three, as they add
    /// nothing to a product with `h_{t−1}`; a cell whose `∂W_hh` has other terms must not rely on
    /// seeing them). The default is the one product `d_recurrentᵀ · h_prev`.
    fn recurrent_weight_grad<F: Float>(
        &self,
        hidden: usize,
        d_recurrent: ArrayView2<'_, F>,
        h_prev: ArrayView2<'_, F>,
        extra: ArrayView2<'_, F>,
        d_weight_hh: ArrayViewMut2<'_, F>,
    ) {
        let _ = (hidden, extra);
        add_at_b_threaded(d_recurrent, h_prev, d_weight_hh);
    }
}

/// `out [N, P] += aᵀ · b` for `a` `[M, N]`, `b` `[M, P]` (the whole-sequence weight
/// gradients): on this crate's AVX-512 kernel where it applies ([`kernels::add_at_b`]), else
/// on ndarray's `general_mat_mul`, with the rows of `out` split over the recurrent passes'
/// threads when the product is large (the M and L sizes; the result does not depend on the
/// split).
pub(crate) fn add_at_b_threaded<F: Float>(
    a: ArrayView2<'_, F>,
    b: ArrayView2<'_, F>,
    mut out: ArrayViewMut2<'_, F>,
) {
    fn add<F: Float>(a: ArrayView2<'_, F>, b: ArrayView2<'_, F>, mut out: ArrayViewMut2<'_, F>) {
        if !kernels::add_at_b(a, b, out.view_mut()) {
            general_mat_mul(F::one(), &a.t(), &b, F::one(), &mut out);
        }
    }
    let (m, n) = a.dim();
    let p = b.ncols();
    let parts = kernels::batch_parts(n, 1, m, p);
    if parts.len() == 1 {
        add(a, b, out);
        return;
    }
    std::thread::scope(|scope| {
        let mut rest = out.view_mut();
        let mut start = 0;
        for range in parts {
            let (mine, tail) = rest.split_at(Axis(0), range.end - start);
            rest = tail;
            let a_part = a.slice(s![.., range.clone()]);
            let b_view = b.view();
            start = range.end;
            scope.spawn(move || add(a_part, b_view, mine));
        }
    });
}

/// `[rows, cols]` view of a row-major slice (internal: sizes are the driver's own).
pub(crate) fn view2<F>(data: &[F], rows: usize, cols: usize) -> ArrayView2<'_, F> {
    ArrayView2::from_shape((rows, cols), &data[..rows * cols]).expect("buffer sized by the driver")
}

/// Mutable `[rows, cols]` view of a row-major slice.
pub(crate) fn view2_mut<F>(data: &mut [F], rows: usize, cols: usize) -> ArrayViewMut2<'_, F> {
    ArrayViewMut2::from_shape((rows, cols), &mut data[..rows * cols])
        .expect("buffer sized by the driver")
}

/// Sums the rows of `d` `[N, K]` into `out` `[K]`.
pub(crate) fn add_column_sums<F: Float>(d: ArrayView2<'_, F>, out: &mut ndarray::Array1<F>) {
    match (d.as_slice(), out.as_slice_mut()) {
        (Some(d), Some(out)) => column_sums(d, out),
        _ => {
            for row in d.axis_iter(Axis(0)) {
                *out += &row;
            }
        }
    }
}
