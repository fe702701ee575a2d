//! `agegender data`: dataset preparation and Caffe's data tools (`convert_imageset`,
//! `compute_image_mean`) plus an LMDB viewer.

use crate::cli::common::{check_input_dir, check_input_file, check_output, positive, OutputKind};
use crate::cli::train::EXIT_INTERRUPTED;
use crate::cli::EXIT_CHECK_FAILED;
use crate::data::utkface::RaceFilter;
use crate::data::DataError;
use crate::data::{
    compute_image_mean, convert_imageset, prepare, read_image_list, ImagesetOptions, PrepareOptions,
};
use crate::io::datum::{datum_shape, datum_to_image};
use crate::io::image::write_image;
use crate::io::lmdb::LmdbReader;
use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

/// Dataset preparation and Caffe's LMDB tools.
#[derive(Args, Debug)]
pub struct DataArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: DataCommand,
}

/// The `data` subcommands.
#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// UTKFace folder → split, oversampled train set, age/gender LMDBs, mean, lists, stats.
    Prepare(PrepareArgs),
    /// An image list → LMDB of Datum records (Caffe's convert_imageset).
    Lmdb(LmdbArgs),
    /// The mean image of an LMDB (Caffe's compute_image_mean).
    Mean(MeanArgs),
    /// Record count, shapes and label histogram of an LMDB; one record saved as an image.
    Show(ShowArgs),
}

/// Arguments of `data prepare`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  agegender data prepare --utkface ../shared/data/utkface-asian --out prepared
  agegender data prepare --utkface UTKFace --race all --stratify --out prepared_all
  agegender data prepare --utkface UTKFace --limit 200 --size 64 --out quick --json

Writes OUT/lmdb/{age,gender}_{train,test}_lmdb, OUT/mean.binaryproto, OUT/mean.npy,
OUT/{age,gender}_{train,test}.txt, OUT/augmented.tsv and OUT/stats.json. OUT appears only
when complete; Ctrl-C (or SIGTERM) stops, leaves nothing behind and exits with 130.")]
pub struct PrepareArgs {
    /// The UTKFace folder (aligned & cropped `age_gender_race_datetime.jpg.chip.jpg`).
    #[arg(long)]
    pub utkface: PathBuf,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Race kept: asian, all, white, black, indian or other.
    #[arg(long, default_value = "asian")]
    pub race: String,
    /// Share of images in the train part.
    #[arg(long, default_value_t = 0.8)]
    pub split: f64,
    /// Seed of the split, the oversampling and the noise.
    #[arg(long, default_value_t = 230)]
    pub seed: u64,
    /// Records are SIZE×SIZE.
    #[arg(long, default_value_t = 227, value_parser = positive::<usize>, allow_negative_numbers = true)]
    pub size: usize,
    /// Split each age class separately, keeping its proportion in both parts.
    #[arg(long)]
    pub stratify: bool,
    /// Use only a seeded random subset of N images (for quick runs).
    #[arg(long, value_name = "N", value_parser = positive::<usize>, allow_negative_numbers = true)]
    pub limit: Option<usize>,
    /// Print the report as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Replace OUT when it already exists and is not empty.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `data lmdb`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  agegender data lmdb --list ../shared/fixtures-real/caffe-oracle/utkface24_list.txt \\
      --root ../shared/data/utkface-asian --out utk24_lmdb --size 227
  agegender data lmdb --list train.txt --root images --out train_lmdb --shuffle --seed 1

Each list line is `<file> <label>` (split at the last space). Keys are `%08d_<file>`.
Exit code 1 when some images could not be read (they are skipped, as Caffe does).")]
pub struct LmdbArgs {
    /// The image list.
    #[arg(long)]
    pub list: PathBuf,
    /// Folder the list's paths are relative to.
    #[arg(long)]
    pub root: PathBuf,
    /// The LMDB folder to create.
    #[arg(long)]
    pub out: PathBuf,
    /// Resize every image to SIZE×SIZE (default: keep each image's size).
    #[arg(long, value_parser = positive::<usize>, allow_negative_numbers = true)]
    pub size: Option<usize>,
    /// Shuffle the lines before writing.
    #[arg(long)]
    pub shuffle: bool,
    /// Seed of --shuffle.
    #[arg(long, default_value_t = 230)]
    pub seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Replace OUT when it already exists.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `data mean`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  agegender data mean prepared/lmdb/age_train_lmdb -o mean.binaryproto
  agegender data mean utk24_lmdb -o mean.npy --json

A .npy output holds a float32 C×H×W array; anything else is a legacy 1×C×H×W BlobProto.")]
pub struct MeanArgs {
    /// The LMDB.
    pub lmdb: PathBuf,
    /// Output file: `.binaryproto` or `.npy`.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Overwrite the output file when it exists.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `data show`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  agegender data show prepared/lmdb/age_train_lmdb
  agegender data show utk24_lmdb --index 3 -o record3.png --json")]
pub struct ShowArgs {
    /// The LMDB.
    pub lmdb: PathBuf,
    /// Record to describe and save (0-based, in key order).
    #[arg(long, default_value_t = 0)]
    pub index: usize,
    /// Save that record as an image (PNG, BMP or JPEG by extension, RGB order).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Overwrite the image file when it exists.
    #[arg(long)]
    pub force: bool,
}

/// Runs `agegender data …`.
pub fn run(args: DataArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DataCommand::Prepare(a) => run_prepare(a),
        DataCommand::Lmdb(a) => run_lmdb(a),
        DataCommand::Mean(a) => run_mean(a),
        DataCommand::Show(a) => run_show(a),
    }
}

fn run_prepare(a: PrepareArgs) -> anyhow::Result<ExitCode> {
    check_input_dir(&a.utkface, "UTKFace folder")?;
    check_output(&a.out, OutputKind::Dir, a.force)?;
    let mut options = PrepareOptions::new(&a.utkface, &a.out);
    options.race = RaceFilter::parse(&a.race).map_err(anyhow::Error::msg)?;
    options.train_fraction = a.split;
    options.seed = a.seed;
    options.size = a.size;
    options.stratify = a.stratify;
    options.limit = a.limit;
    options.progress = !a.json;
    options.stop = Some(crate::cli::common::stop_on_signals()?);
    let report = match prepare(&options) {
        Err(e @ DataError::Interrupted { .. }) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
        other => other.context("data prepare")?,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.summary());
        println!("Wrote {}", a.out.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn run_lmdb(a: LmdbArgs) -> anyhow::Result<ExitCode> {
    check_input_file(&a.list, "image list")?;
    check_input_dir(&a.root, "image root")?;
    check_output(&a.out, OutputKind::Dir, a.force)?;
    let entries = read_image_list(&a.list)?;
    let options = ImagesetOptions {
        size: a.size,
        shuffle_seed: a.shuffle.then_some(a.seed),
        progress: !a.json,
    };
    let report = convert_imageset(&a.root, &entries, &a.out, &options)
        .with_context(|| format!("writing {}", a.out.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for (file, reason) in &report.failed {
            eprintln!("skipped {file}: {reason}");
        }
        println!(
            "Processed {} files; wrote {} records to {}",
            entries.len(),
            report.written,
            a.out.display()
        );
    }
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    })
}

fn run_mean(a: MeanArgs) -> anyhow::Result<ExitCode> {
    check_input_dir(&a.lmdb, "LMDB")?;
    check_output(&a.output, OutputKind::File, a.force)?;
    let mean = compute_image_mean(&a.lmdb)?;
    mean.save(&a.output)?;
    let channels = mean.channel_means();
    if a.json {
        let report = json!({
            "lmdb": a.lmdb,
            "output": a.output,
            "records": mean.count,
            "shape": mean.mean.shape,
            "channel_means": channels,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("Processed {} records", mean.count);
        for (c, m) in channels.iter().enumerate() {
            println!("mean_value channel [{c}]: {m:.3}");
        }
        println!("Wrote {}", a.output.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn run_show(a: ShowArgs) -> anyhow::Result<ExitCode> {
    check_input_dir(&a.lmdb, "LMDB")?;
    if let Some(out) = &a.output {
        check_output(out, OutputKind::File, a.force)?;
    }
    let reader = LmdbReader::open(&a.lmdb)?;
    let mut cursor = reader.cursor()?;
    let mut labels: BTreeMap<i32, usize> = BTreeMap::new();
    let mut shapes: BTreeMap<String, usize> = BTreeMap::new();
    let mut selected = None;
    let mut count = 0usize;
    while let Some((record, datum)) = cursor.next_datum()? {
        *labels.entry(datum.label()).or_default() += 1;
        let shape = if datum.encoded() {
            "encoded".to_string()
        } else {
            let [c, h, w] = datum_shape(&datum)?;
            format!("{c}x{h}x{w}")
        };
        *shapes.entry(shape.clone()).or_default() += 1;
        if count == a.index {
            selected = Some((record.key_str(), datum, shape));
        }
        count += 1;
    }
    let Some((key, datum, shape)) = selected else {
        anyhow::bail!(
            "{}: record {} does not exist ({count} records)",
            a.lmdb.display(),
            a.index
        );
    };
    if let Some(out) = &a.output {
        let image = datum_to_image(&datum).with_context(|| format!("record {key}"))?;
        write_image(out, &image)?;
    }
    if a.json {
        let report = json!({
            "lmdb": a.lmdb,
            "records": count,
            "shapes": shapes,
            "labels": labels,
            "record": {"index": a.index, "key": key, "label": datum.label(), "shape": shape},
            "saved": a.output,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}: {count} records", a.lmdb.display());
        for (s, n) in &shapes {
            println!("  shape {s}: {n}");
        }
        println!("  label histogram:");
        for (l, n) in &labels {
            println!("    {l:>4}: {n}");
        }
        println!(
            "record {}: key {key}, label {}, shape {shape}",
            a.index,
            datum.label()
        );
        if let Some(out) = &a.output {
            println!("saved {}", out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
