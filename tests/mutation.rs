//! Seeded mutation fuzzing of every reader (issue 8): real seed files are mutated by bit
//! flips, byte insertions and deletions, truncations (at every structural boundary found in
//! the seed and at random offsets) and splices of two seeds. Each mutant goes to the matching
//! in-memory reader and, when that succeeds, to the next stage (IR import and shape
//! inference). A reader must return `Ok` or its typed error: never panic, never take more
//! than one second on a case, never request one allocation above [`ALLOC_BOUND`].
//!
//! Runs are deterministic (a fixed xorshift seed per format). Each format prints one summary
//! line with its case count (`cargo test --test mutation -- --nocapture`). Set
//! `AGEGENDER_MUTATION_SCALE=N` to run N times as many cases (same seeds, longer stream).

mod common;
use agegender::caffe::binaryproto::decode_binaryproto;
use agegender::caffe::caffemodel::decode_caffemodel;
use agegender::caffe::import::{build_net, check_net};
use agegender::caffe::load::caffemodel_deploy_proto;
use agegender::caffe::prototxt::parse_text;
use agegender::caffe::upgrade::upgrade_net;
use agegender::caffe::{load_net, net_from_proto};
use agegender::io::datum::encode_datum;
use agegender::io::datum::{datum_from_image, datum_shape, datum_to_tensor, decode_datum};
use agegender::io::image::ChwImage;
use agegender::io::npy::decode_npy;
use agegender::ir::Phase;
use agegender::ncs::{graph_to_net, Graph};
use agegender::onnx::pb::ModelProto;
use agegender::onnx::{export, import_model, ImportOptions};
use agegender::proto::caffe::{NetParameter, SolverParameter};
use agegender::testutil::shared;
use common::peak_alloc::{peak, reset_peak, PeakAlloc};
use prost::Message;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The largest single allocation a reader may request for one mutant. The biggest seed is
/// 3.6 MB, so anything near this bound means a claimed size was trusted.
const ALLOC_BOUND: usize = 256 << 20;

/// Time limit for one case (issue 8: "a hang beyond one second").
const CASE_LIMIT: Duration = Duration::from_secs(1);

/// Wraps the system allocator to record, per thread, the largest allocation requested.
#[global_allocator]
static GLOBAL: PeakAlloc = PeakAlloc;

/// xorshift64* — tiny, deterministic, good enough to pick offsets.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// One seed file: its name, bytes and the offsets where its structure changes (field or
/// record starts, header end, line starts).
struct Seed {
    name: String,
    bytes: Vec<u8>,
    boundaries: Vec<usize>,
    /// Input shape for the next stage where the file does not record one (a train-net
    /// caffemodel whose data came from an LMDB).
    input: Option<Vec<usize>>,
}

/// Picks an offset: half the time next to a structural boundary, otherwise (for big files)
/// within the first 4 KiB most of the time, where headers and small fields live.
fn pick_offset(rng: &mut Rng, seed: &Seed) -> usize {
    let len = seed.bytes.len();
    if len == 0 {
        return 0;
    }
    let r = rng.below(4);
    let off = if r < 2 && !seed.boundaries.is_empty() {
        let b = seed.boundaries[rng.below(seed.boundaries.len())];
        (b + rng.below(9)).saturating_sub(4)
    } else if r == 2 {
        rng.below(len.min(4096))
    } else {
        rng.below(len)
    };
    off.min(len - 1)
}

/// Builds mutant number `case` of `seed` and says what it did. The first cases truncate
/// at each boundary (up to half the case budget); the rest cycle through the mutation kinds.
fn mutate(
    case: usize,
    cases: usize,
    seed: &Seed,
    partner: &Seed,
    rng: &mut Rng,
) -> (String, Vec<u8>) {
    let b = &seed.bytes;
    let len = b.len();
    // At most half of a seed's cases are boundary truncations.
    let truncations = seed.boundaries.len().min(cases / 2);
    if case < truncations {
        let at = seed.boundaries[case].min(len);
        return (format!("truncate at boundary {at}"), b[..at].to_vec());
    }
    let mut out = b.clone();
    match rng.below(7) {
        0 | 1 => {
            let flips = 1 + rng.below(4);
            let mut what = Vec::new();
            for _ in 0..flips {
                if out.is_empty() {
                    break;
                }
                let at = pick_offset(rng, seed);
                let bit = rng.below(8);
                out[at] ^= 1 << bit;
                what.push(format!("{at}.{bit}"));
            }
            (format!("flip bits {}", what.join(",")), out)
        }
        2 => {
            let at = pick_offset(rng, seed);
            // Bytes that mean something to the formats: varint continuation, 0xFF, braces.
            const INTERESTING: [u8; 8] = [0x00, 0xFF, 0x80, 0x7F, b'{', b'}', b'\n', b':'];
            let byte = if rng.below(2) == 0 {
                INTERESTING[rng.below(INTERESTING.len())]
            } else {
                rng.next() as u8
            };
            let n = 1 + rng.below(8);
            for _ in 0..n {
                out.insert(at, byte);
            }
            (format!("insert {n}×0x{byte:02x} at {at}"), out)
        }
        3 => {
            if out.is_empty() {
                return ("delete nothing".into(), out);
            }
            let at = pick_offset(rng, seed);
            let n = (1 + rng.below(16)).min(len - at);
            out.drain(at..at + n);
            (format!("delete {n} at {at}"), out)
        }
        4 => {
            let at = rng.below(len + 1);
            out.truncate(at);
            (format!("truncate at {at}"), out)
        }
        5 => {
            // Overwrite 4 bytes with an extreme little-endian value (a claimed size).
            if len < 4 {
                return ("overwrite nothing".into(), out);
            }
            let at = pick_offset(rng, seed).min(len - 4);
            const EXTREME: [u32; 6] = [0, 1, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0xFFFF];
            let v = EXTREME[rng.below(EXTREME.len())];
            out[at..at + 4].copy_from_slice(&v.to_le_bytes());
            (format!("write 0x{v:08x} at {at}"), out)
        }
        _ => {
            let cut_a = pick_offset(rng, seed).min(len);
            let pb = &partner.bytes;
            let cut_b = rng.below(pb.len() + 1);
            let mut s = b[..cut_a].to_vec();
            s.extend_from_slice(&pb[cut_b..]);
            (
                format!(
                    "splice {}[..{cut_a}] + {}[{cut_b}..]",
                    seed.name, partner.name
                ),
                s,
            )
        }
    }
}

/// Field starts of a protobuf message, descending into length-delimited fields that parse
/// as messages themselves, up to `depth` levels and `limit` offsets.
fn proto_boundaries(
    bytes: &[u8],
    base: usize,
    depth: u32,
    out: &mut Vec<usize>,
    limit: usize,
) -> bool {
    let mut i = 0;
    let varint = |i: &mut usize| -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *bytes.get(*i)?;
            *i += 1;
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    };
    let mut starts = Vec::new();
    let mut nested = Vec::new();
    while i < bytes.len() {
        starts.push(base + i);
        let Some(tag) = varint(&mut i) else {
            return false;
        };
        if tag >> 3 == 0 {
            return false;
        }
        match tag & 7 {
            0 => {
                if varint(&mut i).is_none() {
                    return false;
                }
            }
            1 => i += 8,
            5 => i += 4,
            2 => {
                let Some(n) = varint(&mut i) else {
                    return false;
                };
                let Some(end) = i.checked_add(n as usize).filter(|&e| e <= bytes.len()) else {
                    return false;
                };
                nested.push((i, end));
                i = end;
            }
            _ => return false,
        }
    }
    if i != bytes.len() {
        return false;
    }
    out.extend(starts);
    out.push(base + bytes.len());
    if depth > 0 {
        for (s, e) in nested {
            if out.len() >= limit {
                break;
            }
            let mut inner = Vec::new();
            if proto_boundaries(&bytes[s..e], base + s, depth - 1, &mut inner, limit) {
                out.extend(inner);
            }
        }
    }
    true
}

fn proto_seed(name: String, bytes: Vec<u8>) -> Seed {
    let mut boundaries = Vec::new();
    proto_boundaries(&bytes, 0, 3, &mut boundaries, 400);
    boundaries.sort_unstable();
    boundaries.dedup();
    boundaries.truncate(400);
    Seed {
        name,
        bytes,
        boundaries,
        input: None,
    }
}

/// Line starts and brace positions of a text file.
fn text_seed(name: String, bytes: Vec<u8>) -> Seed {
    let boundaries = bytes
        .iter()
        .enumerate()
        .filter(|(_, &c)| c == b'\n' || c == b'{' || c == b'}' || c == b':')
        .map(|(i, _)| i + 1)
        .collect();
    Seed {
        name,
        bytes,
        boundaries,
        input: None,
    }
}

/// Multiplier of every case count, from `AGEGENDER_MUTATION_SCALE` (default 1): CI runs
/// the default; a longer local hunt sets e.g. 20.
fn scale() -> usize {
    std::env::var("AGEGENDER_MUTATION_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// Outcome counts of one format.
#[derive(Default)]
struct Tally {
    cases: usize,
    ok: usize,
    errors: usize,
    slowest: Duration,
    largest_alloc: usize,
    failures: Vec<String>,
}

/// Runs `cases` mutants of every seed through `reader` (which returns `Ok(())` or the
/// error's message), checking panics, time and allocation.
fn fuzz<F>(format: &str, seeds: &[Seed], cases: usize, rng_seed: u64, reader: F) -> Tally
where
    F: Fn(&Seed, &[u8]) -> Result<(), String>,
{
    let mut tally = Tally::default();
    let cases = cases * scale();
    let mut rng = Rng::new(rng_seed);
    let mut rejected_seeds = Vec::new();
    for seed in seeds {
        if let Err(e) = reader(seed, &seed.bytes) {
            rejected_seeds.push(format!("{}: {e}", seed.name));
        }
    }
    for (si, seed) in seeds.iter().enumerate() {
        let partner = &seeds[(si + 1) % seeds.len()];
        for case in 0..cases {
            let (what, mutant) = mutate(case, cases, seed, partner, &mut rng);
            reset_peak();
            let start = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(|| reader(seed, &mutant)));
            let mut took = start.elapsed();
            let largest = peak();
            if took > CASE_LIMIT && result.is_ok() {
                // Wall-clock time on a shared 2-core runner includes time spent descheduled:
                // a slow case is timed once more and counts as slow only if it is again.
                let again = Instant::now();
                let _ = catch_unwind(AssertUnwindSafe(|| reader(seed, &mutant)));
                took = took.min(again.elapsed());
            }
            drop(mutant);
            tally.cases += 1;
            tally.slowest = tally.slowest.max(took);
            tally.largest_alloc = tally.largest_alloc.max(largest);
            let label = format!(
                "{format} seed {} case {case} (rng {rng_seed}): {what}",
                seed.name
            );
            match result {
                Ok(Ok(())) => tally.ok += 1,
                Ok(Err(_)) => tally.errors += 1,
                Err(p) => {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    tally.failures.push(format!("PANIC {label}: {msg}"));
                }
            }
            if took > CASE_LIMIT {
                tally.failures.push(format!("SLOW {label}: {took:?}"));
            }
            if largest > ALLOC_BOUND {
                tally
                    .failures
                    .push(format!("ALLOC {label}: one allocation of {largest} bytes"));
            }
        }
    }
    eprintln!(
        "mutation {format}: {} cases over {} seeds ({} ok, {} typed errors, {} failures), slowest {:?}, largest allocation {} KiB",
        tally.cases,
        seeds.len(),
        tally.ok,
        tally.errors,
        tally.failures.len(),
        tally.slowest,
        tally.largest_alloc >> 10
    );
    for r in &rejected_seeds {
        eprintln!("mutation {format}: unmutated seed refused (next stage not reached): {r}");
    }
    assert!(
        tally.failures.is_empty(),
        "{} failing mutants:\n{}",
        tally.failures.len(),
        tally.failures.join("\n")
    );
    tally
}

fn files_under(rel: &str, keep: impl Fn(&Path) -> bool) -> Option<Vec<PathBuf>> {
    let root = shared(rel)?;
    let mut files: Vec<PathBuf> = walk(&root).into_iter().filter(|p| keep(p)).collect();
    files.sort();
    Some(files)
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn label(path: &Path) -> String {
    let s = path.to_string_lossy();
    s.split("fixtures-real/").last().unwrap_or(&s).to_string()
}

fn ext_is(p: &Path, ext: &str) -> bool {
    p.extension().is_some_and(|e| e == ext)
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn prototxt_mutants_never_panic() {
    let Some(files) = files_under("fixtures-real", |p| ext_is(p, "prototxt")) else {
        return;
    };
    let (solvers, nets): (Vec<_>, Vec<_>) =
        files.into_iter().partition(|p| label(p).contains("solver"));
    let seeds = |paths: &[PathBuf]| -> Vec<Seed> {
        paths
            .iter()
            .map(|p| text_seed(label(p), std::fs::read(p).unwrap()))
            .collect()
    };
    let path = Path::new("mutant.prototxt");
    fuzz(
        "prototxt (net)",
        &seeds(&nets),
        400,
        0x5EED_0001,
        |_, bytes| {
            let text = String::from_utf8_lossy(bytes);
            let param: NetParameter = parse_text(&text, path).map_err(|e| e.to_string())?;
            let net = net_from_proto(&param, Phase::Test).map_err(|e| e.to_string())?;
            net.infer_shapes().map_err(|e| e.to_string())?;
            Ok(())
        },
    );
    fuzz(
        "prototxt (solver)",
        &seeds(&solvers),
        300,
        0x5EED_0002,
        |_, bytes| {
            let text = String::from_utf8_lossy(bytes);
            parse_text::<SolverParameter>(&text, path).map_err(|e| e.to_string())?;
            Ok(())
        },
    );
}

/// The input shapes of the real train-net caffemodels, from their deploy prototxts in
/// `fixtures-real` (an LMDB-fed caffemodel does not record its image size).
fn caffemodel_input_shape(name: &str) -> Option<Vec<usize>> {
    let shapes: [(&str, [usize; 4]); 6] = [
        ("lenet", [1, 1, 28, 28]),
        ("cifar10", [1, 3, 32, 32]),
        ("det1", [1, 3, 12, 12]),
        ("det2", [1, 3, 24, 24]),
        ("det3", [1, 3, 48, 48]),
        ("levi_mini", [1, 3, 227, 227]),
    ];
    shapes
        .iter()
        .find(|(key, _)| name.contains(key))
        .map(|(_, s)| s.to_vec())
}

#[test]
fn caffemodel_mutants_never_panic() {
    let Some(files) = files_under("fixtures-real", |p| ext_is(p, "caffemodel")) else {
        return;
    };
    // The 0-byte caffemodel of the NCS fixtures has nothing to mutate.
    let mut seeds: Vec<Seed> = files
        .iter()
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
        .map(|p| proto_seed(label(p), std::fs::read(p).unwrap()))
        .collect();
    seeds.push(proto_seed(
        "levi_tiny.caffemodel".into(),
        std::fs::read(repo_file("fixtures/models/levi_tiny.caffemodel")).unwrap(),
    ));
    let path = Path::new("mutant.caffemodel");
    for seed in &mut seeds {
        seed.input = caffemodel_input_shape(&seed.name);
    }
    fuzz("caffemodel", &seeds, 400, 0x5EED_0003, |seed, bytes| {
        let mut param = decode_caffemodel(bytes, path).map_err(|e| e.to_string())?;
        upgrade_net(&mut param).map_err(|e| e.to_string())?;
        let deploy =
            caffemodel_deploy_proto(&param, seed.input.as_deref()).map_err(|e| e.to_string())?;
        let mut net = build_net(&deploy).map_err(|e| e.to_string())?;
        check_net(&mut net).map_err(|e| e.to_string())?;
        Ok(())
    });
}

#[test]
fn binaryproto_mutants_never_panic() {
    let mut seeds = Vec::new();
    for rel in [
        "fixtures-real/levi_hassner/models/mean.binaryproto",
        "fixtures-real/caffe-oracle/mean.binaryproto",
    ] {
        let Some(p) = shared(rel) else { return };
        seeds.push(proto_seed(label(&p), std::fs::read(&p).unwrap()));
    }
    fuzz("binaryproto", &seeds, 1000, 0x5EED_0004, |_, bytes| {
        decode_binaryproto(bytes).map_err(|e| format!("{e:?}"))?;
        Ok(())
    });
}

#[test]
fn ncs_graph_mutants_never_panic() {
    let Some(files) = files_under("fixtures-real/ncs", |p| {
        p.file_name().is_some_and(|n| n == "graph")
    }) else {
        return;
    };
    let seeds: Vec<Seed> = files
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).unwrap();
            let header = agegender::ncs::header::HEADER_LEN;
            let record = agegender::ncs::stage::STAGE_RECORD_LEN;
            // Header fields every 4 bytes, then each stage record start.
            let mut boundaries: Vec<usize> = (0..=header).step_by(4).collect();
            boundaries.extend(
                (0..200)
                    .map(|k| header + k * record)
                    .filter(|&o| o <= bytes.len()),
            );
            Seed {
                name: label(p),
                bytes,
                boundaries,
                input: None,
            }
        })
        .collect();
    fuzz("ncs graph", &seeds, 600, 0x5EED_0005, |_, bytes| {
        let graph = Graph::parse(bytes).map_err(|e| e.to_string())?;
        let net = graph_to_net(&graph).map_err(|e| e.to_string())?;
        net.infer_shapes().map_err(|e| e.to_string())?;
        Ok(())
    });
}

#[test]
fn npy_mutants_never_panic() {
    let bytes = std::fs::read(repo_file("fixtures/inputs/pattern_1x3x227x227.npy")).unwrap();
    let header_end = bytes.iter().position(|&c| c == b'\n').unwrap_or(0) + 1;
    let mut boundaries: Vec<usize> = (0..=header_end).collect();
    boundaries.extend([header_end + 4, bytes.len() - 4, bytes.len() - 1]);
    let small = std::fs::read(repo_file("fixtures/npy/f32_1x3x2x2.npy")).unwrap();
    let seeds = [
        Seed {
            name: "pattern_1x3x227x227.npy".into(),
            bytes,
            boundaries,
            input: None,
        },
        Seed {
            name: "f32_1x3x2x2.npy".into(),
            boundaries: (0..=small.len()).collect(),
            bytes: small,
            input: None,
        },
    ];
    fuzz("npy", &seeds, 1500, 0x5EED_0006, |_, bytes| {
        decode_npy(bytes, None).map_err(|e| e.to_string())?;
        Ok(())
    });
}

#[test]
fn onnx_mutants_never_panic() {
    let net = load_net(
        &repo_file("fixtures/models/levi_tiny.prototxt"),
        Some(&repo_file("fixtures/models/levi_tiny.caffemodel")),
        Phase::Test,
    )
    .unwrap();
    let model = export(&net).unwrap();
    let seeds = [proto_seed("levi_tiny.onnx".into(), model.encode_to_vec())];
    let opts = ImportOptions::default();
    fuzz("onnx", &seeds, 5000, 0x5EED_0007, |_, bytes| {
        let model = ModelProto::decode(bytes).map_err(|e| e.to_string())?;
        let net = import_model(&model, None, &opts).map_err(|e| e.to_string())?;
        net.infer_shapes().map_err(|e| e.to_string())?;
        Ok(())
    });
}

#[test]
fn datum_mutants_never_panic() {
    let image = ChwImage {
        channels: 3,
        height: 8,
        width: 6,
        data: (0..3 * 8 * 6).map(|i| (i * 37 % 251) as u8).collect(),
    };
    let pixels = encode_datum(&datum_from_image(&image, 5));
    let float = encode_datum(&agegender::proto::caffe::Datum {
        channels: Some(2),
        height: Some(2),
        width: Some(3),
        float_data: (0..12).map(|i| i as f32 * 0.5).collect(),
        label: Some(1),
        ..Default::default()
    });
    let seeds = [
        proto_seed("uint8 datum".into(), pixels),
        proto_seed("float datum".into(), float),
    ];
    fuzz("lmdb datum", &seeds, 5000, 0x5EED_0008, |_, bytes| {
        let datum = decode_datum(bytes).map_err(|e| e.to_string())?;
        if !datum.encoded() {
            datum_shape(&datum).map_err(|e| e.to_string())?;
        }
        datum_to_tensor(&datum).map_err(|e| e.to_string())?;
        Ok(())
    });
}
