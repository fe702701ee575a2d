//! The inputs `verify` feeds: a `.npy` tensor, one image, or every image in a folder.
//! Images are prepared as Caffe's deploy scripts do: BGR planes, bilinear resize to the
//! net's input size (OpenCV's INTER_LINEAR), float, then mean subtraction (a mean image,
//! centre-cropped, or per-channel values).

use super::VerifyError;
use crate::io::image::{read_image, resize_linear, subtract_mean_image, subtract_mean_values};
use crate::ir::Tensor;
use std::path::{Path, PathBuf};

/// A mean to subtract from images.
#[derive(Debug, Clone, PartialEq)]
pub enum Mean {
    /// A C×H×W (or 1×C×H×W) mean image (`.binaryproto` or `.npy`).
    Image(Tensor),
    /// Per-channel values in the net's channel order (B, G, R).
    Values(Vec<f32>),
}

/// Parses `--mean`: a `.binaryproto`/`.npy` file, or comma-separated values (`104,117,123`).
pub fn parse_mean(arg: &str) -> Result<Mean, VerifyError> {
    let path = Path::new(arg);
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext.eq_ignore_ascii_case("binaryproto") {
        return crate::caffe::binaryproto::read_binaryproto(path)
            .map(Mean::Image)
            .map_err(|e| VerifyError::Usage(format!("--mean: {e}")));
    }
    if ext.eq_ignore_ascii_case("npy") {
        return Ok(Mean::Image(crate::io::npy::read_npy(path)?));
    }
    arg.split(',')
        .map(|v| v.trim().parse::<f32>())
        .collect::<Result<Vec<_>, _>>()
        .map(Mean::Values)
        .map_err(|_| {
            VerifyError::Usage(format!(
                "--mean '{arg}': expected a .binaryproto or .npy file, or comma-separated values"
            ))
        })
}

const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "bmp"];

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Checks that `shape` fits the model's declared input (every known dim except the batch).
fn check_shape(
    what: &Path,
    shape: &[usize],
    declared: &[Option<usize>],
) -> Result<(), VerifyError> {
    let fits = shape.len() == declared.len()
        && shape
            .iter()
            .zip(declared)
            .skip(1)
            .all(|(&s, d)| d.is_none_or(|d| d == s));
    if !fits {
        let shown: Vec<String> = declared
            .iter()
            .map(|d| d.map_or("?".into(), |d| d.to_string()))
            .collect();
        return Err(VerifyError::Usage(format!(
            "{}: input shape {shape:?} does not fit the model's input [{}] (any batch size is accepted)",
            what.display(),
            shown.join(", ")
        )));
    }
    Ok(())
}

fn image_tensor(
    path: &Path,
    declared: &[Option<usize>],
    mean: Option<&Mean>,
) -> Result<Tensor, VerifyError> {
    let (Some(c), Some(h), Some(w)) = (
        declared.get(1).copied().flatten(),
        declared.get(2).copied().flatten(),
        declared.get(3).copied().flatten(),
    ) else {
        return Err(VerifyError::Usage(format!(
            "{}: the model's input has no fixed C×H×W to prepare an image for; give a .npy input",
            path.display()
        )));
    };
    let img = read_image(path)?;
    if img.channels != c {
        return Err(VerifyError::Usage(format!(
            "{}: the image has {} channels, the model takes {c}",
            path.display(),
            img.channels
        )));
    }
    let img = if (img.height, img.width) != (h, w) {
        resize_linear(&img, h, w)
    } else {
        img
    };
    let mut t = img.to_tensor();
    t.shape.insert(0, 1);
    match mean {
        Some(Mean::Image(m)) => subtract_mean_image(&mut t, m),
        Some(Mean::Values(v)) => subtract_mean_values(&mut t, v),
        None => Ok(()),
    }
    .map_err(|e| VerifyError::Usage(format!("--mean for {}: {e}", path.display())))?;
    Ok(t)
}

/// Loads the input batches for a model whose input is declared as `declared`: a `.npy`
/// file (one batch; a missing batch axis is added), an image, or a folder of images (one
/// batch of 1 per image, in name order).
pub fn load_inputs(
    path: &Path,
    declared: &[Option<usize>],
    mean: Option<&Mean>,
) -> Result<Vec<Tensor>, VerifyError> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| VerifyError::Usage(format!("{}: {e}", path.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_image(p))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(VerifyError::Usage(format!(
                "{}: no .jpg, .jpeg, .png or .bmp images in the folder",
                path.display()
            )));
        }
        return files
            .iter()
            .map(|f| image_tensor(f, declared, mean))
            .collect();
    }
    let is_npy = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if is_npy {
        if mean.is_some() {
            return Err(VerifyError::Usage(
                "--mean applies to images; a .npy input is fed as it is".into(),
            ));
        }
        let mut t = crate::io::npy::read_npy(path)?;
        if t.shape.len() + 1 == declared.len() {
            t.shape.insert(0, 1);
        }
        check_shape(path, &t.shape, declared)?;
        return Ok(vec![t]);
    }
    Ok(vec![image_tensor(path, declared, mean)?])
}
