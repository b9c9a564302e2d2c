//! PostgreSQL text-format helpers: splitting `COPY ... TO STDOUT` text-format lines into
//! fields, and converting array literals in text output form into JSON arrays.

use bytes::Bytes;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("COPY line ends with a lone backslash")]
    TrailingBackslash,
    #[error("malformed array literal at byte {pos}: {reason}")]
    MalformedArray { pos: usize, reason: &'static str },
    /// For `elem` callbacks of [`pg_array_to_json`] that reject an element.
    #[error("invalid array element: {0}")]
    InvalidElement(String),
}

/// Splits one line of `COPY ... TO STDOUT` (text format, default delimiter tab, NULL `\N`) into
/// fields, appending to `out` (cleared first). The line may end with '\n'. Each field is
/// un-escaped per the COPY text format rules (\\ \b \f \n \r \t \v, \NNN octal 1-3 digits,
/// \xHH hex 1-2 digits, any other escaped char stands for itself). A field without
/// backslashes is returned zero-copy as `line.slice(..)`; only escaped fields allocate.
/// `\N` as a whole field is None.
pub fn split_copy_line(line: &Bytes, out: &mut Vec<Option<Bytes>>) -> Result<(), TextError> {
    out.clear();
    let end = line.len() - usize::from(line.last() == Some(&b'\n'));
    let bytes = &line[..end];
    let mut start = 0;
    let mut escaped = false;
    let mut i = 0;
    // One pass finds field boundaries; a backslash hides the next byte from the delimiter
    // check, so an escaped raw tab stays inside its field.
    loop {
        match bytes.get(i) {
            Some(b'\\') => {
                escaped = true;
                i += 2;
            }
            Some(b'\t') | None => {
                // `i` can overshoot `end` by one only after a trailing backslash.
                if i > end {
                    return Err(TextError::TrailingBackslash);
                }
                let field = &bytes[start..i];
                out.push(if !escaped {
                    Some(line.slice(start..i))
                } else if field == b"\\N" {
                    None
                } else {
                    Some(unescape_copy_field(field)?)
                });
                if i >= end {
                    return Ok(());
                }
                i += 1;
                start = i;
                escaped = false;
            }
            Some(_) => i += 1,
        }
    }
}

/// Decodes the backslash escapes of one COPY text field (same rules as PostgreSQL's
/// `CopyReadAttributesText`, including masking octal values to one byte).
fn unescape_copy_field(field: &[u8]) -> Result<Bytes, TextError> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let c = field[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let &e = field.get(i).ok_or(TextError::TrailingBackslash)?;
        i += 1;
        let decoded = match e {
            b'0'..=b'7' => {
                let mut val = u32::from(e - b'0');
                for _ in 0..2 {
                    match field.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            val = val * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                (val & 0xff) as u8
            }
            b'x' => match field.get(i).and_then(|&d| hex_val(d)) {
                Some(hi) => {
                    i += 1;
                    match field.get(i).and_then(|&d| hex_val(d)) {
                        Some(lo) => {
                            i += 1;
                            hi << 4 | lo
                        }
                        None => hi,
                    }
                }
                // `\x` without hex digits stands for 'x', as in PostgreSQL.
                None => b'x',
            },
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 0x0b,
            other => other,
        };
        out.push(decoded);
    }
    Ok(Bytes::from(out))
}

fn hex_val(d: u8) -> Option<u8> {
    (d as char).to_digit(16).map(|v| v as u8)
}

/// Converts a PostgreSQL array in text output form (e.g. `{1,2,NULL}`, `{"a b","x\"y",NULL}`,
/// `{{1,2},{3,4}}`, optional dimension decoration `[0:1]={7,8}`, and the empty array `{}`)
/// into a JSON array text. Each non-NULL element (after removing quotes/backslash escapes) is
/// passed to `elem` which returns its canonical text; it is emitted as a JSON string. An
/// unquoted element spelled NULL (case-insensitive) is JSON null; a quoted "NULL" is the string
/// "NULL". Nested arrays become nested JSON arrays. The delimiter is ','.
///
/// The parser is iterative (no recursion, so deep nesting cannot overflow the stack) and does
/// not check that sub-arrays have equal lengths: it mirrors the text, it does not validate it.
pub fn pg_array_to_json(
    text: &[u8],
    elem: &dyn Fn(&[u8]) -> Result<String, TextError>,
) -> Result<String, TextError> {
    let mut p = ArrayParser { text, pos: 0 };
    p.skip_ws();
    if p.peek() == Some(b'[') {
        p.skip_dimensions()?;
    }
    p.skip_ws();
    p.expect(b'{', "expected '{'")?;

    /// What may come next inside braces.
    enum Expect {
        /// Right after '{': an item or '}'.
        FirstItem,
        /// After ',': an item.
        Item,
        /// After an item: ',' or '}'.
        DelimOrClose,
    }

    let mut json = String::with_capacity(text.len() + 2);
    json.push('[');
    let mut depth = 1usize;
    let mut state = Expect::FirstItem;
    let mut scratch = Vec::new();
    while depth > 0 {
        p.skip_ws();
        match (p.peek(), &state) {
            (None, _) => return Err(p.error("missing '}'")),
            (Some(b'}'), Expect::FirstItem | Expect::DelimOrClose) => {
                p.pos += 1;
                json.push(']');
                depth -= 1;
                state = Expect::DelimOrClose;
            }
            (Some(b','), Expect::DelimOrClose) => {
                p.pos += 1;
                json.push(',');
                state = Expect::Item;
            }
            (Some(_), Expect::DelimOrClose) => return Err(p.error("expected ',' or '}'")),
            (Some(b'{'), _) => {
                p.pos += 1;
                json.push('[');
                depth += 1;
                state = Expect::FirstItem;
            }
            (Some(_), _) => {
                match p.element(&mut scratch)? {
                    Some(value) => push_json_string(&mut json, &elem(value)?),
                    None => json.push_str("null"),
                }
                state = Expect::DelimOrClose;
            }
        }
    }
    p.skip_ws();
    if p.peek().is_some() {
        return Err(p.error("unexpected text after closing '}'"));
    }
    Ok(json)
}

/// Appends `s` to `out` as a JSON string literal, escaping quotes, backslashes and control
/// characters (as `\u00XX`).
pub fn push_json_string(out: &mut String, s: &str) {
    use std::fmt::Write;
    out.push('"');
    // Copy unescaped runs in one go; only the rare special characters are handled singly.
    // They are all ASCII, so scanning bytes keeps the run boundaries on char boundaries.
    let mut run_start = 0;
    for (i, b) in s.bytes().enumerate() {
        if b == b'"' || b == b'\\' || b < b' ' {
            out.push_str(&s[run_start..i]);
            match b {
                b'"' => out.push_str("\\\""),
                b'\\' => out.push_str("\\\\"),
                _ => {
                    let _ = write!(out, "\\u{b:04x}");
                }
            }
            run_start = i + 1;
        }
    }
    out.push_str(&s[run_start..]);
    out.push('"');
}

/// Cursor over an array literal.
struct ArrayParser<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> ArrayParser<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn error(&self, reason: &'static str) -> TextError {
        TextError::MalformedArray {
            pos: self.pos,
            reason,
        }
    }

    fn expect(&mut self, c: u8, reason: &'static str) -> Result<(), TextError> {
        if self.peek() != Some(c) {
            return Err(self.error(reason));
        }
        self.pos += 1;
        Ok(())
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_array_space) {
            self.pos += 1;
        }
    }

    /// Skips a dimension decoration such as `[0:1][1:2]=`; the bounds do not affect the JSON.
    fn skip_dimensions(&mut self) -> Result<(), TextError> {
        while self.peek() == Some(b'[') {
            self.pos += 1;
            let digits = |c: u8| c.is_ascii_digit() || c == b'-' || c == b'+' || c == b':';
            while self.peek().is_some_and(digits) {
                self.pos += 1;
            }
            self.expect(b']', "malformed dimension decoration")?;
        }
        self.skip_ws();
        self.expect(b'=', "expected '=' after dimension decoration")
    }

    /// Reads one element up to (not including) the next unquoted ',' or '}', removing quotes
    /// and backslash escapes into `buf`. Returns None for an unquoted, unescaped NULL.
    /// Unquoted surrounding whitespace is dropped, as `array_in` does.
    fn element<'b>(&mut self, buf: &'b mut Vec<u8>) -> Result<Option<&'b [u8]>, TextError> {
        buf.clear();
        // Length of `buf` up to the last byte that is not unquoted whitespace.
        let mut keep = 0;
        let mut literal = false;
        let mut in_quotes = false;
        loop {
            let Some(c) = self.peek() else {
                let reason = if in_quotes {
                    "unterminated quoted element"
                } else {
                    "missing '}'"
                };
                return Err(self.error(reason));
            };
            match c {
                b'\\' => {
                    self.pos += 1;
                    let Some(escaped) = self.peek() else {
                        return Err(self.error("backslash at end of input"));
                    };
                    buf.push(escaped);
                    keep = buf.len();
                    literal = true;
                }
                b'"' => {
                    in_quotes = !in_quotes;
                    literal = true;
                    keep = buf.len();
                }
                _ if in_quotes => {
                    buf.push(c);
                    keep = buf.len();
                }
                b',' | b'}' => break,
                b'{' => return Err(self.error("unexpected '{' inside an element")),
                _ => {
                    buf.push(c);
                    if !is_array_space(c) {
                        keep = buf.len();
                    }
                }
            }
            self.pos += 1;
        }
        buf.truncate(keep);
        if !literal {
            if buf.is_empty() {
                return Err(self.error("empty unquoted element"));
            }
            if buf.eq_ignore_ascii_case(b"NULL") {
                return Ok(None);
            }
        }
        Ok(Some(buf))
    }
}

/// Whitespace as PostgreSQL's `array_isspace` defines it.
fn is_array_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &'static [u8]) -> Result<Vec<Option<Bytes>>, TextError> {
        let mut out = vec![Some(Bytes::from_static(b"stale"))];
        split_copy_line(&Bytes::from_static(line), &mut out).map(|()| out)
    }

    fn fields(v: &[Option<&[u8]>]) -> Vec<Option<Bytes>> {
        v.iter().map(|f| f.map(Bytes::copy_from_slice)).collect()
    }

    #[test]
    fn copy_plain_fields_and_nulls() {
        assert_eq!(
            split(b"1\tabc\t\\N\n").unwrap(),
            fields(&[Some(b"1"), Some(b"abc"), None])
        );
        assert_eq!(
            split(b"a\t\t").unwrap(),
            fields(&[Some(b"a"), Some(b""), Some(b"")])
        );
        assert_eq!(split(b"\t").unwrap(), fields(&[Some(b""), Some(b"")]));
        // A single empty-string column is an empty line.
        assert_eq!(split(b"").unwrap(), fields(&[Some(b"")]));
        assert_eq!(split(b"\n").unwrap(), fields(&[Some(b"")]));
        assert_eq!(split(b"\\N").unwrap(), fields(&[None]));
        // \N inside a longer field is not NULL: it is an escaped 'N'.
        assert_eq!(
            split(b"a\\N\t\\NN").unwrap(),
            fields(&[Some(b"aN"), Some(b"NN")])
        );
    }

    #[test]
    fn copy_escapes() {
        let line = b"a\\\\b\t\\b\\f\\n\\r\\t\\v\t\\q\\.\\\"\n";
        assert_eq!(
            split(line).unwrap(),
            fields(&[Some(b"a\\b"), Some(b"\x08\x0c\n\r\t\x0b"), Some(b"q.\"")])
        );
        // Octal 1-3 digits (masked to a byte), hex 1-2 digits, \x without digits is 'x'.
        let line = b"\\101\\7\\0618\t\\777\t\\x41\\xa\\x4142\t\\xg\\x";
        assert_eq!(
            split(line).unwrap(),
            fields(&[
                Some(b"A\x0718"),
                Some(b"\xff"),
                Some(b"A\nA42"),
                Some(b"xgx")
            ])
        );
        // An escaped raw tab is data, not a delimiter.
        assert_eq!(
            split(b"a\\\tb\tc").unwrap(),
            fields(&[Some(b"a\tb"), Some(b"c")])
        );
    }

    #[test]
    fn copy_trailing_backslash_is_error() {
        assert_eq!(split(b"a\t\\"), Err(TextError::TrailingBackslash));
        assert_eq!(split(b"a\\\n"), Err(TextError::TrailingBackslash));
        assert_eq!(split(b"\\"), Err(TextError::TrailingBackslash));
    }

    #[test]
    fn copy_unescaped_fields_are_zero_copy() {
        let line = Bytes::from(b"12\thello\t\\N\tx\\ty\t\n".to_vec());
        let mut out = Vec::new();
        split_copy_line(&line, &mut out).unwrap();
        assert_eq!(out.len(), 5);
        let range = line.as_ptr_range();
        for i in [0, 1] {
            assert!(
                range.contains(&out[i].as_ref().unwrap().as_ptr()),
                "field {i} was copied"
            );
        }
        assert_eq!(out[2], None);
        assert!(
            !range.contains(&out[3].as_ref().unwrap().as_ptr()),
            "escaped field not decoded"
        );
        assert_eq!(out[3].as_deref(), Some(&b"x\ty"[..]));
        assert_eq!(out[4].as_deref(), Some(&b""[..]));
    }

    fn ident(e: &[u8]) -> Result<String, TextError> {
        String::from_utf8(e.to_vec()).map_err(|e| TextError::InvalidElement(e.to_string()))
    }

    fn to_json(text: &str) -> Result<String, TextError> {
        pg_array_to_json(text.as_bytes(), &ident)
    }

    #[test]
    fn arrays_to_json() {
        let cases = [
            (r#"{1,2,NULL}"#, r#"["1","2",null]"#),
            (r#"{}"#, r#"[]"#),
            (r#"{"a,b","c\\d"}"#, r#"["a,b","c\\d"]"#),
            (r#"{{1,2},{3}}"#, r#"[["1","2"],["3"]]"#),
            (r#"{{1,2},{3,4}}"#, r#"[["1","2"],["3","4"]]"#),
            (r#"{"a b","x\"y",NULL}"#, r#"["a b","x\"y",null]"#),
            (
                r#"{null,Null,"NULL",\NULL}"#,
                r#"[null,null,"NULL","NULL"]"#,
            ),
            (r#"[0:1]={7,8}"#, r#"["7","8"]"#),
            (r#"[1:2][-1:0]={{1,2},{3,4}}"#, r#"[["1","2"],["3","4"]]"#),
            (r#"{"\\x0102"}"#, r#"["\\x0102"]"#),
            (r#"{""," "}"#, r#"[""," "]"#),
            (" { a b , c } ", r#"["a b","c"]"#),
            (
                "{\"tab\there\",\"nl\\\nx\"}",
                r#"["tab\u0009here","nl\u000ax"]"#,
            ),
            (r#"{{}}"#, r#"[[]]"#),
        ];
        for (input, expected) in cases {
            assert_eq!(to_json(input).as_deref(), Ok(expected), "input {input}");
        }
    }

    #[test]
    fn array_elem_callback_maps_and_fails() {
        let boolean = |e: &[u8]| match e {
            b"t" => Ok("true".to_string()),
            b"f" => Ok("false".to_string()),
            _ => Err(TextError::InvalidElement(format!(
                "bad bool {}",
                String::from_utf8_lossy(e)
            ))),
        };
        assert_eq!(
            pg_array_to_json(b"{t,f}", &boolean).unwrap(),
            r#"["true","false"]"#
        );
        assert_eq!(
            pg_array_to_json(b"{t,NULL}", &boolean).unwrap(),
            r#"["true",null]"#
        );
        assert!(matches!(
            pg_array_to_json(b"{t,x}", &boolean),
            Err(TextError::InvalidElement(_))
        ));
    }

    #[test]
    fn malformed_arrays_are_errors() {
        for input in [
            "", "1,2", "{1,2", "1,2}", "{\"abc}", "{\"abc", "{a,,b}", "{,}", "{a,}", "{a}x",
            "{a\"b}", "{a b\\", "[0:1]{1}", "[0:1={1}", "{a{b}}", "{{1},2", "}", "{1}}",
        ] {
            let err = to_json(input).expect_err(input);
            assert!(
                matches!(err, TextError::MalformedArray { .. }),
                "{input}: {err:?}"
            );
            assert!(err.to_string().contains("malformed array literal"));
        }
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let depth = 100_000;
        let text = format!("{}{}", "{".repeat(depth), "}".repeat(depth));
        let json = to_json(&text).unwrap();
        assert_eq!(json.len(), 2 * depth);
        assert!(to_json(&"{".repeat(depth)).is_err());
    }

    #[test]
    fn json_string_escaping() {
        let mut out = String::new();
        push_json_string(&mut out, "a\"b\\c\u{1}\u{1f}é\u{7f}");
        assert_eq!(out, "\"a\\\"b\\\\c\\u0001\\u001fé\u{7f}\"");
    }
}
