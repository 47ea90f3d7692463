//! QR codes for invites and identity cards: Unicode block art for the
//! terminal (two modules per character cell) and a grayscale PNG; and
//! reading one back from a picture ([`read`]: a PNG saved by `hearthnet`,
//! a phone camera's JPEG), bounded before any pixel is decoded.

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

/// The largest picture [`read`] looks at.
pub const MAX_PICTURE_BYTES: usize = 8 << 20;
/// The widest and tallest picture [`read`] decodes: a phone camera's
/// 12-megapixel photo (4032 × 3024) fits, a crafted header asking for
/// gigapixels does not.
pub const MAX_PICTURE_SIDE: u32 = 8192;
/// The most pixels [`read`] decodes: a phone camera's 12-megapixel photo
/// fits. Checked from the header before decoding, since a JPEG decoder's
/// own buffers (up to 2 bytes a sample, 4 samples a pixel, for a
/// progressive file) are not counted by [`MAX_PICTURE_ALLOC`]: with them,
/// one picture's decoding peaks near 11 bytes a pixel, about 135 MiB.
pub const MAX_PICTURE_PIXELS: u64 = 4096 * 3072;
/// What the decoded picture itself may take: a 12-megapixel RGB photo
/// (36 MiB) fits.
const MAX_PICTURE_ALLOC: u64 = 64 << 20;
/// Larger pictures are shrunk to this side before the search for a code:
/// a code filling a third of the frame keeps several pixels per module,
/// and the search takes a fraction of the time.
const SEARCH_SIDE: u32 = 1600;

/// Why no text came out of a picture.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the picture is larger than {} MiB", MAX_PICTURE_BYTES >> 20)]
    TooManyBytes,
    #[error(
        "the picture is larger than {MAX_PICTURE_SIDE} pixels on a side or 12.5 megapixels, or too large to decode"
    )]
    TooLarge,
    #[error("not a picture that can be read (PNG or JPEG)")]
    NotAPicture,
    #[error("the picture is damaged: {0}")]
    Damaged(String),
    #[error("no QR code found in the picture")]
    NoCode,
}

/// The text of the first readable QR code in `bytes`, a PNG or JPEG
/// picture. The bounds hold before the work: the size in bytes first,
/// then the dimensions and the allocation its header asks for.
pub fn read(bytes: &[u8]) -> Result<String, ReadError> {
    if bytes.len() > MAX_PICTURE_BYTES {
        return Err(ReadError::TooManyBytes);
    }
    let open = || {
        image::ImageReader::new(io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| ReadError::Damaged(e.to_string()))
    };
    let mut reader = open()?;
    if reader.format().is_none() {
        return Err(ReadError::NotAPicture);
    }
    // The header alone, before any decoding buffer exists.
    let (w, h) = open()?.into_dimensions().map_err(|e| match e {
        image::ImageError::Unsupported(_) => ReadError::NotAPicture,
        other => ReadError::Damaged(other.to_string()),
    })?;
    if w.max(h) > MAX_PICTURE_SIDE || u64::from(w) * u64::from(h) > MAX_PICTURE_PIXELS {
        return Err(ReadError::TooLarge);
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_PICTURE_SIDE);
    limits.max_image_height = Some(MAX_PICTURE_SIDE);
    limits.max_alloc = Some(MAX_PICTURE_ALLOC);
    reader.limits(limits);
    let picture = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => ReadError::TooLarge,
        image::ImageError::Unsupported(_) => ReadError::NotAPicture,
        other => ReadError::Damaged(other.to_string()),
    })?;
    let picture = if picture.width().max(picture.height()) > SEARCH_SIDE {
        picture.thumbnail(SEARCH_SIDE, SEARCH_SIDE)
    } else {
        picture
    };
    let luma = picture.into_luma8();
    let (w, h) = (luma.width() as usize, luma.height() as usize);
    let mut prepared =
        rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| luma.as_raw()[y * w + x]);
    prepared
        .detect_grids()
        .into_iter()
        .find_map(|g| g.decode().ok().map(|(_, text)| text))
        .ok_or(ReadError::NoCode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_decodes_back_to_the_text() {
        let text = "hearthnet://v1/eyJzY2hlbWFfdmVyc2lvbiI6MX0";
        let qr = Qr::new(text).unwrap();
        assert_eq!(read(&qr.to_png(4).unwrap()).unwrap(), text);
    }

    /// A grayscale PNG of `w` × `h` light pixels.
    fn blank_png(w: u32, h: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, w, h);
        encoder.set_color(png::ColorType::Grayscale);
        let mut writer = encoder.write_header().unwrap();
        writer
            .write_image_data(&vec![255u8; (w * h) as usize])
            .unwrap();
        writer.finish().unwrap();
        bytes
    }

    #[test]
    fn a_jpeg_photo_of_a_code_reads_too() {
        let text = "hearthnet://v1/eyJzY2hlbWFfdmVyc2lvbiI6MX0";
        let png = Qr::new(text).unwrap().to_png(6).unwrap();
        let picture = image::load_from_memory(&png).unwrap();
        let mut jpeg = Vec::new();
        picture
            .write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        assert_eq!(read(&jpeg).unwrap(), text);
    }

    #[test]
    fn pictures_without_a_code_too_large_or_not_pictures_are_refused_plainly() {
        assert!(matches!(read(&blank_png(64, 64)), Err(ReadError::NoCode)));
        assert!(matches!(
            read(b"hearthnet://v1/not a picture"),
            Err(ReadError::NotAPicture)
        ));
        let mut cut = blank_png(64, 64);
        cut.truncate(cut.len() / 2);
        assert!(matches!(read(&cut), Err(ReadError::Damaged(_))));
        assert!(matches!(
            read(&vec![0u8; MAX_PICTURE_BYTES + 1]),
            Err(ReadError::TooManyBytes)
        ));
        // A few hundred bytes on disk, too wide to decode: refused on its
        // header, before a pixel is decoded.
        let wide = blank_png(MAX_PICTURE_SIDE + 1, 1);
        assert!(wide.len() < 4096, "{}", wide.len());
        assert!(matches!(read(&wide), Err(ReadError::TooLarge)));
        // Within each side, more pixels than a phone photo: refused on
        // its header too.
        let big = blank_png(4096, 3073);
        assert!(big.len() < MAX_PICTURE_BYTES, "{}", big.len());
        assert!(matches!(read(&big), Err(ReadError::TooLarge)));
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
