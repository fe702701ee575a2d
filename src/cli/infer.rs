//! `agegender infer`: age bucket and gender of face images, with any model format, printed
//! as the original project's script printed them.

use super::common::EngineKind;
use super::EXIT_CHECK_FAILED;
use crate::infer::batch::to_csv;
use crate::infer::{
    infer_images, list_images, FaceCrop, ImageResult, Predictor, PredictorOptions, Predictors,
    PreprocessOptions,
};
use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `infer`.
#[derive(ClapArgs, Debug)]
#[command(
    group(clap::ArgGroup::new("models").required(true).multiple(true).args(["age", "gender"])),
    after_help = "Examples:
  agegender infer --age out/models/AgeNet.caffemodel --gender out/models/GenderNet.caffemodel \\
                  --mean_file out/age_gender_mean.npy --image_path face.jpg
      Age predicted: 20-29, 87.12%
      Gender predicted: Female, 93.40%
  agegender infer --age AgeNet_deploy.prototxt --age-weights AgeNet.caffemodel \\
                  --mean_file mean.binaryproto --image_path faces/ --csv -o predictions.csv
  agegender infer --gender GenderNet.onnx --engine tract --mean_file mean.npy \\
                  --image_path face.png --top 2 --json

Preprocessing is Caffe's: the image is decoded to BGR (a greyscale image has its channel
replicated into B, G and R), resized bilinearly to the net input exactly as OpenCV's
INTER_LINEAR does, and the mean image is centre-cropped to the input (256 -> 227) and
subtracted; --mean-per-channel subtracts its B, G, R averages instead.

The nets expect a face crop. UTKFace images are already aligned face crops; full photos need
a face detector first (--face-crop centre only takes the largest centred square).

--legacy-rgb reproduces a bug of the original project's script, which fed the net RGB pixels
minus a BGR-ordered mean. Use it only to reproduce the original's outputs.

With a directory, every .jpg/.jpeg/.png/.bmp under it is processed in batches on all cores.
An unreadable image is reported and the rest go on; the exit code is then 1.
Exit codes: 0 ok, 1 some images failed, 2 bad input (models, mean, a single bad image)."
)]
pub struct Args {
    /// Age model (.prototxt, .caffemodel, .onnx, .graph).
    #[arg(long, value_name = "MODEL")]
    pub age: Option<PathBuf>,
    /// Weights for a .prototxt age model.
    #[arg(long, value_name = "W", requires = "age")]
    pub age_weights: Option<PathBuf>,
    /// Gender model (.prototxt, .caffemodel, .onnx, .graph).
    #[arg(long, value_name = "MODEL")]
    pub gender: Option<PathBuf>,
    /// Weights for a .prototxt gender model.
    #[arg(long, value_name = "W", requires = "gender")]
    pub gender_weights: Option<PathBuf>,
    /// Mean image: C×H×W .npy or Caffe .binaryproto.
    #[arg(long = "mean_file", visible_alias = "mean-file", value_name = "MEAN")]
    pub mean_file: PathBuf,
    /// An image file, or a directory of images.
    #[arg(
        long = "image_path",
        visible_alias = "image-path",
        value_name = "IMG|DIR"
    )]
    pub image_path: PathBuf,
    /// Engine (default: the fp16 NCS emulator for a .graph, native f32 otherwise).
    #[arg(long, value_enum)]
    pub engine: Option<EngineKind>,
    /// Print one JSON array with a row per image.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV with a row per image.
    #[arg(long)]
    pub csv: bool,
    /// Write the JSON/CSV rows to this file instead of stdout (format from --json/--csv,
    /// else from the extension: .json or CSV).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also print the K most likely classes.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = crate::cli::common::positive::<u32>, allow_negative_numbers = true)]
    pub top: u32,
    /// Subtract the mean file's per-channel averages instead of the mean image.
    #[arg(long)]
    pub mean_per_channel: bool,
    /// Reproduce the original script's bug: RGB pixels minus a BGR-ordered mean.
    #[arg(long)]
    pub legacy_rgb: bool,
    /// Crop before resizing: `none` (UTKFace crops) or `centre` (largest centred square).
    #[arg(long, value_enum, default_value_t = FaceCrop::None)]
    pub face_crop: FaceCrop,
    /// Resize to S×S, then centre-crop the net's input (Caffe's TEST transform; Levi &
    /// Hassner: 256 for 227). For nets trained on random crops, such as the pipeline's
    /// (its report.json gives the size as `resize_to`).
    #[arg(long, value_name = "S", value_parser = crate::cli::common::positive::<u32>, allow_negative_numbers = true)]
    pub resize: Option<u32>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16, value_parser = crate::cli::common::positive::<u32>, allow_negative_numbers = true)]
    pub batch: u32,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Overwrite the --output file when it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Json,
    Csv,
}

/// Runs `infer`.
pub fn run(args: Args) -> Result<ExitCode> {
    let format = match (args.json, args.csv, &args.output) {
        (true, _, _) => Format::Json,
        (_, true, _) => Format::Csv,
        (_, _, Some(p))
            if p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json")) =>
        {
            Format::Json
        }
        (_, _, Some(_)) => Format::Csv,
        _ => Format::Text,
    };
    if let Some(out) = &args.output {
        crate::cli::common::check_output(out, crate::cli::common::OutputKind::File, args.force)?;
    }
    crate::cli::common::check_input_file(&args.mean_file, "mean file")?;
    let meta = std::fs::metadata(&args.image_path)
        .with_context(|| format!("cannot read {}", args.image_path.display()))?;
    let options = PredictorOptions {
        engine: args.engine,
        batch: args.batch as usize,
        threads: args.threads,
        preprocess: PreprocessOptions {
            mean_per_channel: args.mean_per_channel,
            legacy_rgb: args.legacy_rgb,
            face_crop: args.face_crop,
            resize_to: args.resize.map(|s| s as usize),
        },
    };
    let load = |model: &Option<PathBuf>, weights: &Option<PathBuf>| -> Result<Option<Predictor>> {
        model
            .as_deref()
            .map(|m| Predictor::from_files(m, weights.as_deref(), Some(&args.mean_file), &options))
            .transpose()
            .map_err(anyhow::Error::from)
    };
    let predictors = Predictors {
        age: load(&args.age, &args.age_weights)?,
        gender: load(&args.gender, &args.gender_weights)?,
        top: args.top as usize,
    };

    let results = if meta.is_dir() {
        let paths = list_images(&args.image_path)?;
        if paths.is_empty() {
            bail!(
                "{}: no .jpg, .jpeg, .png or .bmp images in this directory",
                args.image_path.display()
            );
        }
        let bar = indicatif::ProgressBar::new(paths.len() as u64).with_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} images, {per_sec}, ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let results = infer_images(&paths, &predictors, Some(&bar))?;
        bar.finish_and_clear();
        results
    } else {
        let path = args.image_path.clone();
        // The message already holds the decoder's cause; keep it on one line.
        let image = crate::io::image::read_image(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
        let (age, gender) = predictors
            .predict(std::slice::from_ref(&image))?
            .pop()
            .unwrap_or_default();
        vec![ImageResult {
            image: path,
            age,
            gender,
            error: None,
        }]
    };

    let failed = results.iter().filter(|r| r.error.is_some()).count();
    for r in &results {
        if let Some(e) = &r.error {
            eprintln!("error: {e}");
        }
    }
    emit(
        &results,
        format,
        args.top as usize,
        args.output.as_deref(),
        meta.is_dir(),
    )?;
    if meta.is_dir() {
        eprintln!(
            "{} images, {} predicted, {} failed",
            results.len(),
            results.len() - failed,
            failed
        );
    }
    Ok(if failed > 0 {
        ExitCode::from(EXIT_CHECK_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

fn emit(
    results: &[ImageResult],
    format: Format,
    top: usize,
    output: Option<&Path>,
    many: bool,
) -> Result<()> {
    let text = match format {
        Format::Json => serde_json::to_string_pretty(results)? + "\n",
        Format::Csv => to_csv(results, top),
        Format::Text => {
            let mut s = String::new();
            for r in results {
                if many {
                    s.push_str(&format!("{}\n", r.image.display()));
                }
                if let Some(e) = &r.error {
                    s.push_str(&format!("  error: {e}\n"));
                }
                for line in r.lines(top > 1) {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
            s
        }
    };
    match output {
        Some(path) => crate::util::atomic::atomic_write(path, text.as_bytes())?,
        None => print!("{text}"),
    }
    Ok(())
}
