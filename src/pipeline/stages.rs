//! The pipeline's steps after training, each usable on its own: evaluate a deploy model on a
//! test LMDB, write it in every format, verify every format against the f32 Caffe model,
//! and run `infer` with every format on a few test images.

use super::prototxt::NetKind;
use super::PipelineError;
use crate::eval::{ClassNames, ConfusionMatrix, EvalReport};
use crate::infer::{Mean, Predictor, PredictorOptions, Task, TaskPrediction};
use crate::io::datum::datum_to_image;
use crate::io::image::ChwImage;
use crate::io::lmdb::LmdbReader;
use crate::ir::{Net, Tensor};
use crate::verify::{self, EngineKind as VerifyEngine, Model, Preset, Subject, Tolerance};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Every record of an LMDB as (record name, image, label).
pub fn read_lmdb_images(lmdb: &Path) -> Result<Vec<(String, ChwImage, i64)>, PipelineError> {
    let fail = |e: String| PipelineError::Step {
        step: "test",
        msg: format!("{}: {e}", lmdb.display()),
    };
    let reader = LmdbReader::open(lmdb).map_err(|e| fail(e.to_string()))?;
    let mut cursor = reader.cursor().map_err(|e| fail(e.to_string()))?;
    let mut out = Vec::new();
    while let Some((record, datum)) = cursor.next_datum().map_err(|e| fail(e.to_string()))? {
        let image =
            datum_to_image(&datum).map_err(|e| fail(format!("{}: {e}", record.key_str())))?;
        out.push((record.name(), image, datum.label() as i64));
    }
    Ok(out)
}

/// Accuracy and confusion matrix of `predictor` on labelled images (the `test` step: the
/// records are 227×227 already, so preprocessing is the mean subtraction of Caffe's TEST
/// transform).
pub fn evaluate(
    predictor: &Predictor,
    kind: NetKind,
    images: &[(String, ChwImage, i64)],
) -> Result<EvalReport, PipelineError> {
    let names = match kind {
        NetKind::Age => ClassNames::age(),
        NetKind::Gender => ClassNames::gender(),
    };
    let mut matrix = ConfusionMatrix::new(names);
    for chunk in images.chunks(predictor.batch().max(1) * 4) {
        let pixels: Vec<ChwImage> = chunk.iter().map(|(_, img, _)| img.clone()).collect();
        let rows = predictor.predict(&pixels)?;
        for ((name, _, label), row) in chunk.iter().zip(rows) {
            let best = crate::cli::common::top_k(&row, 1)
                .first()
                .map_or(0, |&(c, _)| c);
            matrix
                .add(*label, best as i64)
                .map_err(|e| PipelineError::Step {
                    step: "test",
                    msg: format!("{name}: {e}"),
                })?;
        }
    }
    Ok(matrix.report())
}

/// The files of one net in every format.
#[derive(Debug, Clone, Serialize)]
pub struct FormatFiles {
    /// `<Net>_deploy.prototxt`.
    pub deploy: PathBuf,
    /// `<Net>.caffemodel`.
    pub caffemodel: PathBuf,
    /// `<Net>.onnx`.
    pub onnx: PathBuf,
    /// `<Net>.graph` (NCSDK 1 graph, mvNCCompile's defaults).
    pub graph: PathBuf,
}

/// Writes the trained deploy `net` as `<Net>_deploy.prototxt`, `.caffemodel`, `.onnx` and
/// `.graph` under `models_dir`.
pub fn write_formats(
    net: &Net,
    kind: NetKind,
    models_dir: &Path,
) -> Result<FormatFiles, PipelineError> {
    let step = |msg: String| PipelineError::Step {
        step: "convert",
        msg,
    };
    let files = FormatFiles {
        deploy: models_dir.join(format!("{}_deploy.prototxt", kind.name())),
        caffemodel: models_dir.join(format!("{}.caffemodel", kind.name())),
        onnx: models_dir.join(format!("{}.onnx", kind.name())),
        graph: models_dir.join(format!("{}.graph", kind.name())),
    };
    crate::caffe::write_prototxt(net, &files.deploy).map_err(|e| step(e.to_string()))?;
    crate::caffe::write_caffemodel(net, &files.caffemodel).map_err(|e| step(e.to_string()))?;
    crate::onnx::write_onnx(net, &files.onnx).map_err(|e| step(e.to_string()))?;
    crate::ncs::compile_to_file(net, &Default::default(), &files.graph)
        .map_err(|e| step(format!("{}: {e}", files.graph.display())))?;
    Ok(files)
}

/// One format checked against the f32 Caffe model.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyRow {
    /// `AgeNet` or `GenderNet`.
    pub net: String,
    /// `onnx`, `graph`.
    pub format: String,
    /// Engine that ran it.
    pub engine: String,
    /// Preset applied (`strict` for f32 formats, `mvncheck` for fp16 graphs).
    pub preset: String,
    /// Within tolerance.
    pub pass: bool,
    /// Largest |difference| of the probabilities over max|reference|.
    pub max_rel: f32,
    /// Share of inputs whose top-1 class agrees.
    pub top1_agreement: Option<f32>,
    /// First layer over the bounds, if any.
    pub first_divergent_layer: Option<String>,
}

/// Verifies the ONNX file (tract and native) and the graph (its fp16 weights, native)
/// against the caffemodel run by the native f32 engine, on `inputs` (N×3×227×227 each).
pub fn verify_formats(
    kind: NetKind,
    files: &FormatFiles,
    inputs: &[Tensor],
    threads: usize,
) -> Result<Vec<VerifyRow>, PipelineError> {
    let fail = |e: verify::VerifyError| PipelineError::Step {
        step: "verify",
        msg: e.to_string(),
    };
    let caffe = Model::load(&files.caffemodel, None).map_err(fail)?;
    let onnx = Model::load(&files.onnx, None).map_err(fail)?;
    let graph_net = crate::ncs::read_net(&files.graph).map_err(|e| PipelineError::Step {
        step: "verify",
        msg: e.to_string(),
    })?;
    let graph = Model::Net(graph_net);
    let reference = Subject::new(&caffe, VerifyEngine::Native);
    let cases = [
        ("onnx", &onnx, VerifyEngine::Tract, Preset::Strict),
        ("onnx", &onnx, VerifyEngine::Native, Preset::Strict),
        ("graph", &graph, VerifyEngine::F16, Preset::Mvncheck),
    ];
    let mut rows = Vec::new();
    for (format, model, engine, preset) in cases {
        let options = verify::Options {
            tolerance: Tolerance::new(preset, None),
            threads,
            progress: None,
        };
        let candidate = Subject::new(model, engine);
        let c = verify::compare(&reference, &candidate, inputs, &options).map_err(fail)?;
        let out = c.outputs.first();
        rows.push(VerifyRow {
            net: kind.name().into(),
            format: format.into(),
            engine: engine.name().into(),
            preset: format!("{preset:?}").to_lowercase(),
            pass: c.pass,
            max_rel: out.map_or(f32::NAN, |m| m.max_rel),
            top1_agreement: out.and_then(|m| m.top1_agreement),
            first_divergent_layer: c.first_divergent_layer.clone(),
        });
    }
    Ok(rows)
}

/// One image's prediction by one format.
#[derive(Debug, Clone, Serialize)]
pub struct InferRow {
    /// `AgeNet` or `GenderNet`.
    pub net: String,
    /// Test record name.
    pub image: String,
    /// True label name.
    pub truth: String,
    /// Format and engine, e.g. `caffemodel/native`.
    pub format: String,
    /// The original script's line.
    pub line: String,
    /// The prediction.
    pub prediction: TaskPrediction,
}

/// `infer` with every format (caffemodel, onnx on native and tract, graph on the fp16
/// emulator and in f32) on `images`.
pub fn infer_formats(
    kind: NetKind,
    files: &FormatFiles,
    mean: &Mean,
    images: &[(String, ChwImage, i64)],
    threads: usize,
    preprocess: crate::infer::PreprocessOptions,
) -> Result<Vec<InferRow>, PipelineError> {
    let task = match kind {
        NetKind::Age => Task::Age,
        NetKind::Gender => Task::Gender,
    };
    let labels = task.labels(kind.classes());
    let engine = |e| PredictorOptions {
        engine: Some(e),
        batch: images.len().max(1),
        threads,
        preprocess,
    };
    use crate::cli::common::EngineKind::{Native, Tract, F16};
    let cases = [
        ("caffemodel/native", &files.caffemodel, Native),
        ("onnx/native", &files.onnx, Native),
        ("onnx/tract", &files.onnx, Tract),
        ("graph/f16", &files.graph, F16),
        ("graph/native", &files.graph, Native),
    ];
    let pixels: Vec<ChwImage> = images.iter().map(|(_, img, _)| img.clone()).collect();
    let mut rows = Vec::new();
    for (format, path, e) in cases {
        let loaded = crate::infer::model::load_for_inference(path, None)?;
        let predictor = Predictor::from_loaded(loaded, mean, &engine(e))?;
        for ((name, _, label), probs) in images.iter().zip(predictor.predict(&pixels)?) {
            let prediction = TaskPrediction::from_probabilities(task, probs, 2);
            rows.push(InferRow {
                net: kind.name().into(),
                image: name.clone(),
                truth: labels
                    .get(*label as usize)
                    .cloned()
                    .unwrap_or_else(|| label.to_string()),
                format: format.into(),
                line: prediction.line(task),
                prediction,
            });
        }
    }
    Ok(rows)
}
