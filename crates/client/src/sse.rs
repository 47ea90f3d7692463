//! Reading `text/event-stream` frames (Contract §5.3): `event:` and
//! `data:` lines, a blank line ends a frame.

use std::io::BufRead;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub event: String,
    pub data: Value,
}

impl Frame {
    /// `done` or `error`: nothing follows it.
    pub fn is_terminal(&self) -> bool {
        self.event == "done" || self.event == "error"
    }
}

pub struct FrameReader<R> {
    input: R,
    finished: bool,
}

impl<R: BufRead> FrameReader<R> {
    pub fn new(input: R) -> Self {
        Self {
            input,
            finished: false,
        }
    }
}

impl<R: BufRead> Iterator for FrameReader<R> {
    type Item = std::io::Result<Frame>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let mut event = String::from("message");
        let mut data = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            match self.input.read_line(&mut line) {
                Ok(0) => {
                    self.finished = true;
                    if data.is_empty() {
                        return None;
                    }
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    self.finished = true;
                    return Some(Err(e));
                }
            }
            let l = line.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                if data.is_empty() {
                    continue;
                }
                break;
            }
            if let Some(v) = l.strip_prefix("event:") {
                event = v.trim_start().to_owned();
            } else if let Some(v) = l.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
        let frame = Frame { event, data };
        if frame.is_terminal() {
            self.finished = true;
        }
        Some(Ok(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_frames_until_the_terminal_one() {
        let text = ": comment\nevent: token\ndata: {\"text\":\"Sie \"}\n\nevent: token\ndata: {\"text\":\"x\"}\n\n\
                    event: done\ndata: {\"ms\":3}\n\nevent: token\ndata: {}\n\n";
        let frames: Vec<Frame> = FrameReader::new(text.as_bytes())
            .map(Result::unwrap)
            .collect();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].data["text"], "Sie ");
        assert_eq!(frames[2].event, "done");
    }

    #[test]
    fn a_cut_stream_ends_without_a_terminal_frame() {
        let frames: Vec<Frame> =
            FrameReader::new("event: token\ndata: {\"text\":\"a\"}\n\nevent: tok".as_bytes())
                .map(Result::unwrap)
                .collect();
        assert_eq!(frames.len(), 1);
    }
}
