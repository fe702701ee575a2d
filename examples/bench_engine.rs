//! Benchmark of the native f32 engine on the full-size Levi & Hassner AgeNet (3×227×227,
//! 96/256/384 conv filters, fc 512, 9 outputs; 1.4185 GFLOP per image) with random weights
//! (speed does not depend on them).
//!
//! ```text
//! cargo run --example bench_engine -- [--threads N] [--batch B] [--runs R] [--latency-runs L]
//! ```
//! Prints the machine's FMA peak measured just before (so that figures taken on a busy
//! machine can be read as a share of what the cores delivered at the time), batch-1
//! latency, batch-B throughput, the process CPU time per image, and per-layer time and
//! GFLOP/s for both batch sizes.

use agegender::exec::{Engine, ExecOptions, LayerTiming};
use agegender::ir::{Net, Tensor};
use agegender::model::load_model_random;
use agegender::pipeline::prototxt::{deploy_prototxt, NetKind};
use std::time::{Duration, Instant};

/// Deterministic pseudo-random values in [−scale, scale) (xorshift).
fn random(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// The Levi & Hassner AgeNet deploy net, as its prototxt defines it.
fn agenet() -> Net {
    // the pipeline's own deploy prototxt (Levi & Hassner's layers, 227 px, 9 outputs),
    // loaded as a user's file is, with seeded random weights
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("age_deploy.prototxt");
    std::fs::write(&path, deploy_prototxt(NetKind::Age, 227)).expect("write the prototxt");
    load_model_random(&path, 1)
        .expect("the deploy prototxt loads")
        .0
}

/// Process CPU time (all threads), from `CLOCK_PROCESS_CPUTIME_ID`.
fn process_cpu() -> Duration {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    let mut t = Timespec { sec: 0, nsec: 0 };
    // SAFETY: clock_gettime writes one timespec; 2 is CLOCK_PROCESS_CPUTIME_ID on Linux.
    unsafe { clock_gettime(2, &mut t) };
    Duration::new(t.sec as u64, t.nsec as u32)
}

/// FMA throughput of one thread: 12 independent vector accumulators for `iters` rounds.
#[cfg(target_arch = "x86_64")]
fn fma_peak_one_thread(iters: u64) -> (f64, &'static str) {
    use std::arch::x86_64::*;
    #[target_feature(enable = "avx512f")]
    unsafe fn avx512(iters: u64) -> f32 {
        let mut a = [_mm512_set1_ps(1.0); 12];
        let b = _mm512_set1_ps(std::hint::black_box(0.999_999));
        let c = _mm512_set1_ps(std::hint::black_box(1e-6));
        for _ in 0..iters {
            for x in a.iter_mut() {
                *x = _mm512_fmadd_ps(*x, b, c);
            }
        }
        a.iter().map(|x| _mm512_reduce_add_ps(*x)).sum()
    }
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2(iters: u64) -> f32 {
        let mut a = [_mm256_set1_ps(1.0); 12];
        let b = _mm256_set1_ps(std::hint::black_box(0.999_999));
        let c = _mm256_set1_ps(std::hint::black_box(1e-6));
        for _ in 0..iters {
            for x in a.iter_mut() {
                *x = _mm256_fmadd_ps(*x, b, c);
            }
        }
        let mut out = [0.0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), a[0]);
        out[0]
    }
    let t = Instant::now();
    // SAFETY: each kernel runs only when the CPU reports its features.
    let (flops_per_iter, kind) = if is_x86_feature_detected!("avx512f") {
        std::hint::black_box(unsafe { avx512(iters) });
        (12 * 32, "AVX-512")
    } else if is_x86_feature_detected!("fma") {
        std::hint::black_box(unsafe { avx2(iters) });
        (12 * 16, "AVX2")
    } else {
        return (0.0, "none");
    };
    (
        (iters * flops_per_iter) as f64 / t.elapsed().as_secs_f64() / 1e9,
        kind,
    )
}

#[cfg(not(target_arch = "x86_64"))]
fn fma_peak_one_thread(_iters: u64) -> (f64, &'static str) {
    (0.0, "unknown")
}

/// The FMA peak of `threads` cores: one thread's measured peak (best of 3) times the
/// thread count. Measuring the threads at once would under-report on a shared machine,
/// where another process may hold one of the cores during the probe.
fn fma_peak(threads: usize) -> (f64, &'static str) {
    let mut best = (0.0, "none");
    for _ in 0..3 {
        let r = fma_peak_one_thread(20_000_000);
        if r.0 > best.0 {
            best = r;
        }
    }
    (best.0 * threads as f64, best.1)
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn input(batch: usize) -> Tensor {
    Tensor::from_vec(
        &[batch, 3, 227, 227],
        random(batch * 3 * 227 * 227, 99, 100.0),
    )
    .unwrap()
}

/// Per-layer minimum over runs (the least-disturbed measurement of each layer).
fn merge_min(acc: &mut Vec<LayerTiming>, run: Vec<LayerTiming>) {
    if acc.is_empty() {
        *acc = run;
    } else {
        for (a, r) in acc.iter_mut().zip(run) {
            a.time = a.time.min(r.time);
        }
    }
}

fn print_layers(title: &str, timings: &[LayerTiming], peak: f64) {
    println!("\n{title}");
    println!(
        "{:<8} {:<12} {:>9} {:>8} {:>9} {:>6}",
        "layer", "type", "ms", "GFLOP", "GFLOP/s", "%peak"
    );
    let total: Duration = timings.iter().map(|t| t.time).sum();
    for t in timings {
        let ms = t.time.as_secs_f64() * 1e3;
        let gflop = t.flops as f64 / 1e9;
        let (rate, share) = if ms > 0.0 && t.flops > 0 && t.fused_into.is_none() {
            let r = gflop / (ms / 1e3);
            (format!("{r:.1}"), format!("{:.0}", 100.0 * r / peak))
        } else {
            ("-".into(), "-".into())
        };
        let note = t
            .fused_into
            .as_ref()
            .map(|f| format!(" (fused into {f})"))
            .unwrap_or_default();
        println!(
            "{:<8} {:<12} {:>9.3} {:>8.4} {:>9} {:>6}{note}",
            t.layer, t.kind, ms, gflop, rate, share
        );
    }
    println!("{:<8} {:<12} {:>9.3}", "sum", "", total.as_secs_f64() * 1e3);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads = arg(&args, "--threads", 0);
    let batch = arg(&args, "--batch", 50);
    let runs = arg(&args, "--runs", 5);
    let latency_runs = arg(&args, "--latency-runs", 30);
    let net = agenet();

    let one = Engine::with_options(
        &net,
        ExecOptions {
            threads,
            batch: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    let (peak, kind) = fma_peak(one.threads());
    println!(
        "threads {} | {:.4} GFLOP per image | FMA peak: {peak:.1} GFLOP/s ({kind}, one core measured now × threads)",
        one.threads(),
        one.flops() as f64 / 1e9
    );
    for _ in 0..3 {
        one.run([("data", input(1))]).unwrap();
    }
    let mut lat = Vec::new();
    let mut cpu = Duration::ZERO;
    let mut layers1 = Vec::new();
    for i in 0..latency_runs {
        let x = input(1);
        if i % 2 == 0 {
            let (t, c) = (Instant::now(), process_cpu());
            one.run([("data", x)]).unwrap();
            lat.push(t.elapsed());
            cpu += process_cpu() - c;
        } else {
            let (_, timing) = one.run_timed([("data", x)]).unwrap();
            merge_min(&mut layers1, timing);
        }
    }
    lat.sort();
    println!(
        "batch 1 latency: min {:.2} ms, median {:.2} ms ({} runs); CPU {:.2} core-ms per image",
        lat[0].as_secs_f64() * 1e3,
        lat[lat.len() / 2].as_secs_f64() * 1e3,
        lat.len(),
        cpu.as_secs_f64() * 1e3 / lat.len() as f64
    );

    let many = Engine::with_options(
        &net,
        ExecOptions {
            threads,
            batch: Some(batch),
            ..Default::default()
        },
    )
    .unwrap();
    many.run([("data", input(batch))]).unwrap();
    let mut rates = Vec::new();
    let mut cpu = Duration::ZERO;
    let mut layers_b = Vec::new();
    for i in 0..runs * 2 {
        let x = input(batch);
        if i % 2 == 0 {
            let (t, c) = (Instant::now(), process_cpu());
            many.run([("data", x)]).unwrap();
            rates.push(batch as f64 / t.elapsed().as_secs_f64());
            cpu += process_cpu() - c;
        } else {
            let (_, timing) = many.run_timed([("data", x)]).unwrap();
            merge_min(&mut layers_b, timing);
        }
    }
    rates.sort_by(|a, b| b.partial_cmp(a).unwrap());
    let gflop = many.flops() as f64 / 1e9;
    let best = rates[0] * gflop / batch as f64;
    let cpu_per_image = cpu.as_secs_f64() / (runs * batch) as f64;
    println!(
        "batch {batch} throughput: best {:.1} img/s ({best:.1} GFLOP/s, {:.0}% of peak), median {:.1} img/s ({} runs); CPU {:.2} core-ms per image ({:.1} GFLOP per core-second)",
        rates[0],
        100.0 * best / peak,
        rates[rates.len() / 2],
        rates.len(),
        cpu_per_image * 1e3,
        gflop / batch as f64 / cpu_per_image
    );
    print_layers("batch 1, per layer (min over runs)", &layers1, peak);
    print_layers(
        &format!("batch {batch}, per layer (min over runs)"),
        &layers_b,
        peak,
    );
}
