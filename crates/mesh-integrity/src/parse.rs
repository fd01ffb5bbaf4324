//! Reading objects from YAML or JSON text: multi-document YAML, `kind: List` (and `*List`),
//! a JSON object or a JSON array; each object remembers the line its document or item starts on.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use serde_saphyr::Spanned;

use crate::error::{ParseError, ParseErrorKind};
use crate::model::SourceObject;

/// One top-level document: an object (with the items of a list kept with their own spans) or a sequence.
enum Doc {
    Object(Map<String, Value>, Option<Vec<Spanned<Value>>>),
    Seq(Vec<Spanned<Value>>),
    Other,
}

impl<'de> Deserialize<'de> for Doc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DocVisitor;
        impl<'de> Visitor<'de> for DocVisitor {
            type Value = Doc;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a Kubernetes object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc, A::Error> {
                let mut fields = Map::new();
                let mut items = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "items" {
                        match map.next_value::<ItemsOrValue>()? {
                            ItemsOrValue::Spanned(list) => {
                                fields.insert(key, Value::Array(Vec::new()));
                                items = Some(list);
                            }
                            ItemsOrValue::Plain(value) => {
                                fields.insert(key, value);
                            }
                        }
                    } else {
                        let value: Value = map.next_value()?;
                        fields.insert(key, value);
                    }
                }
                Ok(Doc::Object(fields, items))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Doc, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<Value>>()? {
                    out.push(item);
                }
                Ok(Doc::Seq(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Doc, E> {
                Ok(Doc::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Doc, E> {
                Ok(Doc::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Doc, E> {
                Ok(Doc::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Doc, E> {
                Ok(Doc::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Doc, E> {
                Ok(Doc::Other)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Doc, E> {
                Ok(Doc::Other)
            }
        }
        deserializer.deserialize_any(DocVisitor)
    }
}

/// The value of an `items` key: a sequence keeps each element's span, anything else is kept as a
/// plain value.
enum ItemsOrValue {
    Spanned(Vec<Spanned<Value>>),
    Plain(Value),
}

impl<'de> Deserialize<'de> for ItemsOrValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ItemsOrValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of objects")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ItemsOrValue, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<Value>>()? {
                    out.push(item);
                }
                Ok(ItemsOrValue::Spanned(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ItemsOrValue, A::Error> {
                let value = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ItemsOrValue::Plain(value))
            }
            fn visit_unit<E: de::Error>(self) -> Result<ItemsOrValue, E> {
                Ok(ItemsOrValue::Plain(Value::Null))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ItemsOrValue, E> {
                Ok(ItemsOrValue::Plain(Value::Bool(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ItemsOrValue, E> {
                Ok(ItemsOrValue::Plain(Value::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ItemsOrValue, E> {
                Ok(ItemsOrValue::Plain(Value::from(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ItemsOrValue, E> {
                Ok(ItemsOrValue::Plain(Value::from(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ItemsOrValue, E> {
                Ok(ItemsOrValue::Plain(Value::String(v.to_string())))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Reads every object in a YAML or JSON text.
///
/// * Multi-document YAML (`---`); empty and `null` documents are skipped.
/// * A `kind: List` (or any `*List` kind with `items`) is replaced by its items.
/// * A JSON object, or a JSON array of objects.
/// * Each object's [`crate::Origin`] is `file` and the 1-based line where its document (or list
///   item) starts.
///
/// A document (or item) that is a mapping but lacks `apiVersion` or `kind` is an error of kind
/// [`ParseErrorKind::MissingTypeMeta`] with its line: a checker must not silently skip a file it
/// was given. Malformed text is [`ParseErrorKind::Syntax`] with the parser's line and column.
/// Never panics, whatever the bytes.
///
/// Manifest-style YAML and `kubectl`-style JSON are read by fast paths; any text they are not
/// sure of goes whole to serde-saphyr, with the same result (a property test checks it).
pub fn parse_documents(text: &str, file: &str) -> Result<Vec<SourceObject>, ParseError> {
    match fast::parse(text).or_else(|| fast_json::parse(text)) {
        Some(documents) => {
            let mut out = Vec::with_capacity(documents.len());
            for document in documents {
                push_object(
                    &mut out,
                    document.value,
                    None,
                    file,
                    document.line,
                    document.column,
                )?;
            }
            Ok(out)
        }
        None => parse_with_saphyr(text, file),
    }
}

/// The complete reader: serde-saphyr (YAML 1.2, with its budget against alias bombs), then
/// serde_json for JSON that YAML rejects.
fn parse_with_saphyr(text: &str, file: &str) -> Result<Vec<SourceObject>, ParseError> {
    let docs: Vec<Spanned<Doc>> = match serde_saphyr::from_multiple(text) {
        Ok(docs) => docs,
        Err(error) => {
            let trimmed = text.trim_start();
            if trimmed.starts_with('{') || trimmed.starts_with('[') {
                return parse_json(text, file);
            }
            let (line, column) = error
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            let message = error.to_string();
            let message = message.lines().next().unwrap_or("invalid YAML").to_string();
            return Err(ParseError {
                file: file.into(),
                line: line.max(1) as u32,
                column: column.max(1) as u32,
                message,
                kind: ParseErrorKind::Syntax,
            });
        }
    };
    let mut out = Vec::new();
    for doc in docs {
        let line = (doc.referenced.line() as u32).max(1);
        let column = (doc.referenced.column() as u32).max(1);
        match doc.value {
            Doc::Object(fields, items) => {
                let value = Value::Object(fields);
                push_object(&mut out, value, items, file, line, column)?;
            }
            Doc::Seq(items) => {
                for item in items {
                    let line = (item.referenced.line() as u32).max(line);
                    let column = (item.referenced.column() as u32).max(1);
                    push_object(&mut out, item.value, None, file, line, column)?;
                }
            }
            Doc::Other => {
                return Err(ParseError {
                    file: file.into(),
                    line,
                    column,
                    message:
                        "document is not a Kubernetes object (a mapping with apiVersion and kind)"
                            .into(),
                    kind: ParseErrorKind::NotAnObject,
                });
            }
        }
    }
    Ok(out)
}

fn push_object(
    out: &mut Vec<SourceObject>,
    value: Value,
    spanned_items: Option<Vec<Spanned<Value>>>,
    file: &str,
    line: u32,
    column: u32,
) -> Result<(), ParseError> {
    let Value::Object(map) = &value else {
        if value.is_null() {
            return Ok(());
        }
        return Err(ParseError {
            file: file.into(),
            line,
            column,
            message: "document is not a Kubernetes object (a mapping with apiVersion and kind)"
                .into(),
            kind: ParseErrorKind::NotAnObject,
        });
    };
    let kind = map.get("kind").and_then(Value::as_str);
    let api_version = map.get("apiVersion").and_then(Value::as_str);
    let (Some(kind), Some(_)) = (kind, api_version) else {
        return Err(ParseError {
            file: file.into(),
            line,
            column,
            message: "document has no apiVersion or kind: not a Kubernetes object".into(),
            kind: ParseErrorKind::MissingTypeMeta,
        });
    };
    if kind.ends_with("List") && map.contains_key("items") {
        match spanned_items {
            Some(items) => {
                for item in items {
                    let item_line = (item.referenced.line() as u32).max(line);
                    let item_column = (item.referenced.column() as u32).max(1);
                    push_object(out, item.value, None, file, item_line, item_column)?;
                }
            }
            None => {
                if let Some(Value::Array(items)) = map.get("items") {
                    for item in items.clone() {
                        push_object(out, item, None, file, line, column)?;
                    }
                }
            }
        }
        return Ok(());
    }
    let mut value = value;
    if let (Some(items), Value::Object(map)) = (spanned_items, &mut value) {
        // Not a list after all: the items the reader set aside are the object's own field.
        let items = items.into_iter().map(|item| item.value).collect();
        map.insert("items".to_string(), Value::Array(items));
    }
    out.push(SourceObject::with_origin(value, file, line));
    Ok(())
}

/// JSON that YAML rejected (e.g. tabs): serde_json, with lines from byte offsets.
fn parse_json(text: &str, file: &str) -> Result<Vec<SourceObject>, ParseError> {
    let mut out = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    loop {
        let start = stream.byte_offset();
        match stream.next() {
            None => break,
            Some(Ok(value)) => {
                let skipped = text[start..].len() - text[start..].trim_start().len();
                let line = line_of(text, start + skipped);
                match value {
                    Value::Array(items) => {
                        for item in items {
                            push_object(&mut out, item, None, file, line, 1)?;
                        }
                    }
                    other => push_object(&mut out, other, None, file, line, 1)?,
                }
            }
            Some(Err(error)) => {
                return Err(ParseError {
                    file: file.into(),
                    line: error.line().max(1) as u32,
                    column: error.column().max(1) as u32,
                    message: error.to_string(),
                    kind: ParseErrorKind::Syntax,
                });
            }
        }
    }
    Ok(out)
}

fn line_of(text: &str, offset: usize) -> u32 {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|b| **b == b'\n')
        .count() as u32
        + 1
}

/// A fast reader for the YAML that Kubernetes manifests are written in: block mappings and
/// sequences, one-line flow collections, one-line quoted scalars without escapes, plain scalars
/// and comments. serde-saphyr is a complete YAML 1.2 reader but spends ~0.1 ms per object; this
/// one reads the same objects several times faster. It answers only when it is sure to build
/// exactly what serde-saphyr builds (values, lines); anything else (anchors, tags, block
/// scalars, escapes, multi-line scalars or flows, `kind: List`, tabs, CR, odd numbers, duplicate
/// keys, any syntax error) makes it return `None`, and the whole text goes to serde-saphyr, whose
/// messages and locations are the ones users see. A property test holds the two readers to the
/// same result on generated and mutated input.
mod fast {
    use serde_json::{Map, Value};

    /// Deeper nesting goes to serde-saphyr, which has its own limits; recursion here stays shallow.
    const MAX_DEPTH: usize = 64;

    /// One object: its value, and the 1-based line and column where it starts.
    pub(super) struct Document {
        pub(super) value: Value,
        pub(super) line: u32,
        pub(super) column: u32,
    }

    /// A line with content (not blank, not only a comment), split at its indentation.
    struct Line<'a> {
        number: u32,
        indent: usize,
        text: &'a str,
    }

    /// Every document in `text`, or `None` when the text is not in the subset this reader is sure of.
    pub(super) fn parse(text: &str) -> Option<Vec<Document>> {
        if !text.is_ascii() && text.chars().any(is_special_unicode) {
            return None;
        }
        let mut documents = Vec::new();
        let mut lines = Vec::new();
        for (index, raw) in text.split('\n').enumerate() {
            let number = u32::try_from(index + 1).ok()?;
            if raw.bytes().any(|b| b < b' ' || b == 0x7f) {
                // tabs, CR, other controls: serde-saphyr knows their rules
                return None;
            }
            if let Some(after) = raw.strip_prefix("---") {
                if !is_end_of_line(after) {
                    return None;
                }
                documents.extend(document(&lines)?);
                lines.clear();
                continue;
            }
            if raw.starts_with("...") || raw.starts_with('%') {
                return None;
            }
            let text = raw.trim_start_matches(' ');
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            lines.push(Line {
                number,
                indent: raw.len() - text.len(),
                text,
            });
        }
        documents.extend(document(&lines)?);
        Some(documents)
    }

    /// Characters YAML treats as breaks, byte-order marks or non-printable: serde-saphyr's job.
    pub(super) fn is_special_unicode(c: char) -> bool {
        matches!(
            c,
            '\u{80}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
        )
    }

    /// `Some(None)` for an empty document (skipped, as serde-saphyr skips it).
    fn document(lines: &[Line]) -> Option<Option<Document>> {
        let Some(first) = lines.first() else {
            return Some(None);
        };
        if first.indent != 0 {
            return None;
        }
        let mut parser = Parser { lines, position: 0 };
        let value = parser.block_mapping(0, 0, None)?;
        if parser.position != lines.len() {
            return None;
        }
        // List items carry their own lines in serde-saphyr's reading; leave them to it.
        let is_list = value["kind"]
            .as_str()
            .is_some_and(|kind| kind.ends_with("List"))
            && value.get("items").is_some();
        if is_list {
            return None;
        }
        Some(Some(Document {
            value,
            line: first.number,
            column: 1,
        }))
    }

    struct Parser<'l, 'a> {
        lines: &'l [Line<'a>],
        position: usize,
    }

    impl<'a> Parser<'_, 'a> {
        /// A block mapping with its keys at column `indent`. `inline_first` is the rest of the
        /// current line when the mapping starts right after a sequence's `- `.
        fn block_mapping(
            &mut self,
            indent: usize,
            depth: usize,
            inline_first: Option<&'a str>,
        ) -> Option<Value> {
            if depth > MAX_DEPTH {
                return None;
            }
            let mut map = Map::new();
            let mut inline_first = inline_first;
            loop {
                let text = match inline_first.take() {
                    Some(text) => text,
                    None => {
                        let Some(line) = self.lines.get(self.position) else {
                            break;
                        };
                        if line.indent < indent {
                            break;
                        }
                        if line.indent > indent || is_sequence_item(line.text) {
                            return None;
                        }
                        line.text
                    }
                };
                let (key, rest) = mapping_key(text)?;
                self.position += 1;
                let value = if is_blank_or_comment(rest) {
                    self.nested_value(indent, depth)?
                } else {
                    let value = inline_value(rest, depth)?;
                    self.expect_no_continuation(indent)?;
                    value
                };
                if key == "<<" || map.insert(key, value).is_some() {
                    // merge keys and duplicate keys: serde-saphyr merges or rejects them
                    return None;
                }
            }
            Some(Value::Object(map))
        }

        /// The value of a key with nothing after its `:`: a more indented block, a sequence at
        /// the key's own column, or null.
        fn nested_value(&mut self, indent: usize, depth: usize) -> Option<Value> {
            let Some(next) = self.lines.get(self.position) else {
                return Some(Value::Null);
            };
            if next.indent > indent {
                if is_sequence_item(next.text) {
                    self.block_sequence(next.indent, depth + 1)
                } else {
                    self.block_mapping(next.indent, depth + 1, None)
                }
            } else if next.indent == indent && is_sequence_item(next.text) {
                self.block_sequence(indent, depth + 1)
            } else {
                Some(Value::Null)
            }
        }

        /// A block sequence with its `-` at column `indent`.
        fn block_sequence(&mut self, indent: usize, depth: usize) -> Option<Value> {
            if depth > MAX_DEPTH {
                return None;
            }
            let mut items = Vec::new();
            while let Some(line) = self.lines.get(self.position) {
                if line.indent < indent || (line.indent == indent && !is_sequence_item(line.text)) {
                    break;
                }
                if line.indent > indent {
                    return None;
                }
                let after_dash = &line.text[1..];
                let rest = after_dash.trim_start_matches(' ');
                if is_blank_or_comment(rest) || is_sequence_item(rest) {
                    return None;
                }
                let column = indent + 1 + (after_dash.len() - rest.len());
                if mapping_key(rest).is_some() {
                    items.push(self.block_mapping(column, depth + 1, Some(rest))?);
                } else {
                    items.push(inline_value(rest, depth)?);
                    self.position += 1;
                    self.expect_no_continuation(indent)?;
                }
            }
            Some(Value::Array(items))
        }

        /// After a value that ended on its line, a more indented line would continue it (a
        /// multi-line scalar) or be an error: either way, not this reader's to decide.
        fn expect_no_continuation(&self, indent: usize) -> Option<()> {
            match self.lines.get(self.position) {
                Some(next) if next.indent > indent => None,
                _ => Some(()),
            }
        }
    }

    fn is_sequence_item(text: &str) -> bool {
        text == "-" || text.starts_with("- ")
    }

    /// Nothing, spaces, or spaces and a comment.
    fn is_blank_or_comment(text: &str) -> bool {
        let text = text.trim_start_matches(' ');
        text.is_empty() || text.starts_with('#')
    }

    /// The end of a line after a token: nothing, or spaces and maybe a comment (a `#` right
    /// after a token does not start one).
    fn is_end_of_line(text: &str) -> bool {
        text.is_empty() || (text.starts_with(' ') && is_blank_or_comment(text))
    }

    /// `key: rest` or `key:` (rest empty): the key as a string, and what follows the `:`.
    fn mapping_key(text: &str) -> Option<(String, &str)> {
        let (key, after) = if text.starts_with(['"', '\'']) {
            quoted(text)?
        } else {
            let end = text
                .find(": ")
                .or_else(|| text.ends_with(':').then(|| text.len() - 1))?;
            let key = &text[..end];
            if key.ends_with(' ') || key.contains(" #") || !matches!(plain(key)?, Value::String(_))
            {
                return None;
            }
            (key.to_string(), &text[end..])
        };
        let rest = after.strip_prefix(':')?;
        if !(rest.is_empty() || rest.starts_with(' ')) {
            return None;
        }
        Some((key, rest))
    }

    /// The value after `key: ` or `- `, which must end on its line.
    fn inline_value(text: &str, depth: usize) -> Option<Value> {
        let text = text.trim_start_matches(' ');
        let (value, after) = if text.starts_with(['[', '{']) {
            let mut position = 0;
            let value = flow(text, &mut position, depth + 1)?;
            (value, &text[position..])
        } else if text.starts_with(['"', '\'']) {
            let (value, after) = quoted(text)?;
            (Value::String(value), after)
        } else {
            let end = text.find(" #").unwrap_or(text.len());
            let scalar = text[..end].trim_end_matches(' ');
            if scalar.contains(": ") || scalar.ends_with(':') {
                return None;
            }
            (plain(scalar)?, &text[end..])
        };
        is_end_of_line(after).then_some(value)
    }

    /// A one-line quoted scalar without escapes, and what follows its closing quote.
    fn quoted(text: &str) -> Option<(String, &str)> {
        let quote = text.chars().next()?;
        let body = &text[1..];
        let end = body.find(quote)?;
        let content = &body[..end];
        let after = &body[end + 1..];
        if (quote == '"' && content.contains('\\')) || (quote == '\'' && after.starts_with('\'')) {
            return None;
        }
        Some((content.to_string(), after))
    }

    /// A flow collection (`[...]` or `{...}`) that closes on this line, starting at `position`.
    fn flow(text: &str, position: &mut usize, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        let bytes = text.as_bytes();
        let open = *bytes.get(*position)?;
        let close = if open == b'[' { b']' } else { b'}' };
        *position += 1;
        let mut items = Vec::new();
        let mut map = Map::new();
        skip_spaces(bytes, position);
        if bytes.get(*position) == Some(&close) {
            *position += 1;
        } else {
            loop {
                skip_spaces(bytes, position);
                if open == b'{' {
                    let (key, after_key) = flow_key(&text[*position..])?;
                    *position = text.len() - after_key.len();
                    let value = flow_node(text, position, depth)?;
                    if key == "<<" || map.insert(key, value).is_some() {
                        return None;
                    }
                } else {
                    items.push(flow_node(text, position, depth)?);
                }
                skip_spaces(bytes, position);
                match bytes.get(*position) {
                    Some(b',') => *position += 1,
                    Some(&byte) if byte == close => {
                        *position += 1;
                        break;
                    }
                    _ => return None,
                }
                // `[a, ]`: serde-saphyr's business
                skip_spaces(bytes, position);
                if bytes.get(*position) == Some(&close) {
                    return None;
                }
            }
        }
        Some(if open == b'[' {
            Value::Array(items)
        } else {
            Value::Object(map)
        })
    }

    /// `key: ` inside a flow mapping: the key and the text after `: `.
    fn flow_key(text: &str) -> Option<(String, &str)> {
        let (key, after) = if text.starts_with(['"', '\'']) {
            quoted(text)?
        } else {
            let end = text.find(": ")?;
            let key = &text[..end];
            if key.ends_with(' ')
                || key.contains([',', '[', ']', '{', '}', '#'])
                || !matches!(plain(key)?, Value::String(_))
            {
                return None;
            }
            (key.to_string(), &text[end..])
        };
        after.strip_prefix(": ").map(|after| (key, after))
    }

    /// A value inside a flow collection: a nested flow, a quoted scalar or a plain scalar.
    fn flow_node(text: &str, position: &mut usize, depth: usize) -> Option<Value> {
        let bytes = text.as_bytes();
        skip_spaces(bytes, position);
        match bytes.get(*position)? {
            b'[' | b'{' => flow(text, position, depth + 1),
            b'"' | b'\'' => {
                let (value, after) = quoted(&text[*position..])?;
                *position = text.len() - after.len();
                Some(Value::String(value))
            }
            _ => {
                let rest = &text[*position..];
                let end = rest.find([',', '[', ']', '{', '}']).unwrap_or(rest.len());
                let scalar = rest[..end].trim_end_matches(' ');
                // empty entries (`[a, , b]`, `{a: }`) and `:` or `#` inside: serde-saphyr's
                if scalar.is_empty() || scalar.contains([':', '#']) {
                    return None;
                }
                *position += end;
                plain(scalar)
            }
        }
    }

    fn skip_spaces(bytes: &[u8], position: &mut usize) {
        while bytes.get(*position) == Some(&b' ') {
            *position += 1;
        }
    }

    /// What serde-saphyr makes of a plain scalar: null, a YAML 1.1 boolean (as serde-saphyr
    /// reads them: `yes`, `on`, ...), a decimal integer, or a string. `None` for anything that
    /// may be a float, another integer spelling, or starts with an indicator character.
    fn plain(scalar: &str) -> Option<Value> {
        const NULLS: [&str; 5] = ["", "~", "null", "Null", "NULL"];
        const BOOLEANS: [(&str, bool); 8] = [
            ("true", true),
            ("yes", true),
            ("y", true),
            ("on", true),
            ("false", false),
            ("no", false),
            ("n", false),
            ("off", false),
        ];
        // Letters, digits and signs that some number spelling (hex, octal, binary, exponent,
        // inf, nan, underscores, sexagesimal) may use: a scalar made only of these might be a
        // number.
        const NUMBER_CHARACTERS: &str = "0123456789abcdefABCDEFxXoObBiInNtTyY._+-:";
        if NULLS.contains(&scalar) {
            return Some(Value::Null);
        }
        if let Some((_, value)) = BOOLEANS
            .iter()
            .find(|(spelling, _)| scalar.eq_ignore_ascii_case(spelling))
        {
            return Some(Value::Bool(*value));
        }
        let first = scalar.chars().next()?;
        if scalar.bytes().all(|b| b.is_ascii_digit()) {
            if scalar.len() > 1 && first == '0' {
                return None;
            }
            return scalar.parse::<u64>().ok().map(Value::from);
        }
        let numeric_first = first.is_ascii_digit() || matches!(first, '+' | '-' | '.');
        let maybe_number = if numeric_first {
            scalar.chars().all(|c| NUMBER_CHARACTERS.contains(c))
        } else {
            ["inf", "infinity", "nan"]
                .iter()
                .any(|word| scalar.eq_ignore_ascii_case(word))
        };
        let indicator = "-?:,[]{}#&*!|>'\"%@`".contains(first);
        if maybe_number || indicator || first == '.' || first == ' ' {
            return None;
        }
        Some(Value::String(scalar.to_string()))
    }
}

/// JSON as `kubectl get -o json` prints it, read by serde_json instead of serde-saphyr (YAML 1.2
/// reads JSON too, but an order of magnitude slower), with each list item's line found by a scan of
/// the text's structure. Like [`fast`], it answers only when it is sure to build what serde-saphyr
/// builds: floats, `\u` escapes, duplicate keys, tabs, CR, items that are not Kubernetes objects
/// and every error go to serde-saphyr.
mod fast_json {
    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Value};

    use super::fast::Document;

    /// Every object in `text` with the line it starts on, or `None` when serde-saphyr must decide.
    pub(super) fn parse(text: &str) -> Option<Vec<Document>> {
        let start = text.len() - text.trim_start_matches([' ', '\n']).len();
        let first = *text.as_bytes().get(start)?;
        if !matches!(first, b'{' | b'[')
            || text.contains("\\u")
            || text.bytes().any(|b| b < b' ' && b != b'\n')
            || (!text.is_ascii() && text.chars().any(super::fast::is_special_unicode))
        {
            return None;
        }
        let StrictValue(value) = serde_json::from_str(text).ok()?;
        let (items, offsets) = match value {
            Value::Array(items) => (items, element_offsets(text.as_bytes(), start)?),
            Value::Object(mut map) => {
                let is_list = map
                    .get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|kind| kind.ends_with("List"))
                    && map.contains_key("items");
                if !is_list {
                    let object = Value::Object(map);
                    let (line, column) = positions(text, &[start])[0];
                    return is_object(&object).then_some(vec![Document {
                        value: object,
                        line,
                        column,
                    }]);
                }
                // a List without apiVersion is an error, with serde-saphyr's location
                map.get("apiVersion").and_then(Value::as_str)?;
                let Some(Value::Array(items)) = map.remove("items") else {
                    return None;
                };
                let items_start = items_value_offset(text.as_bytes(), start)?;
                (items, element_offsets(text.as_bytes(), items_start)?)
            }
            _ => return None,
        };
        if items.len() != offsets.len() || !items.iter().all(is_object) {
            return None;
        }
        let positions = positions(text, &offsets);
        Some(
            items
                .into_iter()
                .zip(positions)
                .map(|(value, (line, column))| Document {
                    value,
                    line,
                    column,
                })
                .collect(),
        )
    }

    /// A mapping with a string `apiVersion` and `kind`: anything else is an error whose message
    /// and column serde-saphyr's reading gives.
    fn is_object(value: &Value) -> bool {
        value.get("apiVersion").and_then(Value::as_str).is_some()
            && value.get("kind").and_then(Value::as_str).is_some()
    }

    /// 1-based (line, column) of ascending byte offsets, in one pass over the text; columns count
    /// characters, as serde-saphyr's do.
    fn positions(text: &str, offsets: &[usize]) -> Vec<(u32, u32)> {
        let bytes = text.as_bytes();
        let mut positions = Vec::with_capacity(offsets.len());
        let mut line = 1u32;
        let mut line_start = 0;
        let mut counted_to = 0;
        for &offset in offsets {
            for (index, byte) in bytes[counted_to..offset].iter().enumerate() {
                if *byte == b'\n' {
                    line += 1;
                    line_start = counted_to + index + 1;
                }
            }
            counted_to = offset;
            let column = text[line_start..offset].chars().count() + 1;
            positions.push((line, u32::try_from(column).unwrap_or(u32::MAX)));
        }
        positions
    }

    /// Steps through JSON text outside strings: calls `visit(offset, byte, depth)` for every
    /// structural byte, with the depth before it. Stops when `visit` returns `Some`, or when the
    /// value that starts at `open` closes.
    fn scan<T>(
        bytes: &[u8],
        open: usize,
        mut visit: impl FnMut(usize, u8, usize) -> Option<T>,
    ) -> Option<T> {
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escaped = false;
        for (offset, &byte) in bytes.iter().enumerate().skip(open) {
            if in_string {
                if escaped {
                    escaped = false;
                } else if byte == b'\\' {
                    escaped = true;
                } else if byte == b'"' {
                    in_string = false;
                }
                continue;
            }
            if matches!(byte, b' ' | b'\n') {
                continue;
            }
            if let Some(found) = visit(offset, byte, depth) {
                return Some(found);
            }
            match byte {
                b'"' => in_string = true,
                b'[' | b'{' => depth += 1,
                b']' | b'}' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return None;
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// Where each element of the array that starts at `open` begins.
    fn element_offsets(bytes: &[u8], open: usize) -> Option<Vec<usize>> {
        if bytes.get(open) != Some(&b'[') {
            return None;
        }
        let mut offsets = Vec::new();
        let mut expecting = true;
        let mut closed = false;
        scan(bytes, open, |offset, byte, depth| {
            if depth == 1 && expecting && byte != b']' {
                offsets.push(offset);
                expecting = false;
            }
            if depth == 1 && byte == b',' {
                expecting = true;
            }
            if depth == 1 && byte == b']' {
                closed = true;
            }
            None::<()>
        });
        closed.then_some(offsets)
    }

    /// Where the value of the top-level object's `items` key begins.
    fn items_value_offset(bytes: &[u8], open: usize) -> Option<usize> {
        let mut expecting_key = true;
        let mut items_key = false;
        let mut value_next = false;
        scan(bytes, open, |offset, byte, depth| {
            if depth != 1 {
                return None;
            }
            if value_next {
                return Some(offset);
            }
            match byte {
                b'"' if expecting_key => {
                    // `\u` escapes are not read here, so no other spelling can mean `items`
                    items_key = bytes[offset + 1..].starts_with(b"items\"");
                }
                b':' => {
                    expecting_key = false;
                    value_next = items_key;
                }
                b',' => expecting_key = true,
                _ => {}
            }
            None
        })
    }

    /// A JSON value as serde-saphyr builds it, or an error where it might build something else:
    /// floats (serde_json also reads integers beyond 64 bits as floats) and duplicate keys.
    struct StrictValue(Value);

    impl<'de> Deserialize<'de> for StrictValue {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(StrictVisitor)
        }
    }

    struct StrictVisitor;

    impl<'de> Visitor<'de> for StrictVisitor {
        type Value = StrictValue;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON without floats or duplicate keys")
        }
        fn visit_unit<E: de::Error>(self) -> Result<StrictValue, E> {
            Ok(StrictValue(Value::Null))
        }
        fn visit_bool<E: de::Error>(self, value: bool) -> Result<StrictValue, E> {
            Ok(StrictValue(Value::Bool(value)))
        }
        fn visit_i64<E: de::Error>(self, value: i64) -> Result<StrictValue, E> {
            Ok(StrictValue(Value::from(value)))
        }
        fn visit_u64<E: de::Error>(self, value: u64) -> Result<StrictValue, E> {
            Ok(StrictValue(Value::from(value)))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<StrictValue, E> {
            Err(E::custom("a float: serde-saphyr's to read"))
        }
        fn visit_str<E: de::Error>(self, value: &str) -> Result<StrictValue, E> {
            Ok(StrictValue(Value::String(value.to_string())))
        }
        fn visit_string<E: de::Error>(self, value: String) -> Result<StrictValue, E> {
            Ok(StrictValue(Value::String(value)))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
            let mut items = Vec::new();
            while let Some(StrictValue(item)) = seq.next_element()? {
                items.push(item);
            }
            Ok(StrictValue(Value::Array(items)))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
            let mut fields = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                let StrictValue(value) = map.next_value()?;
                if fields.insert(key, value).is_some() {
                    return Err(de::Error::custom(
                        "a duplicate key: serde-saphyr's to report",
                    ));
                }
            }
            Ok(StrictValue(Value::Object(fields)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_with_lines() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n# comment\napiVersion: v1\nkind: Service\nmetadata: {name: b}\n";
        let objects = parse_documents(text, "f.yaml").unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].origin.as_ref().unwrap().line, 1);
        assert_eq!(objects[1].origin.as_ref().unwrap().line, 6);
    }

    #[test]
    fn list_items_have_their_own_lines() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Service\n  metadata: {name: b}\n";
        let objects = parse_documents(text, "f.yaml").unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].value["metadata"]["name"], "a");
        assert_eq!(objects[0].origin.as_ref().unwrap().line, 4);
        assert_eq!(objects[1].origin.as_ref().unwrap().line, 7);
    }

    #[test]
    fn an_object_that_is_not_a_list_keeps_its_own_items_field() {
        let text = "apiVersion: example.com/v1\nkind: Catalog\nitems:\n- a\n- {b: c}\n";
        let expected = serde_json::json!(["a", {"b": "c"}]);
        let fast = parse_documents(text, "f.yaml").unwrap();
        assert_eq!(fast[0].value["items"], expected);
        let complete = parse_with_saphyr(text, "f.yaml").unwrap();
        assert_eq!(complete[0].value["items"], expected);
    }

    #[test]
    fn json_lists_and_arrays_are_read_by_serde_json_with_each_items_line() {
        for text in &CORPUS[4..] {
            let objects = parse_documents(text, "f.json").unwrap();
            assert_eq!(objects, parse_with_saphyr(text, "f.json").unwrap());
            let lines: Vec<u32> = objects
                .iter()
                .filter_map(|o| o.origin.as_ref().map(|origin| origin.line))
                .collect();
            assert!(
                lines.windows(2).all(|w| w[0] < w[1]) || lines.len() < 2,
                "{lines:?}"
            );
        }
        let list = parse_documents(CORPUS[4], "f.json").unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].origin.as_ref().unwrap().line, 5);
        assert_eq!(list[1].origin.as_ref().unwrap().line, 11);
    }

    #[test]
    fn json_object_and_array() {
        let one = parse_documents(
            r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"a"}}"#,
            "a.json",
        )
        .unwrap();
        assert_eq!(one.len(), 1);
        let many = parse_documents(
            "[\n{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"a\"}},\n\t{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"b\"}}]",
            "a.json",
        )
        .unwrap();
        assert_eq!(many.len(), 2);
    }

    #[test]
    fn missing_type_meta_is_reported_with_its_line() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\nfoo: bar\n";
        let error = parse_documents(text, "f.yaml").unwrap_err();
        assert_eq!(error.kind, ParseErrorKind::MissingTypeMeta);
        assert_eq!(error.line, 5);
        assert_eq!(error.file, "f.yaml");
    }

    #[test]
    fn syntax_errors_carry_a_location() {
        let error = parse_documents("a: [1, 2\nb: c\n", "bad.yaml").unwrap_err();
        assert_eq!(error.kind, ParseErrorKind::Syntax);
        assert!(error.line >= 1 && error.column >= 1);
        assert!(error.to_string().starts_with("bad.yaml:"));
    }

    // ---- the fast reader agrees with serde-saphyr -------------------------------------------

    /// Kubernetes YAML as people write it: comments, flow collections, quotes, indentless and
    /// nested sequences, numbers, YAML 1.1 booleans, strings that start with digits.
    const CORPUS: [&str; 6] = [
        "apiVersion: mesh.istio.operator/v1alpha1\nkind: MeshService\nmetadata:\n  name: web\n  labels:\n    app.kubernetes.io/name: web\n\n# between\nspec:\n  hosts:\n  - web.example.com\n  - \"*.web.example.com\"\n  ports:\n  - port: 80\n    targetPort: http\n    nested:\n    - a\n    - [b, {c: d}]\n    - {}\n    - []\n  gateway: {name: public, namespace: istio-system, managed: true}\n  exportTo: ['.']\n---   # next\n# only a comment\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {istio-injection: enabled}}\n---\napiVersion: example.com/v1\nkind: Catalog\nmetadata: {name: c}\nitems:\n- a\n- {b: c}\n",
        "# a comment\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: cart  # trailing comment\n  namespace: \"shop\"\n  labels: {app: cart, tier: 'web', v: 2}\nspec:\n  hosts: [cart.example.com, \"b\"]\n  gateways:\n  - istio-system/public\n  http:\n    - match: [{uri: {prefix: /v2}}]\n      route:\n        - destination: {host: cart, subset: v2, port: {number: 8080}}\n          weight: 90\n      timeout: 3s\n      retries: {attempts: 3, perTryTimeout: 500ms}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: cart\n  annotations:\n    sidecar.istio.io/inject: \"true\"\n    enabled: yes\n    off-switch: off\n    empty:\n    tilde: ~\n    memory: 1Gi\nspec:\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n  - port: 0\n",
        "---\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw\nspec:\n  selector:\n    istio: ingressgateway\n  servers:\n    - port:\n        number: 443\n        protocol: HTTPS\n      hosts:\n        - \"*.example.com\"\n      tls: {mode: SIMPLE, credentialName: cert}\n...\n",
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a}\nnote: &anchor value\nother: *anchor\nblock: |\n  text\n",
        "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"List\",\n  \"items\": [\n    {\n      \"apiVersion\": \"v1\",\n      \"kind\": \"Service\",\n      \"metadata\": {\"name\": \"a\", \"namespace\": \"shop\", \"labels\": {\"app\": \"a\"}},\n      \"spec\": {\"ports\": [{\"port\": 80, \"targetPort\": \"http\"}], \"clusterIP\": null, \"x\": true}\n    },\n    {\n      \"apiVersion\": \"networking.istio.io/v1\",\n      \"kind\": \"VirtualService\",\n      \"metadata\": {\"name\": \"b\", \"items\": [1, -2]},\n      \"spec\": {\"hosts\": [\"b\", \"c:d\"], \"http\": [{\"route\": [{\"destination\": {\"host\": \"b\"}}]}]}\n    }\n  ],\n  \"metadata\": {\"resourceVersion\": \"\"}\n}\n",
        "\n[{\"apiVersion\": \"v1\", \"kind\": \"Service\", \"metadata\": {\"name\": \"a\"}},\n {\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [{\"apiVersion\": \"v1\", \"kind\": \"Service\", \"metadata\": {\"name\": \"b\"}}]},\n\n  {\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"x\\\"y\"}}]\n",
    ];
    /// What hand edits and bad merges put into YAML.
    const TOKENS: [&str; 40] = [
        ": ",
        "- ",
        "#",
        " #",
        "  ",
        "\n",
        "[",
        "]",
        "{",
        "}",
        ", ",
        ",",
        "\"",
        "'",
        "''",
        "\\",
        "yes",
        "0x1F",
        "1.5",
        "~",
        "---\n",
        "...",
        "&a ",
        "*a",
        "!t ",
        "|\n",
        ">",
        "3s",
        "-1",
        "? ",
        "<<: ",
        "\t",
        "\r",
        "007",
        "1e3",
        "null",
        ".inf",
        "key: value",
        "\u{feff}",
        "é",
    ];

    fn mutate(text: &str, edits: &[(u8, usize, usize)]) -> String {
        let mut text = text.to_string();
        for &(kind, at, token) in edits {
            let mut at = at % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            match kind % 4 {
                0 => text.insert_str(at, TOKENS[token % TOKENS.len()]),
                1 => {
                    let mut end = (at + token % 12).min(text.len());
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    text.replace_range(at..end, "");
                }
                2 => {
                    let mut lines: Vec<&str> = text.lines().collect();
                    if !lines.is_empty() {
                        let line = at % lines.len();
                        lines.insert(line, lines[line]);
                    }
                    text = lines.join("\n");
                }
                _ => {
                    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                    if token % 2 == 0 {
                        text.insert(start, ' ');
                    } else if text[start..].starts_with(' ') {
                        text.remove(start);
                    }
                }
            }
        }
        text
    }

    /// The repository's sample mesh (`examples/istio`): (file name, text).
    fn sample_mesh() -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/istio");
        let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
            .expect("examples/istio")
            .map(|entry| {
                let path = entry.expect("entry").path();
                let text = std::fs::read_to_string(&path).expect("read");
                (path.display().to_string(), text)
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn the_fast_reader_reads_the_sample_mesh_exactly_as_serde_saphyr_does() {
        let files = sample_mesh();
        assert!(files.len() >= 6, "the sample mesh has its files");
        for (name, text) in files {
            assert!(fast::parse(&text).is_some(), "{name} takes the fast path");
            assert_eq!(
                parse_documents(&text, "f"),
                parse_with_saphyr(&text, "f"),
                "{name}"
            );
        }
    }

    #[test]
    fn plain_scalars_resolve_as_serde_saphyr_resolves_them() {
        let fast_path = [
            "yes",
            "No",
            "ON",
            "off",
            "y",
            "n",
            "TRUE",
            "False",
            "~",
            "null",
            "NULL",
            "",
            "0",
            "8080",
            "3s",
            "1Gi",
            "500ms",
            "v1",
            "/v2",
            "a:b",
            "http://x/y",
            "10.0.0.0/8",
            "\"80\"",
            "'on'",
            "\"\"",
            "é",
            "a b  # comment",
        ];
        let config_map_with =
            |scalar: &str| format!("apiVersion: v1\nkind: ConfigMap\nvalue: {scalar}\n");
        for scalar in fast_path {
            let text = config_map_with(scalar);
            assert!(
                fast::parse(&text).is_some(),
                "{scalar:?} takes the fast path"
            );
            assert_eq!(
                parse_documents(&text, "f"),
                parse_with_saphyr(&text, "f"),
                "{scalar:?}"
            );
        }
        let left_to_serde_saphyr = [
            "1.5",
            "0x1F",
            "007",
            "1e3",
            "-1",
            "+1",
            ".inf",
            "nan",
            "1_000",
            "&a x",
            "*a",
            "!t x",
            "|",
            ">",
            "\"a\\tb\"",
            "'it''s'",
            "[a, ]",
            "{a: }",
            "a: b",
            "99999999999999999999",
        ];
        for scalar in left_to_serde_saphyr {
            assert!(
                fast::parse(&config_map_with(scalar)).is_none(),
                "{scalar:?} goes to serde-saphyr"
            );
        }
    }

    #[test]
    fn the_fast_reader_agrees_with_serde_saphyr_on_mutated_manifests() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};

        let mut runner = TestRunner::new(Config {
            cases: 3000,
            failure_persistence: None,
            ..Config::default()
        });
        for text in &CORPUS[..2] {
            assert!(
                fast::parse(text).is_some(),
                "unmutated, it takes the fast path:\n{text}"
            );
        }
        for text in &CORPUS[4..] {
            assert!(
                fast_json::parse(text).is_some(),
                "unmutated, it takes the JSON fast path:\n{text}"
            );
        }
        let corpus: Vec<String> = CORPUS
            .iter()
            .map(|text| text.to_string())
            .chain(sample_mesh().into_iter().map(|(_, text)| text))
            .collect();
        let fast_path_taken = std::cell::Cell::new(0);
        let strategy = (
            0..corpus.len(),
            proptest::collection::vec((any::<u8>(), any::<usize>(), any::<usize>()), 0..4),
        );
        runner
            .run(&strategy, |(index, edits)| {
                let text = mutate(&corpus[index], &edits);
                if fast::parse(&text).is_some() {
                    fast_path_taken.set(fast_path_taken.get() + 1);
                }
                prop_assert_eq!(
                    parse_documents(&text, "f.yaml"),
                    parse_with_saphyr(&text, "f.yaml"),
                    "input: {:?}",
                    text
                );
                Ok(())
            })
            .expect("the two readers agree");
        // Not vacuous: a good share of the (often still valid) inputs took the fast path.
        assert!(
            fast_path_taken.get() > 300,
            "{} fast",
            fast_path_taken.get()
        );
    }

    #[test]
    fn empty_documents_are_skipped() {
        assert!(parse_documents("", "e.yaml").unwrap().is_empty());
        assert!(parse_documents("---\n---\n", "e.yaml").unwrap().is_empty());
    }
}
