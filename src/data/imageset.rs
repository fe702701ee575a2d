//! Caffe's `convert_imageset`: a list of `<file> <label>` lines → an LMDB of Datum records.
//!
//! Caffe reads each line, splitting at the **last** space (file names may contain spaces),
//! optionally shuffles the lines, decodes every image in colour (BGR), resizes it with
//! `cv::resize(INTER_LINEAR)` when a size is given, and stores it under the key
//! `%08d_<file>` where the number is the line's position after shuffling. An unreadable
//! image is reported and skipped; its number is not reused.

use super::split::{seeded_shuffle, streams};
use super::DataError;
use crate::io::datum::datum_from_image;
use crate::io::image::{read_image, resize_linear, ChwImage, ImageError};
use crate::io::lmdb::LmdbWriter;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::Serialize;
use std::path::Path;

/// Records decoded in parallel before being written in order.
const CHUNK: usize = 64;

/// Renders `items` on all cores, [`CHUNK`] at a time, and hands each result to `write`
/// with its position, in order: decoding runs in parallel, the LMDB writes stay sequential
/// and the memory held is one chunk of records.
pub(crate) fn render_in_order<T, R, E>(
    items: &[T],
    render: impl Fn(&T) -> R + Sync,
    mut write: impl FnMut(usize, &T, R) -> Result<(), E>,
) -> Result<(), E>
where
    T: Sync,
    R: Send,
{
    for (chunk_index, chunk) in items.chunks(CHUNK).enumerate() {
        let rendered: Vec<R> = chunk.par_iter().map(&render).collect();
        for (j, (item, result)) in chunk.iter().zip(rendered).enumerate() {
            write(chunk_index * CHUNK + j, item, result)?;
        }
    }
    Ok(())
}

/// One line of an image list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ListEntry {
    /// File path relative to the root folder, as written in the list.
    pub path: String,
    /// Integer label.
    pub label: i32,
}

/// Reads a `convert_imageset` list: one `<file> <label>` per line, split at the last
/// space; blank lines are ignored. A line without a label or with a non-integer label is an
/// error naming the file and line.
pub fn read_image_list(path: &Path) -> Result<Vec<ListEntry>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let err = |reason: String| DataError::List {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let (file, label) = line
            .rsplit_once(' ')
            .ok_or_else(|| err(format!("expected `<file> <label>`, found {line:?}")))?;
        let label = label
            .trim()
            .parse::<i32>()
            .map_err(|_| err(format!("label {label:?} is not an integer")))?;
        if file.is_empty() {
            return Err(err("empty file name".into()));
        }
        entries.push(ListEntry {
            path: file.to_string(),
            label,
        });
    }
    Ok(entries)
}

/// Options of [`convert_imageset`].
#[derive(Clone, Debug, Default)]
pub struct ImagesetOptions {
    /// Resize every image to `size × size` (Caffe's `--resize_height/--resize_width`);
    /// `None` keeps each image's own size.
    pub size: Option<usize>,
    /// Shuffle the lines with this seed before writing (Caffe's `--shuffle`; Caffe's own
    /// generator differs, so the order is this crate's, reproducible per seed).
    pub shuffle_seed: Option<u64>,
    /// Show a progress bar.
    pub progress: bool,
}

/// What [`convert_imageset`] did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ImagesetReport {
    /// Records written.
    pub written: usize,
    /// `(file, reason)` for each image that could not be read and was skipped.
    pub failed: Vec<(String, String)>,
}

/// A progress bar with this crate's style, hidden when `enabled` is false.
pub fn progress_bar(len: usize, message: &str, enabled: bool) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>28} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.to_string());
    bar
}

/// Reads an image and resizes it to `size × size` when a size is given.
pub fn load_resized(path: &Path, size: Option<usize>) -> Result<ChwImage, ImageError> {
    let image = read_image(path)?;
    Ok(match size {
        Some(s) => resize_linear(&image, s, s),
        None => image,
    })
}

/// Writes the images of `entries` (relative to `root`) into a new LMDB at `out`, as
/// `convert_imageset` does. Decoding and resizing run on all cores; records are written in
/// list order. The LMDB appears at `out` only when complete.
pub fn convert_imageset(
    root: &Path,
    entries: &[ListEntry],
    out: &Path,
    options: &ImagesetOptions,
) -> Result<ImagesetReport, DataError> {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    if let Some(seed) = options.shuffle_seed {
        seeded_shuffle(&mut order, seed, streams::LIST_SHUFFLE);
    }
    let mut writer = LmdbWriter::create(out)?;
    let mut report = ImagesetReport::default();
    let bar = progress_bar(entries.len(), "convert_imageset", options.progress);
    render_in_order(
        &order,
        |&i| load_resized(&root.join(&entries[i].path), options.size),
        |index, &i, image| {
            let entry = &entries[i];
            bar.inc(1);
            match image {
                Ok(image) => {
                    let datum = datum_from_image(&image, entry.label);
                    writer.put_datum(index, &entry.path, &datum)?;
                    report.written += 1;
                }
                Err(e) => report.failed.push((entry.path.clone(), e.to_string())),
            }
            Ok::<(), DataError>(())
        },
    )?;
    bar.finish_and_clear();
    writer.finish()?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_lines_split_at_the_last_space_and_bad_lines_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("list.txt");
        std::fs::write(&p, "a b.jpg 3\r\n\nc.jpg 0\n").unwrap();
        let entries = read_image_list(&p).unwrap();
        assert_eq!(
            entries,
            [
                ListEntry {
                    path: "a b.jpg".into(),
                    label: 3
                },
                ListEntry {
                    path: "c.jpg".into(),
                    label: 0
                }
            ]
        );
        std::fs::write(&p, "ok.jpg 1\nnolabel.jpg\n").unwrap();
        let e = read_image_list(&p).unwrap_err().to_string();
        assert!(e.contains("list.txt:2"), "{e}");
        std::fs::write(&p, "x.jpg one\n").unwrap();
        let e = read_image_list(&p).unwrap_err().to_string();
        assert!(e.contains("list.txt:1") && e.contains("\"one\""), "{e}");
    }
}
