//! Many images through the age and gender predictors: decoding on all cores overlapped
//! with the forward passes, one result row per image, and a failed image reported in its
//! row without stopping the others.

use super::labels::{Task, TaskPrediction};
use super::predictor::Predictor;
use super::InferError;
use crate::io::image::{read_image, ChwImage};
use indicatif::ProgressBar;
use rayon::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// File extensions read as images (case-insensitive): the formats the decoder handles.
pub const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "bmp"];

/// The age and/or gender predictor (at least one), and how many classes to rank.
#[derive(Debug)]
pub struct Predictors {
    /// AgeNet.
    pub age: Option<Predictor>,
    /// GenderNet.
    pub gender: Option<Predictor>,
    /// Classes kept in each prediction's `top` list (at least 1).
    pub top: usize,
}

impl Predictors {
    fn each(&self) -> impl Iterator<Item = (Task, &Predictor)> {
        [(Task::Age, &self.age), (Task::Gender, &self.gender)]
            .into_iter()
            .filter_map(|(t, p)| p.as_ref().map(|p| (t, p)))
    }

    fn batch(&self) -> usize {
        self.each().map(|(_, p)| p.batch()).max().unwrap_or(1)
    }

    /// Predictions for decoded images, in order: (age, gender) per image.
    #[allow(clippy::type_complexity)]
    pub fn predict(
        &self,
        images: &[ChwImage],
    ) -> Result<Vec<(Option<TaskPrediction>, Option<TaskPrediction>)>, InferError> {
        let mut out = vec![(None, None); images.len()];
        for (task, predictor) in self.each() {
            let rows = predictor.predict(images)?;
            for (slot, row) in out.iter_mut().zip(rows) {
                let p = TaskPrediction::from_probabilities(task, row, self.top);
                match task {
                    Task::Age => slot.0 = Some(p),
                    Task::Gender => slot.1 = Some(p),
                }
            }
        }
        Ok(out)
    }
}

/// The result for one image: its predictions, or why it failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageResult {
    /// The image file.
    pub image: PathBuf,
    /// Age prediction (when an age model was given and the image was read).
    pub age: Option<TaskPrediction>,
    /// Gender prediction.
    pub gender: Option<TaskPrediction>,
    /// Why the image could not be processed.
    pub error: Option<String>,
}

impl ImageResult {
    /// The original project's lines for this image (age first, then gender).
    pub fn lines(&self, with_top: bool) -> Vec<String> {
        let mut lines = Vec::new();
        for (task, p) in [(Task::Age, &self.age), (Task::Gender, &self.gender)] {
            if let Some(p) = p {
                lines.push(p.line(task));
                if with_top {
                    lines.push(p.top_line(task));
                }
            }
        }
        lines
    }
}

/// Every image under `dir` (recursively; symlinks to files are read, symlinked directories
/// are not entered) whose extension is one of
/// [`IMAGE_EXTENSIONS`], sorted by path so that runs are reproducible.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>, InferError> {
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(|e| InferError::List {
            path: e.path().unwrap_or(dir).to_path_buf(),
            msg: e.to_string(),
        })?;
        let is_image = entry
            .path()
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        let is_file =
            entry.file_type().is_file() || (entry.path_is_symlink() && entry.path().is_file());
        if is_file && is_image {
            found.push(entry.into_path());
        }
    }
    found.sort();
    Ok(found)
}

/// Decodes a chunk of files in parallel; a failure stays with its file.
fn decode_chunk(paths: &[PathBuf]) -> Vec<Result<ChwImage, String>> {
    paths
        .par_iter()
        .map(|p| read_image(p).map_err(|e| one_line(&e.to_string())))
        .collect()
}

/// An error message on one line (decoder messages may span several), for rows and logs.
fn one_line(msg: &str) -> String {
    msg.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Runs every image through the predictors in batches. Decoding of the next batch overlaps
/// the forward passes of the current one. An unreadable image gets an error row; an engine
/// failure stops the run (it would fail for every image).
pub fn infer_images(
    paths: &[PathBuf],
    predictors: &Predictors,
    progress: Option<&ProgressBar>,
) -> Result<Vec<ImageResult>, InferError> {
    let chunks: Vec<&[PathBuf]> = paths.chunks(predictors.batch().max(1)).collect();
    let mut results = Vec::with_capacity(paths.len());
    let mut decoded = chunks.first().map(|c| decode_chunk(c));
    for (i, chunk) in chunks.iter().enumerate() {
        let current = decoded.take().unwrap_or_default();
        let next = chunks.get(i + 1);
        let (predicted, next_decoded) = rayon::join(
            || run_chunk(chunk, current, predictors),
            || next.map(|c| decode_chunk(c)),
        );
        results.extend(predicted?);
        decoded = next_decoded;
        if let Some(bar) = progress {
            bar.inc(chunk.len() as u64);
        }
    }
    Ok(results)
}

fn run_chunk(
    paths: &[PathBuf],
    decoded: Vec<Result<ChwImage, String>>,
    predictors: &Predictors,
) -> Result<Vec<ImageResult>, InferError> {
    let good: Vec<ChwImage> = decoded
        .iter()
        .filter_map(|d| d.as_ref().ok())
        .cloned()
        .collect();
    let mut predictions = predictors.predict(&good)?.into_iter();
    Ok(paths
        .iter()
        .zip(decoded)
        .map(|(path, d)| match d {
            Ok(_) => {
                let (age, gender) = predictions.next().unwrap_or_default();
                ImageResult {
                    image: path.clone(),
                    age,
                    gender,
                    error: None,
                }
            }
            Err(e) => ImageResult {
                image: path.clone(),
                age: None,
                gender: None,
                error: Some(e),
            },
        })
        .collect())
}

/// One CSV row per image: `image,age,age_probability,gender,gender_probability,error`, with
/// `age_top`/`gender_top` columns (`label:probability` separated by `;`) when `top > 1`.
/// Fields are quoted as RFC 4180 requires.
pub fn to_csv(results: &[ImageResult], top: usize) -> String {
    let mut header = vec!["image", "age", "age_probability"];
    if top > 1 {
        header.push("age_top");
    }
    header.extend(["gender", "gender_probability"]);
    if top > 1 {
        header.push("gender_top");
    }
    header.push("error");
    let mut out = header.join(",");
    out.push('\n');
    for r in results {
        let mut fields = vec![r.image.display().to_string()];
        for p in [&r.age, &r.gender] {
            match p {
                Some(p) => {
                    fields.push(p.best.label.clone());
                    fields.push(format!("{:.6}", p.best.probability));
                    if top > 1 {
                        let items: Vec<String> = p
                            .top
                            .iter()
                            .map(|s| format!("{}:{:.6}", s.label, s.probability))
                            .collect();
                        fields.push(items.join(";"));
                    }
                }
                None => {
                    fields.extend(["".to_string(), "".to_string()]);
                    if top > 1 {
                        fields.push(String::new());
                    }
                }
            }
        }
        fields.push(r.error.clone().unwrap_or_default());
        let quoted: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&quoted.join(","));
        out.push('\n');
    }
    out
}

fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_string()
    }
}
