use super::*;

struct Ctx(BTreeMap<String, String>);

fn ctx() -> Ctx {
    Ctx([("com.docker.compose.service", "web"), ("team", "shop")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

impl TemplateContext for Ctx {
    fn field(&self, f: TemplateField) -> Cow<'_, str> {
        Cow::Borrowed(match f {
            TemplateField::Id => "d2ae8d3a9846",
            TemplateField::FullId => "d2ae8d3a9846ffff",
            TemplateField::Name => "Sysl-web_1",
            TemplateField::ImageId => "0123456789ab",
            TemplateField::ImageFullId => "sha256:0123456789abcdef",
            TemplateField::ImageName => "busybox",
            TemplateField::DaemonName => "docker",
        })
    }

    fn labels(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.0)
    }
}

fn r(t: &str) -> String {
    Template::parse(t)
        .unwrap_or_else(|e| panic!("{t}: {e}"))
        .render(&ctx())
}

#[test]
fn renders_docker_fields() {
    assert_eq!(r("{{.Name}}/{{ .ID }}"), "Sysl-web_1/d2ae8d3a9846");
    assert_eq!(
        r("/var/log/{{.ImageName}}-{{.DaemonName}}.log"),
        "/var/log/busybox-docker.log"
    );
    assert!(Template::parse("plain").unwrap().is_static());
}

#[test]
fn renders_docker_functions() {
    assert_eq!(r("{{.Name | lower}}"), "sysl-web_1");
    assert_eq!(r("{{upper .Name}}"), "SYSL-WEB_1");
    assert_eq!(r("{{title \"hello big-world\"}}"), "Hello Big-World");
    assert_eq!(r("{{split .Name \"-\"}}"), "[Sysl web_1]");
    assert_eq!(r("{{join (split .Name \"-\") \"+\"}}"), "Sysl+web_1");
    assert_eq!(r("{{truncate .FullID 4}}"), "d2ae");
    assert_eq!(r("{{truncate .ID 40}}"), "d2ae8d3a9846");
    assert_eq!(r("[{{pad .ImageName 1 2}}]"), "[ busybox  ]");
    assert_eq!(r("{{json .Name}}"), "\"Sysl-web_1\"");
    assert_eq!(
        r("{{json .ContainerLabels}}"),
        r#"{"com.docker.compose.service":"web","team":"shop"}"#
    );
    assert_eq!(r("{{.Name | printf \"%s\"}}"), "Sysl-web_1");
    assert_eq!(
        r("{{printf \"%.4s-%s|%-6s|%5s\" .ID .ImageName \"ab\" \"cd\"}}"),
        "d2ae-busybox|ab    |   cd"
    );
    assert_eq!(
        r("{{index .ContainerLabels \"com.docker.compose.service\"}}"),
        "web"
    );
    assert_eq!(r("{{index .Labels \"missing\"}}"), "");
    assert_eq!(r("{{.ContainerLabels.team}}"), "shop");
    assert_eq!(r("{{.Labels.nope}}"), "<no value>");
    assert_eq!(r("{{len .Name}}"), "10");
    assert_eq!(r("{{.Name | split \"-\" | len}}"), "1");
    assert_eq!(r("a  {{- .ID -}}  b"), "ad2ae8d3a9846b");
    assert_eq!(r("{{/* note */}}x"), "x");
    assert_eq!(r("{{`raw}}`}}"), "raw}}");
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
    assert!(Template::parse("{{truncate .Name}}")
        .unwrap_err()
        .contains("wrong number of arguments for truncate"));
    assert!(Template::parse("{{if .Name}}x{{end}}")
        .unwrap_err()
        .contains("control structures"));
}

#[test]
fn extra_attributes_like_docker() {
    let labels: BTreeMap<String, String> = [("a", "1"), ("b.x", "2"), ("c", "3")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let env = vec![
        "FOO=bar".to_string(),
        "SECRET=x".to_string(),
        "PATH=/bin".to_string(),
        "junk".to_string(),
    ];
    let re = regex::Regex::new("^b").unwrap();
    let ere = regex::Regex::new("OO").unwrap();
    let got = extra_attributes(
        &labels,
        split_env(&env),
        &["a".into(), "zz".into()],
        Some(&re),
        &["PATH".into()],
        Some(&ere),
    );
    let want: BTreeMap<String, String> =
        [("a", "1"), ("b.x", "2"), ("PATH", "/bin"), ("FOO", "bar")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    assert_eq!(got, want);
}

#[test]
fn render_with_filters_values_not_the_template_text() {
    let t = Template::parse("/var/log/{{.Name}}/{{printf \"%s/%s\" .ID \"x\"}}.log").unwrap();
    let got = t.render_with(&ctx(), &mut |v, out| out.push_str(&v.replace('/', "_")));
    assert_eq!(got, "/var/log/Sysl-web_1/d2ae8d3a9846_x.log");
    assert_eq!(t.render(&ctx()), "/var/log/Sysl-web_1/d2ae8d3a9846/x.log");
    assert_eq!(t.static_prefix(), "/var/log/");
    assert_eq!(Template::parse("{{.ID}}/x").unwrap().static_prefix(), "");
    assert_eq!(Template::parse("/a/b").unwrap().static_prefix(), "/a/b");
}

/// Found by fuzzing (fuzz/fuzz_targets/template.rs): a long width overflowed (a panic in a
/// debug build, a wrapped count and a huge allocation in release), `pad` repeated any count,
/// and a width of 622,222 took seconds per render. A format string or a count can come from a
/// peer (`{{printf .Name}}`, `{{pad .Name .Name 0}}`), so both stop at 4096.
#[test]
fn printf_widths_and_pad_counts_are_bounded() {
    let huge = "9".repeat(40);
    assert_eq!(
        r(&format!(
            "{{{{printf \"%{huge}d|%.{huge}s|%4097s\" 1 \"ab\" \"c\"}}}}"
        )),
        "%!(BADWIDTH)1|%!(BADPREC)ab|%!(BADWIDTH)c"
    );
    assert_eq!(
        r("{{printf \"%5d|%-3s|%.1s\" 7 \"a\" \"xyz\"}}"),
        "    7|a  |x"
    );
    let padded = r("{{pad \"x\" 999999999999 2}}");
    assert_eq!(padded.len(), 4096 + 1 + 2);
    assert_eq!(r("{{printf \"%4096d\" 1}}").len(), 4096);
    assert_eq!(r("{{pad \"x\" 2 1}}"), "  x ");
}
