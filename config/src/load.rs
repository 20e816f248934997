//! Reading a config file: `${ENV}` interpolation, TOML parsing, decoding each component by its
//! `type`, cross-checks (every `inputs` entry names a source), and turning key paths into line
//! numbers so every error says where it is.

use crate::error::{ConfigError, ConfigErrors};
use crate::sink::{BufferConfig, SinkConfig, SinkKind, SINK_TYPES};
use crate::source::{SourceConfig, SOURCE_TYPES};
use crate::{Config, GlobalConfig};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::Path;

/// Reads and validates a config file. Every error is reported, each with its key path and line.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        origin: origin.clone(),
        errors: vec![ConfigError {
            path: String::new(),
            line: None,
            message: format!("cannot read config file: {e}"),
        }],
    })?;
    load_str(&text, &origin)
}

/// As [`load`], from text; `origin` names it in messages.
pub fn load_str(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
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
                message: e.message().trim().to_string(),
            }]))
        }
    };
    let doc = toml_edit::ImDocument::parse(text.clone()).ok();
    let mut errors: Vec<(Vec<String>, String)> = Vec::new();
    let config = decode_config(table, &mut errors);
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

fn decode_config(
    mut table: toml::Table,
    errors: &mut Vec<(Vec<String>, String)>,
) -> Option<Config> {
    let sources_v = table.remove("sources");
    let sinks_v = table.remove("sinks");
    let global: Option<GlobalConfig> =
        Decoder::new(toml::Value::Table(table), Vec::new(), errors).decode();

    let mut sources = BTreeMap::new();
    let source_tables = component_tables("sources", sources_v, errors);
    let declared: Vec<String> = source_tables.iter().map(|(n, _)| n.clone()).collect();
    for (name, value) in source_tables {
        let path = vec!["sources".to_string(), name.clone()];
        let Some((type_name, rest)) = take_type(value, &path, SOURCE_TYPES, errors) else {
            continue;
        };
        let mut d = Decoder::new(rest, path.clone(), errors);
        match SourceConfig::decode(&type_name, &mut d) {
            Some(s) => {
                sources.insert(name, s);
            }
            None if !SOURCE_TYPES.contains(&type_name.as_str()) => {
                unknown_type(&path, &type_name, SOURCE_TYPES, errors)
            }
            None => {}
        }
    }
    if sources_v_is_empty(&sources, errors) {
        errors.push((vec!["sources".into()], "no sources are configured".into()));
    }

    // Inputs are checked against every declared source, valid or not, so that one error in a
    // source does not turn into a second one in each sink that reads it.
    let mut sinks = BTreeMap::new();
    for (name, value) in component_tables("sinks", sinks_v, errors) {
        let path = vec!["sinks".to_string(), name.clone()];
        let Some((type_name, mut rest)) = take_type(value, &path, SINK_TYPES, errors) else {
            continue;
        };
        let tbl = rest.as_table_mut().expect("component values are tables");
        let inputs_v = tbl.remove("inputs");
        let buffer_v = tbl.remove("buffer");
        let inputs = decode_inputs(inputs_v, &path, &declared, errors);
        let buffer: Option<BufferConfig> = match buffer_v {
            Some(v) => Decoder::new(v, with(&path, "buffer"), errors).decode(),
            None => Some(BufferConfig::default()),
        };
        let mut d = Decoder::new(rest, path.clone(), errors);
        let kind = SinkKind::decode(&type_name, &mut d);
        if kind.is_none() && !SINK_TYPES.contains(&type_name.as_str()) {
            unknown_type(&path, &type_name, SINK_TYPES, errors);
        }
        if let (Some(inputs), Some(buffer), Some(kind)) = (inputs, buffer, kind) {
            sinks.insert(
                name,
                SinkConfig {
                    inputs,
                    buffer,
                    kind,
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

fn sources_v_is_empty(
    sources: &BTreeMap<String, SourceConfig>,
    errors: &[(Vec<String>, String)],
) -> bool {
    sources.is_empty() && errors.is_empty()
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
pub(crate) struct Decoder<'a> {
    value: Option<toml::Value>,
    path: Vec<String>,
    errors: &'a mut Vec<(Vec<String>, String)>,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(
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

    pub(crate) fn decode<T: DeserializeOwned>(&mut self) -> Option<T> {
        let value = self.value.take()?;
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

    /// Records an error at `key` (relative to this component).
    pub(crate) fn error(&mut self, key: &[&str], message: impl Into<String>) {
        let mut p = self.path.clone();
        p.extend(key.iter().map(|k| k.to_string()));
        self.errors.push((p, message.into()));
    }
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
mod tests;
