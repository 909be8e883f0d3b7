//! The recurrent step loops allocate nothing: a forward and a backward over 200 steps make
//! exactly as many heap allocations as over 100 steps, for every cell and both element types.
//! Also: the portable micro-kernel (forced at run time) gives the fast path's results.
//!
//! Allocations are counted per thread by a counting global allocator, so tests running in
//! parallel in this binary do not disturb each other's counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell as StdCell;
use std::sync::Mutex;

use ndarray::Array3;
use ndarray_rand::RandomExt;
use ndarray_rand::rand_distr::Uniform;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use recurrent::{
    Cell, Float, GruCell, Init, LstmCell, Recurrent, RecurrentKernel, RecurrentState, SimpleRnnCell,
};

struct Counting;

thread_local! {
    static ALLOCATIONS: StdCell<usize> = const { StdCell::new(0) };
}

fn count() {
    // `try_with`: the slot may be gone while a thread shuts down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is bumped.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by this thread while running `f`.
fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(StdCell::get);
    f();
    ALLOCATIONS.with(StdCell::get) - before
}

/// Serializes the tests that build kernels, so the portable switch of one cannot flip under
/// another.
static KERNEL_LOCK: Mutex<()> = Mutex::new(());

const BATCH: usize = 3;
const INPUT: usize = 2;
const HIDDEN: usize = 20;

fn layer<C: Cell, F: Float>(cell: C) -> Recurrent<C, F> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    Recurrent::with_init(cell, INPUT, HIDDEN, Init::Torch, &mut rng).expect("valid sizes")
}

fn inputs<F: Float>(steps: usize) -> Array3<F> {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    Array3::<f64>::random_using(
        (BATCH, steps, INPUT),
        Uniform::new(-1.0, 1.0).unwrap(),
        &mut rng,
    )
    .mapv(F::from_f64)
}

/// Allocations of one forward and one backward (with every output's gradient and the final
/// state's) over `steps` steps.
fn pass_allocations<C: Cell, F: Float>(cell: C, steps: usize) -> (usize, usize) {
    let mut rnn = layer::<C, F>(cell);
    let x = inputs::<F>(steps);
    let d_out = Array3::<F>::from_elem((BATCH, steps, HIDDEN), F::from_f64(0.1));
    let d_final = RecurrentState::zeros(BATCH, HIDDEN, rnn.cell().has_cell_state());
    let mut keep = None;
    let forward = allocations_in(|| {
        keep = Some(rnn.forward_with_state(x.view(), None).expect("forward"));
    });
    let mut grads = None;
    let backward = allocations_in(|| {
        grads = Some(
            rnn.backward_with_state(Some(d_out.view()), Some(&d_final))
                .expect("backward"),
        );
    });
    assert!(keep.is_some() && grads.is_some());
    (forward, backward)
}

fn assert_step_loop_allocates_nothing<C: Cell>(cell: C) {
    let _guard = KERNEL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // One-time set-up (the thread count and kernel choice read the environment) happens
    // before counting.
    let _ = pass_allocations::<C, f32>(cell.clone(), 2);
    for precision in ["f32", "f64"] {
        let (short, long) = match precision {
            "f32" => (
                pass_allocations::<C, f32>(cell.clone(), 100),
                pass_allocations::<C, f32>(cell.clone(), 200),
            ),
            _ => (
                pass_allocations::<C, f64>(cell.clone(), 100),
                pass_allocations::<C, f64>(cell.clone(), 200),
            ),
        };
        assert_eq!(
            short,
            long,
            "{} {precision}: (forward, backward) allocations at 100 steps vs 200 steps",
            cell.name()
        );
        eprintln!(
            "{} {precision}: forward {} and backward {} allocations at 100 and at 200 steps",
            cell.name(),
            short.0,
            short.1
        );
    }
}

#[test]
fn lstm_step_loops_allocate_nothing() {
    assert_step_loop_allocates_nothing(LstmCell);
}

#[test]
fn gru_reset_after_step_loops_allocate_nothing() {
    assert_step_loop_allocates_nothing(GruCell::ResetAfter);
}

#[test]
fn gru_reset_before_step_loops_allocate_nothing() {
    assert_step_loop_allocates_nothing(GruCell::ResetBefore);
}

#[test]
fn simple_rnn_step_loops_allocate_nothing() {
    assert_step_loop_allocates_nothing(SimpleRnnCell::default());
}

/// Outputs, final state and every gradient of one forward and backward in f32.
fn f32_pass<C: Cell>(cell: C, batch: usize, hidden: usize) -> Vec<Vec<f32>> {
    f32_pass_steps(cell, batch, 30, hidden)
}

fn f32_pass_steps<C: Cell>(cell: C, batch: usize, steps: usize, hidden: usize) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut rnn: Recurrent<C, f32> =
        Recurrent::with_init(cell, 5, hidden, Init::Torch, &mut rng).expect("valid sizes");
    let x = Array3::<f32>::random_using(
        (batch, steps, 5),
        Uniform::new(-1.0, 1.0).unwrap(),
        &mut rng,
    );
    let d_out = Array3::<f32>::random_using(
        (batch, steps, hidden),
        Uniform::new(-1.0, 1.0).unwrap(),
        &mut rng,
    );
    let (out, last) = rnn.forward_with_state(x.view(), None).expect("forward");
    let (d_x, d_first) = rnn
        .backward_with_state(Some(d_out.view()), None)
        .expect("backward");
    let g = rnn.gradients();
    let flat = |a: &[f32]| a.to_vec();
    vec![
        flat(out.as_slice().unwrap()),
        flat(last.h.as_slice().unwrap()),
        flat(d_x.as_slice().unwrap()),
        flat(d_first.h.as_slice().unwrap()),
        flat(g.weight_ih.as_slice().unwrap()),
        flat(g.weight_hh.as_slice().unwrap()),
        flat(g.bias_ih.as_slice().unwrap()),
        flat(g.bias_hh.as_slice().unwrap()),
    ]
}

fn assert_portable_matches_fast<C: Cell>(cell: C) {
    let _guard = KERNEL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // Sizes off the panel widths and row blocks of every micro-kernel.
    for (batch, hidden) in [(1, 16), (7, 37), (13, 64)] {
        RecurrentKernel::<f32>::force_portable(false);
        let fast_backend = RecurrentKernel::<f32>::backend_name();
        let fast = f32_pass(cell.clone(), batch, hidden);
        RecurrentKernel::<f32>::force_portable(true);
        assert_eq!(RecurrentKernel::<f32>::backend_name(), "portable");
        let portable = f32_pass(cell.clone(), batch, hidden);
        RecurrentKernel::<f32>::force_portable(false);
        for (k, (a, b)) in fast.iter().zip(&portable).enumerate() {
            let norm = b.iter().map(|v| v * v).sum::<f32>().sqrt().max(1.0);
            let diff = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f32>()
                .sqrt();
            assert!(
                diff <= 1e-5 * norm,
                "{} B={batch} H={hidden}: array {k} differs between {fast_backend} and portable: \
                 |Δ| = {diff}, |portable| = {norm}",
                cell.name()
            );
        }
    }
}

#[test]
fn lstm_portable_kernel_matches_the_fast_path() {
    assert_portable_matches_fast(LstmCell);
}

#[test]
fn gru_portable_kernel_matches_the_fast_path() {
    assert_portable_matches_fast(GruCell::ResetAfter);
    assert_portable_matches_fast(GruCell::ResetBefore);
}

#[test]
fn simple_rnn_portable_kernel_matches_the_fast_path() {
    assert_portable_matches_fast(SimpleRnnCell::default());
}

/// The batch split over threads changes nothing: rows never interact within a pass, and every
/// row is computed by the same code in the same order whichever thread runs it.
fn assert_threads_change_nothing<C: Cell>(cell: C, hidden: usize) {
    let _guard = KERNEL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // Work B·T·G·H² above the threshold at which a pass splits (M-like sizes).
    let (batch, steps) = (36, 50);
    RecurrentKernel::<f32>::set_threads(1);
    let one = f32_pass_steps(cell.clone(), batch, steps, hidden);
    RecurrentKernel::<f32>::set_threads(3);
    assert_eq!(RecurrentKernel::<f32>::threads(), 3);
    let three = f32_pass_steps(cell.clone(), batch, steps, hidden);
    RecurrentKernel::<f32>::set_threads(0);
    assert!(RecurrentKernel::<f32>::threads() >= 1);
    assert!(one == three, "{}: 1 and 3 threads differ", cell.name());
}

#[test]
fn lstm_results_do_not_depend_on_the_thread_count() {
    assert_threads_change_nothing(LstmCell, 128);
}

#[test]
fn gru_results_do_not_depend_on_the_thread_count() {
    assert_threads_change_nothing(GruCell::ResetAfter, 128);
    assert_threads_change_nothing(GruCell::ResetBefore, 128);
}

#[test]
fn simple_rnn_results_do_not_depend_on_the_thread_count() {
    // G = 1: a larger hidden size reaches the threshold.
    assert_threads_change_nothing(SimpleRnnCell::default(), 256);
}
