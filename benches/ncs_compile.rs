//! Benchmark: compiling the full-size Levi & Hassner AgeNet (≈ 11.4 M parameters, 8 age
//! classes) into an NCS graph, and lifting the graph back into the IR. The net is built in
//! code from the published layer list with deterministic pseudo-random weights, so the
//! benchmark needs no fixtures. Run: `cargo bench --bench ncs_compile --profile dev`.

use agegender::ir::{InputSpec, Layer, Net, Op, Tensor};
use agegender::ncs::{compile, graph_to_net, CompileOptions, Graph};
use agegender::ops::{
    activation::ReluParams,
    conv::ConvParams,
    dropout::DropoutParams,
    inner_product::InnerProductParams,
    lrn::LrnParams,
    pool::{PoolMethod, PoolParams},
    softmax::SoftmaxParams,
};
use std::time::{Duration, Instant};

/// xorshift64 values in [−0.05, 0.05).
fn weights(state: &mut u64, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    let data = (0..n)
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            ((*state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
        })
        .collect();
    Tensor::from_vec(shape, data).expect("shape and data agree")
}

fn agenet() -> Net {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut layers = Vec::new();
    let mut last = "data".to_string();
    let mut add = |name: &str, op: Op, blobs: Vec<Tensor>, in_place: bool| {
        let top = if in_place {
            format!("{last}/{name}")
        } else {
            name.to_string()
        };
        let mut l = Layer::new(name, op, vec![last.clone()], vec![top.clone()]);
        l.blobs = blobs;
        if in_place {
            l.caffe_tops = vec![last.split('/').next().unwrap_or("").to_string()];
        }
        layers.push(l);
        last = top;
    };
    let conv = |k, ks, s, p| {
        Op::Convolution(ConvParams {
            num_output: k,
            kernel: [ks, ks],
            stride: [s, s],
            pad: [p, p],
            ..ConvParams::default()
        })
    };
    let pool = || {
        Op::Pooling(PoolParams {
            method: PoolMethod::Max,
            kernel: [3, 3],
            stride: [2, 2],
            ..PoolParams::default()
        })
    };
    let lrn = || {
        Op::Lrn(LrnParams {
            local_size: 5,
            alpha: 1e-4,
            beta: 0.75,
            ..LrnParams::default()
        })
    };
    let fc = |n| {
        Op::InnerProduct(InnerProductParams {
            num_output: n,
            ..InnerProductParams::default()
        })
    };
    let relu = || Op::Relu(ReluParams::default());
    let w = |rng: &mut u64, s: &[usize]| weights(rng, s);
    let b1 = vec![w(&mut rng, &[96, 3, 7, 7]), w(&mut rng, &[96])];
    add("conv1", conv(96, 7, 4, 0), b1, false);
    add("relu1", relu(), vec![], true);
    add("pool1", pool(), vec![], false);
    add("norm1", lrn(), vec![], false);
    let b2 = vec![w(&mut rng, &[256, 96, 5, 5]), w(&mut rng, &[256])];
    add("conv2", conv(256, 5, 1, 2), b2, false);
    add("relu2", relu(), vec![], true);
    add("pool2", pool(), vec![], false);
    add("norm2", lrn(), vec![], false);
    let b3 = vec![w(&mut rng, &[384, 256, 3, 3]), w(&mut rng, &[384])];
    add("conv3", conv(384, 3, 1, 1), b3, false);
    add("relu3", relu(), vec![], true);
    add("pool5", pool(), vec![], false);
    let b6 = vec![w(&mut rng, &[512, 18816]), w(&mut rng, &[512])];
    add("fc6", fc(512), b6, false);
    add("relu6", relu(), vec![], true);
    add("drop6", Op::Dropout(DropoutParams::default()), vec![], true);
    let b7 = vec![w(&mut rng, &[512, 512]), w(&mut rng, &[512])];
    add("fc7", fc(512), b7, false);
    add("relu7", relu(), vec![], true);
    add("drop7", Op::Dropout(DropoutParams::default()), vec![], true);
    let b8 = vec![w(&mut rng, &[8, 512]), w(&mut rng, &[8])];
    add("fc8", fc(8), b8, false);
    add("prob", Op::Softmax(SoftmaxParams::default()), vec![], false);
    Net {
        name: "AgeNet".into(),
        inputs: vec![InputSpec {
            name: "data".into(),
            shape: vec![1, 3, 227, 227],
        }],
        layers,
        ..Net::default()
    }
}

/// Time this thread has spent on a CPU (Linux `/proc/thread-self/schedstat`, ns), so the
/// figure means something on a loaded machine; `None` elsewhere.
fn cpu_time() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let net = agenet();
    net.infer_shapes().expect("AgeNet shapes");
    println!("AgeNet: {} parameters", net.param_count());
    let runs = 9;
    let mut compile_t = Vec::new();
    let mut compile_cpu = Vec::new();
    let mut bytes_t = Vec::new();
    let mut lift_t = Vec::new();
    let mut size = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let cpu = cpu_time();
        let c = compile(&net, &CompileOptions::default()).expect("AgeNet compiles");
        compile_t.push(t.elapsed());
        if let (Some(a), Some(b)) = (cpu, cpu_time()) {
            compile_cpu.push(b - a);
        }
        let t = Instant::now();
        let bytes = c.graph.to_bytes();
        bytes_t.push(t.elapsed());
        size = bytes.len();
        let t = Instant::now();
        let g = Graph::parse(&bytes).expect("own output parses");
        graph_to_net(&g).expect("lifts");
        lift_t.push(t.elapsed());
    }
    println!("graph: {size} bytes");
    println!(
        "compile (IR → Graph):       median {:?} of {runs}",
        median(compile_t)
    );
    if !compile_cpu.is_empty() {
        println!(
            "  of which on-CPU:          median {:?}",
            median(compile_cpu)
        );
    }
    println!(
        "encode (Graph → bytes):     median {:?} of {runs}",
        median(bytes_t)
    );
    println!(
        "read + lift (bytes → IR):   median {:?} of {runs}",
        median(lift_t)
    );
}
