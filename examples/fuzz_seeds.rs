//! Writes the seed corpora of the `fuzz/` targets (issue 8: seeds from the real fixtures)
//! into a folder outside the repository, one sub-folder per target:
//!
//! ```sh
//! cargo run --example fuzz_seeds -- /work/fuzzcorpus
//! ```
//!
//! Files come from `../shared/fixtures-real` and `fixtures/` as they are; the ONNX seed is
//! the shipped Levi & Hassner-style model exported by this crate, and the LMDB `Datum`
//! seeds are real UTKFace images stored as `convert_imageset` stores them (raw and
//! encoded). The corpora are never committed.

use agegender::caffe::load_net;
use agegender::io::datum::{datum_from_image, encode_datum};
use agegender::io::image::read_image;
use agegender::ir::Phase;
use agegender::onnx::export;
use agegender::proto::caffe::Datum;
use agegender::testutil::shared;
use prost::Message;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Index into the caffemodel target's input-shape table (see `fuzz/fuzz_targets/caffemodel.rs`).
fn shape_pick(name: &str) -> u8 {
    ["lenet", "cifar10", "det1", "det2", "det3", "levi_mini"]
        .iter()
        .position(|k| name.contains(k))
        .map_or(6, |i| i as u8)
}

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or_else(|| anyhow::anyhow!("usage: fuzz_seeds OUT_DIR"))?,
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let real = shared("fixtures-real").ok_or_else(|| anyhow::anyhow!("../shared is absent"))?;
    let mut files = Vec::new();
    walk(&real, &mut files);
    walk(&repo.join("fixtures"), &mut files);
    files.sort();
    let mut count = std::collections::BTreeMap::<&str, usize>::new();
    let mut put = |target: &'static str, name: &str, bytes: &[u8]| -> anyhow::Result<()> {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir)?;
        let n = count.entry(target).or_default();
        *n += 1;
        std::fs::write(
            dir.join(format!("{n:03}_{}", name.replace('/', "_"))),
            bytes,
        )?;
        Ok(())
    };
    for p in &files {
        let name = p.strip_prefix(&real).or(p.strip_prefix(repo)).unwrap_or(p);
        let name = name.to_string_lossy();
        let bytes = std::fs::read(p)?;
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        let file = p.file_name().and_then(|f| f.to_str()).unwrap_or("");
        match ext {
            "prototxt" => put("prototxt", &name, &bytes)?,
            "caffemodel" if !bytes.is_empty() => {
                let mut seed = vec![shape_pick(&name)];
                seed.extend_from_slice(&bytes);
                put("caffemodel", &name, &seed)?;
            }
            "binaryproto" => put("binaryproto", &name, &bytes)?,
            "npy" => put("npy", &name, &bytes)?,
            "onnx" => put("onnx", &name, &bytes)?,
            _ if file == "graph" => put("ncs_graph", &name, &bytes)?,
            _ => {}
        }
    }
    let net = load_net(
        &repo.join("fixtures/models/levi_tiny.prototxt"),
        Some(&repo.join("fixtures/models/levi_tiny.caffemodel")),
        Phase::Test,
    )?;
    put("onnx", "levi_tiny.onnx", &export(&net)?.encode_to_vec())?;
    let faces = shared("data/utkface-asian").ok_or_else(|| anyhow::anyhow!("no UTKFace"))?;
    let mut images = Vec::new();
    walk(&faces, &mut images);
    images.sort();
    for p in images.iter().take(2) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let image = read_image(p)?;
        put(
            "datum",
            &format!("raw_{name}"),
            &encode_datum(&datum_from_image(&image, 1)),
        )?;
        let encoded = Datum {
            data: Some(std::fs::read(p)?),
            label: Some(0),
            encoded: Some(true),
            ..Default::default()
        };
        put("datum", &format!("encoded_{name}"), &encode_datum(&encoded))?;
    }
    let float = Datum {
        channels: Some(2),
        height: Some(2),
        width: Some(3),
        float_data: (0..12).map(|i| i as f32 * 0.5).collect(),
        label: Some(1),
        ..Default::default()
    };
    put("datum", "float", &encode_datum(&float))?;
    for (target, n) in count {
        println!("{target}: {n} seeds");
    }
    Ok(())
}
