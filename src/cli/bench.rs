//! `agegender bench`: latency, throughput and achieved GFLOP/s, overall and per layer.
//! Speed is measured here (and recorded in BENCHMARKS.md), never in timed tests.

use super::common::{single_input, tract_model, EngineKind};
use crate::exec::{Engine, ExecOptions, LayerTiming};
use crate::ir::Tensor;
use crate::model::{load_model, load_model_random};
use anyhow::Result;
use clap::Args as ClapArgs;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Arguments of `bench`.
#[derive(ClapArgs, Debug)]
#[command(after_help = "Examples:
  agegender bench age_net_definitions/deploy.prototxt --random-weights --batch 50 --iters 10
  agegender bench deploy.prototxt --weights age_net.caffemodel --batch 1 --iters 50 --json
  agegender bench deploy.prototxt --random-weights --batch 50 --iters 5 --train")]
pub struct Args {
    /// Model (.prototxt, .caffemodel, .onnx, .graph).
    pub model: PathBuf,
    /// Weights for a .prototxt model.
    #[arg(short, long, conflicts_with = "random_weights")]
    pub weights: Option<PathBuf>,
    /// Fill a weightless prototxt from its fillers (seeded; gaussian 0.01 where none given).
    #[arg(long)]
    pub random_weights: bool,
    /// Images per forward pass.
    #[arg(long, default_value_t = 1, value_parser = crate::cli::common::positive::<u32>, allow_negative_numbers = true)]
    pub batch: u32,
    /// Timed iterations.
    #[arg(long, default_value_t = 20, value_parser = crate::cli::common::positive::<u32>, allow_negative_numbers = true)]
    pub iters: u32,
    /// Untimed warm-up iterations.
    #[arg(long, default_value_t = 2)]
    pub warmup: u32,
    /// Engine.
    #[arg(long, value_enum, default_value_t = EngineKind::Native)]
    pub engine: EngineKind,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Time training instead (forward + loss + backward + SGD update; the final Softmax
    /// becomes SoftmaxWithLoss).
    #[arg(long)]
    pub train: bool,
}

/// One layer's share of a benchmark.
#[derive(Debug, Serialize)]
pub struct LayerBench {
    /// Layer name.
    pub layer: String,
    /// Caffe type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Mean time per forward pass, ms.
    pub mean_ms: f64,
    /// Achieved GFLOP/s in this layer.
    pub gflops: f64,
    /// Layer it was fused into, if any.
    pub fused_into: Option<String>,
}

/// The benchmark report.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    /// Model path.
    pub model: String,
    /// Engine name.
    pub engine: String,
    /// Batch size.
    pub batch: usize,
    /// Worker threads.
    pub threads: usize,
    /// Timed iterations.
    pub iters: usize,
    /// Mean forward latency, ms.
    pub mean_ms: f64,
    /// Median forward latency, ms.
    pub median_ms: f64,
    /// Images per second at the mean.
    pub images_per_s: f64,
    /// Forward FLOPs per batch.
    pub flops: u64,
    /// Achieved GFLOP/s at the mean.
    pub gflops: f64,
    /// Per-layer breakdown (native engine).
    pub layers: Vec<LayerBench>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs `bench`.
pub fn run(args: Args) -> Result<ExitCode> {
    let net = if args.random_weights {
        let (net, filled) = load_model_random(&args.model, 1)?;
        if !args.json {
            eprintln!("filled {} layers with seeded random weights", filled.len());
        }
        net
    } else {
        load_model(&args.model, args.weights.as_deref())?
    };
    let batch = args.batch as usize;
    if args.train {
        return bench_train_command(net, &args);
    }
    let (input, declared) = single_input(&net)?;
    let mut shape = declared.clone();
    shape[0] = batch;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let n: usize = shape.iter().product();
    let x = Tensor::from_vec(
        &shape,
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
    )
    .expect("sized");
    let mut totals = Vec::with_capacity(args.iters as usize);
    let mut per_layer: Vec<LayerTiming> = Vec::new();
    let native = Engine::with_options(
        &net,
        ExecOptions {
            threads: args.threads,
            batch: Some(batch),
            ..ExecOptions::default()
        },
    )?;
    let flops = native.flops();
    let threads = native.threads();
    match args.engine {
        EngineKind::Native => {
            for _ in 0..args.warmup {
                native.run([(input.as_str(), x.clone())])?;
            }
            for _ in 0..args.iters {
                let xi = x.clone();
                let t0 = Instant::now();
                let (_, timings) = native.run_timed([(input.as_str(), xi)])?;
                totals.push(t0.elapsed());
                if per_layer.is_empty() {
                    per_layer = timings;
                } else {
                    for (acc, t) in per_layer.iter_mut().zip(timings) {
                        acc.time += t.time;
                    }
                }
            }
        }
        EngineKind::Tract => {
            drop(native);
            let model = tract_model(&args.model, &net, &input, &shape, args.threads)?;
            for _ in 0..args.warmup {
                model.run(std::slice::from_ref(&x))?;
            }
            for _ in 0..args.iters {
                let t0 = Instant::now();
                model.run(std::slice::from_ref(&x))?;
                totals.push(t0.elapsed());
            }
        }
        EngineKind::F16 => {
            drop(native);
            let engine = crate::exec::f16::F16Engine::with_options(
                &net,
                ExecOptions {
                    threads: args.threads,
                    batch: Some(batch),
                    ..ExecOptions::default()
                },
            )?;
            for _ in 0..args.warmup {
                engine.run([(input.as_str(), x.clone())])?;
            }
            for _ in 0..args.iters {
                let xi = x.clone();
                let t0 = Instant::now();
                engine.run([(input.as_str(), xi)])?;
                totals.push(t0.elapsed());
            }
        }
    }
    let iters = totals.len();
    let mean = totals.iter().sum::<Duration>() / iters as u32;
    let mut sorted = totals.clone();
    sorted.sort();
    let median = sorted[iters / 2];
    let report = BenchReport {
        model: args.model.display().to_string(),
        engine: format!("{:?}", args.engine).to_lowercase(),
        batch,
        threads,
        iters,
        mean_ms: ms(mean),
        median_ms: ms(median),
        images_per_s: batch as f64 / mean.as_secs_f64(),
        flops,
        gflops: flops as f64 / mean.as_secs_f64() / 1e9,
        layers: per_layer
            .iter()
            .map(|t| {
                let mean_s = t.time.as_secs_f64() / iters as f64;
                LayerBench {
                    layer: t.layer.clone(),
                    kind: t.kind.to_string(),
                    mean_ms: mean_s * 1e3,
                    gflops: if mean_s > 0.0 {
                        t.flops as f64 / mean_s / 1e9
                    } else {
                        0.0
                    },
                    fused_into: t.fused_into.clone(),
                }
            })
            .collect(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &BenchReport) {
    println!(
        "{} — engine {}, batch {}, {} threads, {} iterations",
        r.model, r.engine, r.batch, r.threads, r.iters
    );
    println!(
        "latency mean {:.2} ms, median {:.2} ms; {:.1} images/s; {:.1} GFLOP/s ({:.3} GFLOP per batch)",
        r.mean_ms,
        r.median_ms,
        r.images_per_s,
        r.gflops,
        r.flops as f64 / 1e9
    );
    println!(
        "{:<14} {:<14} {:>10} {:>10}",
        "layer", "type", "ms", "GFLOP/s"
    );
    for l in &r.layers {
        match &l.fused_into {
            Some(f) => println!(
                "{:<14} {:<14} {:>10} {:>10}",
                l.layer,
                l.kind,
                format!("(in {f})"),
                ""
            ),
            None => println!(
                "{:<14} {:<14} {:>10.3} {:>10.1}",
                l.layer, l.kind, l.mean_ms, l.gflops
            ),
        }
    }
}

/// `bench --train`: training throughput and per-layer forward/backward times.
fn bench_train_command(net: crate::ir::Net, args: &Args) -> Result<ExitCode> {
    let threads = if args.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        args.threads
    };
    let r = crate::train::bench::bench_train(
        net,
        args.batch as usize,
        args.iters as usize,
        args.warmup as usize,
        threads,
    )?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "train batch {}: {:.3} s/iter, {:.1} images/s ({} threads, update {:.1} ms, peak RSS {})",
        r.batch,
        r.seconds_per_iter,
        r.images_per_s,
        r.threads,
        1e3 * r.update_s,
        r.peak_rss_mib
            .map(|m| format!("{m:.0} MiB"))
            .unwrap_or_else(|| "n/a".into())
    );
    println!(
        "{:<12} {:<16} {:>11} {:>12}",
        "layer", "type", "forward ms", "backward ms"
    );
    for l in &r.layers {
        println!(
            "{:<12} {:<16} {:>11.1} {:>12.1}",
            l.layer, l.kind, l.forward_ms, l.backward_ms
        );
    }
    Ok(ExitCode::SUCCESS)
}
