//! QR codes for invites and identity cards: Unicode block art for the
//! terminal (two modules per character cell) and a grayscale PNG.

use std::io;
use std::path::Path;

use qrcode::{Color, EcLevel, QrCode};

/// Light modules around the code, as the QR standard asks.
const QUIET_ZONE: usize = 4;

pub struct Qr {
    width: usize,
    dark: Vec<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum QrError {
    #[error("text of {0} bytes is too long for a QR code")]
    TooLong(usize),
    #[error("cannot write PNG {}: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        source: io::Error,
    },
    #[error("cannot encode PNG: {0}")]
    Png(#[from] png::EncodingError),
}

impl Qr {
    /// Encode `text` at error-correction level M (M13: standard QR, level M).
    pub fn new(text: &str) -> Result<Self, QrError> {
        let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
            .map_err(|_| QrError::TooLong(text.len()))?;
        let width = code.width();
        let dark = code
            .to_colors()
            .into_iter()
            .map(|c| c == Color::Dark)
            .collect();
        Ok(Self { width, dark })
    }

    fn is_dark(&self, x: isize, y: isize) -> bool {
        let q = QUIET_ZONE as isize;
        let (x, y) = (x - q, y - q);
        let w = self.width as isize;
        (0..w).contains(&x) && (0..w).contains(&y) && self.dark[(y * w + x) as usize]
    }

    /// Block art: each character cell shows two modules stacked, using
    /// `█ ▀ ▄` and space, dark on light, so it scans from a dark-on-light
    /// or inverted terminal alike when the terminal keeps its colours.
    pub fn to_terminal(&self) -> String {
        let size = (self.width + 2 * QUIET_ZONE) as isize;
        let mut out = String::new();
        for y in (0..size).step_by(2) {
            for x in 0..size {
                // Light modules print as ink: terminals are usually light
                // text on a dark background, and scanners need dark modules.
                let top = !self.is_dark(x, y);
                let bottom = y + 1 < size && !self.is_dark(x, y + 1);
                out.push(match (top, bottom) {
                    (true, true) => '█',
                    (true, false) => '▀',
                    (false, true) => '▄',
                    (false, false) => ' ',
                });
            }
            out.push('\n');
        }
        out
    }

    /// PNG bytes, `scale` pixels per module, dark modules black.
    pub fn to_png(&self, scale: usize) -> Result<Vec<u8>, QrError> {
        let scale = scale.max(1);
        let side = (self.width + 2 * QUIET_ZONE) * scale;
        let mut pixels = Vec::with_capacity(side * side);
        for py in 0..side {
            for px in 0..side {
                let dark = self.is_dark((px / scale) as isize, (py / scale) as isize);
                pixels.push(if dark { 0u8 } else { 255u8 });
            }
        }
        let mut bytes = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut bytes, side as u32, side as u32);
            encoder.set_color(png::ColorType::Grayscale);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header()?;
            writer.write_image_data(&pixels)?;
        }
        Ok(bytes)
    }

    /// Write the PNG atomically to `path`.
    pub fn write_png(&self, path: &Path, scale: usize) -> Result<(), QrError> {
        let bytes = self.to_png(scale)?;
        hearthnet_base::fsio::atomic_write(path, &bytes, 0o644).map_err(|source| QrError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_png(bytes: &[u8]) -> String {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let (w, h) = (info.width as usize, info.height as usize);
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1);
        grids[0].decode().unwrap().1
    }

    #[test]
    fn png_decodes_back_to_the_text() {
        let text = "hearthnet://v1/eyJzY2hlbWFfdmVyc2lvbiI6MX0";
        let qr = Qr::new(text).unwrap();
        assert_eq!(decode_png(&qr.to_png(4).unwrap()), text);
    }

    #[test]
    fn terminal_art_has_quiet_zone_and_half_height() {
        let qr = Qr::new("hello").unwrap();
        let art = qr.to_terminal();
        let lines: Vec<&str> = art.lines().collect();
        let side = qr.width + 2 * QUIET_ZONE;
        assert_eq!(lines.len(), side.div_ceil(2));
        assert!(lines.iter().all(|l| l.chars().count() == side));
        assert!(
            lines[0].chars().all(|c| c == '█'),
            "quiet zone is light (printed as ink)"
        );
    }
}
