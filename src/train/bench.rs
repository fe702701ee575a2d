//! `bench --train`: training throughput (forward + loss + backward + SGD update) of a
//! deploy net turned into a train net (its final Softmax replaced by SoftmaxWithLoss on a
//! label input), with random data, as Caffe's `caffe time` on a DummyData train net.

use super::config::SolverConfig;
use super::net::TrainNet;
use super::solver::Solver;
use crate::ir::{InputSpec, Layer, Net, Op, Phase, Tensor};
use crate::ops::loss::SoftmaxLossParams;
use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::time::Instant;

/// One layer's share of a training iteration.
#[derive(Debug, Clone, Serialize)]
pub struct LayerTrainTime {
    /// Layer name.
    pub layer: String,
    /// Caffe type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Mean forward time, ms.
    pub forward_ms: f64,
    /// Mean backward time, ms.
    pub backward_ms: f64,
}

/// The result of a training benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct TrainBench {
    /// Images per iteration.
    pub batch: usize,
    /// Timed iterations.
    pub iters: usize,
    /// Worker threads.
    pub threads: usize,
    /// Mean seconds per iteration (forward + backward + update).
    pub seconds_per_iter: f64,
    /// Training images per second.
    pub images_per_s: f64,
    /// Mean seconds of the SGD update per iteration.
    pub update_s: f64,
    /// Peak resident memory of the process (Linux `VmHWM`), MiB.
    pub peak_rss_mib: Option<f64>,
    /// Per-layer means.
    pub layers: Vec<LayerTrainTime>,
}

/// Turns a deploy net into a train net: the last Softmax becomes SoftmaxWithLoss against
/// a new `label` input of shape `[batch]`.
pub fn train_net_from_deploy(mut net: Net, batch: usize) -> Result<Net> {
    net.set_batch(batch);
    let Some(i) = net
        .layers
        .iter()
        .rposition(|l| matches!(l.op, Op::Softmax(_)))
    else {
        bail!("net '{}' has no Softmax layer to train against", net.name);
    };
    let scores = net.layers[i].bottoms[0].clone();
    net.layers.truncate(i);
    net.inputs.push(InputSpec {
        name: "label".into(),
        shape: vec![batch],
    });
    net.layers.push(Layer::new(
        "loss",
        Op::SoftmaxWithLoss(SoftmaxLossParams::default()),
        vec![scores, "label".into()],
        vec!["loss".into()],
    ));
    Ok(net)
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Times `iters` training iterations (after `warmup`) of a deploy net with weights.
pub fn bench_train(
    deploy: Net,
    batch: usize,
    iters: usize,
    warmup: usize,
    threads: usize,
) -> Result<TrainBench> {
    let net = train_net_from_deploy(deploy, batch)?;
    let input = net
        .inputs
        .first()
        .context("the net declares no input")?
        .clone();
    let classes = {
        let shapes = net.infer_shapes()?;
        let loss = net.layers.last().context("empty net")?;
        shapes[&loss.bottoms[0]][1]
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let data = Tensor::from_vec(
        &input.shape,
        (0..input.shape.iter().product::<usize>())
            .map(|_| rng.random_range(-100.0f32..100.0))
            .collect(),
    )
    .context("input size")?;
    let labels = Tensor::from_vec(&[batch], (0..batch).map(|i| (i % classes) as f32).collect())
        .context("labels")?;
    let mut tn = TrainNet::new(net, Phase::Train, threads, 1)?;
    let config = SolverConfig::from_proto(&crate::proto::caffe::SolverParameter {
        net: Some("bench".into()),
        base_lr: Some(0.001),
        lr_policy: Some("fixed".into()),
        momentum: Some(0.9),
        weight_decay: Some(0.0005),
        ..Default::default()
    })?;
    let mut solver = Solver::new(config, &tn.param_shapes());
    let n_layers = tn.net.layers.len();
    let mut sums = vec![(0.0f64, 0.0f64); n_layers];
    let mut total = 0.0f64;
    let mut update = 0.0f64;
    for it in 0..warmup + iters {
        let started = Instant::now();
        tn.clear_param_diffs();
        tn.forward_backward(vec![
            (input.name.clone(), data.clone()),
            ("label".into(), labels.clone()),
        ])?;
        let u = Instant::now();
        solver.apply_update(&mut tn.learnables())?;
        solver.iter += 1;
        if it >= warmup {
            update += u.elapsed().as_secs_f64();
            total += started.elapsed().as_secs_f64();
            for (s, t) in sums.iter_mut().zip(tn.layer_times()) {
                s.0 += t.0.as_secs_f64();
                s.1 += t.1.as_secs_f64();
            }
        }
    }
    let n = iters.max(1) as f64;
    Ok(TrainBench {
        batch,
        iters,
        threads,
        seconds_per_iter: total / n,
        images_per_s: batch as f64 * n / total.max(f64::MIN_POSITIVE),
        update_s: update / n,
        peak_rss_mib: peak_rss_mib(),
        layers: tn
            .net
            .layers
            .iter()
            .zip(&sums)
            .map(|(l, s)| LayerTrainTime {
                layer: l.name.clone(),
                kind: l.op.caffe_type().into(),
                forward_ms: 1e3 * s.0 / n,
                backward_ms: 1e3 * s.1 / n,
            })
            .collect(),
    })
}
