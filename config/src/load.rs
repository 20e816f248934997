//! Reading a config file: `${ENV}` interpolation, TOML parsing, decoding each component by its
//! `type`, cross-checks (every `inputs` entry names a source), and turning key paths into line
//! numbers so every error says where it is.

use crate::error::{ConfigError, ConfigErrors};
use crate::filter::FilterConfig;
use crate::registry::{type_names, ComponentType, Registry};
use crate::sink::{BufferConfig, DeadLetterConfig, SinkOuter};
use crate::source::SourceOuter;
use crate::{Config, GlobalConfig};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Reads and validates a config file, decoding components by the types `registry` knows. Every
/// error is reported, each with its key path and line.
pub fn load<S: ?Sized, K: ?Sized>(
    path: &Path,
    registry: &Registry<'_, S, K>,
) -> Result<Config<S, K>, ConfigErrors> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        origin: origin.clone(),
        errors: vec![ConfigError {
            path: String::new(),
            line: None,
            message: format!("cannot read config file: {e}"),
        }],
    })?;
    load_str(&text, &origin, registry)
}

/// As [`load`], from text; `origin` names it in messages.
pub fn load_str<S: ?Sized, K: ?Sized>(
    text: &str,
    origin: &str,
    registry: &Registry<'_, S, K>,
) -> Result<Config<S, K>, ConfigErrors> {
    let fail = |errors: Vec<ConfigError>| ConfigErrors {
        origin: origin.to_string(),
        errors,
    };
    let (text, env_errors) = interpolate_env(text, |k| std::env::var(k).ok());
    if !env_errors.is_empty() {
        return Err(fail(env_errors));
    }
    let table: toml::Table = match toml::from_str(&text) {
        Ok(t) => t,
        Err(e) => {
            return Err(fail(vec![ConfigError {
                path: String::new(),
                line: e.span().map(|s| line_of_offset(&text, s.start)),
                message: toml_message(&e, &text),
            }]))
        }
    };
    let doc = toml_edit::ImDocument::parse(text.clone()).ok();
    let mut errors: Vec<(Vec<String>, String)> = Vec::new();
    let config = decode_config(table, registry, &mut errors);
    if errors.is_empty() {
        if let Some(c) = config {
            return Ok(c);
        }
    }
    let errors = errors
        .into_iter()
        .map(|(path, message)| ConfigError {
            line: doc.as_ref().and_then(|d| line_of_path(d, &text, &path)),
            path: path.join("."),
            message,
        })
        .collect();
    Err(fail(errors))
}

/// The parser's message; toml gives none for some characters (a control character in a
/// comment), so then the column says where.
fn toml_message(e: &toml::de::Error, text: &str) -> String {
    let m = e.message().trim();
    if !m.is_empty() {
        return m.to_string();
    }
    let before = e.span().and_then(|s| text.get(..s.start));
    match before {
        Some(b) => {
            let column = b[b.rfind('\n').map_or(0, |i| i + 1)..].chars().count() + 1;
            format!("invalid TOML at column {column} (a control character?)")
        }
        None => "invalid TOML".to_string(),
    }
}

fn decode_config<S: ?Sized, K: ?Sized>(
    mut table: toml::Table,
    registry: &Registry<'_, S, K>,
    errors: &mut Vec<(Vec<String>, String)>,
) -> Option<Config<S, K>> {
    let source_types = type_names(registry.sources);
    let sink_types = type_names(registry.sinks);
    let sources_v = table.remove("sources");
    let sinks_v = table.remove("sinks");
    let global: Option<GlobalConfig> =
        Decoder::new(toml::Value::Table(table), Vec::new(), errors).decode();

    let mut sources = BTreeMap::new();
    let source_tables = component_tables("sources", sources_v, errors);
    let declared: Vec<String> = source_tables.iter().map(|(n, _)| n.clone()).collect();
    for (name, value) in source_tables {
        let path = vec!["sources".to_string(), name.clone()];
        let Some((type_name, rest)) = take_type(value, &path, &source_types, errors) else {
            continue;
        };
        let Some(t) = find_type(registry.sources, &type_name) else {
            unknown_type(&path, &type_name, &source_types, errors);
            continue;
        };
        let mut d = Decoder::new(rest, path.clone(), errors);
        if let Some(inner) = (t.decode)(&mut d) {
            let type_name = t.name;
            sources.insert(name, SourceOuter { type_name, inner });
        }
    }
    if sources.is_empty() && errors.is_empty() {
        errors.push((vec!["sources".into()], "no sources are configured".into()));
    }

    // Inputs are checked against every declared source, valid or not, so that one error in a
    // source does not turn into a second one in each sink that reads it.
    let mut sinks = BTreeMap::new();
    for (name, value) in component_tables("sinks", sinks_v, errors) {
        let path = vec!["sinks".to_string(), name.clone()];
        let Some((type_name, mut rest)) = take_type(value, &path, &sink_types, errors) else {
            continue;
        };
        let tbl = rest.as_table_mut().expect("component values are tables");
        let inputs_v = tbl.remove("inputs");
        let buffer_v = tbl.remove("buffer");
        let filter_v = tbl.remove("filter");
        let dead_letter_v = tbl.remove("dead_letter");
        let inputs = decode_inputs(inputs_v, &path, &declared, errors);
        let buffer: Option<BufferConfig> = match buffer_v {
            Some(v) => Decoder::new(v, with(&path, "buffer"), errors).decode(),
            None => Some(BufferConfig::default()),
        };
        let filter = match filter_v {
            Some(v) => FilterConfig::decode(&mut Decoder::new(v, with(&path, "filter"), errors)),
            None => Some(FilterConfig::default()),
        };
        let dead_letter = match dead_letter_v {
            Some(v) => {
                DeadLetterConfig::decode(&mut Decoder::new(v, with(&path, "dead_letter"), errors))
            }
            None => Some(None),
        };
        let t = find_type(registry.sinks, &type_name);
        let inner = match t {
            Some(t) => (t.decode)(&mut Decoder::new(rest, path.clone(), errors)),
            None => {
                unknown_type(&path, &type_name, &sink_types, errors);
                None
            }
        };
        if let (Some(t), Some(inputs), Some(buffer), Some(filter), Some(dead_letter), Some(inner)) =
            (t, inputs, buffer, filter, dead_letter, inner)
        {
            sinks.insert(
                name,
                SinkOuter {
                    inputs,
                    buffer,
                    filter,
                    dead_letter,
                    type_name: t.name,
                    inner,
                },
            );
        }
    }
    if sinks.is_empty() && errors.is_empty() {
        errors.push((vec!["sinks".into()], "no sinks are configured".into()));
    }

    let g = global?;
    Some(Config {
        data_dir: g.data_dir,
        api: g.api,
        checkpoint_interval: g.checkpoint_interval,
        shutdown_timeout: g.shutdown_timeout,
        sources,
        sinks,
    })
}

fn find_type<'r, T: ?Sized>(
    types: &'r [ComponentType<T>],
    name: &str,
) -> Option<&'r ComponentType<T>> {
    types.iter().find(|t| t.name == name)
}

/// Decodes a component's table as `T` and validates it: what a [`ComponentType::decode`] does.
pub fn decode_component<T, K: ?Sized>(d: &mut Decoder<'_>, into: fn(T) -> Arc<K>) -> Option<Arc<K>>
where
    T: crate::ConfigTable,
{
    let c = T::decode(d)?;
    c.validate(d);
    Some(into(c))
}

fn with(path: &[String], key: &str) -> Vec<String> {
    let mut p = path.to_vec();
    p.push(key.to_string());
    p
}

/// The `NAME = { … }` entries of `[sources]` or `[sinks]`.
fn component_tables(
    section: &str,
    v: Option<toml::Value>,
    errors: &mut Vec<(Vec<String>, String)>,
) -> Vec<(String, toml::Value)> {
    match v {
        None => Vec::new(),
        Some(toml::Value::Table(t)) => {
            let mut out = Vec::new();
            for (name, value) in t {
                if value.is_table() {
                    out.push((name, value));
                } else {
                    errors.push((
                        vec![section.to_string(), name],
                        format!("expected a table ([{section}.NAME] with a `type`)"),
                    ));
                }
            }
            out
        }
        Some(_) => {
            errors.push((vec![section.to_string()], "expected a table".into()));
            Vec::new()
        }
    }
}

fn take_type(
    mut value: toml::Value,
    path: &[String],
    known: &[&str],
    errors: &mut Vec<(Vec<String>, String)>,
) -> Option<(String, toml::Value)> {
    let tbl = value.as_table_mut()?;
    match tbl.remove("type") {
        Some(toml::Value::String(s)) => Some((s, value)),
        Some(_) => {
            errors.push((with(path, "type"), "expected a string".into()));
            None
        }
        None => {
            errors.push((
                path.to_vec(),
                format!("missing `type` (one of: {})", known.join(", ")),
            ));
            None
        }
    }
}

fn unknown_type(
    path: &[String],
    type_name: &str,
    known: &[&str],
    errors: &mut Vec<(Vec<String>, String)>,
) {
    errors.push((
        with(path, "type"),
        format!(
            "unknown {} type {type_name:?} (known: {})",
            if path[0] == "sources" {
                "source"
            } else {
                "sink"
            },
            known.join(", ")
        ),
    ));
}

fn decode_inputs(
    v: Option<toml::Value>,
    path: &[String],
    sources: &[String],
    errors: &mut Vec<(Vec<String>, String)>,
) -> Option<Vec<String>> {
    let p = with(path, "inputs");
    let Some(v) = v else {
        errors.push((
            path.to_vec(),
            "missing `inputs` (the sources this sink reads)".into(),
        ));
        return None;
    };
    let inputs: Vec<String> = match v.try_into() {
        Ok(i) => i,
        Err(_) => {
            errors.push((p, "expected an array of source names".into()));
            return None;
        }
    };
    if inputs.is_empty() {
        errors.push((p.clone(), "names no source".into()));
    }
    for input in &inputs {
        let matcher = globset::Glob::new(input).map(|g| g.compile_matcher());
        let matched = match &matcher {
            Ok(m) => sources.iter().any(|s| m.is_match(s)),
            Err(_) => sources.contains(input),
        };
        if !matched {
            let known: Vec<&str> = sources.iter().map(String::as_str).collect();
            errors.push((
                p.clone(),
                format!(
                    "input {input:?} names no source (sources: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
    }
    Some(inputs)
}

/// Decodes one table into a config struct, recording unknown keys and type errors with their
/// full key paths. Component `validate` methods record their own errors through [`Decoder::error`].
pub struct Decoder<'a> {
    value: Option<toml::Value>,
    path: Vec<String>,
    errors: &'a mut Vec<(Vec<String>, String)>,
}

impl<'a> Decoder<'a> {
    pub fn new(
        value: toml::Value,
        path: Vec<String>,
        errors: &'a mut Vec<(Vec<String>, String)>,
    ) -> Self {
        Decoder {
            value: Some(value),
            path,
            errors,
        }
    }

    pub fn decode<T: DeserializeOwned>(&mut self) -> Option<T> {
        let value = self.value.take()?;
        self.decode_value(value)
    }

    /// Takes the value to decode (for keys that accept several shapes).
    pub(crate) fn take_value(&mut self) -> Option<toml::Value> {
        self.value.take()
    }

    /// Decodes `value` (a value at this decoder's key path) as `T`, recording errors as
    /// [`Decoder::decode`] does.
    pub fn decode_value<T: DeserializeOwned>(&mut self, value: toml::Value) -> Option<T> {
        let mut unknown: Vec<Vec<String>> = Vec::new();
        let result: Result<T, _> = {
            let mut cb = |p: serde_ignored::Path<'_>| unknown.push(ignored_path(&p));
            let de = serde_ignored::Deserializer::new(value, &mut cb);
            serde_path_to_error::deserialize(de)
        };
        for u in unknown {
            let mut p = self.path.clone();
            p.extend(u);
            self.errors.push((p, "unknown key".into()));
        }
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                let mut p = self.path.clone();
                for seg in e.path().iter() {
                    match seg {
                        serde_path_to_error::Segment::Map { key } => p.push(key.clone()),
                        serde_path_to_error::Segment::Seq { index } => p.push(index.to_string()),
                        _ => {}
                    }
                }
                self.errors
                    .push((p, e.into_inner().message().trim().to_string()));
                None
            }
        }
    }

    /// Decodes `T` from this table's keys except those `G` declares, and `G` from those: a key
    /// group declared once and shared by several components (`#[serde(flatten)]` would hide
    /// unknown keys and error paths from this decoder). Errors of both keep their key paths.
    pub fn decode_with_group<T: DeserializeOwned, G: DeserializeOwned>(
        &mut self,
    ) -> Option<(T, G)> {
        let fields = struct_fields::<G>();
        let mut value = self.value.take()?;
        let mut group = toml::Table::new();
        if let Some(t) = value.as_table_mut() {
            for f in fields {
                if let Some(v) = t.remove(*f) {
                    group.insert(f.to_string(), v);
                }
            }
        }
        self.value = Some(value);
        let t = self.decode::<T>();
        let g =
            Decoder::new(toml::Value::Table(group), self.path.clone(), self.errors).decode::<G>();
        Some((t?, g?))
    }

    /// Records an error at `key` (relative to this component).
    pub fn error(&mut self, key: &[&str], message: impl Into<String>) {
        let mut p = self.path.clone();
        p.extend(key.iter().map(|k| k.to_string()));
        self.errors.push((p, message.into()));
    }
}

/// The field names a derived `Deserialize` struct declares (what it passes to
/// `deserialize_struct`); empty for anything else.
fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{Error, Visitor};
    struct Fields<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Fields<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(Error::custom("fields read"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Fields(&mut fields));
    fields
}

fn ignored_path(p: &serde_ignored::Path<'_>) -> Vec<String> {
    use serde_ignored::Path as P;
    match p {
        P::Root => Vec::new(),
        P::Seq { parent, index } => {
            let mut v = ignored_path(parent);
            v.push(index.to_string());
            v
        }
        P::Map { parent, key } => {
            let mut v = ignored_path(parent);
            v.push(key.clone());
            v
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

/// Replaces `${NAME}` and `${NAME:-default}`; `$$` is a literal `$`. A variable that is unset
/// and has no default is an error naming the line.
pub(crate) fn interpolate_env(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> (String, Vec<ConfigError>) {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                out.push('$');
                rest = after;
                continue;
            };
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            match (lookup(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    let offset = text.len() - rest.len() + i;
                    errors.push(ConfigError {
                        path: String::new(),
                        line: Some(line_of_offset(text, offset)),
                        message: format!(
                            "environment variable {name} is not set (use ${{{name}:-default}} for a default)"
                        ),
                    });
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    (out, errors)
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The line of the deepest key along `path` that exists in the document.
fn line_of_path(doc: &toml_edit::ImDocument<String>, text: &str, path: &[String]) -> Option<usize> {
    let mut item = doc.as_item();
    let mut span = None;
    for seg in path {
        if let Some(t) = item.as_table_like() {
            match t.get_key_value(seg) {
                Some((k, v)) => {
                    span = k.span().or_else(|| v.span()).or(span);
                    item = v;
                }
                None => break,
            }
        } else {
            if let (Some(a), Ok(i)) = (item.as_array(), seg.parse::<usize>()) {
                span = a.get(i).and_then(|v| v.span()).or(span);
            }
            break;
        }
    }
    span.map(|s| line_of_offset(text, s.start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_interpolation() {
        let (out, errs) =
            interpolate_env("a = \"${X}\"\nb = \"${Y:-dflt}\"\nc = \"$$5 ${Z}\"", |k| {
                (k == "X").then(|| "xv".to_string())
            });
        assert_eq!(out, "a = \"xv\"\nb = \"dflt\"\nc = \"$5 \"");
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].to_string(),
            "line 3: environment variable Z is not set (use ${Z:-default} for a default)"
        );
    }

    /// Found by fuzzing (fuzz/fuzz_targets/config.rs): toml reports a control character in a
    /// comment with an empty message, which left the error without any text.
    #[test]
    fn every_toml_error_has_a_message() {
        let registry: Registry<'_, (), ()> = Registry {
            sources: &[],
            sinks: &[],
        };
        let e = load_str(
            "data_dir = \"/x\"\n# a comment \u{1} here\n",
            "t.toml",
            &registry,
        )
        .err()
        .unwrap();
        assert_eq!(e.errors.len(), 1);
        assert_eq!(e.errors[0].line, Some(2));
        assert_eq!(
            e.errors[0].message,
            "invalid TOML at column 13 (a control character?)"
        );
    }
}
