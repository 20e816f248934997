//! Docker's log tag template (`{{.Name}}`, `{{.ID}}`, …): the one template engine every sink's
//! `tag`, `path`, `topic`, `key`, `group` and `stream` option uses.
//!
//! The language is the subset of Go's `text/template` that Docker's tag templates use: fields
//! (`.ID` `.FullID` `.Name` `.ImageID` `.ImageFullID` `.ImageName` `.DaemonName`, plus the label
//! map `.ContainerLabels`, alias `.Labels`), string and integer literals, parentheses, pipelines
//! (`{{.Name | upper}}`), trim markers (`{{-`, `-}}`), Docker's template functions (`lower`,
//! `upper`, `title`, `split`, `join`, `truncate`, `pad`, `json`) and Go's `printf`, `print`,
//! `index`, `len`. Control structures (`if`, `range`) are not supported and say so.
//!
//! Templates are parsed once at config time (so a typo is a config error) and rendered once per
//! container by the caller, who caches the result: rendering is never on the per-line path.
//!
//! [`extra_attributes`] renders Docker's `labels`/`labels-regex`/`env`/`env-regex` log-opts
//! the way Docker's drivers attach them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;

/// A field Docker's tag template knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TemplateField {
    /// First 12 characters of the container id.
    Id,
    FullId,
    /// Container name without the leading `/`.
    Name,
    /// First 12 characters of the full image id, `sha256:` included (`sha256:e8487`), as
    /// Docker renders it.
    ImageId,
    ImageFullId,
    ImageName,
    /// Always `docker`.
    DaemonName,
}

impl TemplateField {
    fn from_name(name: &str) -> Option<TemplateField> {
        Some(match name {
            "ID" => TemplateField::Id,
            "FullID" => TemplateField::FullId,
            "Name" => TemplateField::Name,
            "ImageID" => TemplateField::ImageId,
            "ImageFullID" => TemplateField::ImageFullId,
            "ImageName" => TemplateField::ImageName,
            "DaemonName" => TemplateField::DaemonName,
            _ => return None,
        })
    }
}

/// What a template renders against (the collector's container metadata implements it).
pub trait TemplateContext {
    fn field(&self, field: TemplateField) -> Cow<'_, str>;

    /// The container's labels, for `.ContainerLabels` / `.Labels` (none by default).
    fn labels(&self) -> Option<&BTreeMap<String, String>> {
        None
    }
}

const KNOWN_FIELDS: &str = ".ID .FullID .Name .ImageID .ImageFullID .ImageName .DaemonName";
const KNOWN_FUNCS: &str =
    "lower, upper, title, split, join, truncate, pad, json, printf, print, index, len";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Piece {
    Text(String),
    Action(Pipeline),
}

/// `cmd | cmd | …`: each command's result is the last argument of the next.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Pipeline(Vec<Command>);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Command {
    Call(Func, Vec<Operand>),
    Value(Operand),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Operand {
    Field(TemplateField),
    Labels,
    /// `.ContainerLabels.key`
    Label(String),
    Str(String),
    Int(i64),
    Sub(Box<Pipeline>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Func {
    Lower,
    Upper,
    Title,
    Split,
    Join,
    Truncate,
    Pad,
    Json,
    Printf,
    Print,
    Index,
    Len,
}

impl Func {
    fn from_name(name: &str) -> Option<Func> {
        Some(match name {
            "lower" => Func::Lower,
            "upper" => Func::Upper,
            "title" => Func::Title,
            "split" => Func::Split,
            "join" => Func::Join,
            "truncate" => Func::Truncate,
            "pad" => Func::Pad,
            "json" => Func::Json,
            "printf" => Func::Printf,
            "print" => Func::Print,
            "index" => Func::Index,
            "len" => Func::Len,
            _ => return None,
        })
    }

    /// (min, max) arguments, the piped value included.
    fn arity(self) -> (usize, usize) {
        match self {
            Func::Lower | Func::Upper | Func::Title | Func::Json | Func::Len => (1, 1),
            Func::Split | Func::Join | Func::Truncate => (2, 2),
            Func::Pad => (3, 3),
            Func::Index => (2, usize::MAX),
            Func::Printf => (1, usize::MAX),
            Func::Print => (0, usize::MAX),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Func::Lower => "lower",
            Func::Upper => "upper",
            Func::Title => "title",
            Func::Split => "split",
            Func::Join => "join",
            Func::Truncate => "truncate",
            Func::Pad => "pad",
            Func::Json => "json",
            Func::Printf => "printf",
            Func::Print => "print",
            Func::Index => "index",
            Func::Len => "len",
        }
    }
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Dot(String),
    Ident(String),
    Str(String),
    Int(i64),
    Pipe,
    Open,
    Close,
}

fn lex(action: &str, whole: &str) -> Result<Vec<Tok>, String> {
    let b = action.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'|' => {
                out.push(Tok::Pipe);
                i += 1
            }
            b'(' => {
                out.push(Tok::Open);
                i += 1
            }
            b')' => {
                out.push(Tok::Close);
                i += 1
            }
            b'"' => {
                let mut s = String::new();
                i += 1;
                let mut chars = action[i..].char_indices();
                let mut closed = false;
                while let Some((k, ch)) = chars.next() {
                    match ch {
                        '"' => {
                            i += k + 1;
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some((_, 'n')) => s.push('\n'),
                            Some((_, 't')) => s.push('\t'),
                            Some((_, 'r')) => s.push('\r'),
                            Some((_, e @ ('\\' | '"' | '\''))) => s.push(e),
                            _ => return Err(format!("bad escape in string in template {whole:?}")),
                        },
                        _ => s.push(ch),
                    }
                }
                if !closed {
                    return Err(format!("unterminated string in template {whole:?}"));
                }
                out.push(Tok::Str(s));
            }
            b'`' => {
                let end = action[i + 1..]
                    .find('`')
                    .ok_or_else(|| format!("unterminated raw string in template {whole:?}"))?;
                out.push(Tok::Str(action[i + 1..i + 1 + end].to_string()));
                i += end + 2;
            }
            b'.' => {
                let start = i;
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.')
                {
                    i += 1;
                }
                out.push(Tok::Dot(action[start..i].to_string()));
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let n = action[start..i].parse().map_err(|_| {
                    format!("bad number {:?} in template {whole:?}", &action[start..i])
                })?;
                out.push(Tok::Int(n));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push(Tok::Ident(action[start..i].to_string()));
            }
            _ => {
                return Err(format!(
                    "unexpected character {:?} in action {{{{{action}}}}} of template {whole:?}",
                    c as char
                ))
            }
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    action: &'a str,
    whole: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn pipeline(&mut self) -> Result<Pipeline, String> {
        let mut cmds = vec![self.command(true)?];
        while self.peek() == Some(&Tok::Pipe) {
            self.pos += 1;
            cmds.push(self.command(false)?);
        }
        Ok(Pipeline(cmds))
    }

    fn command(&mut self, first: bool) -> Result<Command, String> {
        let cmd = match self.peek().cloned() {
            Some(Tok::Ident(name)) => {
                self.pos += 1;
                let func = Func::from_name(&name).ok_or_else(|| {
                    if matches!(name.as_str(), "if" | "range" | "with" | "else" | "end" | "define" | "template" | "block") {
                        format!("unsupported action {{{{{}}}}} in template {:?} (control structures are not supported)", self.action, self.whole)
                    } else {
                        format!("unknown function {name:?} in template {:?} (known: {KNOWN_FUNCS})", self.whole)
                    }
                })?;
                let mut args = Vec::new();
                while let Some(t) = self.peek() {
                    if matches!(t, Tok::Pipe | Tok::Close) {
                        break;
                    }
                    args.push(self.operand()?);
                }
                let n = args.len() + usize::from(!first);
                let (lo, hi) = func.arity();
                if n < lo || n > hi {
                    return Err(format!(
                        "wrong number of arguments for {} in template {:?}: want {}, got {n}",
                        func.name(),
                        self.whole,
                        if lo == hi {
                            lo.to_string()
                        } else {
                            format!("at least {lo}")
                        }
                    ));
                }
                Command::Call(func, args)
            }
            Some(_) if first => {
                let op = self.operand()?;
                if let Some(t) = self.peek() {
                    if !matches!(t, Tok::Pipe | Tok::Close) {
                        return Err(format!(
                            "unsupported action {{{{{}}}}} in template {:?} (a value cannot take arguments)",
                            self.action, self.whole
                        ));
                    }
                }
                Command::Value(op)
            }
            _ => {
                return Err(format!(
                    "missing function after `|` in action {{{{{}}}}} of template {:?}",
                    self.action, self.whole
                ))
            }
        };
        Ok(cmd)
    }

    fn operand(&mut self) -> Result<Operand, String> {
        let t = self.peek().cloned().ok_or_else(|| {
            format!(
                "incomplete action {{{{{}}}}} in template {:?}",
                self.action, self.whole
            )
        })?;
        self.pos += 1;
        Ok(match t {
            Tok::Str(s) => Operand::Str(s),
            Tok::Int(n) => Operand::Int(n),
            Tok::Open => {
                let p = self.pipeline()?;
                if self.peek() != Some(&Tok::Close) {
                    return Err(format!("unclosed parenthesis in template {:?}", self.whole));
                }
                self.pos += 1;
                Operand::Sub(Box::new(p))
            }
            Tok::Dot(path) => field_operand(&path, self.whole)?,
            Tok::Ident(name) => {
                return Err(format!(
                "function {name:?} used as an argument in template {:?} (wrap it in parentheses)",
                self.whole
            ))
            }
            Tok::Pipe | Tok::Close => {
                return Err(format!(
                    "unexpected token in action {{{{{}}}}} of template {:?}",
                    self.action, self.whole
                ))
            }
        })
    }
}

fn field_operand(path: &str, whole: &str) -> Result<Operand, String> {
    let name = &path[1..];
    if name.is_empty() {
        return Err(format!(
            "`.` alone is not supported in template {whole:?} (expected a field such as {{{{.Name}}}})"
        ));
    }
    let (head, rest) = match name.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (name, None),
    };
    if head == "ContainerLabels" || head == "Labels" {
        return Ok(match rest {
            None => Operand::Labels,
            Some(key) => Operand::Label(key.to_string()),
        });
    }
    match (TemplateField::from_name(head), rest) {
        (Some(f), None) => Ok(Operand::Field(f)),
        _ => Err(format!(
            "unknown field .{name} in template {whole:?} (known: {KNOWN_FIELDS})"
        )),
    }
}

/// A value during rendering.
#[derive(Debug, Clone)]
enum Value<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    List(Vec<String>),
    Map(Cow<'a, BTreeMap<String, String>>),
    /// Go's `<no value>` (a missing map key reached by a field path).
    Missing,
}

impl Value<'_> {
    fn as_str(&self) -> Cow<'_, str> {
        match self {
            Value::Str(s) => Cow::Borrowed(s),
            other => Cow::Owned(other.to_string()),
        }
    }

    fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

impl fmt::Display for Value<'_> {
    /// As Go's `fmt` prints it with `%v`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Int(n) => write!(f, "{n}"),
            Value::List(v) => write!(f, "[{}]", v.join(" ")),
            Value::Map(m) => {
                f.write_str("map[")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{k}:{v}")?;
                }
                f.write_str("]")
            }
            Value::Missing => f.write_str("<no value>"),
        }
    }
}

impl Template {
    /// Parses `s`; the error names the offending action.
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut pieces: Vec<Piece> = Vec::new();
        let mut rest = s;
        let mut trim_next = false;
        while let Some(start) = rest.find("{{") {
            let mut text = &rest[..start];
            if trim_next {
                text = text.trim_start();
            }
            let after = &rest[start + 2..];
            let trim_before =
                after.starts_with("- ") || after.starts_with("-\t") || after.starts_with("-\n");
            if trim_before {
                text = text.trim_end();
            }
            if !text.is_empty() {
                pieces.push(Piece::Text(text.to_string()));
            }
            let end = find_action_end(after)
                .ok_or_else(|| format!("unclosed action in template {s:?}"))?;
            let mut action = &after[..end];
            if trim_before {
                action = &action[1..];
            }
            trim_next = false;
            if action.ends_with(" -") || action.ends_with("\t-") || action.ends_with("\n-") {
                action = &action[..action.len() - 1];
                trim_next = true;
            }
            let action = action.trim();
            if action.starts_with("/*") {
                // A comment renders nothing.
            } else {
                let toks = lex(action, s)?;
                if toks.is_empty() {
                    return Err(format!("empty action {{{{}}}} in template {s:?}"));
                }
                let mut p = Parser {
                    toks,
                    pos: 0,
                    action,
                    whole: s,
                };
                let pipe = p.pipeline()?;
                if p.pos != p.toks.len() {
                    return Err(format!(
                        "unexpected {:?} in action {{{{{action}}}}} of template {s:?}",
                        p.toks[p.pos]
                    ));
                }
                pieces.push(Piece::Action(pipe));
            }
            rest = &after[end + 2..];
        }
        let text = if trim_next { rest.trim_start() } else { rest };
        if !text.is_empty() {
            pieces.push(Piece::Text(text.to_string()));
        }
        Ok(Template {
            source: s.to_string(),
            pieces,
        })
    }

    /// The text the template was parsed from.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the template has no actions (render gives the same string for everyone).
    pub fn is_static(&self) -> bool {
        self.pieces.iter().all(|p| matches!(p, Piece::Text(_)))
    }

    pub fn render(&self, ctx: &dyn TemplateContext) -> String {
        self.render_with(ctx, &mut |value, out| out.push_str(value))
    }

    /// Renders like [`render`](Self::render), but every action's output (the values, which
    /// may come from a peer) goes through `value` on its way into the result; the template's
    /// own text is copied as written. The sinks confine values with it (no `/` in a path
    /// segment, …) while the operator's text stays as configured.
    pub fn render_with(
        &self,
        ctx: &dyn TemplateContext,
        value: &mut dyn FnMut(&str, &mut String),
    ) -> String {
        let mut out = String::with_capacity(self.source.len() + 32);
        let mut scratch = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Action(pipe) => {
                    let v = eval_pipeline(pipe, ctx);
                    scratch.clear();
                    let _ = write!(scratch, "{v}");
                    value(&scratch, &mut out);
                }
            }
        }
        out
    }

    /// The text before the first action (all of it for a static template).
    pub fn static_prefix(&self) -> &str {
        match self.pieces.first() {
            Some(Piece::Text(t)) => t,
            Some(Piece::Action(_)) | None => "",
        }
    }
}

/// The `}}` that closes an action, skipping quoted strings.
fn find_action_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b[i + 1] == b'}' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn eval_pipeline<'a>(p: &'a Pipeline, ctx: &'a dyn TemplateContext) -> Value<'a> {
    let mut prev: Option<Value<'a>> = None;
    for cmd in &p.0 {
        prev = Some(match cmd {
            Command::Value(op) => eval_operand(op, ctx),
            Command::Call(f, args) => {
                let mut vals: Vec<Value<'a>> = args.iter().map(|a| eval_operand(a, ctx)).collect();
                if let Some(v) = prev.take() {
                    vals.push(v);
                }
                call(*f, vals)
            }
        });
    }
    prev.unwrap_or(Value::Str(Cow::Borrowed("")))
}

fn eval_operand<'a>(op: &'a Operand, ctx: &'a dyn TemplateContext) -> Value<'a> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    match op {
        Operand::Field(f) => Value::Str(ctx.field(*f)),
        Operand::Labels => Value::Map(Cow::Borrowed(ctx.labels().unwrap_or(&EMPTY))),
        Operand::Label(k) => match ctx.labels().and_then(|m| m.get(k)) {
            Some(v) => Value::Str(Cow::Borrowed(v)),
            None => Value::Missing,
        },
        Operand::Str(s) => Value::Str(Cow::Borrowed(s)),
        Operand::Int(n) => Value::Int(*n),
        Operand::Sub(p) => eval_pipeline(p, ctx),
    }
}

fn call<'a>(f: Func, mut a: Vec<Value<'a>>) -> Value<'a> {
    let s = |v: &Value| v.as_str().into_owned();
    match f {
        Func::Lower => Value::Str(Cow::Owned(s(&a[0]).to_lowercase())),
        Func::Upper => Value::Str(Cow::Owned(s(&a[0]).to_uppercase())),
        Func::Title => Value::Str(Cow::Owned(go_title(&s(&a[0])))),
        Func::Split => Value::List(
            s(&a[0])
                .split(s(&a[1]).as_str())
                .map(str::to_string)
                .collect(),
        ),
        Func::Join => {
            let sep = s(&a[1]);
            let items = match a.swap_remove(0) {
                Value::List(v) => v,
                Value::Map(m) => m.values().cloned().collect(),
                other => vec![s(&other)],
            };
            Value::Str(Cow::Owned(items.join(&sep)))
        }
        Func::Truncate => {
            let src = s(&a[0]);
            let n = a[1].as_int().unwrap_or(0).max(0) as usize;
            // Go slices bytes; stay on a char boundary.
            let mut cut = n.min(src.len());
            while !src.is_char_boundary(cut) {
                cut -= 1;
            }
            Value::Str(Cow::Owned(src[..cut].to_string()))
        }
        Func::Pad => {
            let src = s(&a[0]);
            if src.is_empty() {
                return Value::Str(Cow::Owned(src));
            }
            // Capped: a count may come from a peer (Go's strings.Repeat panics on a huge one).
            let count =
                |v: &Value| (v.as_int().unwrap_or(0).max(0) as u64).min(MAX_PAD as u64) as usize;
            let (pre, suf) = (count(&a[1]), count(&a[2]));
            Value::Str(Cow::Owned(format!(
                "{}{src}{}",
                " ".repeat(pre),
                " ".repeat(suf)
            )))
        }
        Func::Json => Value::Str(Cow::Owned(go_json(&a[0]))),
        Func::Printf => {
            let fmt_s = s(&a[0]);
            Value::Str(Cow::Owned(go_sprintf(&fmt_s, &a[1..])))
        }
        Func::Print => {
            let mut out = String::new();
            for (i, v) in a.iter().enumerate() {
                // fmt.Sprint: a space between operands when neither is a string.
                if i > 0 && !matches!(v, Value::Str(_)) && !matches!(a[i - 1], Value::Str(_)) {
                    out.push(' ');
                }
                let _ = write!(out, "{v}");
            }
            Value::Str(Cow::Owned(out))
        }
        Func::Index => {
            let mut cur = a.remove(0);
            for key in a {
                cur = match cur {
                    Value::Map(m) => Value::Str(Cow::Owned(
                        m.get(key.as_str().as_ref()).cloned().unwrap_or_default(),
                    )),
                    Value::List(v) => Value::Str(Cow::Owned(
                        key.as_int()
                            .and_then(|i| usize::try_from(i).ok())
                            .and_then(|i| v.get(i).cloned())
                            .unwrap_or_default(),
                    )),
                    Value::Str(st) => Value::Int(
                        key.as_int()
                            .and_then(|i| usize::try_from(i).ok())
                            .and_then(|i| st.as_bytes().get(i).copied())
                            .map(i64::from)
                            .unwrap_or(0),
                    ),
                    _ => Value::Str(Cow::Borrowed("")),
                };
            }
            cur
        }
        Func::Len => Value::Int(match &a[0] {
            Value::Str(st) => st.len() as i64,
            Value::List(v) => v.len() as i64,
            Value::Map(m) => m.len() as i64,
            Value::Int(_) | Value::Missing => 0,
        }),
    }
}

/// Go's `strings.Title`: upper-cases the first letter of every word.
fn go_title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = !(c.is_alphanumeric() || c == '_');
    }
    out
}

/// Docker's `json` function: `encoding/json` without HTML escaping.
fn go_json(v: &Value) -> String {
    match v {
        Value::Str(s) => json_string(s),
        Value::Int(n) => n.to_string(),
        Value::List(items) => {
            let parts: Vec<String> = items.iter().map(|i| json_string(i)).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Map(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}:{}", json_string(k), json_string(v)))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Missing => "null".to_string(),
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The most `printf` pads to and `pad` adds. A format string or a count can come from a peer
/// (`{{printf .Name}}`, `{{pad .Name .Name 0}}`), so this is far below Go's `fmt` limit (10⁶,
/// `tooLarge`) and far above any name a sink accepts (at most 1 KiB).
const MAX_PAD: usize = 4096;

/// A width or precision (digits; none is 0); `None` when over [`MAX_PAD`] (as Go's `parsenum`
/// over its limit: the digits are consumed all the same).
fn go_fmt_num(it: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<usize> {
    let mut n = 0usize;
    while let Some(d) = it.peek().and_then(|c| c.to_digit(10)) {
        n = n.saturating_mul(10).saturating_add(d as usize);
        it.next();
    }
    (n <= MAX_PAD).then_some(n)
}

/// Go's `fmt.Sprintf` for the verbs a tag template can use: `%s %v %d %q %x %X %%`, with
/// flags `-`, `0`, width and precision.
fn go_sprintf(f: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut it = f.chars().peekable();
    let mut argi = 0;
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut zero) = (false, false);
        while let Some(&fl) = it.peek() {
            match fl {
                '-' => minus = true,
                '0' => zero = true,
                '+' | ' ' | '#' => {}
                _ => break,
            }
            it.next();
        }
        let mut width = None;
        if it.peek().is_some_and(char::is_ascii_digit) {
            width = go_fmt_num(&mut it);
            if width.is_none() {
                out.push_str("%!(BADWIDTH)");
            }
        }
        let mut prec = None;
        if it.peek() == Some(&'.') {
            it.next();
            prec = go_fmt_num(&mut it);
            if prec.is_none() {
                out.push_str("%!(BADPREC)");
            }
        }
        let Some(verb) = it.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(argi) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        argi += 1;
        let body = match verb {
            's' | 'v' => {
                let s = arg.to_string();
                match prec {
                    Some(p) => s.chars().take(p).collect(),
                    None => s,
                }
            }
            'd' => match arg {
                Value::Int(n) => n.to_string(),
                other => format!("%!d(string={other})"),
            },
            'q' => json_string(&arg.to_string()),
            'x' | 'X' => {
                let s: String = match arg {
                    Value::Int(n) => format!("{n:x}"),
                    other => other
                        .to_string()
                        .bytes()
                        .map(|b| format!("{b:02x}"))
                        .collect(),
                };
                if verb == 'X' {
                    s.to_uppercase()
                } else {
                    s
                }
            }
            other => format!("%!{other}({arg})"),
        };
        let w = width.unwrap_or(0);
        let n = body.chars().count();
        if n >= w {
            out.push_str(&body);
        } else if minus {
            out.push_str(&body);
            out.push_str(&" ".repeat(w - n));
        } else {
            let pad = if zero && verb == 'd' { "0" } else { " " };
            out.push_str(&pad.repeat(w - n));
            out.push_str(&body);
        }
    }
    if argi < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[argi..].iter().map(|a| a.to_string()).collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl<'de> serde::Deserialize<'de> for Template {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Template::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Docker's extra attributes (`daemon/logger.Info.ExtraAttributes`): the labels named in
/// `labels` and matching `labels_regex`, then the environment variables named in `env` and
/// matching `env_regex` (later keys overwrite earlier ones, as in Docker's map). Regexes match
/// anywhere in the name, like Go's `MatchString`.
pub fn extra_attributes<'a>(
    labels: &BTreeMap<String, String>,
    env: impl IntoIterator<Item = (&'a str, &'a str)>,
    label_names: &[String],
    labels_regex: Option<&regex::Regex>,
    env_names: &[String],
    env_regex: Option<&regex::Regex>,
) -> BTreeMap<String, String> {
    let mut extra = BTreeMap::new();
    for l in label_names {
        if let Some(v) = labels.get(l) {
            extra.insert(l.clone(), v.clone());
        }
    }
    if let Some(re) = labels_regex {
        for (k, v) in labels {
            if re.is_match(k) {
                extra.insert(k.clone(), v.clone());
            }
        }
    }
    let env: BTreeMap<&str, &str> = env.into_iter().collect();
    for e in env_names {
        if let Some(v) = env.get(e.as_str()) {
            extra.insert(e.clone(), v.to_string());
        }
    }
    if let Some(re) = env_regex {
        for (k, v) in &env {
            if re.is_match(k) {
                extra.insert(k.to_string(), v.to_string());
            }
        }
    }
    extra
}

/// Splits Docker's `KEY=value` environment entries (entries without `=` are skipped, as Docker
/// does).
pub fn split_env(entries: &[String]) -> impl Iterator<Item = (&str, &str)> {
    entries.iter().filter_map(|e| e.split_once('='))
}

#[cfg(test)]
mod tests;
