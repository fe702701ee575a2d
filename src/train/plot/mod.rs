//! `plot`: draws a training log as a PNG with two panels, loss (train and test) and test
//! accuracy, against the iteration. Drawn directly with the `image` crate and a built-in
//! bitmap font, so it needs no plotting library or system fonts.

mod font;

use super::log::LogRecord;
use crate::util::atomic::{atomic_write, AtomicWriteError};
use image::{ImageEncoder, Rgb, RgbImage};
use std::path::Path;

/// Image size in pixels.
pub const WIDTH: u32 = 900;
/// Image size in pixels.
pub const HEIGHT: u32 = 700;

/// A rectangle in image pixels (inclusive of `x..x+w`, `y..y+h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left.
    pub x: u32,
    /// Top.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

/// The plotting area of the loss panel (top).
pub const LOSS_PANEL: Rect = Rect {
    x: 100,
    y: 50,
    w: 760,
    h: 250,
};
/// The plotting area of the accuracy panel (bottom).
pub const ACCURACY_PANEL: Rect = Rect {
    x: 100,
    y: 390,
    w: 760,
    h: 250,
};

/// Colour of the training loss.
pub const TRAIN_LOSS: Rgb<u8> = Rgb([31, 119, 180]);
/// Colour of the test loss.
pub const TEST_LOSS: Rgb<u8> = Rgb([255, 127, 14]);
/// Colour of the test accuracy.
pub const TEST_ACCURACY: Rgb<u8> = Rgb([44, 160, 44]);
const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([40, 40, 40]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);

/// Errors of `plot`.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The log has no records to draw.
    #[error("the log has no records to plot")]
    Empty,
    /// PNG encoding failed.
    #[error("cannot encode the PNG: {0}")]
    Encode(#[from] image::ImageError),
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
}

/// A series of (iteration, value) points.
type Series = Vec<(f64, f64)>;

/// 1, 2 or 5 × 10^k, about `range / 5`.
fn nice_step(range: f64) -> f64 {
    if range <= 0.0 || !range.is_finite() {
        return 1.0;
    }
    let raw = range / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let n = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    n * mag
}

/// Axis range widened to whole ticks, and the tick step.
fn nice_range(lo: f64, hi: f64) -> (f64, f64, f64) {
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, lo + 0.5)
    };
    let step = nice_step(hi - lo);
    ((lo / step).floor() * step, (hi / step).ceil() * step, step)
}

fn tick_label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil() as usize
    };
    format!("{v:.decimals$}")
}

struct Canvas(RgbImage);

impl Canvas {
    fn put(&mut self, x: i64, y: i64, c: Rgb<u8>) {
        if x >= 0 && y >= 0 && (x as u32) < WIDTH && (y as u32) < HEIGHT {
            self.0.put_pixel(x as u32, y as u32, c);
        }
    }

    fn text(&mut self, x: i64, y: i64, s: &str, c: Rgb<u8>) {
        const SCALE: i64 = 2;
        for (i, ch) in s.chars().enumerate() {
            let ox = x + i as i64 * font::ADVANCE as i64 * SCALE;
            for (row, bits) in font::glyph(ch).iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        for dy in 0..SCALE {
                            for dx in 0..SCALE {
                                self.put(ox + col * SCALE + dx, y + row as i64 * SCALE + dy, c);
                            }
                        }
                    }
                }
            }
        }
    }

    fn text_width(s: &str) -> i64 {
        s.chars().count() as i64 * font::ADVANCE as i64 * 2
    }

    /// A 2-pixel-wide line (Bresenham with a 2×2 pen).
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb<u8>) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            for (ox, oy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                self.put(x + ox, y + oy, c);
            }
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    fn marker(&mut self, (x, y): (i64, i64), c: Rgb<u8>) {
        for oy in -3..=3 {
            for ox in -3..=3 {
                self.put(x + ox, y + oy, c);
            }
        }
    }
}

/// One panel: frame, grid, ticks, title and the series (line, or markers when `dots`).
fn panel(
    cv: &mut Canvas,
    r: Rect,
    title: &str,
    x_range: (f64, f64, f64),
    y_range: (f64, f64, f64),
    y_label: &dyn Fn(f64) -> String,
    series: &[(&str, &Series, Rgb<u8>)],
) {
    let (x_lo, x_hi, x_step) = x_range;
    let (y_lo, y_hi, y_step) = y_range;
    let px = |x: f64| r.x as i64 + ((x - x_lo) / (x_hi - x_lo) * (r.w - 1) as f64).round() as i64;
    let py = |y: f64| {
        (r.y + r.h - 1) as i64 - ((y - y_lo) / (y_hi - y_lo) * (r.h - 1) as f64).round() as i64
    };
    let mut t = y_lo;
    while t <= y_hi + y_step * 1e-9 {
        let y = py(t);
        for x in r.x as i64..(r.x + r.w) as i64 {
            cv.put(x, y, GRID);
        }
        let s = y_label(t);
        cv.text(r.x as i64 - 10 - Canvas::text_width(&s), y - 7, &s, INK);
        t += y_step;
    }
    let mut t = x_lo;
    while t <= x_hi + x_step * 1e-9 {
        let x = px(t);
        for y in r.y as i64..(r.y + r.h) as i64 {
            cv.put(x, y, GRID);
        }
        let s = tick_label(t, x_step);
        cv.text(
            x - Canvas::text_width(&s) / 2,
            (r.y + r.h + 8) as i64,
            &s,
            INK,
        );
        t += x_step;
    }
    let (left, top) = (r.x as i64 - 1, r.y as i64 - 1);
    let (right, bottom) = ((r.x + r.w) as i64, (r.y + r.h) as i64);
    for x in left..=right {
        cv.put(x, top, INK);
        cv.put(x, bottom, INK);
    }
    for y in top..=bottom {
        cv.put(left, y, INK);
        cv.put(right, y, INK);
    }
    cv.text(r.x as i64, r.y as i64 - 24, title, INK);
    let mut legend_x = (r.x + r.w) as i64;
    for (name, points, colour) in series.iter().rev() {
        legend_x -= Canvas::text_width(name) + 30;
        cv.marker((legend_x + 4, r.y as i64 - 17), *colour);
        cv.text(legend_x + 14, r.y as i64 - 24, name, INK);
        let pts: Vec<(i64, i64)> = points.iter().map(|&(x, y)| (px(x), py(y))).collect();
        if pts.len() == 1 {
            cv.marker(pts[0], *colour);
        }
        for w in pts.windows(2) {
            cv.line(w[0], w[1], *colour);
        }
    }
}

/// Renders the log as an RGB image.
pub fn render(records: &[LogRecord]) -> Result<RgbImage, PlotError> {
    if records.is_empty() {
        return Err(PlotError::Empty);
    }
    let mut train_loss = Series::new();
    let mut test_loss = Series::new();
    let mut test_acc = Series::new();
    for r in records {
        match r {
            LogRecord::Train(t) if t.loss.is_finite() => {
                train_loss.push((t.iter as f64, f64::from(t.loss)))
            }
            LogRecord::Test(t) if t.test_net == 0 => {
                if let Some(l) = t.test_loss.filter(|l| l.is_finite()) {
                    test_loss.push((t.iter as f64, l));
                }
                if let Some(a) = t.test_accuracy.filter(|a| a.is_finite()) {
                    test_acc.push((t.iter as f64, a));
                }
            }
            _ => {}
        }
    }
    let iters = records.iter().map(|r| r.iter() as f64);
    let x_range = nice_range(
        0f64.min(iters.clone().fold(f64::MAX, f64::min)),
        iters.fold(0.0, f64::max),
    );
    let losses = train_loss.iter().chain(&test_loss).map(|p| p.1);
    let (lo, hi) = losses
        .clone()
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let y_loss = if lo <= hi {
        nice_range(lo, hi)
    } else {
        (0.0, 1.0, 0.2)
    };
    let mut cv = Canvas(RgbImage::from_pixel(WIDTH, HEIGHT, BACKGROUND));
    let y_fmt = move |v: f64| tick_label(v, y_loss.2);
    panel(
        &mut cv,
        LOSS_PANEL,
        "LOSS",
        x_range,
        y_loss,
        &y_fmt,
        &[
            ("TRAIN", &train_loss, TRAIN_LOSS),
            ("TEST", &test_loss, TEST_LOSS),
        ],
    );
    panel(
        &mut cv,
        ACCURACY_PANEL,
        "TEST ACCURACY",
        x_range,
        (0.0, 1.0, 0.2),
        &|v| format!("{:.0}%", v * 100.0),
        &[("TEST", &test_acc, TEST_ACCURACY)],
    );
    let label = "ITERATION";
    cv.text(
        (ACCURACY_PANEL.x + ACCURACY_PANEL.w / 2) as i64 - Canvas::text_width(label) / 2,
        (HEIGHT - 24) as i64,
        label,
        INK,
    );
    Ok(cv.0)
}

/// Renders the log and writes it as a PNG (atomically).
pub fn write_plot(records: &[LogRecord], out: &Path) -> Result<(), PlotError> {
    let img = render(records)?;
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png).write_image(
        img.as_raw(),
        WIDTH,
        HEIGHT,
        image::ExtendedColorType::Rgb8,
    )?;
    atomic_write(out, &png)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::log::{TestRecord, TrainRecord};
    use super::*;

    fn train(iter: u64, loss: f32) -> LogRecord {
        LogRecord::Train(TrainRecord {
            iter,
            loss,
            lr: 0.1,
            images_per_s: 1.0,
        })
    }

    fn test(iter: u64, acc: f64) -> LogRecord {
        LogRecord::Test(TestRecord {
            iter,
            test_accuracy: Some(acc),
            test_loss: None,
            test_net: 0,
            outputs: Default::default(),
        })
    }

    fn near(img: &RgbImage, x: u32, y: u32, c: Rgb<u8>) -> bool {
        (x - 2..=x + 2).any(|x| (y - 2..=y + 2).any(|y| *img.get_pixel(x, y) == c))
    }

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(nice_range(1.0, 2.0), (1.0, 2.0, 0.2));
        assert_eq!(nice_range(0.0, 1000.0), (0.0, 1000.0, 200.0));
        assert_eq!(nice_range(0.0, 30.0), (0.0, 30.0, 10.0));
        assert_eq!(tick_label(0.4, 0.2), "0.4");
        assert_eq!(tick_label(2000.0, 500.0), "2000");
    }

    #[test]
    fn curves_pass_through_their_points() {
        // Train loss falls linearly from 2.0 at iter 0 to 1.0 at iter 100, so with the
        // axis spanning exactly [0, 100] × [1, 2] it is the panel's diagonal and passes
        // through its centre. Test accuracy 0.5 at iters 0 and 100 is the accuracy
        // panel's horizontal mid-line.
        let log = vec![
            train(0, 2.0),
            train(50, 1.5),
            train(100, 1.0),
            test(0, 0.5),
            test(100, 0.5),
        ];
        let img = render(&log).unwrap();
        let r = LOSS_PANEL;
        assert!(near(&img, r.x + r.w / 2, r.y + r.h / 2, TRAIN_LOSS));
        assert!(near(&img, r.x + 2, r.y + 2, TRAIN_LOSS));
        assert!(near(&img, r.x + r.w - 3, r.y + r.h - 3, TRAIN_LOSS));
        assert!(!near(&img, r.x + r.w - 3, r.y + 3, TRAIN_LOSS));
        let a = ACCURACY_PANEL;
        for x in [a.x + 5, a.x + a.w / 3, a.x + a.w - 5] {
            assert!(near(&img, x, a.y + a.h / 2, TEST_ACCURACY), "x {x}");
        }
        assert!(!near(&img, a.x + a.w / 2, a.y + a.h / 4, TEST_ACCURACY));
    }

    #[test]
    fn writes_a_png_and_refuses_an_empty_log() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("curve.png");
        write_plot(&[train(0, 2.0), train(10, 1.0)], &out).unwrap();
        let img = image::open(&out).unwrap();
        assert_eq!((img.width(), img.height()), (WIDTH, HEIGHT));
        assert!(matches!(write_plot(&[], &out), Err(PlotError::Empty)));
    }
}
