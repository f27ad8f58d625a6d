//! GEMM throughput on ResNet-50's convolution shapes, one thread: gemm's f32 kernel against the
//! AVX-512 BF16 kernel and the AMX kernel (packing of B included).
//!
//!     cargo run --release -p snzoo-kernels --example gemm_shapes
use std::time::Instant;

use snzoo_kernels::{gemm_amx, gemm_bf16};

fn main() {
    // (M = C_out, K = C_in·k·k, N = H_out·W_out)
    let shapes = [
        (64, 576, 3136),
        (256, 64, 3136),
        (64, 256, 3136),
        (128, 1152, 784),
        (512, 128, 784),
        (256, 2304, 196),
        (1024, 256, 196),
        (512, 4608, 49),
        (2048, 512, 49),
        (64, 147, 12544),
    ];
    let bf16 = gemm_bf16::available();
    let amx = gemm_amx::available();
    println!("shape (M,K,N)        f32 GFLOP/s   bf16 GFLOP/s   AMX GFLOP/s (bf16: packing B included)");
    for &(m, k, n) in &shapes {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
        let mut c = vec![0f32; m * n];
        let flops = 2.0 * (m * k * n) as f64;
        let reps = ((2e9 / flops) as usize).max(3);
        let time = |f: &mut dyn FnMut()| {
            f();
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() / reps as f64
        };
        let t32 = time(&mut || unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                k as isize,
                b.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            )
        });
        let line = format!("{:<20} {:>10.1}", format!("({m},{k},{n})"), flops / t32 / 1e9);
        if bf16 {
            let pa = gemm_bf16::PackedA::new(&a, m, k);
            let mut pb = gemm_bf16::AlignedBf16::new();
            let t16 = time(&mut || {
                gemm_bf16::pack_b(&b, k, n, n, &mut pb);
                gemm_bf16::gemm(&pa, &pb, n, &mut c, n, 1);
            });
            let amx = if amx {
                let pa = gemm_amx::PackedA::new(&a, m, k);
                // SAFETY: f32 → MaybeUninit<f32> has the same layout.
                let c = unsafe { &mut *(c.as_mut_slice() as *mut [f32] as *mut [std::mem::MaybeUninit<f32>]) };
                let t = time(&mut || {
                    gemm_bf16::pack_b_pairs(&b, k, n, n, pa.pairs(), 1, None, &mut pb);
                    gemm_amx::gemm_into(&pa, &pb, n, c, n, 1);
                });
                format!("{:>13.1}", flops / t / 1e9)
            } else {
                "       (no AMX)".into()
            };
            println!("{line} {:>14.1} {amx}", flops / t16 / 1e9);
        } else {
            println!("{line}   (no AVX-512 BF16)");
        }
    }
}
