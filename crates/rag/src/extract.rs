//! Document bytes to text: the type decided from the bytes (and a hint
//! for the text flavours), the text kept per page where the format has
//! pages.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hearthnet_base::ErrorCode;
use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};

/// The largest PDF handed to the parser: its content-stream parser can
/// take minutes and gigabytes on large or odd files.
pub const MAX_PDF_BYTES: usize = 32 * 1024 * 1024;
/// How long one PDF may take. A parse past it is abandoned (its thread
/// cannot be stopped from outside; it is counted until it ends).
pub const PDF_TIME_BUDGET: Duration = Duration::from_secs(60);
/// PDF parses running at once, abandoned ones included, so hostile files
/// cannot pile up threads.
pub const MAX_PDF_THREADS: usize = 2;
/// How deep HTML may nest. The HTML parser's cost grows with the square
/// of the depth (10,000 nested `<div><b>` took 14 s in a debug build);
/// real pages nest a few dozen levels.
pub const MAX_HTML_DEPTH: usize = 1000;
/// Wrap width for HTML: wide enough that paragraphs stay one line (the
/// chunker cares about blank lines only).
const HTML_WIDTH: usize = 400;

static PDF_THREADS: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    Text,
    Markdown,
    Html,
    Pdf,
}

impl Media {
    pub fn mime(self) -> &'static str {
        match self {
            Media::Text => "text/plain",
            Media::Markdown => "text/markdown",
            Media::Html => "text/html",
            Media::Pdf => "application/pdf",
        }
    }
}

/// What the caller says about the document; the bytes have the last word
/// wherever they carry a signature of their own.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hint<'a> {
    pub mime: Option<&'a str>,
    pub filename: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// 1-based, for formats that have pages.
    pub number: Option<u32>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    pub media: Media,
    /// The document's own title, where it names one.
    pub title: Option<String>,
    pub pages: Vec<Page>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExtractError {
    #[error(
        "unsupported media type {0}: rag.ingest reads plain text, Markdown, HTML and PDF with a text layer"
    )]
    Unsupported(String),
    #[error("the PDF cannot be read: {0}")]
    PdfUnreadable(String),
    #[error("the PDF is {0} bytes; at most {MAX_PDF_BYTES} are read")]
    PdfTooLarge(usize),
    #[error("reading the PDF took over {} s", PDF_TIME_BUDGET.as_secs())]
    PdfTooSlow,
    #[error("{MAX_PDF_THREADS} PDFs are being read already")]
    PdfBusy,
    #[error("the document holds no text (a scanned PDF needs OCR, which is not supported)")]
    NoText,
    #[error("the HTML nests {0} elements deep; at most {MAX_HTML_DEPTH} are read")]
    HtmlTooDeep(usize),
}

impl ExtractError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ExtractError::PdfBusy => ErrorCode::CapacityExceeded,
            _ => ErrorCode::BadRequest,
        }
    }
}

/// Magic numbers of formats we are asked for but cannot read, so the
/// refusal can name what was sent.
const FOREIGN: &[(&[u8], &str)] = &[
    (b"\x89PNG", "image/png"),
    (b"\xFF\xD8\xFF", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"RIFF", "a RIFF container (audio/video/webp)"),
    (b"OggS", "audio/ogg"),
    (b"ID3", "audio/mpeg"),
    (b"PK\x03\x04", "application/zip (docx, odt, epub …)"),
    (b"\x1F\x8B", "application/gzip"),
    (b"\xD0\xCF\x11\xE0", "application/msword (OLE)"),
    (b"{\\rtf", "application/rtf"),
    (b"\x7FELF", "an executable"),
];

/// Decide what `bytes` is.
pub fn sniff(bytes: &[u8], hint: Hint<'_>) -> Result<Media, ExtractError> {
    // A PDF header may follow up to 1024 bytes of junk (PDF 1.7, H.3).
    if bytes[..bytes.len().min(1024)]
        .windows(5)
        .any(|w| w == b"%PDF-")
    {
        return Ok(Media::Pdf);
    }
    if let Some((_, name)) = FOREIGN.iter().find(|(magic, _)| bytes.starts_with(magic)) {
        return Err(ExtractError::Unsupported((*name).to_owned()));
    }
    let mime = hint.mime.map(|m| {
        m.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    let text = std::str::from_utf8(bytes)
        .ok()
        .filter(|t| !t.contains('\0'));
    let Some(text) = text else {
        let named = mime.unwrap_or_else(|| "application/octet-stream".into());
        return Err(ExtractError::Unsupported(format!(
            "{named} (not UTF-8 text)"
        )));
    };
    if let Some(mime) = mime.as_deref() {
        match mime {
            "text/html" | "application/xhtml+xml" => return Ok(Media::Html),
            "text/markdown" | "text/x-markdown" => return Ok(Media::Markdown),
            "application/pdf" => {
                return Err(ExtractError::PdfUnreadable(
                    "declared application/pdf, but the bytes are not a PDF".into(),
                ));
            }
            m if m.starts_with("text/") => {}
            other => return Err(ExtractError::Unsupported(other.to_owned())),
        }
    }
    let extension = hint
        .filename
        .and_then(|f| f.rsplit_once('.'))
        .map(|(_, ext)| ext.to_ascii_lowercase());
    match extension.as_deref() {
        Some("html" | "htm" | "xhtml") => return Ok(Media::Html),
        Some("md" | "markdown") => return Ok(Media::Markdown),
        Some("txt") => return Ok(Media::Text),
        _ => {}
    }
    if mime.as_deref() == Some("text/plain") {
        return Ok(Media::Text);
    }
    let head = text
        .trim_start_matches('\u{FEFF}')
        .trim_start()
        .chars()
        .take(512)
        .collect::<String>()
        .to_ascii_lowercase();
    if head.starts_with("<!doctype html") || head.starts_with("<html") || head.contains("<body") {
        return Ok(Media::Html);
    }
    let markdown = text.lines().take(200).any(|l| {
        let l = l.trim_start();
        l.starts_with("# ") || l.starts_with("## ") || l.starts_with("```")
    });
    Ok(if markdown {
        Media::Markdown
    } else {
        Media::Text
    })
}

/// The text of `bytes`, of the type [`sniff`] decides. Blocking (and for
/// a PDF up to [`PDF_TIME_BUDGET`]).
pub fn extract(bytes: Vec<u8>, hint: Hint<'_>) -> Result<Extracted, ExtractError> {
    let media = sniff(&bytes, hint)?;
    let (title, pages) = match media {
        Media::Pdf => (None, pdf_pages(bytes)?),
        // `sniff` accepted these as UTF-8 already.
        Media::Text => (None, vec![unpaged(String::from_utf8_lossy(&bytes).into())]),
        Media::Markdown => markdown(&String::from_utf8_lossy(&bytes)),
        Media::Html => html(&bytes)?,
    };
    let pages: Vec<Page> = pages
        .into_iter()
        .map(|p| Page {
            number: p.number,
            text: tidy(&p.text),
        })
        .filter(|p| !p.text.is_empty())
        .collect();
    if pages.is_empty() {
        return Err(ExtractError::NoText);
    }
    Ok(Extracted {
        media,
        title: title.map(|t| tidy(&t)).filter(|t| !t.is_empty()),
        pages,
    })
}

fn unpaged(text: String) -> Page {
    Page { number: None, text }
}

/// Whitespace as the chunker reads it: a blank line between paragraphs,
/// single spaces inside them, no control characters.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut newlines = 0usize;
    let mut space = false;
    for c in text.trim_start_matches('\u{FEFF}').chars() {
        if c == '\n' {
            newlines += 1;
        } else if c.is_whitespace() || c.is_control() {
            space = true;
        } else {
            if !out.is_empty() {
                if newlines >= 2 {
                    out.push_str("\n\n");
                } else if newlines == 1 || space {
                    out.push(if newlines == 1 { '\n' } else { ' ' });
                }
            }
            newlines = 0;
            space = false;
            out.push(c);
        }
    }
    out
}

/// Markdown's text, each block its own paragraph; the first level-1
/// heading is the title. Raw HTML inside it is left out.
fn markdown(source: &str) -> (Option<String>, Vec<Page>) {
    let mut text = String::new();
    let mut title: Option<String> = None;
    let mut in_h1 = false;
    let mut h1 = String::new();
    for event in Parser::new(source) {
        match event {
            Event::Start(Tag::Heading {
                level: HeadingLevel::H1,
                ..
            }) if title.is_none() => in_h1 = true,
            Event::End(TagEnd::Heading(HeadingLevel::H1)) if in_h1 => {
                in_h1 = false;
                title = Some(std::mem::take(&mut h1));
                text.push_str("\n\n");
            }
            Event::Text(t) | Event::Code(t) => {
                if in_h1 {
                    h1.push_str(&t);
                }
                text.push_str(&t);
            }
            Event::SoftBreak | Event::HardBreak => text.push('\n'),
            Event::End(
                TagEnd::Paragraph
                | TagEnd::Heading(_)
                | TagEnd::CodeBlock
                | TagEnd::Item
                | TagEnd::BlockQuote(_)
                | TagEnd::TableRow
                | TagEnd::TableHead,
            ) => text.push_str("\n\n"),
            Event::End(TagEnd::TableCell) => text.push(' '),
            _ => {}
        }
    }
    (title, vec![unpaged(text)])
}

fn html(bytes: &[u8]) -> Result<(Option<String>, Vec<Page>), ExtractError> {
    let depth = html_depth(bytes);
    if depth > MAX_HTML_DEPTH {
        return Err(ExtractError::HtmlTooDeep(depth));
    }
    let text = html2text::config::plain_no_decorate()
        .raw_mode(true)
        .allow_width_overflow()
        .string_from_read(bytes, HTML_WIDTH)
        .map_err(|e| ExtractError::Unsupported(format!("text/html that does not parse ({e})")))?;
    Ok((html_title(bytes), vec![unpaged(text)]))
}

/// How deep the elements of `bytes` nest, as a quick scan of the tags
/// counts it (an opening tag deepens, a closing one returns; void and
/// self-closing elements do neither). It over-counts what a browser would
/// close implicitly, which errs towards refusing.
fn html_depth(bytes: &[u8]) -> usize {
    const VOID: [&[u8]; 14] = [
        b"area", b"base", b"br", b"col", b"embed", b"hr", b"img", b"input", b"link", b"meta",
        b"param", b"source", b"track", b"wbr",
    ];
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut at = 0;
    while let Some(open) = bytes[at..].iter().position(|&b| b == b'<') {
        let tag = &bytes[at + open + 1..];
        if let Some(comment) = tag.strip_prefix(b"!--") {
            let end = comment.windows(3).position(|w| w == b"-->");
            at += open + 4 + end.map_or(comment.len(), |e| e + 3);
            continue;
        }
        let end = tag.iter().position(|&b| b == b'>').unwrap_or(tag.len());
        at += open + 1 + end;
        match tag.first() {
            Some(b'/') => depth = depth.saturating_sub(1),
            Some(b) if b.is_ascii_alphabetic() => {
                let name_len = tag[..end]
                    .iter()
                    .position(|b| !b.is_ascii_alphanumeric())
                    .unwrap_or(end);
                let name = tag[..name_len].to_ascii_lowercase();
                let self_closing = end > 0 && tag[end - 1] == b'/';
                if !self_closing && !VOID.contains(&name.as_slice()) {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
            }
            // Comments, doctypes, processing instructions, a lone `<`.
            _ => {}
        }
    }
    deepest
}

/// `<title>`'s text, looked for in the first 64 KiB only.
fn html_title(bytes: &[u8]) -> Option<String> {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(64 * 1024)]);
    let lower = head.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find("</title")?;
    let raw = &head[start..end];
    // The few entities titles commonly carry; the rest stay as written.
    let title = raw
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'");
    Some(title)
}

/// Held while a PDF parse runs, also one abandoned after its time budget.
struct PdfSlot;

impl PdfSlot {
    fn take() -> Option<Self> {
        PDF_THREADS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_PDF_THREADS).then_some(n + 1)
            })
            .ok()
            .map(|_| PdfSlot)
    }
}

impl Drop for PdfSlot {
    fn drop(&mut self) {
        PDF_THREADS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A PDF's text page by page, parsed on a thread of its own because
/// pdf-extract panics on odd files and can run for minutes.
fn pdf_pages(bytes: Vec<u8>) -> Result<Vec<Page>, ExtractError> {
    if bytes.len() > MAX_PDF_BYTES {
        return Err(ExtractError::PdfTooLarge(bytes.len()));
    }
    let slot = PdfSlot::take().ok_or(ExtractError::PdfBusy)?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("hearthnet-rag-pdf".into())
        .spawn(move || {
            let _slot = slot;
            let parsed =
                std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem_by_pages(&bytes));
            let _ = tx.send(parsed);
        })
        .map_err(|e| ExtractError::PdfUnreadable(format!("no thread to read it on: {e}")))?;
    let pages = match rx.recv_timeout(PDF_TIME_BUDGET) {
        Ok(Ok(Ok(pages))) => pages,
        Ok(Ok(Err(e))) => return Err(ExtractError::PdfUnreadable(e.to_string())),
        Ok(Err(_)) => {
            return Err(ExtractError::PdfUnreadable(
                "the PDF parser gave up on this file".into(),
            ));
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return Err(ExtractError::PdfTooSlow),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            return Err(ExtractError::PdfUnreadable(
                "the PDF parser stopped without an answer".into(),
            ));
        }
    };
    Ok(pages
        .into_iter()
        .zip(1u32..)
        .map(|(text, n)| Page {
            number: Some(n),
            text,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniffed(
        bytes: &[u8],
        mime: Option<&str>,
        filename: Option<&str>,
    ) -> Result<Media, ExtractError> {
        sniff(bytes, Hint { mime, filename })
    }

    #[test]
    fn the_bytes_decide_before_the_hint() {
        assert_eq!(
            sniffed(b"%PDF-1.4\n...", Some("text/plain"), None),
            Ok(Media::Pdf)
        );
        assert_eq!(
            sniffed(b"\x89PNG\r\n\x1a\n", Some("text/plain"), None),
            Err(ExtractError::Unsupported("image/png".into()))
        );
        assert_eq!(
            sniffed(b"PK\x03\x04rest", None, Some("a.docx"))
                .unwrap_err()
                .code(),
            ErrorCode::BadRequest
        );
        assert!(matches!(
            sniffed(&[0xff, 0xfe, 0x00, 0x41], None, None),
            Err(ExtractError::Unsupported(t)) if t.contains("not UTF-8")
        ));
        assert_eq!(
            sniffed(b"hello", Some("image/svg+xml"), None),
            Err(ExtractError::Unsupported("image/svg+xml".into()))
        );
        assert!(matches!(
            sniffed(b"hello", Some("application/pdf"), None),
            Err(ExtractError::PdfUnreadable(_))
        ));
    }

    #[test]
    fn text_flavours_come_from_hint_name_or_content() {
        assert_eq!(
            sniffed(b"# T\n\nx", Some("text/plain"), None),
            Ok(Media::Text)
        );
        assert_eq!(
            sniffed(b"x", Some("text/markdown; charset=utf-8"), None),
            Ok(Media::Markdown)
        );
        assert_eq!(sniffed(b"x", None, Some("notes.MD")), Ok(Media::Markdown));
        assert_eq!(sniffed(b"x", Some("text/html"), None), Ok(Media::Html));
        assert_eq!(
            sniffed(b"  <!DOCTYPE html><p>x", None, None),
            Ok(Media::Html)
        );
        assert_eq!(
            sniffed(b"intro\n## Part\n", None, None),
            Ok(Media::Markdown)
        );
        assert_eq!(sniffed(b"just words", None, None), Ok(Media::Text));
    }

    #[test]
    fn whitespace_is_tidied_to_paragraphs_and_spaces() {
        assert_eq!(tidy("  a\t b\r\n c\n\n\n d \u{7}e "), "a b\nc\n\nd e");
    }

    #[test]
    fn markdown_keeps_its_text_and_names_its_title() {
        let md = "# Water *filters*\n\nBoil for `1 min`.\n\n- one\n- two\n\n<div>raw</div>\n";
        let e = extract(md.as_bytes().to_vec(), Hint::default()).unwrap();
        assert_eq!(e.media, Media::Markdown);
        assert_eq!(e.title.as_deref(), Some("Water filters"));
        assert_eq!(
            e.pages[0].text,
            "Water filters\n\nBoil for 1 min.\n\none\n\ntwo"
        );
    }

    #[test]
    fn an_empty_document_has_no_text() {
        assert_eq!(
            extract(b" \n\n ".to_vec(), Hint::default()),
            Err(ExtractError::NoText)
        );
    }

    #[test]
    fn a_pdf_that_is_not_one_is_refused_not_panicked_on() {
        let junk = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 9 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF".to_vec();
        let err = extract(junk, Hint::default()).unwrap_err();
        assert!(
            matches!(err, ExtractError::PdfUnreadable(_) | ExtractError::NoText),
            "{err:?}"
        );
        let big = [b"%PDF-1.4\n".as_slice(), &vec![b' '; MAX_PDF_BYTES]].concat();
        assert_eq!(
            extract(big, Hint::default()),
            Err(ExtractError::PdfTooLarge(MAX_PDF_BYTES + 9))
        );
    }

    /// Hostile nesting, on a thread with the stack tokio gives a blocking
    /// task (2 MiB): a clear refusal or the text, quickly, never a stack
    /// overflow that kills the node or minutes of parsing.
    #[test]
    fn deeply_nested_documents_are_read_or_refused_quickly() {
        const DEPTH: usize = 100_000;
        let html = format!(
            "<html><body>{}deep{}</body></html>",
            "<div><b>".repeat(DEPTH),
            "</b></div>".repeat(DEPTH)
        );
        let markdown = format!("{}deep\n", "> ".repeat(DEPTH));
        let list = format!("{}deep\n", "- ".repeat(DEPTH));
        let run = |name: &'static str, doc: String| {
            std::thread::Builder::new()
                .stack_size(2 * 1024 * 1024)
                .spawn(move || {
                    let hint = Hint {
                        mime: None,
                        filename: Some(name),
                    };
                    extract(doc.into_bytes(), hint).map(|e| e.pages.len())
                })
                .unwrap()
                .join()
                .unwrap_or_else(|_| panic!("{name}: the extractor panicked"))
        };
        assert_eq!(
            run("page.html", html),
            Err(ExtractError::HtmlTooDeep(2 * DEPTH + 2))
        );
        assert_eq!(run("notes.md", markdown), Ok(1));
        assert_eq!(run("list.md", list), Ok(1));
    }

    #[test]
    fn html_depth_counts_what_nests() {
        assert_eq!(html_depth(b"<p>a<br>b<img src=x/><br/></p>"), 1);
        assert_eq!(
            html_depth(b"<!doctype html><html><body><div><p>x</p><p>y</p></div></body></html>"),
            4
        );
        assert_eq!(html_depth(b"<!-- <a><a><a> --> 1 < 2 </x></y>"), 0);
        assert_eq!(html_depth(b"<i><!-- never closed <a><a>"), 1);
        assert_eq!(html_depth(b"<b"), 1);
        let page = format!("<div>{}</div>", "<span>x</span>".repeat(5000));
        assert_eq!(html_depth(page.as_bytes()), 2);
    }
}
