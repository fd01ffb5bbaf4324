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
pub fn parse_documents(text: &str, file: &str) -> Result<Vec<SourceObject>, ParseError> {
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

    #[test]
    fn empty_documents_are_skipped() {
        assert!(parse_documents("", "e.yaml").unwrap().is_empty());
        assert!(parse_documents("---\n---\n", "e.yaml").unwrap().is_empty());
    }
}
