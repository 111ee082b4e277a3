//! Byte-level repair of a response body before XML parsing: undeclared
//! gzip, byte-order marks, legacy or wrongly declared encodings, invalid
//! UTF-8 and characters XML 1.0 forbids. The result is always a valid
//! UTF-8 string plus notes of what was changed and where.
//!
//! Depends on encoding_rs and flate2 only.

use std::io::Read;

use encoding_rs::{Encoding, UTF_8, UTF_16BE, UTF_16LE, WINDOWS_1252};

/// Largest body a gzip payload sent without `Content-Encoding` may inflate
/// to; beyond it the body is refused rather than exhausting memory.
pub(crate) const MAX_INFLATED: u64 = 512 * 1024 * 1024;

/// After this many notes only a count is kept: a binary blob must not turn
/// into a million warnings.
const MAX_NOTES: usize = 200;

/// One change made to the text, at a byte offset of the repaired text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Repair {
    pub offset: usize,
    pub message: String,
}

/// A body turned into text.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    pub text: String,
    /// Local repairs, sorted by offset.
    pub repairs: Vec<Repair>,
    /// Whole-body notes (decompression, transcoding, dropped notes).
    pub notes: Vec<String>,
}

/// Turns a response body into valid UTF-8 text an XML parser accepts.
/// `Err` only for a gzip body that does not inflate.
pub(crate) fn prepare(body: &[u8]) -> Result<Prepared, String> {
    let mut out = Prepared::default();
    let inflated;
    let mut bytes = body;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut buf = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .take(MAX_INFLATED + 1)
            .read_to_end(&mut buf)
            .map_err(|e| format!("body looks gzip-compressed but does not inflate: {e}"))?;
        if buf.len() as u64 > MAX_INFLATED {
            return Err(format!(
                "gzip body inflates beyond {MAX_INFLATED} bytes; refused"
            ));
        }
        out.notes
            .push("inflated a gzip body sent without Content-Encoding".into());
        inflated = buf;
        bytes = &inflated;
    }

    // A BOM is authoritative over any declaration.
    if let Some((enc, bom_len)) = Encoding::for_bom(bytes) {
        let rest = &bytes[bom_len..];
        if enc == UTF_8 {
            bytes = rest;
        } else {
            let (text, had_errors) = enc.decode_without_bom_handling(rest);
            if had_errors {
                out.notes.push(format!(
                    "malformed {} sequences replaced by U+FFFD",
                    enc.name()
                ));
            }
            let text = text.into_owned();
            sanitize(&text, &mut out);
            return Ok(finish(out));
        }
    }

    match declared_encoding(bytes) {
        Some(enc) if enc != UTF_8 && enc != UTF_16LE && enc != UTF_16BE => {
            // Providers often declare ISO-8859-1 but send UTF-8. Text in a
            // single-byte encoding is almost never valid UTF-8 with
            // multi-byte sequences, so that combination means UTF-8.
            if std::str::from_utf8(bytes).is_ok_and(|s| !s.is_ascii()) {
                out.notes.push(format!(
                    "declared {} but the body is valid UTF-8; read as UTF-8",
                    enc.name()
                ));
                utf8_lossy_1252(bytes, &mut out);
            } else {
                let (text, had_errors) = enc.decode_without_bom_handling(bytes);
                if !bytes.is_ascii() {
                    out.notes.push(format!("transcoded from {}", enc.name()));
                }
                if had_errors {
                    out.notes.push(format!(
                        "bytes invalid in {} replaced by U+FFFD",
                        enc.name()
                    ));
                }
                let text = text.into_owned();
                sanitize(&text, &mut out);
            }
        }
        // UTF-16 declared without a BOM: the declaration was readable as
        // ASCII, so the body is not UTF-16 whatever it says.
        _ => utf8_lossy_1252(bytes, &mut out),
    }
    Ok(finish(out))
}

fn finish(mut out: Prepared) -> Prepared {
    if out.repairs.len() > MAX_NOTES {
        let dropped = out.repairs.len() - MAX_NOTES;
        out.repairs.truncate(MAX_NOTES);
        out.notes
            .push(format!("{dropped} further repairs not listed individually"));
    }
    out
}

/// The encoding named by an XML declaration at the start of `bytes`.
fn declared_encoding(bytes: &[u8]) -> Option<&'static Encoding> {
    let head = &bytes[..bytes.len().min(512)];
    let start = head.iter().position(|b| !b.is_ascii_whitespace())?;
    let head = &head[start..];
    if !head.starts_with(b"<?xml") {
        return None;
    }
    let end = head.windows(2).position(|w| w == b"?>")?;
    let decl = std::str::from_utf8(&head[..end]).ok()?;
    let at = decl.find("encoding")?;
    let rest = decl[at + "encoding".len()..]
        .trim_start()
        .strip_prefix('=')?;
    let rest = rest.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = rest[1..].split(quote).next()?;
    Encoding::for_label(value.trim().as_bytes())
}

/// Decodes UTF-8, taking each byte of an invalid sequence as Windows-1252
/// (the usual cause: Latin-1 text pasted into a UTF-8 document), and
/// sanitizes on the way.
fn utf8_lossy_1252(bytes: &[u8], out: &mut Prepared) {
    if let Ok(s) = std::str::from_utf8(bytes) {
        sanitize(s, out);
        return;
    }
    out.text.reserve(bytes.len() + 16);
    let mut byte_offset = 0usize;
    for chunk in bytes.utf8_chunks() {
        sanitize(chunk.valid(), out);
        byte_offset += chunk.valid().len();
        for &b in chunk.invalid() {
            // Bytes of invalid sequences are all >= 0x80, which
            // Windows-1252 maps to characters XML allows.
            let one = [b];
            let (c, _) = WINDOWS_1252.decode_without_bom_handling(&one);
            out.repairs.push(Repair {
                offset: out.text.len(),
                message: format!(
                    "invalid UTF-8 byte 0x{b:02X} at body offset {byte_offset} read as Windows-1252 {c:?}"
                ),
            });
            out.text.push_str(&c);
            byte_offset += 1;
        }
    }
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Copies `s` into `out.text`, dropping characters and character
/// references XML 1.0 forbids (control characters, U+FFFE, U+FFFF).
fn sanitize(s: &str, out: &mut Prepared) {
    let base = out.text.len();
    if !needs_sanitizing(s.as_bytes()) {
        out.text.push_str(s);
        return;
    }
    out.text.reserve(s.len());
    let mut rest = s;
    while let Some((i, c)) = rest
        .char_indices()
        .find(|&(i, c)| !is_xml_char(c) || (c == '&' && rest.as_bytes().get(i + 1) == Some(&b'#')))
    {
        out.text.push_str(&rest[..i]);
        if c == '&' {
            match illegal_char_ref(&rest[i..]) {
                Some((len, code)) => {
                    out.repairs.push(Repair {
                        offset: out.text.len(),
                        message: format!("removed character reference to illegal U+{code:04X}"),
                    });
                    rest = &rest[i + len..];
                }
                None => {
                    out.text.push('&');
                    rest = &rest[i + 1..];
                }
            }
        } else {
            out.repairs.push(Repair {
                offset: out.text.len(),
                message: format!("removed illegal XML character U+{:04X}", c as u32),
            });
            rest = &rest[i + c.len_utf8()..];
        }
    }
    out.text.push_str(rest);
    debug_assert!(out.text.len() >= base);
}

/// Whether `b` holds a control character XML forbids, a character
/// reference (which may name one), or U+FFFE / U+FFFF; one pass.
fn needs_sanitizing(b: &[u8]) -> bool {
    b.iter().enumerate().any(|(i, &x)| match x {
        b'\t' | b'\n' | b'\r' => false,
        0..0x20 => true,
        b'&' => b.get(i + 1) == Some(&b'#'),
        0xEF => b.get(i + 1) == Some(&0xBF) && matches!(b.get(i + 2), Some(0xBE | 0xBF)),
        _ => false,
    })
}

/// If `s` starts with a character reference to a character XML forbids,
/// its length and the code point.
fn illegal_char_ref(s: &str) -> Option<(usize, u32)> {
    let body = s.strip_prefix("&#")?;
    let end = body.bytes().take(12).position(|b| b == b';')?;
    let digits = &body[..end];
    let code = match digits.strip_prefix(['x', 'X']) {
        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<u32>().ok()?,
    };
    let legal = char::from_u32(code).is_some_and(is_xml_char);
    (!legal).then_some((2 + end + 1, code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_utf8_is_untouched() {
        let p = prepare("<a>é &#225; &amp;</a>".as_bytes()).expect("prepared");
        assert_eq!(p.text, "<a>é &#225; &amp;</a>");
        assert!(p.repairs.is_empty() && p.notes.is_empty());
    }

    #[test]
    fn strips_illegal_characters_and_references() {
        let p = prepare(b"<a>x\x06y&#x1A;z&#0;&#9;\x0b</a>").expect("prepared");
        assert_eq!(p.text, "<a>xyz&#9;</a>");
        assert_eq!(p.repairs.len(), 4, "{:?}", p.repairs);
        assert_eq!(p.repairs[0].offset, 4);

        let p = prepare("<a>\u{FFFE}b\u{FFFF}c\u{FFFD}</a>".as_bytes()).expect("prepared");
        assert_eq!(p.text, "<a>bc\u{FFFD}</a>");
        assert_eq!(p.repairs.len(), 2, "{:?}", p.repairs);
    }

    #[test]
    fn invalid_utf8_bytes_read_as_windows_1252() {
        let p = prepare(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><a>caf\xe9 \xc2\n\x06x</a>")
            .expect("prepared");
        assert!(p.text.ends_with("<a>café Â\nx</a>"), "{}", p.text);
        assert_eq!(p.repairs.len(), 3, "{:?}", p.repairs);
        let e = p.text.find('é').expect("é");
        assert_eq!(p.repairs[0].offset, e);
        let x = p.text.rfind('x').expect("x");
        assert_eq!(p.repairs[2].offset, x);
    }

    #[test]
    fn declared_latin1_is_transcoded() {
        let p = prepare(b"<?xml version='1.0' encoding='ISO-8859-1'?><a>caf\xe9</a>")
            .expect("prepared");
        assert!(p.text.ends_with("<a>café</a>"));
        assert_eq!(p.notes, ["transcoded from windows-1252"]);
    }

    #[test]
    fn utf8_declared_as_latin1_stays_utf8() {
        let p = prepare("<?xml version='1.0' encoding='ISO-8859-1'?><a>café</a>".as_bytes())
            .expect("prepared");
        assert!(p.text.ends_with("<a>café</a>"));
        assert!(p.notes[0].contains("valid UTF-8"));
    }

    #[test]
    fn utf16_with_bom_and_undeclared_gzip() {
        let mut utf16 = vec![0xFF, 0xFE];
        for u in "<a>ü</a>".encode_utf16() {
            utf16.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(prepare(&utf16).expect("utf16").text, "<a>ü</a>");

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"<a>z</a>").expect("gzip");
        let gz = gz.finish().expect("gzip");
        let p = prepare(&gz).expect("gz");
        assert_eq!(p.text, "<a>z</a>");
        assert_eq!(p.notes.len(), 1);
        assert!(prepare(&[0x1f, 0x8b, 1, 2, 3]).is_err());
    }
}
