//! Age and gender from face images: the `infer` command's library.
//!
//! The pieces follow the original project's `run_inference.py` and Caffe's deploy
//! conventions, with its one bug made optional:
//! - [`preprocess`]: decode (JPEG/PNG/BMP) to BGR planes as `cv::imread` does, an optional
//!   centred square face crop, OpenCV's bilinear resize to the net input, then mean
//!   subtraction as Caffe's `DataTransformer` does (a mean image centre-cropped to the input,
//!   or one value per channel). `--legacy-rgb` reproduces the original script's bug of
//!   feeding RGB pixels minus a BGR-ordered mean.
//! - [`model`]: loads any supported format for inference and picks the engine that runs it.
//! - [`predictor`]: [`Predictor`] runs one net on batches of images and returns class
//!   probabilities.
//! - [`labels`]: class names and the original project's output lines
//!   (`Age predicted: 20-29, 87.12%`).
//! - [`batch`]: a directory of images decoded on all cores, batched through the age and
//!   gender predictors, one result row per image (CSV or JSON); corrupt images are reported
//!   and do not stop the run.

pub mod batch;
pub mod error;
pub mod labels;
pub mod model;
pub mod predictor;
pub mod preprocess;

pub use batch::{infer_images, list_images, ImageResult, Predictors};
pub use error::InferError;
pub use labels::{ClassScore, Task, TaskPrediction};
pub use predictor::{Predictor, PredictorOptions};
pub use preprocess::{FaceCrop, Mean, PreprocessOptions, Preprocessor};
