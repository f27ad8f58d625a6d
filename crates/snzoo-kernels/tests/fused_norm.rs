//! A normalization folded into the next convolution ([`snzoo_kernels::norm_conv`]) or into the
//! stem's max-pool ([`snzoo_kernels::norm_max_pool_3x3_s2`]) gives the same bits as the
//! normalization followed by the other operation, for every normalization (SN with and without
//! running statistics, GroupNorm, BatchNorm's channel affine), with and without the ReLU, on
//! every path that fuses: bf16 (1×1 packed directly, k×k through the bf16 im2col), f32 Winograd,
//! and the pool with each framework's padding. Where the CPU lacks a path's instructions its test is reported as ignored
//! (decided at run time), never as passed.

use candle_core::{DType, Device, Tensor};
use libtest_mimic::{Arguments, Failed, Trial};

mod common;
use snzoo_kernels::{
    channel_affine, conv2d, group_norm, max_pool_3x3_s2, norm_add, norm_conv, norm_max_pool_3x3_s2, residual_add, switch_norm,
    ChannelAffine, ConvPrecision, ConvWeights, GroupNormInference, Implementation, NormOp, PoolPadding, SwitchNormInference,
};

fn main() {
    let args = Arguments::from_args();
    let bf16 = snzoo_kernels::gemm_bf16::available();
    let winograd = snzoo_kernels::winograd::Level::detect().vectorised();
    let trials = vec![
        Trial::test("bf16_fused_equals_norm_then_conv", || fused_equals_unfused(ConvPrecision::Bf16)).with_ignored_flag(!bf16),
        Trial::test("f32_winograd_fused_equals_norm_then_conv", || fused_equals_unfused(ConvPrecision::F32)).with_ignored_flag(!winograd),
        Trial::test("f32_without_winograd_is_not_fused", f32_elsewhere_is_not_fused),
        Trial::test("norm_max_pool_equals_norm_then_pool", norm_max_pool_equals_unfused),
        Trial::test("bf16_convolution_hands_its_output_moments_to_the_next_normalization", moments_handed_on).with_ignored_flag(!bf16),
        Trial::test("residual_add_hands_on_the_moments_the_normalization_would_measure", residual_add_moments),
    ];
    if !bf16 {
        eprintln!("this CPU has no AVX-512 BF16: the bf16 fusion test is ignored");
    }
    if !winograd {
        eprintln!("this CPU has neither AVX2 nor AVX-512: the Winograd fusion test is ignored");
    }
    libtest_mimic::run(&args, trials).exit();
}

/// A normalization as the kernels run it on its own, and its fused form.
trait Norm: NormOp + Sized {
    fn alone(&self, x: &Tensor) -> Tensor;
}

impl Norm for SwitchNormInference {
    fn alone(&self, x: &Tensor) -> Tensor {
        switch_norm(x, self, Implementation::Fast).unwrap()
    }
}

impl Norm for GroupNormInference {
    fn alone(&self, x: &Tensor) -> Tensor {
        group_norm(x, self, Implementation::Fast).unwrap()
    }
}

impl Norm for ChannelAffine {
    fn alone(&self, x: &Tensor) -> Tensor {
        channel_affine(x, self, Implementation::Fast).unwrap()
    }
}

fn values(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            lo + (hi - lo) * ((s >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

fn switch(c: usize, running: bool, relu: bool) -> SwitchNormInference {
    SwitchNormInference {
        mean_mix: [0.5, 0.3, if running { 0.2 } else { 0.0 }],
        var_mix: [0.2, 0.6, if running { 0.2 } else { 0.0 }],
        running_mean: running.then(|| values(c, 11, -0.5, 0.5)),
        running_var: running.then(|| values(c, 12, 0.5, 2.0)),
        weight: values(c, 13, 0.5, 1.5),
        bias: values(c, 14, -0.5, 0.5),
        eps: 1e-5,
        relu,
    }
}

/// Compares the fused convolution with the normalization then the convolution; an error names
/// the case when they differ in any bit.
fn check_norm<K: Norm>(op: &K, x: &Tensor, w: &ConvWeights, precision: ConvPrecision, what: &str) -> Result<(), Failed> {
    let fused = norm_conv(x, op, w, precision, Implementation::Fast)?.ok_or_else(|| format!("{what}: not fused"))?;
    let want = conv2d(&op.alone(x), w, precision, Implementation::Fast)?;
    same_bits(&fused, &want, what)
}

fn same_bits(fused: &Tensor, want: &Tensor, what: &str) -> Result<(), Failed> {
    let (a, b) = (fused.flatten_all()?.to_vec1::<f32>()?, want.flatten_all()?.to_vec1::<f32>()?);
    if fused.dims() != want.dims() || a.iter().zip(&b).any(|(p, q)| p.to_bits() != q.to_bits()) {
        let diff = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        return Err(format!("{what}: fused {:?} differs from the two operations {:?} (max |Δ| {diff:e})", fused.dims(), want.dims()).into());
    }
    Ok(())
}

fn fused_equals_unfused(precision: ConvPrecision) -> Result<(), Failed> {
    let dev = Device::Cpu;
    // (batch, c_in, c_out, h, w, kernel, stride, padding): for bf16 the kernel tests' shapes
    // (1×1 packed directly, strided 1×1, 3×3 and odd kernels through the im2col) with at least
    // the two positions SN's unbiased variance needs; Winograd's (3×3, stride 1, at least 32
    // tiles per image).
    let cases: Vec<common::Case> = match precision {
        ConvPrecision::Bf16 => common::CASES.into_iter().filter(|c| c.3 * c.4 >= 2).collect(),
        ConvPrecision::F32 => vec![(2, 16, 16, 24, 24, 3, 1, 1), (1, 8, 32, 29, 31, 3, 1, 1)],
    };
    for (n, ci, co, h, wd, k, s, p) in cases {
        // Inputs with an offset and spread per channel, as a convolution's output has.
        let x = Tensor::from_vec(values(n * ci * h * wd, 1, -2.0, 3.0), (n, ci, h, wd), &dev)?;
        let weight = Tensor::from_vec(values(co * ci * k * k, 2, -0.3, 0.3), (co, ci, k, k), &dev)?;
        let w = ConvWeights::new(weight, None, s, p);
        let shape = format!("{precision:?} {n}x{ci}x{h}x{wd} → {co}, {k}x{k}/{s} pad {p}");
        for relu in [true, false] {
            check_norm(&switch(ci, true, relu), &x, &w, precision, &format!("SN {shape}, relu {relu}"))?;
            check_norm(&switch(ci, false, relu), &x, &w, precision, &format!("SN without BN {shape}, relu {relu}"))?;
            let gn = GroupNormInference {
                groups: if ci % 2 == 0 { 2 } else { 1 },
                weight: values(ci, 3, 0.5, 1.5),
                bias: values(ci, 4, -0.5, 0.5),
                eps: 1e-5,
                relu,
            };
            check_norm(&gn, &x, &w, precision, &format!("GN {shape}, relu {relu}"))?;
            let bn = ChannelAffine::batch_norm(
                &values(ci, 5, 0.5, 1.5),
                &values(ci, 6, -0.5, 0.5),
                &values(ci, 7, -1.0, 1.0),
                &values(ci, 8, 0.5, 2.0),
                1e-5,
                relu,
            );
            check_norm(&bn, &x, &w, precision, &format!("BN {shape}, relu {relu}"))?;
        }
    }
    Ok(())
}

/// f32 convolutions outside Winograd's path (1×1, strided, small images), biased convolutions,
/// other dtypes and the plain implementation are left to the caller: `None`.
fn f32_elsewhere_is_not_fused() -> Result<(), Failed> {
    let dev = Device::Cpu;
    let op = switch(8, true, true);
    let x = Tensor::from_vec(values(2 * 8 * 24 * 24, 1, -2.0, 3.0), (2, 8, 24, 24), &dev)?;
    let conv = |k: usize, s: usize, bias: bool| {
        let weight = Tensor::from_vec(values(8 * 8 * k * k, 2, -0.3, 0.3), (8, 8, k, k), &dev).unwrap();
        ConvWeights::new(weight, bias.then(|| Tensor::zeros(8, DType::F32, &dev).unwrap()), s, k / 2)
    };
    let none = |x: &Tensor, w: &ConvWeights, precision, imp| norm_conv(x, &op, w, precision, imp).map(|t| t.is_none());
    let cases = [
        (none(&x, &conv(1, 1, false), ConvPrecision::F32, Implementation::Fast)?, "f32 1x1"),
        (none(&x, &conv(3, 2, false), ConvPrecision::F32, Implementation::Fast)?, "f32 3x3 stride 2"),
        (
            none(&x.narrow(2, 0, 8)?.narrow(3, 0, 8)?, &conv(3, 1, false), ConvPrecision::F32, Implementation::Fast)?,
            "f32 3x3 on 8x8 (4 tiles)",
        ),
        (none(&x, &conv(3, 1, true), ConvPrecision::Bf16, Implementation::Fast)?, "biased"),
        (none(&x, &conv(3, 1, false), ConvPrecision::Bf16, Implementation::Plain)?, "plain"),
        (none(&x.to_dtype(DType::F64)?, &conv(3, 1, false), ConvPrecision::F32, Implementation::Fast)?, "f64 input"),
    ];
    match cases.iter().find(|(is_none, _)| !is_none) {
        Some((_, what)) => Err(format!("{what}: fused where no kernel fuses it").into()),
        None => Ok(()),
    }
}

fn norm_max_pool_equals_unfused() -> Result<(), Failed> {
    let dev = Device::Cpu;
    for (n, c, h, w) in [(2, 4, 16, 16), (1, 3, 15, 9), (3, 2, 2, 3), (1, 8, 112, 112)] {
        let x = Tensor::from_vec(values(n * c * h * w, 9, -2.0, 3.0), (n, c, h, w), &dev)?;
        for padding in [PoolPadding::Torch, PoolPadding::TfSame, PoolPadding::CaffeCeil] {
            for relu in [true, false] {
                let what = format!("{n}x{c}x{h}x{w}, {padding:?}, relu {relu}");
                let pool = |op: &dyn Fn(&Tensor) -> Tensor| max_pool_3x3_s2(&op(&x), padding, Implementation::Fast);
                let fused = |r: candle_core::Result<Option<Tensor>>, name: &str| {
                    r?.ok_or_else(|| Failed::from(format!("{name} {what}: not fused")))
                };
                let sn = switch(c, true, relu);
                same_bits(
                    &fused(norm_max_pool_3x3_s2(&x, &sn, padding, Implementation::Fast), "SN")?,
                    &pool(&|x| sn.alone(x))?,
                    &format!("SN {what}"),
                )?;
                let gn = GroupNormInference { groups: 1, weight: values(c, 3, 0.5, 1.5), bias: values(c, 4, -0.5, 0.5), eps: 1e-5, relu };
                same_bits(
                    &fused(norm_max_pool_3x3_s2(&x, &gn, padding, Implementation::Fast), "GN")?,
                    &pool(&|x| gn.alone(x))?,
                    &format!("GN {what}"),
                )?;
                // A negative scale: the pool must map before it takes the maximum.
                let mut scale = values(c, 5, 0.5, 1.5);
                scale[0] = -scale[0];
                let bn = ChannelAffine { scale, shift: values(c, 6, -0.5, 0.5), relu };
                same_bits(
                    &fused(norm_max_pool_3x3_s2(&x, &bn, padding, Implementation::Fast), "BN")?,
                    &pool(&|x| bn.alone(x))?,
                    &format!("BN {what}"),
                )?;
            }
        }
    }
    Ok(())
}

/// A bf16 convolution files its output planes' moments ([`snzoo_kernels::plane_stats`]), and
/// each normalization entry point takes them for that output instead of measuring them: the
/// result is the normalization of a copy of the output (a new tensor, whose moments are
/// measured) up to the rounding of the moments.
fn moments_handed_on() -> Result<(), Failed> {
    let dev = Device::Cpu;
    let (n, c, h, w) = (2, 40, 23, 21);
    let x = Tensor::from_vec(values(n * 24 * h * w, 21, 0.0, 2.0), (n, 24, h, w), &dev)?;
    let conv = ConvWeights::new(Tensor::from_vec(values(c * 24 * 9, 22, -0.3, 0.4), (c, 24, 3, 3), &dev)?, None, 1, 1);
    let next = ConvWeights::new(Tensor::from_vec(values(16 * c, 23, -0.3, 0.3), (16, c, 1, 1), &dev)?, None, 1, 0);
    let op = switch(c, true, true);
    let fresh = |y: &Tensor| Tensor::from_vec(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), y.dims(), &dev).unwrap();
    let produce = || conv2d(&x, &conv, ConvPrecision::Bf16, Implementation::Fast);

    let y = produce()?;
    if snzoo_kernels::plane_stats::take(&y).is_none() {
        return Err("conv2d (bf16) filed no moments for its output".into());
    }
    type Consumer<'a> = Box<dyn Fn(&Tensor) -> candle_core::Result<Tensor> + 'a>;
    let residual = Tensor::from_vec(values(n * c * h * w, 24, -1.0, 1.0), (n, c, h, w), &dev)?;
    let consumers: [(&str, Consumer); 4] = [
        ("switch_norm", Box::new(|y| switch_norm(y, &op, Implementation::Fast))),
        ("norm_add", Box::new(|y| norm_add(y, &residual, &op, Implementation::Fast))),
        ("norm_conv", Box::new(|y| Ok(norm_conv(y, &op, &next, ConvPrecision::Bf16, Implementation::Fast)?.expect("bf16 fuses")))),
        ("norm_max_pool", Box::new(|y| Ok(norm_max_pool_3x3_s2(y, &op, PoolPadding::Torch, Implementation::Fast)?.expect("fuses")))),
    ];
    for (what, consume) in consumers {
        let y = produce()?;
        let got = consume(&y)?;
        if snzoo_kernels::plane_stats::take(&y).is_some() {
            return Err(format!("{what} left the moments of its input in the table").into());
        }
        let want = consume(&fresh(&y))?;
        let diff = (&got - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        let scale = want.abs()?.max_all()?.to_scalar::<f32>()?;
        // bf16 rounding inside norm_conv can flip on a moment's last bit: one bf16 step at most.
        let bound = if what == "norm_conv" { 1e-2 } else { 1e-5 };
        if diff > bound * scale {
            return Err(format!("{what}: {diff:e} from the normalization of a copy (max {scale})").into());
        }
    }
    // BatchNorm's affine needs no moments, but takes its input's entry out of the table all the
    // same (the same bits as on a copy).
    let bn = ChannelAffine { scale: values(c, 25, 0.5, 1.5), shift: values(c, 26, -0.5, 0.5), relu: true };
    let y = produce()?;
    let got = channel_affine(&y, &bn, Implementation::Fast)?;
    if snzoo_kernels::plane_stats::take(&y).is_some() {
        return Err("channel_affine left the moments of its input in the table".into());
    }
    same_bits(&got, &channel_affine(&fresh(&y), &bn, Implementation::Fast)?, "channel_affine")
}

/// The residual addition files its output planes' moments, measured as the normalization measures
/// them: the normalization of the sum (taking them) is bit for bit the normalization of a copy
/// (measuring them), with and without the ReLU, on one thread and spread over two.
fn residual_add_moments() -> Result<(), Failed> {
    let dev = Device::Cpu;
    // 7×7 planes (one task) and 40×41 ones (past the size that spreads over threads).
    for (n, c, h, w) in [(2, 6, 7, 7), (2, 48, 40, 41)] {
        let a = Tensor::from_vec(values(n * c * h * w, 31, -1.0, 2.0), (n, c, h, w), &dev)?;
        let b = Tensor::from_vec(values(n * c * h * w, 32, -1.0, 1.0), (n, c, h, w), &dev)?;
        let op = switch(c, true, false);
        for relu in [false, true] {
            if snzoo_kernels::plane_stats::take(&residual_add(&a, &b, relu, Implementation::Fast)?).is_none() {
                return Err("residual_add filed no moments for its output".into());
            }
            let y = residual_add(&a, &b, relu, Implementation::Fast)?;
            let copy = Tensor::from_vec(y.flatten_all()?.to_vec1::<f32>()?, y.dims(), &dev)?;
            let got = switch_norm(&y, &op, Implementation::Fast)?;
            if snzoo_kernels::plane_stats::take(&y).is_some() {
                return Err("switch_norm left the sum's moments in the table".into());
            }
            same_bits(&got, &switch_norm(&copy, &op, Implementation::Fast)?, &format!("{:?} relu {relu}", (n, c, h, w)))?;
        }
    }
    Ok(())
}
