//! The 3×3, stride-1 convolutions of ResNet's four stages, f32, the algorithms: im2col + GEMM
//! against Winograd F(4×4, 3×3) and F(2×2, 3×3), with their weights transformed beforehand (as
//! the models keep F(4,3)'s) and by each call ("pc", as the models run F(2,3)), ms per image on
//! the kernels' threads (`RAYON_NUM_THREADS=1` for one), and the one-off weight transforms.
//! `snzoo_kernels::winograd::tile_for` takes F(4,3) where C_in·C_out ≤ 128² (the first two
//! stages) and F(2,3) up to 256² (the third); with BATCH images a call groups their tiles per
//! GEMM and a per-call transform serves them all. Here the operands stay warm in the caches
//! between repetitions; in the network every convolution's weights stream from memory
//! (eval/BENCHMARKS.md).
//!
//!     cargo run --release -p snzoo-kernels --example conv3x3_shapes -- [BATCH]
use std::mem::MaybeUninit;
use std::time::Instant;

use snzoo_kernels::winograd::{self, Level, Tile, TransformedWeights};

fn main() {
    let n: usize = std::env::args().nth(1).map(|a| a.parse().expect("BATCH: a number")).unwrap_or(1);
    if !Level::detect().vectorised() {
        println!("neither AVX2 nor AVX-512: Winograd runs only in its portable (test) version here");
    }
    let threads = snzoo_kernels::parallel::threads();
    println!("batch {n}, {threads} threads; ms per image (direct = im2col + GEMM)");
    println!("C   H×W      direct    F(4,3)   ratio    F(2,3)   ratio  F(4,3)pc  ratio  F(2,3)pc  ratio   weight transforms F(4,3), F(2,3) (ms, once)");
    for (c, hw) in [(64, 56), (128, 28), (256, 14), (512, 7)] {
        let x: Vec<f32> = (0..n * c * hw * hw).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let g: Vec<f32> = (0..c * c * 9).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
        let mut out = vec![MaybeUninit::<f32>::uninit(); n * c * hw * hw];
        let flops = 2.0 * (n * c * c * 9 * hw * hw) as f64;
        let reps = ((3e10 / flops) as usize).max(3);
        let time = |f: &mut dyn FnMut()| {
            f();
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() / reps as f64 * 1e3
        };
        let direct = time(&mut || {
            snzoo_kernels::conv::conv2d_im2col_f32(&x, &g, n, (c, c, hw, hw), 3, 1, 1, &mut out, threads).expect("a valid shape")
        }) / n as f64;
        print!("{c:<4}{hw:>2}×{hw:<4}  {direct:>8.3}");
        let mut transforms = Vec::new();
        for tile in [Tile::F4, Tile::F2] {
            let start = Instant::now();
            let u = TransformedWeights::new(Level::detect(), tile, &g, c, c);
            transforms.push(start.elapsed().as_secs_f64() * 1e3);
            let wino = time(&mut || winograd::conv3x3(&x, &u, n, (hw, hw), None, &mut out, threads)) / n as f64;
            print!("  {wino:>8.3}  {:>6.2}", direct / wino);
        }
        let gt = candle_core::Tensor::from_vec(g.clone(), (c, c, 3, 3), &candle_core::Device::Cpu).expect("a weight tensor");
        for tile in [Tile::F4, Tile::F2] {
            let u = TransformedWeights::per_call(tile, &gt).expect("f32 3x3 weights");
            let wino = time(&mut || winograd::conv3x3(&x, &u, n, (hw, hw), None, &mut out, threads)) / n as f64;
            print!("  {wino:>8.3}  {:>6.2}", direct / wino);
        }
        println!("   {:>8.3}, {:.3}", transforms[0], transforms[1]);
    }
}
