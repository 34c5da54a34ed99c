//! `--format`: Go templates as the docker CLI evaluates them, on top of the
//! `gotmpl` crate (a port of Go's text/template), plus Docker's additions —
//! the `table` directive, the `json` shorthand, `\t` escapes, the functions
//! `json join split lower upper title truncate pad println` — and an aligned
//! table writer equivalent to Go's tabwriter as the docker CLI configures it.

use std::sync::Arc;

use anyhow::{anyhow, Result};
use gotmpl::{Template, TemplateError, Value};

/// A parsed `--format` value.
pub struct Format {
    template: Template,
    /// Whether the format began with `table` (print a header, align columns).
    pub table: bool,
}

fn as_string(v: &Value) -> String {
    match v {
        Value::Nil => String::new(),
        other => other.to_string(),
    }
}

fn arg<'a>(args: &'a [Value], i: usize, func: &str) -> gotmpl::Result<&'a Value> {
    args.get(i).ok_or_else(|| TemplateError::Exec(format!("{func}: missing argument {}", i + 1)))
}

fn int_arg(args: &[Value], i: usize, func: &str) -> gotmpl::Result<i64> {
    let v = arg(args, i, func)?;
    v.as_int().ok_or_else(|| TemplateError::Exec(format!("{func}: argument {} must be a number, got {v}", i + 1)))
}

/// Converts a template value back to JSON, for the `json` function.
pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Nil => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(n) => J::from(*n),
        Value::Uint(n) => J::from(*n),
        Value::Float(f) => serde_json::Number::from_f64(*f).map(J::Number).unwrap_or(J::Null),
        Value::String(s) => J::String(s.to_string()),
        Value::List(l) => J::Array(l.iter().map(to_json).collect()),
        Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.to_string(), to_json(v))).collect()),
        _ => J::Null,
    }
}

fn title_case(s: &str) -> String {
    // Go's strings.Title: upper-case the first letter of every word.
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric() && c != '_' && c != '\'';
    }
    out
}

/// Docker's template functions, added to Go's builtins.
fn with_docker_funcs(t: Template) -> Template {
    t.func("json", |args| {
        let v = arg(args, 0, "json")?;
        let text = serde_json::to_string(&to_json(v)).map_err(|e| TemplateError::Exec(format!("json: {e}")))?;
        Ok(Value::String(text.into()))
    })
    .func("join", |args| {
        let list = arg(args, 0, "join")?;
        let sep = as_string(arg(args, 1, "join")?);
        let parts: Vec<String> = match list {
            Value::List(l) => l.iter().map(as_string).collect(),
            Value::Nil => Vec::new(),
            other => vec![as_string(other)],
        };
        Ok(Value::String(parts.join(&sep).into()))
    })
    .func("split", |args| {
        let s = as_string(arg(args, 0, "split")?);
        let sep = as_string(arg(args, 1, "split")?);
        let parts: Vec<Value> = if sep.is_empty() {
            s.chars().map(|c| Value::String(c.to_string().into())).collect()
        } else {
            s.split(sep.as_str()).map(|p| Value::String(p.into())).collect()
        };
        Ok(Value::List(Arc::from(parts)))
    })
    .func("lower", |args| Ok(Value::String(as_string(arg(args, 0, "lower")?).to_lowercase().into())))
    .func("upper", |args| Ok(Value::String(as_string(arg(args, 0, "upper")?).to_uppercase().into())))
    .func("title", |args| Ok(Value::String(title_case(&as_string(arg(args, 0, "title")?)).into())))
    .func("truncate", |args| {
        let s = as_string(arg(args, 0, "truncate")?);
        let n = int_arg(args, 1, "truncate")?.max(0) as usize;
        Ok(Value::String(s.chars().take(n).collect::<String>().into()))
    })
    .func("pad", |args| {
        let s = as_string(arg(args, 0, "pad")?);
        let prefix = int_arg(args, 1, "pad")?.max(0) as usize;
        let suffix = int_arg(args, 2, "pad")?.max(0) as usize;
        Ok(Value::String(format!("{}{s}{}", " ".repeat(prefix), " ".repeat(suffix)).into()))
    })
    .func("println", |args| {
        let parts: Vec<String> = args.iter().map(as_string).collect();
        Ok(Value::String(format!("{}\n", parts.join(" ")).into()))
    })
}

impl Format {
    /// Parses a `--format` value: `table ...`, `json`, or a Go template.
    pub fn parse(format: &str) -> Result<Format> {
        let (table, body) = match format.strip_prefix("table") {
            Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => (true, rest),
            _ => (false, format),
        };
        let body = body.trim_matches(' ').replace("\\t", "\t").replace("\\n", "\n");
        let body = if body == "json" { "{{json .}}".to_string() } else { body };
        let template = with_docker_funcs(Template::new("format"))
            .parse(&body)
            .map_err(|e| anyhow!("template parsing error: {e}"))?;
        Ok(Format { template, table })
    }

    /// Renders one object.
    pub fn render(&self, data: &serde_json::Value) -> Result<String> {
        let value = gotmpl::to_value(data).map_err(|e| anyhow!("template: {e}"))?;
        self.template.execute_to_string(&value).map_err(|e| anyhow!("template: {e}"))
    }

    /// Renders every row (and, for `table`, the header first), one per line,
    /// aligned into columns when the format is a table.
    pub fn render_rows(&self, header: &serde_json::Value, rows: &[serde_json::Value]) -> Result<String> {
        let mut lines = Vec::with_capacity(rows.len() + 1);
        if self.table {
            lines.push(self.render(header)?);
        }
        for row in rows {
            lines.push(self.render(row)?);
        }
        let mut text = lines.join("\n");
        if !lines.is_empty() {
            text.push('\n');
        }
        Ok(if self.table { tabwrite(&text) } else { text })
    }
}

/// Aligns tab-separated cells like Go's tabwriter with the docker CLI's
/// settings (minimum width 10, padding 3, spaces): a cell ended by a tab is
/// padded to its column's width; the last cell of a line is not.
pub fn tabwrite(text: &str) -> String {
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for cells in &lines {
        for (i, cell) in cells.iter().enumerate().take(cells.len().saturating_sub(1)) {
            let w = (cell.chars().count() + 3).max(10);
            if widths.len() <= i {
                widths.push(w);
            } else {
                widths[i] = widths[i].max(w);
            }
        }
    }
    let mut out = String::with_capacity(text.len() * 2);
    for (n, cells) in lines.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < cells.len() {
                let pad = widths[i] - cell.chars().count();
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
    }
    out
}

/// Prints JSON the way the docker CLI indents it (four spaces).
pub fn pretty(v: &serde_json::Value) -> Result<String> {
    use serde::Serialize;
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, serde_json::ser::PrettyFormatter::with_indent(b"    "));
    v.serialize(&mut ser)?;
    Ok(String::from_utf8(buf)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(format: &str, data: serde_json::Value) -> String {
        Format::parse(format).unwrap().render(&data).unwrap()
    }

    #[test]
    fn field_paths_and_json() {
        let d = json!({"State": {"Status": "running"}, "Config": {"Cmd": ["sh", "-c", "x"], "Env": null}});
        assert_eq!(render("{{.State.Status}}", d.clone()), "running");
        assert_eq!(render("{{json .Config.Cmd}}", d.clone()), r#"["sh","-c","x"]"#);
        assert_eq!(render("{{json .Config}}", d.clone()), r#"{"Cmd":["sh","-c","x"],"Env":null}"#);
        assert_eq!(render("{{.Config.Cmd}}", d.clone()), "[sh -c x]");
        assert_eq!(render("json", json!({"a": 1})), r#"{"a":1}"#);
    }

    #[test]
    fn range_if_index_join() {
        let d = json!({"Tags": ["a:1", "b:2"], "Labels": {"k": "v"}, "N": 0});
        assert_eq!(render("{{range .Tags}}<{{.}}>{{end}}", d.clone()), "<a:1><b:2>");
        assert_eq!(render("{{if .N}}yes{{else}}no{{end}}", d.clone()), "no");
        assert_eq!(render(r#"{{index .Labels "k"}}"#, d.clone()), "v");
        assert_eq!(render("{{index .Tags 1}}", d.clone()), "b:2");
        assert_eq!(render(r#"{{join .Tags ", "}}"#, d.clone()), "a:1, b:2");
        assert_eq!(render("{{len .Tags}}", d.clone()), "2");
        assert_eq!(render(r#"{{range $k, $v := .Labels}}{{$k}}={{$v}}{{end}}"#, d), "k=v");
    }

    #[test]
    fn docker_string_functions() {
        let d = json!({"S": "hello world", "P": "a/b/c"});
        assert_eq!(render("{{upper .S}}", d.clone()), "HELLO WORLD");
        assert_eq!(render("{{title .S}}", d.clone()), "Hello World");
        assert_eq!(render("{{truncate .S 5}}", d.clone()), "hello");
        assert_eq!(render("{{pad .S 1 2}}", d.clone()), " hello world  ");
        assert_eq!(render(r#"{{index (split .P "/") 1}}"#, d.clone()), "b");
        assert_eq!(render("{{println .S}}", d), "hello world\n");
    }

    #[test]
    fn bad_templates_are_errors_not_output() {
        assert!(Format::parse("{{.Foo").is_err());
        assert!(Format::parse("{{range}}").is_err());
        let f = Format::parse("{{truncate .S}}").unwrap();
        assert!(f.render(&json!({"S": "x"})).is_err());
    }

    #[test]
    fn table_directive_prints_an_aligned_header() {
        let f = Format::parse(r"table {{.Repository}}\t{{.Tag}}\t{{.Size}}").unwrap();
        assert!(f.table);
        let header = json!({"Repository": "REPOSITORY", "Tag": "TAG", "Size": "SIZE"});
        let rows = vec![
            json!({"Repository": "busybox", "Tag": "latest", "Size": "4.26MB"}),
            json!({"Repository": "localhost:5000/a-long-name", "Tag": "1", "Size": "1kB"}),
        ];
        let out = f.render_rows(&header, &rows).unwrap();
        assert_eq!(
            out,
            "REPOSITORY                   TAG       SIZE\n\
             busybox                      latest    4.26MB\n\
             localhost:5000/a-long-name   1         1kB\n"
        );
    }

    #[test]
    fn plain_formats_are_not_aligned() {
        let f = Format::parse(r"{{.A}}\t{{.B}}").unwrap();
        let out = f.render_rows(&json!({}), &[json!({"A": "x", "B": "y"})]).unwrap();
        assert_eq!(out, "x\ty\n");
    }
}

/// Prints what `inspect` found — one rendered line per object with `-f`, a
/// JSON array otherwise — then the errors; exit status 1 when any.
pub fn print_inspected(found: Vec<serde_json::Value>, errors: &[String], format: Option<&Format>) -> Result<std::process::ExitCode> {
    match format {
        Some(f) => {
            for v in &found {
                println!("{}", f.render(v)?);
            }
        }
        None => println!("{}", pretty(&serde_json::Value::Array(found))?),
    }
    if errors.is_empty() {
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        eprintln!("{}", errors.join("\n"));
        Ok(std::process::ExitCode::from(1))
    }
}

/// Docker's prune prompt: `warning`, then "Are you sure you want to
/// continue? [y/N]"; true for `y` or `yes`.
pub fn confirm(warning: &str) -> Result<bool> {
    println!("{warning}");
    ask_yes("Are you sure you want to continue?")
}

/// Asks `question [y/N] ` on the terminal; true for `y` or `yes`.
pub fn ask_yes(question: &str) -> Result<bool> {
    use std::io::{BufRead, Write};
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
}
