//! Benchmark: compiling the full-size Levi & Hassner AgeNet (≈ 11.4 M parameters, 9 age
//! classes) into an NCS graph, and lifting the graph back into the IR. The net is the
//! pipeline's deploy prototxt with seeded random weights, so the benchmark needs no
//! fixtures. Run: `cargo bench --bench ncs_compile --profile dev`.

use agegender::ir::Net;
use agegender::model::load_model_random;
use agegender::ncs::{compile, graph_to_net, CompileOptions, Graph};
use agegender::pipeline::prototxt::{deploy_prototxt, NetKind};
use std::time::{Duration, Instant};

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
