//! The per-step recurrent product: a small GEMM whose right-hand matrix (`W_hh`) is packed
//! once per sequence, so the step loop neither allocates nor repacks.
//!
//! A [`Packed`] matrix `B` `[K, N]` is stored in panels of `nr` columns: panel `p` holds, for
//! every `k`, the `nr` values `B[k, p·nr .. p·nr + nr]` contiguously (zero-padded past `N`).
//! A product `C [m, N] (+)= A [m, kc] · B[k0 .. k0 + kc, :]` walks the panels; each panel is
//! multiplied by blocks of `mr` rows of `A` in registers (the micro-kernel), and `A` is read in
//! place (row stride `lda`), never copied.
//!
//! Backends, chosen once per packing: AVX-512F (`nr` = 32, `mr` = 12), AVX2 + FMA (`nr` = 16,
//! `mr` = 6), and a portable kernel (`nr` = 16, `mr` = 4) that is the only one for `f64` and for
//! machines without those extensions. [`force_portable`] (or the environment variable
//! `RECURRENT_PORTABLE=1`, read once) makes every new packing use the portable kernel.

use std::any::TypeId;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use crate::Float;

/// The longest sum one pass over a panel makes (rows of `B` per chunk): 128 rows of a 32-wide
/// panel are 16 KiB, half a typical L1.
const KC: usize = 128;

/// Which micro-kernel a packing is laid out for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// Plain Rust, any element type.
    Portable,
    /// AVX2 + FMA, f32.
    Avx2,
    /// AVX-512F, f32 (feature `avx512`).
    #[cfg_attr(not(feature = "avx512"), allow(dead_code))]
    Avx512,
}

impl Backend {
    /// Panel width.
    fn nr(self) -> usize {
        match self {
            Backend::Portable | Backend::Avx2 => 16,
            Backend::Avx512 => 32,
        }
    }

    /// The name reported by [`backend_name`].
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Portable => "portable",
            Backend::Avx2 => "avx2+fma",
            Backend::Avx512 => "avx512f",
        }
    }
}

/// 0: not decided yet; 1: portable forced; 2: fast paths allowed.
static MODE: AtomicU8 = AtomicU8::new(0);

fn portable_forced() -> bool {
    match MODE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let forced = std::env::var("RECURRENT_PORTABLE").is_ok_and(|v| v == "1");
            // A concurrent force_portable wins: only replace the undecided state.
            let _ = MODE.compare_exchange(
                0,
                if forced { 1 } else { 2 },
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            MODE.load(Ordering::Relaxed) == 1
        }
    }
}

/// Forces (`true`) or releases (`false`) the portable kernel for every packing made from now on.
pub(crate) fn force_portable(on: bool) {
    MODE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

/// The backend a new packing of `F` values uses on this machine now.
pub(crate) fn backend_for<F: Float>() -> Backend {
    if TypeId::of::<F>() != TypeId::of::<f32>() || portable_forced() {
        return Backend::Portable;
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[cfg(feature = "avx512")]
        if std::arch::is_x86_feature_detected!("avx512f") && !avx512_declined() {
            return Backend::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Backend::Avx2;
        }
    }
    Backend::Portable
}

/// Whether element-wise passes may run in AVX2 + FMA code: the CPU has both and the portable
/// path is not forced.
pub(crate) fn avx2_elementwise() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        !portable_forced()
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The thread count set by [`set_threads`]; 0: not decided yet.
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// The number of threads a recurrent pass may split its batch over: [`set_threads`], else
/// `RECURRENT_NUM_THREADS` (read once), else the machine's available parallelism.
pub(crate) fn threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => {
            let n = std::env::var("RECURRENT_NUM_THREADS")
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|&n| n > 0)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let _ = THREADS.compare_exchange(0, n, Ordering::Relaxed, Ordering::Relaxed);
            THREADS.load(Ordering::Relaxed)
        }
        n => n,
    }
}

/// Sets the thread count (0: back to the default of [`threads`]).
pub(crate) fn set_threads(n: usize) {
    THREADS.store(n, Ordering::Relaxed);
    if n == 0 {
        // Re-read the default on next use.
        let _ = threads();
    }
}

/// Per-step work (multiply-adds of the recurrent product) times steps below which a pass stays
/// on one thread: spawning costs tens of µs, the S configuration's whole forward ~100 µs.
const PARALLEL_MIN_WORK: usize = 50_000_000;

/// Fewest batch rows worth a thread of their own.
const PARALLEL_MIN_ROWS: usize = 8;

/// How a pass over `batch` rows, `steps` steps and a `[H, G·H]` recurrent matrix splits its rows
/// over threads: one range (no threads) for small work, else near-equal contiguous ranges.
/// Rows never interact within a pass, so the results do not depend on the split.
pub(crate) fn batch_parts(
    batch: usize,
    steps: usize,
    gh: usize,
    hidden: usize,
) -> Vec<std::ops::Range<usize>> {
    let work = batch
        .saturating_mul(steps)
        .saturating_mul(gh)
        .saturating_mul(hidden);
    let n = threads().min(batch / PARALLEL_MIN_ROWS).max(1);
    if n == 1 || work < PARALLEL_MIN_WORK {
        return std::iter::once(0..batch).collect();
    }
    (0..n).map(|k| batch * k / n..batch * (k + 1) / n).collect()
}

/// Whether element-wise passes may run in AVX-512 code: the CPU has AVX-512F and VL (and AVX2 +
/// FMA), the portable path is not forced, and `RECURRENT_NO_AVX512` is not set.
#[cfg(all(target_arch = "x86_64", feature = "avx512"))]
pub(crate) fn avx512_elementwise() -> bool {
    avx2_elementwise()
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && !avx512_declined()
}

/// `RECURRENT_NO_AVX512=1` (read once) keeps the AVX-512 kernel out, to measure the AVX2 one.
#[cfg(all(target_arch = "x86_64", feature = "avx512"))]
fn avx512_declined() -> bool {
    static DECLINED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DECLINED.get_or_init(|| std::env::var("RECURRENT_NO_AVX512").is_ok_and(|v| v == "1"))
}

/// What the product adds to: `C = init + A·B`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Init<'a, F> {
    /// `C = A·B`.
    Zero,
    /// `C += A·B`.
    Accumulate,
    /// `C = row + A·B`, `row` `[N]` broadcast over the rows (a bias).
    Row(&'a [F]),
}

/// A matrix `B` `[K, N]` packed in panels of `nr` columns for one backend (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Packed<F> {
    data: Vec<F>,
    k: usize,
    n: usize,
    backend: Backend,
}

impl<F: Float> Packed<F> {
    /// Packs `B[k, j] = get(k, j)` for `k < rows`, `j < cols`, for `backend`.
    pub(crate) fn new(
        rows: usize,
        cols: usize,
        backend: Backend,
        get: impl Fn(usize, usize) -> F,
    ) -> Self {
        let nr = backend.nr();
        let panels = cols.div_ceil(nr);
        let mut data = vec![F::zero(); panels * rows * nr];
        for p in 0..panels {
            let panel = &mut data[p * rows * nr..(p + 1) * rows * nr];
            let width = nr.min(cols - p * nr);
            for k in 0..rows {
                for j in 0..width {
                    panel[k * nr + j] = get(k, p * nr + j);
                }
            }
        }
        Packed {
            data,
            k: rows,
            n: cols,
            backend,
        }
    }

    /// Packs the row-major `B` `[rows, cols]` held in `data` (row stride `ld`): whole panel
    /// rows are copied at once.
    pub(crate) fn from_row_major(
        rows: usize,
        cols: usize,
        data: &[F],
        ld: usize,
        backend: Backend,
    ) -> Self {
        let nr = backend.nr();
        let panels = cols.div_ceil(nr);
        assert!(
            rows == 0 || data.len() >= (rows - 1) * ld + cols,
            "data holds the rows"
        );
        let mut packed = vec![F::zero(); panels * rows * nr];
        for p in 0..panels {
            let width = nr.min(cols - p * nr);
            let panel = &mut packed[p * rows * nr..(p + 1) * rows * nr];
            for (k, dst) in panel.chunks_exact_mut(nr).enumerate() {
                let src = &data[k * ld + p * nr..k * ld + p * nr + width];
                dst[..width].copy_from_slice(src);
            }
        }
        Packed {
            data: packed,
            k: rows,
            n: cols,
            backend,
        }
    }

    /// `K`.
    pub(crate) fn rows(&self) -> usize {
        self.k
    }

    /// `C [m, N] = init + A [m, kc] · B[k0 .. k0 + kc, :]`, with `A` row `i` at
    /// `a[i·lda ..]` and `C` row `i` at `c[i·ldc ..]`. Allocates nothing.
    ///
    /// Panics if a slice is too short for the sizes.
    #[allow(clippy::too_many_arguments, dead_code)]
    pub(crate) fn gemm(
        &self,
        m: usize,
        k0: usize,
        kc: usize,
        a: &[F],
        lda: usize,
        c: &mut [F],
        ldc: usize,
        init: Init<'_, F>,
    ) {
        if m == 0 {
            return;
        }
        assert!(a.len() >= (m - 1) * lda + kc, "A holds m rows of kc");
        assert!(c.len() >= (m - 1) * ldc + self.n, "C holds m rows of N");
        // SAFETY: the slices hold the rows just checked.
        unsafe { self.gemm_raw(m, k0, kc, a.as_ptr(), lda, 1, c.as_mut_ptr(), ldc, init) }
    }

    /// [`gemm`](Self::gemm) on raw pointers.
    ///
    /// # Safety
    /// `A[i, k]` is read at `a[i·lda + k·acs]` (`acs` = 1: row-major rows; `lda` = 1: a
    /// column-major, i.e. transposed, operand). `a` must be valid for reads at `i·lda + k·acs` (i < m, k < kc) and `c` for reads and
    /// writes at `i·ldc + j` (i < m, j < N), with no other live reference to those elements.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn gemm_raw(
        &self,
        m: usize,
        k0: usize,
        kc: usize,
        a: *const F,
        lda: usize,
        acs: usize,
        c: *mut F,
        ldc: usize,
        init: Init<'_, F>,
    ) {
        if m == 0 {
            return;
        }
        assert!(k0 + kc <= self.k, "k range inside the packed rows");
        if let Init::Row(row) = init {
            assert!(row.len() >= self.n, "init row holds N values");
        }
        // Long sums in chunks of KC, so a panel's chunk stays in L1 across the row blocks.
        if kc > KC {
            let mut done = 0;
            while done < kc {
                let len = KC.min(kc - done);
                let chunk_init = if done == 0 { init } else { Init::Accumulate };
                // SAFETY: a sub-range of the caller's k range, same rows.
                unsafe {
                    self.gemm_raw(
                        m,
                        k0 + done,
                        len,
                        a.add(done * acs),
                        lda,
                        acs,
                        c,
                        ldc,
                        chunk_init,
                    );
                }
                done += len;
            }
            return;
        }
        // SAFETY: the caller's contract bounds A and C; k0 + kc ≤ K bounds the panels.
        unsafe {
            match self.backend {
                #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
                Backend::Avx512 => x86::gemm_avx512(
                    self.as_f32(),
                    m,
                    k0,
                    kc,
                    a.cast(),
                    lda,
                    acs,
                    c.cast(),
                    ldc,
                    cast_init(init),
                ),
                #[cfg(target_arch = "x86_64")]
                Backend::Avx2 => x86::gemm_avx2(
                    self.as_f32(),
                    m,
                    k0,
                    kc,
                    a.cast(),
                    lda,
                    acs,
                    c.cast(),
                    ldc,
                    cast_init(init),
                ),
                _ => gemm_portable(self, m, k0, kc, a, lda, acs, c, ldc, init),
            }
        }
    }

    /// This packing as `Packed<f32>`; only for SIMD backends, which are only chosen for f32.
    #[cfg(target_arch = "x86_64")]
    unsafe fn as_f32(&self) -> &Packed<f32> {
        assert!(TypeId::of::<F>() == TypeId::of::<f32>());
        // SAFETY: F is f32, so the two types are the same.
        unsafe { &*(self as *const Packed<F>).cast::<Packed<f32>>() }
    }

    /// Start of panel `p` at row `k0`.
    #[inline(always)]
    fn panel(&self, p: usize, k0: usize) -> *const F {
        let nr = self.backend.nr();
        // SAFETY (callers): p < panels and k0 ≤ K keep this inside `data`.
        unsafe { self.data.as_ptr().add(p * self.k * nr + k0 * nr) }
    }
}

/// Reinterprets an `Init<F>` as `Init<f32>`; only called on packings whose backend is f32-only.
#[cfg(target_arch = "x86_64")]
unsafe fn cast_init<F: Float>(init: Init<'_, F>) -> Init<'_, f32> {
    debug_assert!(TypeId::of::<F>() == TypeId::of::<f32>());
    match init {
        Init::Zero => Init::Zero,
        Init::Accumulate => Init::Accumulate,
        // SAFETY: F is f32 (a SIMD backend is only chosen for f32).
        Init::Row(r) => {
            Init::Row(unsafe { std::slice::from_raw_parts(r.as_ptr().cast(), r.len()) })
        }
    }
}

/// Writes a finished tile: `C[i, j] = init + acc[i][j]` for `i < mm`, `j < nn`.
#[inline(always)]
unsafe fn store_tile<F: Float, const MR: usize, const NR: usize>(
    acc: &[[F; NR]; MR],
    mm: usize,
    nn: usize,
    c: *mut F,
    ldc: usize,
    init: Init<'_, F>,
    col0: usize,
) {
    for (i, row) in acc.iter().enumerate().take(mm) {
        for (j, &v) in row.iter().enumerate().take(nn) {
            // SAFETY: i < m, col0 + j < N (caller).
            unsafe {
                let dst = c.add(i * ldc + j);
                *dst = match init {
                    Init::Zero => v,
                    Init::Accumulate => *dst + v,
                    Init::Row(r) => r[col0 + j] + v,
                };
            }
        }
    }
}

const PORTABLE_MR: usize = 4;
const PORTABLE_NR: usize = 16;

#[allow(clippy::too_many_arguments)]
unsafe fn gemm_portable<F: Float>(
    b: &Packed<F>,
    m: usize,
    k0: usize,
    kc: usize,
    a: *const F,
    lda: usize,
    acs: usize,
    c: *mut F,
    ldc: usize,
    init: Init<'_, F>,
) {
    let n = b.n;
    for p in 0..n.div_ceil(PORTABLE_NR) {
        let bp = b.panel(p, k0);
        let nn = PORTABLE_NR.min(n - p * PORTABLE_NR);
        let mut i0 = 0;
        while i0 < m {
            let mm = PORTABLE_MR.min(m - i0);
            // SAFETY: rows i0.. < m, panel p < panels (caller's bounds).
            unsafe {
                let a0 = a.add(i0 * lda);
                let c0 = c.add(i0 * ldc + p * PORTABLE_NR);
                let init0 = shift(init, p * PORTABLE_NR);
                match mm {
                    4 => tile_portable::<F, 4>(kc, a0, lda, acs, bp, c0, ldc, nn, init0),
                    3 => tile_portable::<F, 3>(kc, a0, lda, acs, bp, c0, ldc, nn, init0),
                    2 => tile_portable::<F, 2>(kc, a0, lda, acs, bp, c0, ldc, nn, init0),
                    _ => tile_portable::<F, 1>(kc, a0, lda, acs, bp, c0, ldc, nn, init0),
                }
            }
            i0 += mm;
        }
    }
}

/// `init` for the columns from `col0` on.
#[inline(always)]
fn shift<F>(init: Init<'_, F>, col0: usize) -> Init<'_, F> {
    match init {
        Init::Row(r) => Init::Row(&r[col0..]),
        other => other,
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_portable<F: Float, const MR: usize>(
    kc: usize,
    a: *const F,
    lda: usize,
    acs: usize,
    b: *const F,
    c: *mut F,
    ldc: usize,
    nn: usize,
    init: Init<'_, F>,
) {
    let mut acc = [[F::zero(); PORTABLE_NR]; MR];
    for k in 0..kc {
        // SAFETY: k < kc inside the panel and the A rows (caller).
        let brow = unsafe { &*b.add(k * PORTABLE_NR).cast::<[F; PORTABLE_NR]>() };
        for (i, acc_row) in acc.iter_mut().enumerate() {
            let av = unsafe { *a.add(i * lda + k * acs) };
            for (s, &bv) in acc_row.iter_mut().zip(brow) {
                *s += av * bv;
            }
        }
    }
    unsafe { store_tile(&acc, MR, nn, c, ldc, init, 0) };
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The AVX2 + FMA and AVX-512F micro-kernels (f32).

    use std::arch::x86_64::*;

    use super::{Init, Packed, shift, store_tile};
    #[cfg(feature = "avx512")]
    use crate::recurrent::simd512::first_lanes;

    const AVX2_MR: usize = 6;
    #[cfg(feature = "avx512")]
    const AVX512_MR: usize = 12;

    /// Rows in blocks of `$mr` (remainder blocks dispatched to smaller instances).
    macro_rules! row_blocks {
        ($b:expr, $m:expr, $k0:expr, $kc:expr, $a:expr, $lda:expr, $acs:expr, $c:expr, $ldc:expr,
         $init:expr, $nr:expr, $mr:expr, $tile:ident, [$($n:literal),*]) => {{
            let n = $b.n;
            for p in 0..n.div_ceil($nr) {
                let bp: *const f32 = $b.panel(p, $k0);
                let nn = ($nr as usize).min(n - p * $nr);
                let mut i0 = 0;
                while i0 < $m {
                    let mm = ($mr as usize).min($m - i0);
                    let a0 = $a.add(i0 * $lda);
                    let c0 = $c.add(i0 * $ldc + p * $nr);
                    let init0 = shift($init, p * $nr);
                    match mm {
                        $($n => $tile::<$n>($kc, a0, $lda, $acs, bp, c0, $ldc, nn, init0),)*
                        _ => unreachable!(),
                    }
                    i0 += mm;
                }
            }
        }};
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn gemm_avx2(
        b: &Packed<f32>,
        m: usize,
        k0: usize,
        kc: usize,
        a: *const f32,
        lda: usize,
        acs: usize,
        c: *mut f32,
        ldc: usize,
        init: Init<'_, f32>,
    ) {
        unsafe {
            row_blocks!(
                b,
                m,
                k0,
                kc,
                a,
                lda,
                acs,
                c,
                ldc,
                init,
                16,
                AVX2_MR,
                tile_avx2,
                [1, 2, 3, 4, 5, 6]
            )
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_avx2<const MR: usize>(
        kc: usize,
        a: *const f32,
        lda: usize,
        acs: usize,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        nn: usize,
        init: Init<'_, f32>,
    ) {
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); 2]; MR];
            for k in 0..kc {
                let b0 = _mm256_loadu_ps(b.add(k * 16));
                let b1 = _mm256_loadu_ps(b.add(k * 16 + 8));
                for (i, row) in acc.iter_mut().enumerate() {
                    let av = _mm256_broadcast_ss(&*a.add(i * lda + k * acs));
                    row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                    row[1] = _mm256_fmadd_ps(av, b1, row[1]);
                }
            }
            if nn == 16 {
                for (i, row) in acc.iter().enumerate() {
                    let dst = c.add(i * ldc);
                    let (x0, x1) = match init {
                        Init::Zero => (row[0], row[1]),
                        Init::Accumulate => (
                            _mm256_add_ps(row[0], _mm256_loadu_ps(dst)),
                            _mm256_add_ps(row[1], _mm256_loadu_ps(dst.add(8))),
                        ),
                        Init::Row(r) => (
                            _mm256_add_ps(row[0], _mm256_loadu_ps(r.as_ptr())),
                            _mm256_add_ps(row[1], _mm256_loadu_ps(r.as_ptr().add(8))),
                        ),
                    };
                    _mm256_storeu_ps(dst, x0);
                    _mm256_storeu_ps(dst.add(8), x1);
                }
            } else {
                let mut tmp = [[0.0f32; 16]; MR];
                for (t, row) in tmp.iter_mut().zip(&acc) {
                    _mm256_storeu_ps(t.as_mut_ptr(), row[0]);
                    _mm256_storeu_ps(t.as_mut_ptr().add(8), row[1]);
                }
                store_tile(&tmp, MR, nn, c, ldc, init, 0);
            }
        }
    }

    // AVX-512 intrinsics are stable since Rust 1.89: the `avx512` feature needs that compiler.
    #[cfg(feature = "avx512")]
    #[allow(clippy::incompatible_msrv)]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn gemm_avx512(
        b: &Packed<f32>,
        m: usize,
        k0: usize,
        kc: usize,
        a: *const f32,
        lda: usize,
        acs: usize,
        c: *mut f32,
        ldc: usize,
        init: Init<'_, f32>,
    ) {
        unsafe {
            row_blocks!(
                b,
                m,
                k0,
                kc,
                a,
                lda,
                acs,
                c,
                ldc,
                init,
                32,
                AVX512_MR,
                tile_avx512,
                [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
            )
        }
    }

    #[cfg(feature = "avx512")]
    #[allow(clippy::incompatible_msrv)]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_avx512<const MR: usize>(
        kc: usize,
        a: *const f32,
        lda: usize,
        acs: usize,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        nn: usize,
        init: Init<'_, f32>,
    ) {
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); 2]; MR];
            for k in 0..kc {
                let b0 = _mm512_loadu_ps(b.add(k * 32));
                let b1 = _mm512_loadu_ps(b.add(k * 32 + 16));
                for (i, row) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*a.add(i * lda + k * acs));
                    row[0] = _mm512_fmadd_ps(av, b0, row[0]);
                    row[1] = _mm512_fmadd_ps(av, b1, row[1]);
                }
            }
            if nn == 32 {
                for (i, row) in acc.iter().enumerate() {
                    let dst = c.add(i * ldc);
                    let (x0, x1) = match init {
                        Init::Zero => (row[0], row[1]),
                        Init::Accumulate => (
                            _mm512_add_ps(row[0], _mm512_loadu_ps(dst)),
                            _mm512_add_ps(row[1], _mm512_loadu_ps(dst.add(16))),
                        ),
                        Init::Row(r) => (
                            _mm512_add_ps(row[0], _mm512_loadu_ps(r.as_ptr())),
                            _mm512_add_ps(row[1], _mm512_loadu_ps(r.as_ptr().add(16))),
                        ),
                    };
                    _mm512_storeu_ps(dst, x0);
                    _mm512_storeu_ps(dst.add(16), x1);
                }
            } else {
                // A partial panel (the last columns, or H < 32): masked loads and stores touch
                // only the nn valid columns (masked-off lanes are never read or written; the second
                // half's address may lie past the row, hence wrapping_add).
                let (m0, m1) = (first_lanes(nn), first_lanes(nn.saturating_sub(16)));
                for (i, row) in acc.iter().enumerate() {
                    let dst = c.add(i * ldc);
                    let (x0, x1) = match init {
                        Init::Zero => (row[0], row[1]),
                        Init::Accumulate => (
                            _mm512_add_ps(row[0], _mm512_maskz_loadu_ps(m0, dst)),
                            _mm512_add_ps(row[1], _mm512_maskz_loadu_ps(m1, dst.wrapping_add(16))),
                        ),
                        Init::Row(r) => (
                            _mm512_add_ps(row[0], _mm512_maskz_loadu_ps(m0, r.as_ptr())),
                            _mm512_add_ps(
                                row[1],
                                _mm512_maskz_loadu_ps(m1, r.as_ptr().wrapping_add(16)),
                            ),
                        ),
                    };
                    _mm512_mask_storeu_ps(dst, m0, x0);
                    _mm512_mask_storeu_ps(dst.wrapping_add(16), m1, x1);
                }
            }
        }
    }

    /// `C[i, j] += Σ_k A[k, i]·B[k, j]` for `C` `[n, p]`, `A` `[m, n]`, `B` `[m, p]`, all
    /// row-major at the given row strides (unit column stride).
    ///
    /// # Safety
    /// The pointers must be valid for those elements (`C` for reads and writes, with no other
    /// live reference to it).
    #[cfg(feature = "avx512")]
    #[allow(clippy::incompatible_msrv, clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn at_b_avx512(
        m: usize,
        n: usize,
        p: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
    ) {
        let mut k0 = 0;
        while k0 < m {
            let kc = super::AT_B_KC.min(m - k0);
            let mut i0 = 0;
            while i0 < n {
                let mm = AVX512_MR.min(n - i0);
                let mut j0 = 0;
                while j0 < p {
                    let nn = 32.min(p - j0);
                    // SAFETY: rows k0 .. k0 + kc, columns i0 .. i0 + mm of A and j0 .. j0 + nn
                    // of B, the same tile of C: inside the caller's bounds.
                    unsafe {
                        let a0 = a.add(k0 * lda + i0);
                        let b0 = b.add(k0 * ldb + j0);
                        let c0 = c.add(i0 * ldc + j0);
                        macro_rules! tile {
                            ($($n:literal),*) => {
                                match (mm, nn > 16) {
                                    $(($n, true) => at_b_tile::<$n, 2>(kc, a0, lda, b0, ldb, c0, ldc, nn),
                                      ($n, false) => at_b_tile::<$n, 1>(kc, a0, lda, b0, ldb, c0, ldc, nn),)*
                                    _ => unreachable!(),
                                }
                            };
                        }
                        tile!(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12);
                    }
                    j0 += nn;
                }
                i0 += mm;
            }
            k0 += kc;
        }
    }

    /// One `[MR, 16·NV]` tile of [`at_b_avx512`]: `C += Aᵀ·B` over `kc` rows, the sums in
    /// registers; `nn` ≤ 16·NV valid columns (masked loads and stores past them).
    #[cfg(feature = "avx512")]
    #[allow(clippy::incompatible_msrv, clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn at_b_tile<const MR: usize, const NV: usize>(
        kc: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        nn: usize,
    ) {
        let masks = [first_lanes(nn), first_lanes(nn.saturating_sub(16))];
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        // SAFETY (the loads and stores below): masked to the nn valid columns, rows < kc and
        // columns < MR of A inside the caller's bounds; masked-off lanes are not accessed.
        unsafe {
            for k in 0..kc {
                let brow = b.add(k * ldb);
                let mut bv = [_mm512_setzero_ps(); NV];
                for (v, bv) in bv.iter_mut().enumerate() {
                    *bv = _mm512_maskz_loadu_ps(masks[v], brow.wrapping_add(16 * v));
                }
                let arow = a.add(k * lda);
                for (i, row) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*arow.add(i));
                    for (s, &bv) in row.iter_mut().zip(&bv) {
                        *s = _mm512_fmadd_ps(av, bv, *s);
                    }
                }
            }
            for (i, row) in acc.iter().enumerate() {
                let dst = c.add(i * ldc);
                for (v, &sum) in row.iter().enumerate() {
                    let d = dst.wrapping_add(16 * v);
                    let x = _mm512_add_ps(sum, _mm512_maskz_loadu_ps(masks[v], d));
                    _mm512_mask_storeu_ps(d, masks[v], x);
                }
            }
        }
    }
}

/// Whether the whole-sequence `aᵀ·b` products may run on this crate's AVX-512 kernel
/// ([`add_at_b`]); `RECURRENT_WGRAD=matrixmultiply` (read once) keeps them on ndarray's
/// `general_mat_mul`, to measure one against the other.
#[cfg(all(target_arch = "x86_64", feature = "avx512"))]
fn at_b_on_own_kernel() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| !std::env::var("RECURRENT_WGRAD").is_ok_and(|v| v == "matrixmultiply"))
}

/// The widest `b` [`add_at_b`] takes: one 32-column panel, read in place (the S and T
/// benchmark sizes, H ≤ 32). Wider products stay on matrixmultiply, which packs both operands:
/// measured at the M weight gradient (`[6400, 512]ᵀ·[6400, 128]`, 1 thread) the in-place kernel
/// reached 85–88 GFLOP/s and a packing variant of it no more, against matrixmultiply's 91–96,
/// while at S (`[1600, 128]ᵀ·[1600, 32]`) it reaches 113–114 against 92 (the packing
/// included).
#[cfg(all(target_arch = "x86_64", feature = "avx512"))]
const AT_B_MAX_COLS: usize = 32;

/// Rows of `a` and `b` one sweep of [`add_at_b`] sums before it adds its tiles to `out`: a
/// chunk of `b` 32 columns wide stays in L1 across the row blocks (256 rows: 32 KiB).
#[cfg(all(target_arch = "x86_64", feature = "avx512"))]
const AT_B_KC: usize = 256;

/// `out [N, P] += aᵀ · b` for `a` `[M, N]` and `b` `[M, P]` (the weight gradients
/// `∂W = ∂Aᵀ · H` over all `T·B` rows), for `P` ≤ [`AT_B_MAX_COLS`], on the AVX-512 kernel with
/// both operands read in place: no transpose, no packing, no allocation. Each `[12, 32]` tile of `out` is summed in
/// registers over chunks of [`AT_B_KC`] rows; `aᵀ`'s 12 values per row are contiguous in `a`.
/// Rows of `out` are split over threads for large products (as the recurrent passes split
/// their batch; the result does not depend on the split).
///
/// Returns `false` (and does nothing) where it does not apply: `P` too wide, not `f32`, no AVX-512F, the
/// portable kernels forced, `RECURRENT_WGRAD=matrixmultiply`, or a view whose columns are
/// not contiguous; the caller then uses `general_mat_mul`.
pub(crate) fn add_at_b<F: Float>(
    a: ndarray::ArrayView2<'_, F>,
    b: ndarray::ArrayView2<'_, F>,
    out: ndarray::ArrayViewMut2<'_, F>,
) -> bool {
    #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
    {
        add_at_b_avx512(a, b, out)
    }
    #[cfg(not(all(target_arch = "x86_64", feature = "avx512")))]
    {
        let _ = (a, b, out);
        false
    }
}

#[cfg(all(target_arch = "x86_64", feature = "avx512"))]
fn add_at_b_avx512<F: Float>(
    a: ndarray::ArrayView2<'_, F>,
    b: ndarray::ArrayView2<'_, F>,
    mut out: ndarray::ArrayViewMut2<'_, F>,
) -> bool {
    let (m, n) = a.dim();
    let (mb, p) = b.dim();
    if mb != m || out.dim() != (n, p) {
        return false;
    }
    if m == 0 || n == 0 || p == 0 {
        return true;
    }
    if p > AT_B_MAX_COLS || backend_for::<F>() != Backend::Avx512 || !at_b_on_own_kernel() {
        return false;
    }
    let unit_cols = |cols: usize, s: &[isize]| (cols <= 1 || s[1] == 1) && s[0] >= 0;
    if !unit_cols(n, a.strides()) || !unit_cols(p, b.strides()) || !unit_cols(p, out.strides()) {
        return false;
    }
    let (lda, ldb, ldc) = (
        a.strides()[0] as usize,
        b.strides()[0] as usize,
        out.strides()[0] as usize,
    );
    // SAFETY: F is f32 (the AVX-512 backend is only chosen for f32) and the CPU has AVX-512F;
    // the views hold m rows of n / p elements at the strides read above, and `out` is
    // borrowed mutably for the call.
    unsafe {
        x86::at_b_avx512(
            m,
            n,
            p,
            a.as_ptr().cast::<f32>(),
            lda,
            b.as_ptr().cast::<f32>(),
            ldb,
            out.as_mut_ptr().cast::<f32>(),
            ldc,
        );
    }
    true
}

/// Below this many inputs `I`, the input-side backward products (∂X, ∂W_ih) are row loops
/// (dot products and axpys over `G·H`) instead of GEMMs, whose panels would be mostly padding.
pub(crate) const SMALL_INPUT: usize = 16;

/// `y[j] += α · x[j]` over equal-length slices (vectorizes).
#[inline(always)]
pub(crate) fn axpy<F: Float>(alpha: F, x: &[F], y: &mut [F]) {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &mut y[..n]);
    for j in 0..n {
        y[j] += alpha * x[j];
    }
}

/// `y[j] += Σ_q α_q · x_q[j]` for four rows `x_q` (one load and store of `y` per four).
#[inline(always)]
pub(crate) fn axpy4<F: Float>(alpha: [F; 4], x0: &[F], x1: &[F], x2: &[F], x3: &[F], y: &mut [F]) {
    let n = y.len();
    let (x0, x1, x2, x3) = (&x0[..n], &x1[..n], &x2[..n], &x3[..n]);
    let [a0, a1, a2, a3] = alpha;
    for j in 0..n {
        y[j] += a0 * x0[j] + a1 * x1[j] + a2 * x2[j] + a3 * x3[j];
    }
}

/// (Σ x0[j]·w[j], Σ x1[j]·w[j]): two dot products sharing the loads of `w`, each in 16
/// interleaved partial sums.
#[inline(always)]
pub(crate) fn dot2<F: Float>(x0: &[F], x1: &[F], w: &[F]) -> (F, F) {
    let n = w.len();
    let (x0, x1) = (&x0[..n], &x1[..n]);
    let mut acc0 = [F::zero(); 16];
    let mut acc1 = [F::zero(); 16];
    let full = n / 16 * 16;
    for base in (0..full).step_by(16) {
        let (a, b, c) = (
            &x0[base..base + 16],
            &x1[base..base + 16],
            &w[base..base + 16],
        );
        for j in 0..16 {
            acc0[j] += a[j] * c[j];
            acc1[j] += b[j] * c[j];
        }
    }
    let (mut s0, mut s1) = (F::zero(), F::zero());
    for j in full..n {
        s0 += x0[j] * w[j];
        s1 += x1[j] * w[j];
    }
    (s0 + tree_sum(acc0), s1 + tree_sum(acc1))
}

/// Σ of 16 partial sums as a halving tree (8 + 4 + 2 + 1 vector adds) rather than 16 dependent
/// scalar additions, which cost more than a short dot product itself.
#[inline(always)]
fn tree_sum<F: Float>(mut acc: [F; 16]) -> F {
    for width in [8, 4, 2, 1] {
        for j in 0..width {
            let v = acc[j + width];
            acc[j] += v;
        }
    }
    acc[0]
}

/// Σ x[j]·y[j], in 16 interleaved partial sums so it vectorizes.
#[inline(always)]
pub(crate) fn dot<F: Float>(x: &[F], y: &[F]) -> F {
    let n = x.len().min(y.len());
    let mut acc = [F::zero(); 16];
    let (xc, yc) = (x[..n].chunks_exact(16), y[..n].chunks_exact(16));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (a, b) in xc.zip(yc) {
        for j in 0..16 {
            acc[j] += a[j] * b[j];
        }
    }
    let mut sum = F::zero();
    for (&a, &b) in xr.iter().zip(yr) {
        sum += a * b;
    }
    sum + tree_sum(acc)
}

/// Σ x[j]², in 16 interleaved partial sums so it vectorizes.
#[inline(always)]
pub(crate) fn sum_of_squares<F: Float>(x: &[F]) -> F {
    dot(x, x)
}

/// `out[k] += Σ_r d[r·cols + k]` for `rows` rows of `cols` (the column sums of a row-major
/// `[rows, cols]` block; vectorizes along the row).
#[inline(always)]
pub(crate) fn add_column_sums<F: Float>(d: &[F], cols: usize, out: &mut [F]) {
    for row in d.chunks_exact(cols) {
        axpy(F::one(), row, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<F: Float>(backend: Backend, tol: f64) {
        // Sizes straddle the panel widths and the row blocks.
        // k = 300 spans several KC chunks.
        for &(m, k, n) in &[
            (1, 3, 5),
            (7, 16, 33),
            (13, 40, 64),
            (25, 9, 100),
            (14, 300, 40),
        ] {
            let a: Vec<F> = (0..m * k)
                .map(|v| F::from_f64(((v * 7 % 13) as f64 - 6.0) / 7.0))
                .collect();
            let bm = |r: usize, c: usize| F::from_f64(((r * 5 + c * 3) % 11) as f64 / 5.0 - 1.0);
            let bias: Vec<F> = (0..n).map(|j| F::from_f64(j as f64 / 10.0)).collect();
            let packed = Packed::new(k, n, backend, bm);
            for k0 in [0, k / 3] {
                let kc = k - k0;
                let mut c = vec![F::from_f64(0.5); m * n];
                packed.gemm(m, k0, kc, &a, k, &mut c, n, Init::Accumulate);
                let mut c2 = vec![F::zero(); m * n];
                packed.gemm(m, k0, kc, &a, k, &mut c2, n, Init::Row(&bias));
                for i in 0..m {
                    for j in 0..n {
                        let dot: f64 = (0..kc)
                            .map(|q| a[i * k + q].to_f64() * bm(k0 + q, j).to_f64())
                            .sum();
                        let got = c[i * n + j].to_f64();
                        assert!((got - 0.5 - dot).abs() < tol, "{backend:?} {m}x{k}x{n}");
                        let got = c2[i * n + j].to_f64();
                        assert!((got - bias[j].to_f64() - dot).abs() < tol);
                    }
                }
            }
        }
    }

    /// `add_at_b` (where it applies: f32 on AVX-512F) against the plain sums: widths around
    /// the 16-lane halves, row counts around the 12-row blocks, chunks of `AT_B_KC` rows,
    /// strided views (column slices of a wider `a` and `out`).
    #[test]
    fn add_at_b_matches_the_plain_product() {
        use ndarray::{Array2, s};
        for &(m, n, p) in &[
            (1, 1, 1),
            (5, 13, 16),
            (300, 25, 17),
            (600, 40, 32),
            (70, 12, 31),
        ] {
            let a_full = Array2::<f32>::from_shape_fn((m, n + 3), |(i, j)| {
                ((i * 7 + j * 3) % 13) as f32 / 6.5 - 1.0
            });
            let b = Array2::<f32>::from_shape_fn((m, p), |(i, j)| {
                ((i * 5 + j) % 11) as f32 / 5.0 - 1.0
            });
            let a = a_full.slice(s![.., 2..n + 2]);
            let mut out_full = Array2::<f32>::from_elem((n, p + 4), 0.5);
            let applied = add_at_b(a, b.view(), out_full.slice_mut(s![.., 1..p + 1]));
            #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
            if backend_for::<f32>() == Backend::Avx512 && at_b_on_own_kernel() {
                assert!(applied, "the AVX-512 path applies to {m}x{n}x{p}");
            }
            if !applied {
                // Not this machine's path (no AVX-512F, portable forced, or f32 not fast-pathed).
                assert_eq!(out_full, Array2::from_elem((n, p + 4), 0.5));
                continue;
            }
            for i in 0..n {
                assert_eq!(out_full[[i, 0]], 0.5, "columns left of the view untouched");
                assert_eq!(
                    out_full[[i, p + 1]],
                    0.5,
                    "columns right of the view untouched"
                );
                for j in 0..p {
                    let want: f64 = 0.5
                        + (0..m)
                            .map(|k| f64::from(a[[k, i]]) * f64::from(b[[k, j]]))
                            .sum::<f64>();
                    let got = f64::from(out_full[[i, j + 1]]);
                    assert!(
                        (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                        "{m}x{n}x{p} [{i},{j}]: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_backend_matches_the_plain_product() {
        check::<f64>(Backend::Portable, 1e-12);
        check::<f32>(Backend::Portable, 1e-4);
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                check::<f32>(Backend::Avx2, 1e-4);
            }
            #[cfg(feature = "avx512")]
            if std::arch::is_x86_feature_detected!("avx512f") {
                check::<f32>(Backend::Avx512, 1e-4);
            }
        }
    }
}
