//! A small synthetic face set for machines without UTKFace, so that the README's first
//! command runs anywhere. Images are named as UTKFace names them
//! (`<age>_<gender>_<race>_<date>.jpg.chip.jpg`), so `data prepare` reads them unchanged.
//! They are not faces: a dark ellipse on a background whose colour encodes the gender and
//! whose horizontal bands encode the age bucket, plus noise, so that the nets have something
//! learnable. Every report made from them is labelled synthetic.

use crate::io::image::{write_image, ChwImage};
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};

/// Side of the generated images (UTKFace's aligned crops are 200×200).
pub const SIDE: usize = 200;

/// Writes `per_class` images for each of the 9 age buckets (genders alternate, race 2 =
/// Asian as the default filter keeps) into `dir`; returns the files. Seeded.
pub fn generate(dir: &Path, per_class: usize, seed: u64) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut files = Vec::new();
    for bucket in 0..9usize {
        for i in 0..per_class {
            let age = bucket * 10 + rng.random_range(0..10usize);
            let gender = i % 2;
            let image = draw(bucket, gender, &mut rng);
            let name = format!("{age}_{gender}_2_2017{bucket:02}{i:010}.jpg.chip.jpg");
            let path = dir.join(name);
            write_image(&path, &image).map_err(std::io::Error::other)?;
            files.push(path);
        }
    }
    Ok(files)
}

fn draw(bucket: usize, gender: usize, rng: &mut impl Rng) -> ChwImage {
    let n = SIDE * SIDE;
    let mut data = vec![0u8; 3 * n];
    // Background BGR: bluish for 0 (male), reddish for 1 (female).
    let background = if gender == 0 {
        [170.0, 120.0, 90.0]
    } else {
        [90.0, 120.0, 170.0]
    };
    let bands = 1 + bucket; // more bands with age
    for y in 0..SIDE {
        for x in 0..SIDE {
            let (dx, dy) = (x as f32 - 100.0, y as f32 - 105.0);
            let inside = (dx / 60.0).powi(2) + (dy / 80.0).powi(2) <= 1.0;
            let band = (y * bands / SIDE) % 2 == 1;
            for (c, bg) in background.iter().enumerate() {
                let mut v = if inside { 70.0 + 12.0 * c as f32 } else { *bg };
                if inside && band {
                    v += 50.0;
                }
                v += rng.random_range(-20.0f32..20.0);
                data[c * n + y * SIDE + x] = v.clamp(0.0, 255.0) as u8;
            }
        }
    }
    ChwImage {
        channels: 3,
        height: SIDE,
        width: SIDE,
        data,
    }
}
