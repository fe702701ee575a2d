//! UTKFace file names → labels, and the directory scan that collects them.
//!
//! UTKFace encodes its labels in the aligned-and-cropped file names:
//! `<age>_<gender>_<race>_<date&time>.jpg.chip.jpg`, gender 0 male / 1 female, race
//! 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others. A handful of real names break the pattern
//! (a missing race field, a space before `.jpg`, a missing dot); such files are skipped and
//! counted by reason, never fatal.

use super::DataError;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The age classes of the original project: decades, everything from 80 in the last one.
pub const AGE_BUCKETS: [&str; 9] = [
    "0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80-120",
];

/// Gender class names by label (0 male, 1 female, as in UTKFace).
pub const GENDERS: [&str; 2] = ["male", "female"];

/// Race names by UTKFace label.
pub const RACES: [&str; 5] = ["white", "black", "asian", "indian", "other"];

/// The file name suffix of UTKFace's aligned and cropped faces.
pub const CHIP_SUFFIX: &str = ".jpg.chip.jpg";

/// Oldest age accepted from a name (UTKFace's range is 0–116).
pub const MAX_AGE: u32 = 150;

/// The age class of an age: `min(age / 10, 8)`.
pub fn age_bucket(age: u32) -> usize {
    (age / 10).min(8) as usize
}

/// Labels read from one UTKFace file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FaceLabels {
    /// Age in years.
    pub age: u32,
    /// 0 male, 1 female.
    pub gender: u8,
    /// 0 white, 1 black, 2 asian, 3 indian, 4 other.
    pub race: u8,
}

impl FaceLabels {
    /// The age class (index into [`AGE_BUCKETS`]).
    pub fn age_bucket(&self) -> usize {
        age_bucket(self.age)
    }
}

/// Why a file name is not a valid UTKFace name; [`NameError::reason`] is the counting key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name does not end in `.jpg.chip.jpg`.
    #[error("name does not end in .jpg.chip.jpg")]
    Suffix,
    /// Not exactly four `_`-separated fields before the suffix.
    #[error("expected 4 fields age_gender_race_datetime, found {0}")]
    FieldCount(usize),
    /// The age is not a number in 0..=150.
    #[error("age field {0:?} is not a number in 0..={MAX_AGE}")]
    Age(String),
    /// The gender is not 0 or 1.
    #[error("gender field {0:?} is not 0 or 1")]
    Gender(String),
    /// The race is not 0 to 4.
    #[error("race field {0:?} is not 0..=4")]
    Race(String),
    /// The date-time field is not all digits.
    #[error("date-time field {0:?} is not all digits")]
    DateTime(String),
}

impl NameError {
    /// A short, stable reason used to count skipped files.
    pub fn reason(&self) -> &'static str {
        match self {
            NameError::Suffix => "malformed name: no .jpg.chip.jpg suffix",
            NameError::FieldCount(_) => "malformed name: not 4 fields",
            NameError::Age(_) => "malformed name: bad age",
            NameError::Gender(_) => "malformed name: bad gender",
            NameError::Race(_) => "malformed name: bad race",
            NameError::DateTime(_) => "malformed name: bad date-time",
        }
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Parses `<age>_<gender>_<race>_<digits>.jpg.chip.jpg` (a bare file name, no directory).
pub fn parse_utkface_name(file_name: &str) -> Result<FaceLabels, NameError> {
    let stem = file_name
        .strip_suffix(CHIP_SUFFIX)
        .ok_or(NameError::Suffix)?;
    let fields: Vec<&str> = stem.split('_').collect();
    let [age, gender, race, datetime] = fields[..] else {
        return Err(NameError::FieldCount(fields.len()));
    };
    let age_value = all_digits(age)
        .then(|| age.parse::<u32>().ok())
        .flatten()
        .filter(|&a| a <= MAX_AGE)
        .ok_or_else(|| NameError::Age(age.into()))?;
    let gender_value = match gender {
        "0" => 0,
        "1" => 1,
        _ => return Err(NameError::Gender(gender.into())),
    };
    let race_value = match race.as_bytes() {
        [d @ b'0'..=b'4'] => d - b'0',
        _ => return Err(NameError::Race(race.into())),
    };
    if !all_digits(datetime) {
        return Err(NameError::DateTime(datetime.into()));
    }
    Ok(FaceLabels {
        age: age_value,
        gender: gender_value,
        race: race_value,
    })
}

/// Which races to keep (`--race`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RaceFilter {
    /// Every race.
    All,
    /// One race label (0–4).
    Only(u8),
}

impl RaceFilter {
    /// Parses `all` or a race name from [`RACES`] (`asian`, …).
    pub fn parse(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        if lower == "all" {
            return Ok(RaceFilter::All);
        }
        RACES
            .iter()
            .position(|r| *r == lower)
            .map(|i| RaceFilter::Only(i as u8))
            .ok_or_else(|| format!("unknown race {s:?}: use all, {}", RACES.join(", ")))
    }

    /// True when a face of this race is kept.
    pub fn keeps(&self, race: u8) -> bool {
        match self {
            RaceFilter::All => true,
            RaceFilter::Only(r) => *r == race,
        }
    }
}

/// One labelled image found in the UTKFace folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FaceSample {
    /// Path relative to the folder, `/`-separated (the name in list files and LMDB keys).
    pub path: String,
    /// Labels from the file name.
    pub labels: FaceLabels,
}

/// The result of scanning a folder: usable samples (sorted by path) and what was skipped.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FaceScan {
    /// Samples kept, sorted by path.
    pub samples: Vec<FaceSample>,
    /// Skipped image files by reason.
    pub skipped: BTreeMap<String, usize>,
    /// Up to three example paths per skip reason.
    pub skipped_examples: BTreeMap<String, Vec<String>>,
    /// Valid faces left out by the race filter.
    pub other_races: usize,
    /// Files that are not images at all (manifests, notes), ignored.
    pub non_image_files: usize,
}

impl FaceScan {
    /// Counts a skipped file under `reason`, keeping a few examples.
    pub fn skip(&mut self, reason: &str, path: &str) {
        *self.skipped.entry(reason.to_string()).or_default() += 1;
        let examples = self.skipped_examples.entry(reason.to_string()).or_default();
        if examples.len() < 3 {
            examples.push(path.to_string());
        }
    }
}

/// File extensions treated as images (what `cv::imread` and this crate decode).
fn is_image_file(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".jpg", ".jpeg", ".png", ".bmp"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

/// Walks `root` (recursively, symlinks followed) and parses every image file name.
/// Malformed names are skipped and counted; faces of other races are counted apart.
pub fn scan_utkface(root: &Path, race: RaceFilter) -> Result<FaceScan, DataError> {
    if !root.is_dir() {
        return Err(DataError::Io {
            path: root.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        });
    }
    let mut scan = FaceScan::default();
    for entry in walkdir::WalkDir::new(root).follow_links(true) {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let path = e
                    .path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                scan.skip("unreadable directory entry", &path);
                continue;
            }
        };
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let Some(rel_str) = rel.to_str() else {
            scan.skip("file name is not UTF-8", &rel.display().to_string());
            continue;
        };
        let rel_str = rel_str.replace(std::path::MAIN_SEPARATOR, "/");
        let file_name = entry.file_name().to_str().unwrap_or_default();
        if !is_image_file(file_name) {
            scan.non_image_files += 1;
            continue;
        }
        match parse_utkface_name(file_name) {
            Ok(labels) if race.keeps(labels.race) => scan.samples.push(FaceSample {
                path: rel_str,
                labels,
            }),
            Ok(_) => scan.other_races += 1,
            Err(e) => scan.skip(e.reason(), &rel_str),
        }
    }
    scan.samples.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::shared;

    #[test]
    fn every_real_manifest_name_parses_to_the_manifest_labels() {
        let Some(manifest) = shared("data/utkface-asian/manifest.tsv") else {
            return;
        };
        let text = std::fs::read_to_string(manifest).unwrap();
        let mut rows = 0;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let cols: Vec<&str> = line.split('\t').collect();
            let labels = parse_utkface_name(cols[0]).unwrap();
            assert_eq!(labels.age.to_string(), cols[1], "{line}");
            assert_eq!(labels.gender.to_string(), cols[2], "{line}");
            assert_eq!(labels.race.to_string(), cols[3], "{line}");
            assert_eq!(labels.age_bucket().to_string(), cols[4], "{line}");
            assert_eq!(AGE_BUCKETS[labels.age_bucket()], cols[5], "{line}");
            rows += 1;
        }
        assert_eq!(rows, 3434);
        // The one real name with an 18-digit timestamp is valid (SOURCE.md).
        let odd = parse_utkface_name("28_1_2_201701161846515488.jpg.chip.jpg").unwrap();
        assert_eq!((odd.age, odd.gender, odd.race), (28, 1, 2));
    }

    #[test]
    fn the_five_malformed_utkface_names_are_rejected_with_their_reason() {
        // The five malformed names of the full UTKFace release (listed in SOURCE.md).
        let cases = [
            (
                "39_1_20170116174525125.jpg.chip.jpg",
                NameError::FieldCount(3),
            ),
            (
                "61_1_20170109142408075.jpg.chip.jpg",
                NameError::FieldCount(3),
            ),
            (
                "61_1_20170109150557335.jpg.chip.jpg",
                NameError::FieldCount(3),
            ),
            (
                "24_0_1_20170116220224657 .jpg.chip.jpg",
                NameError::DateTime("20170116220224657 ".into()),
            ),
            ("55_0_0_20170116232725357jpg.chip.jpg", NameError::Suffix),
        ];
        for (name, want) in cases {
            assert_eq!(parse_utkface_name(name), Err(want), "{name}");
        }
        assert_eq!(
            parse_utkface_name("x_0_2_1.jpg.chip.jpg"),
            Err(NameError::Age("x".into()))
        );
        assert_eq!(
            parse_utkface_name("200_0_2_1.jpg.chip.jpg"),
            Err(NameError::Age("200".into()))
        );
        assert_eq!(
            parse_utkface_name("20_2_2_1.jpg.chip.jpg"),
            Err(NameError::Gender("2".into()))
        );
        assert_eq!(
            parse_utkface_name("20_0_5_1.jpg.chip.jpg"),
            Err(NameError::Race("5".into()))
        );
        assert_eq!(
            parse_utkface_name("20_0_2_.jpg.chip.jpg"),
            Err(NameError::DateTime(String::new()))
        );
    }

    #[test]
    fn age_buckets_are_decades_capped_at_eighty() {
        let cases = [(0, 0), (9, 0), (10, 1), (79, 7), (80, 8), (116, 8)];
        for (age, bucket) in cases {
            assert_eq!(age_bucket(age), bucket, "age {age}");
        }
    }

    #[test]
    fn scan_counts_malformed_names_other_races_and_non_images() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        for name in [
            "25_0_2_20170101000000000.jpg.chip.jpg",
            "39_1_20170116174525125.jpg.chip.jpg",
            "30_1_0_20170101000000000.jpg.chip.jpg",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::write(sub.join("5_1_2_20170101000000001.jpg.chip.jpg"), b"x").unwrap();
        let scan = scan_utkface(dir.path(), RaceFilter::parse("asian").unwrap()).unwrap();
        let paths: Vec<&str> = scan.samples.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "25_0_2_20170101000000000.jpg.chip.jpg",
                "sub/5_1_2_20170101000000001.jpg.chip.jpg"
            ]
        );
        assert_eq!(scan.skipped["malformed name: not 4 fields"], 1);
        assert_eq!((scan.other_races, scan.non_image_files), (1, 1));
        let all = scan_utkface(dir.path(), RaceFilter::All).unwrap();
        assert_eq!(all.samples.len(), 3);
        assert!(RaceFilter::parse("martian").is_err());
        assert!(scan_utkface(&dir.path().join("missing"), RaceFilter::All).is_err());
    }
}
