//! Docker's log tag template (`{{.Name}}`, `{{.ID}}`, …): the one template engine every sink's
//! `tag`, `path`, `topic`, `key`, `group` and `stream` option uses.
//!
//! Templates are parsed once at config time (so a typo is a config error) and rendered once per
//! container by the caller, who caches the result: rendering is never on the per-line path.

use std::borrow::Cow;
use std::fmt;

/// A field Docker's tag template knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateField {
    /// First 12 characters of the container id.
    Id,
    FullId,
    /// Container name without the leading `/`.
    Name,
    /// First 12 characters of the image id (without `sha256:`).
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(TemplateField, Vec<Func>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Lower,
    Upper,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses `s`; the error names the offending action.
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed action in template {s:?}"))?;
            pieces.push(Self::parse_action(after[..end].trim(), s)?);
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Template {
            source: s.to_string(),
            pieces,
        })
    }

    fn parse_action(action: &str, whole: &str) -> Result<Piece, String> {
        let mut stages = action.split('|').map(str::trim);
        let head = stages.next().unwrap_or("");
        // `{{lower .Name}}` is the same as `{{.Name | lower}}`.
        let (field, mut funcs) = match head.split_once(char::is_whitespace) {
            Some((f, arg)) => (arg.trim(), vec![Self::func(f, whole)?]),
            None => (head, Vec::new()),
        };
        let name = field.strip_prefix('.').ok_or_else(|| {
            format!("unsupported action {{{{{action}}}}} in template {whole:?} (expected a field such as {{{{.Name}}}})")
        })?;
        let field = TemplateField::from_name(name).ok_or_else(|| {
            format!("unknown field .{name} in template {whole:?} (known: .ID .FullID .Name .ImageID .ImageFullID .ImageName .DaemonName)")
        })?;
        for f in stages {
            funcs.push(Self::func(f, whole)?);
        }
        Ok(Piece::Field(field, funcs))
    }

    fn func(name: &str, whole: &str) -> Result<Func, String> {
        match name {
            "lower" => Ok(Func::Lower),
            "upper" => Ok(Func::Upper),
            _ => Err(format!(
                "unknown function {name:?} in template {whole:?} (known: lower, upper)"
            )),
        }
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
        let mut out = String::with_capacity(self.source.len() + 32);
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(f, funcs) => {
                    let mut v: Cow<str> = ctx.field(*f);
                    for func in funcs {
                        v = Cow::Owned(match func {
                            Func::Lower => v.to_lowercase(),
                            Func::Upper => v.to_uppercase(),
                        });
                    }
                    out.push_str(&v);
                }
            }
        }
        out
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Ctx;
    impl TemplateContext for Ctx {
        fn field(&self, f: TemplateField) -> Cow<'_, str> {
            Cow::Borrowed(match f {
                TemplateField::Id => "d2ae8d3a9846",
                TemplateField::FullId => "d2ae8d3a9846ffff",
                TemplateField::Name => "Sysl",
                TemplateField::ImageId => "0123456789ab",
                TemplateField::ImageFullId => "sha256:0123456789abcdef",
                TemplateField::ImageName => "busybox",
                TemplateField::DaemonName => "docker",
            })
        }
    }

    #[test]
    fn renders_docker_fields() {
        let t = Template::parse("{{.Name}}/{{ .ID }}").unwrap();
        assert_eq!(t.render(&Ctx), "Sysl/d2ae8d3a9846");
        let t = Template::parse("/var/log/{{.ImageName}}-{{.DaemonName}}.log").unwrap();
        assert_eq!(t.render(&Ctx), "/var/log/busybox-docker.log");
        assert!(Template::parse("plain").unwrap().is_static());
    }

    #[test]
    fn renders_functions() {
        assert_eq!(
            Template::parse("{{.Name | lower}}").unwrap().render(&Ctx),
            "sysl"
        );
        assert_eq!(
            Template::parse("{{upper .Name}}").unwrap().render(&Ctx),
            "SYSL"
        );
    }

    #[test]
    fn errors_name_the_action() {
        assert_eq!(
            Template::parse("{{.Nmae}}").unwrap_err(),
            "unknown field .Nmae in template \"{{.Nmae}}\" (known: .ID .FullID .Name .ImageID .ImageFullID .ImageName .DaemonName)"
        );
        assert!(Template::parse("{{.Name")
            .unwrap_err()
            .starts_with("unclosed action"));
        assert!(Template::parse("{{.Name | shout}}")
            .unwrap_err()
            .contains("unknown function"));
    }
}
