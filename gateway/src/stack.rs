//! `gateway up`: faas-cli stack files and build contexts assembled like `faas-cli build --shrinkwrap`.
//!
//! A stack file (gateway.md §16.4) is [`load`]ed with `${VAR}` substituted first. For each function
//! that uses a template, [`prepare`] assembles the build context exactly as faas-cli does
//! (templates.md §4: template, then the handler overlaid on its `handler_folder`, then
//! `configuration.copy`) and runs the template's `local_build` in it (templates.md §8). The local
//! runtime then starts `fwatchdog` in [`Assembled::dir`] with [`Assembled::fprocess`] and
//! [`Assembled::env`] (the final Dockerfile stage's `ENV` values, then the stack's environment).
//!
//! Rebuilding is skipped when nothing changed: the template, the handler and the copied paths are
//! hashed (names, modes, contents), and a marker beside the assembled folder records the hash of
//! the last successful build. A changed hash re-assembles from scratch, since faas-cli's rule is to
//! delete and recreate the folder, and a build output (`target/`, `node_modules/`) lives inside it.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{symlink, DirBuilderExt, MetadataExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// Every failure names what it is about (the file, or `function <name>`) and the reason in one
/// line; only a failed `local_build` adds the tail of its output on the following lines.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    /// The stack file as a whole is malformed, or not an OpenFaaS one.
    #[error("{}: {reason}", path.display())]
    Stack { path: PathBuf, reason: String },
    /// A template folder (`template/<lang>/`) is malformed.
    #[error("template {}: {reason}", path.display())]
    Template { path: PathBuf, reason: String },
    #[error("function {name}: {reason}")]
    Function { name: String, reason: String },
    #[error("local_build `{command}` failed: {status}{}", tail_suffix(.tail))]
    LocalBuild { command: String, status: String, tail: String },
}

fn tail_suffix(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; last output:\n{tail}")
    }
}

impl StackError {
    /// The same error attributed to a function (`function <name>: <reason>`).
    fn for_function(self, name: &str) -> StackError {
        match self {
            e @ StackError::Function { .. } => e,
            e => StackError::Function { name: name.to_string(), reason: e.to_string() },
        }
    }
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StackError + 'a {
    move |source| StackError::Io { action, path: path.to_path_buf(), source }
}

// ------------------------------------------------------------------------------------------------
// Stack file

/// A parsed stack file. Maps are ordered by name, so `gateway up` treats functions in a stable order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stack {
    pub version: Option<String>,
    pub provider: Provider,
    pub functions: BTreeMap<String, Function>,
    pub configuration: Configuration,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provider {
    /// Always `openfaas` once loaded.
    pub name: String,
    pub gateway: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Configuration {
    /// Sources for `faas-cli template pull stack`; informational here.
    pub templates: Vec<TemplateSource>,
    /// Project-relative paths added to every build context (under the handler folder).
    pub copy: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TemplateSource {
    pub name: String,
    #[serde(default)]
    pub source: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Resources {
    pub memory: Option<String>,
    pub cpu: Option<String>,
}

/// One function of the stack. Scalars the YAML wrote as numbers or booleans (`PORT: 8080`) are kept
/// as their text, as faas-cli (Go) does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Function {
    /// `Dockerfile` is normalised to `dockerfile`.
    pub lang: Option<String>,
    pub handler: Option<String>,
    pub image: Option<String>,
    pub fprocess: Option<String>,
    /// `environment` merged with the `environment_file` files (those win, later files over earlier).
    pub environment: BTreeMap<String, String>,
    /// As written (relative to the stack file's folder); already merged into `environment`.
    pub environment_file: Vec<String>,
    pub secrets: Vec<String>,
    pub skip_build: bool,
    pub constraints: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub limits: Option<Resources>,
    pub requests: Option<Resources>,
    pub readonly_root_filesystem: bool,
    pub build_options: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    pub build_secrets: BTreeMap<String, String>,
    pub namespace: Option<String>,
    /// faas-cli parses it (a comma-separated string) but does not use it; a YAML list is joined.
    pub platforms: Option<String>,
}

type RawMap = Option<BTreeMap<String, Option<String>>>;

// serde_yaml_ng hands a plain scalar's text to `String` fields, so `8080`, `true` and `1.0` arrive
// as written; `null` values become empty strings.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawStack {
    version: Option<String>,
    provider: Option<RawProvider>,
    functions: Option<BTreeMap<String, Option<RawFunction>>>,
    configuration: Option<RawConfiguration>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawProvider {
    name: Option<String>,
    gateway: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawConfiguration {
    templates: Option<Vec<TemplateSource>>,
    copy: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawFunction {
    lang: Option<String>,
    handler: Option<String>,
    image: Option<String>,
    fprocess: Option<String>,
    environment: RawMap,
    environment_file: Option<Vec<String>>,
    secrets: Option<Vec<String>>,
    skip_build: Option<bool>,
    constraints: Option<Vec<String>>,
    labels: RawMap,
    annotations: RawMap,
    limits: Option<Resources>,
    requests: Option<Resources>,
    readonly_root_filesystem: Option<bool>,
    build_options: Option<Vec<String>>,
    build_args: RawMap,
    build_secrets: RawMap,
    namespace: Option<String>,
    platforms: Option<serde_yaml_ng::Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawEnvFile {
    environment: RawMap,
}

fn flat(map: RawMap) -> BTreeMap<String, String> {
    map.unwrap_or_default().into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect()
}

fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The stack file in `dir` that `gateway up` uses without `-f`: `stack.yml`, then `stack.yaml`.
pub fn find_default(dir: &Path) -> Option<PathBuf> {
    ["stack.yml", "stack.yaml"].iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// The folder `template/`, handlers, `environment_file` and `configuration.copy` are relative to.
pub fn project_dir(stack_file: &Path) -> PathBuf {
    match stack_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Reads a stack file, substituting `${VAR}` (and `${VAR:-default}`) from `env` first.
pub fn load(path: &Path, env: &impl Fn(&str) -> Option<String>) -> Result<Stack, StackError> {
    let text = fs::read_to_string(path).map_err(io_err("read", path))?;
    let text = substitute(&text, env);
    let stack_err = |reason: String| StackError::Stack { path: path.to_path_buf(), reason };
    let raw: RawStack =
        if text.trim().is_empty() { RawStack::default() } else { serde_yaml_ng::from_str(&text).map_err(|e| stack_err(one_line(e)))? };
    if let Some(v) = &raw.version {
        if v.trim() != "1.0" {
            return Err(stack_err(format!("unsupported version {v:?}: only 1.0 is known")));
        }
    }
    let provider = raw.provider.unwrap_or_default();
    let provider_name = provider.name.unwrap_or_default();
    if provider_name != "openfaas" {
        return Err(stack_err(format!("provider.name must be openfaas, found {provider_name:?} (faas-cli refuses other providers)")));
    }
    let dir = project_dir(path);
    let mut functions = BTreeMap::new();
    for (name, f) in raw.functions.unwrap_or_default() {
        check_name(&name).map_err(|reason| StackError::Function { name: name.clone(), reason })?;
        let f = function(&dir, &name, f.unwrap_or_default())?;
        functions.insert(name, f);
    }
    let configuration = raw.configuration.unwrap_or_default();
    Ok(Stack {
        version: raw.version,
        provider: Provider { name: provider_name, gateway: provider.gateway },
        functions,
        configuration: Configuration {
            templates: configuration.templates.unwrap_or_default(),
            copy: configuration.copy.unwrap_or_default(),
        },
    })
}

fn function(dir: &Path, name: &str, raw: RawFunction) -> Result<Function, StackError> {
    let mut environment = flat(raw.environment);
    let environment_file = raw.environment_file.unwrap_or_default();
    for file in &environment_file {
        let path = dir.join(file);
        let fail = |reason: String| StackError::Function { name: name.to_string(), reason: format!("environment_file {file}: {reason}") };
        let text = fs::read_to_string(&path).map_err(|e| fail(one_line(e)))?;
        let parsed: RawEnvFile =
            if text.trim().is_empty() { RawEnvFile::default() } else { serde_yaml_ng::from_str(&text).map_err(|e| fail(one_line(e)))? };
        environment.extend(flat(parsed.environment));
    }
    let platforms = match raw.platforms {
        None | Some(serde_yaml_ng::Value::Null) => None,
        Some(serde_yaml_ng::Value::Sequence(items)) => Some(items.iter().filter_map(scalar_text).collect::<Vec<_>>().join(",")),
        Some(v) => scalar_text(&v),
    };
    Ok(Function {
        lang: raw.lang.map(|l| if l == "Dockerfile" { "dockerfile".to_string() } else { l }),
        handler: raw.handler,
        image: raw.image,
        fprocess: raw.fprocess,
        environment,
        environment_file,
        secrets: raw.secrets.unwrap_or_default(),
        skip_build: raw.skip_build.unwrap_or(false),
        constraints: raw.constraints.unwrap_or_default(),
        labels: flat(raw.labels),
        annotations: flat(raw.annotations),
        limits: raw.limits,
        requests: raw.requests,
        readonly_root_filesystem: raw.readonly_root_filesystem.unwrap_or(false),
        build_options: raw.build_options.unwrap_or_default(),
        build_args: flat(raw.build_args),
        build_secrets: flat(raw.build_secrets),
        namespace: raw.namespace,
        platforms,
    })
}

fn scalar_text(v: &serde_yaml_ng::Value) -> Option<String> {
    match v {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Function names become DNS labels (Kubernetes services, our routes): DNS-1123, at most 63.
fn check_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let inner_ok = b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    let ends_ok = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if b.is_empty() || b.len() > 63 || !inner_ok || !ends_ok(b.first()) || !ends_ok(b.last()) {
        return Err("invalid name: must be a DNS-1123 label (lower-case letters, digits and '-', \
                    starting and ending with a letter or digit, at most 63 characters)"
            .to_string());
    }
    Ok(())
}

/// `${NAME}` → the variable's value (empty when unset); `${NAME:-default}` → the default when unset
/// or empty. A bare `$NAME` is left alone, so shell commands in `fprocess` keep their variables.
pub fn substitute(text: &str, env: &impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[at..]);
            return out;
        };
        let inner = &after[..close];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if is_var_name(name) {
            let value = env(name).unwrap_or_default();
            match default {
                Some(d) if value.is_empty() => out.push_str(d),
                _ => out.push_str(&value),
            }
            rest = &after[close + 1..];
        } else {
            out.push_str("${");
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

// ------------------------------------------------------------------------------------------------
// Templates

/// `template/<lang>/template.yml` plus the final stage's `ENV` values of its Dockerfile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template {
    pub language: String,
    pub fprocess: Option<String>,
    pub welcome_message: Option<String>,
    /// Where the handler goes inside the build context; default `function`.
    pub handler_folder: String,
    /// Ours (templates.md §8): run once in the assembled folder before replicas start.
    pub local_build: Option<String>,
    /// Ours (templates.md §8): the command to run on the host when it differs from `fprocess`.
    pub local_fprocess: Option<String>,
    /// Final-stage `ENV name=value` pairs in Dockerfile order (a repeated name keeps its first place).
    pub env: Vec<(String, String)>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawTemplate {
    language: Option<String>,
    fprocess: Option<String>,
    welcome_message: Option<String>,
    handler_folder: Option<String>,
    local_build: Option<String>,
    local_fprocess: Option<String>,
}

/// Reads a template folder. The Dockerfile is optional (the `dockerfile` template has none at its
/// root). `${PATH}`-style references in `ENV` values to names the Dockerfile does not define are
/// filled from the gateway's `PATH`, `HOME`, `LANG` and `TZ` (what a local replica inherits), so
/// `ENV PATH="/x:${PATH}"` still finds the host's programs; other unknown names are empty.
pub fn load_template(dir: &Path) -> Result<Template, StackError> {
    let yml = dir.join("template.yml");
    let fail = |reason: String| StackError::Template { path: dir.to_path_buf(), reason };
    let text = fs::read_to_string(&yml).map_err(|e| fail(format!("template.yml: {}", one_line(e))))?;
    let raw: RawTemplate = if text.trim().is_empty() {
        RawTemplate::default()
    } else {
        serde_yaml_ng::from_str(&text).map_err(|e| fail(format!("template.yml: {}", one_line(e))))?
    };
    let handler_folder = raw.handler_folder.filter(|h| !h.trim().is_empty()).unwrap_or_else(|| "function".to_string());
    if !is_plain_relative(Path::new(&handler_folder)) {
        return Err(fail(format!("handler_folder {handler_folder:?} must be a relative path inside the build context")));
    }
    let dockerfile = dir.join("Dockerfile");
    let env = match fs::read_to_string(&dockerfile) {
        Ok(text) => {
            let host = |k: &str| match k {
                "PATH" | "HOME" | "LANG" | "TZ" => std::env::var(k).ok(),
                _ => None,
            };
            final_stage_env(&text, &host)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(StackError::Io { action: "read", path: dockerfile, source: e }),
    };
    let non_empty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    let language = non_empty(raw.language).unwrap_or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    Ok(Template {
        language,
        fprocess: non_empty(raw.fprocess),
        welcome_message: raw.welcome_message,
        handler_folder,
        local_build: non_empty(raw.local_build),
        local_fprocess: non_empty(raw.local_fprocess),
        env,
    })
}

/// A relative path that names something below its base (`a/b`, `./a`; not `.`, `..` or `/a`).
fn is_plain_relative(p: &Path) -> bool {
    p.components().any(|c| matches!(c, Component::Normal(_)))
        && p.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// The `ENV` values of a Dockerfile's final stage (after its last `FROM`, plus what that stage
/// inherits when it is built `FROM` an earlier stage), in order. Accepts `ENV name="value"`,
/// `ENV name=value` (several pairs per line too) and the legacy `ENV name value`. Quotes and
/// `$name`/`${name}`/`${name:-word}`/`${name:+word}` are processed as Docker does, from earlier
/// `ENV` and `ARG` values; `outer` answers names the Dockerfile does not define.
pub fn final_stage_env(dockerfile: &str, outer: &dyn Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    let mut global_args: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut stage_name: Option<String> = None;
    let mut in_stage = false;
    let mut args: BTreeMap<String, String> = BTreeMap::new();
    let mut env: Vec<(String, String)> = Vec::new();
    for line in logical_lines(dockerfile) {
        let line = line.trim_start();
        let (instr, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let lookup = |k: &str| -> Option<String> {
            env.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.clone()).or_else(|| args.get(k).cloned()).or_else(|| outer(k))
        };
        match instr.to_ascii_uppercase().as_str() {
            "FROM" => {
                if let Some(name) = stage_name.take() {
                    stages.insert(name, std::mem::take(&mut env));
                }
                let words: Vec<String> =
                    lex(rest, &|k| global_args.get(k).cloned(), true).into_iter().filter(|w| !w.starts_with("--")).collect();
                let base = words.first().map(|w| w.to_ascii_lowercase()).unwrap_or_default();
                stage_name = match words.get(1..3) {
                    Some([as_kw, name]) if as_kw.eq_ignore_ascii_case("as") => Some(name.to_ascii_lowercase()),
                    _ => None,
                };
                env = stages.get(&base).cloned().unwrap_or_default();
                args.clear();
                in_stage = true;
            }
            "ARG" => {
                let words = lex(rest, &lookup, true);
                for w in words {
                    let (k, v) = match w.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (w.clone(), None),
                    };
                    if !in_stage {
                        if let Some(v) = v {
                            global_args.insert(k, v);
                        }
                    } else if let Some(v) = v.or_else(|| global_args.get(&k).cloned()) {
                        args.insert(k, v);
                    }
                }
            }
            "ENV" if in_stage => {
                let rest = rest.trim();
                let first = rest.split(char::is_whitespace).next().unwrap_or("");
                let pairs: Vec<(String, String)> = if first.contains('=') {
                    lex(rest, &lookup, true)
                        .into_iter()
                        .filter_map(|w| w.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
                        .collect()
                } else if !first.is_empty() {
                    // Legacy `ENV name value with spaces`: the rest of the line is one value.
                    let value = rest[first.len()..].trim();
                    vec![(first.to_string(), lex(value, &lookup, false).concat())]
                } else {
                    Vec::new()
                };
                for (k, v) in pairs {
                    set_var(&mut env, k, v);
                }
            }
            _ => {}
        }
    }
    env
}

fn set_var(vars: &mut Vec<(String, String)>, k: String, v: String) {
    match vars.iter_mut().find(|(n, _)| *n == k) {
        Some(slot) => slot.1 = v,
        None => vars.push((k, v)),
    }
}

/// Dockerfile instructions with `\`-newline continuations joined; comment and blank lines dropped
/// (also inside a continuation, as Docker does).
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for raw in text.lines() {
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let end = raw.trim_end();
        match end.strip_suffix('\\') {
            Some(head) => cur.push_str(head),
            None => {
                cur.push_str(end);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// Docker's word rules for `ENV`/`ARG`: `'…'` literal, `"…"` with `\"`, `\\`, `\$` escapes and
/// expansion, a backslash outside quotes escapes the next character. With `split` false the input
/// is one word and its whitespace is kept.
fn lex(s: &str, lookup: &dyn Fn(&str) -> Option<String>, split: bool) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut i = 0;
    while i < n {
        let c = chars[i];
        if split && c.is_whitespace() {
            if in_word {
                words.push(std::mem::take(&mut cur));
                in_word = false;
            }
            i += 1;
            continue;
        }
        in_word = true;
        match c {
            '\'' => {
                i += 1;
                while i < n && chars[i] != '\'' {
                    cur.push(chars[i]);
                    i += 1;
                }
                i += 1;
            }
            '"' => {
                i += 1;
                while i < n && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < n && matches!(chars[i + 1], '"' | '\\' | '$' | '`') {
                        cur.push(chars[i + 1]);
                        i += 2;
                    } else if chars[i] == '$' {
                        i = expand(&chars, i, lookup, &mut cur);
                    } else {
                        cur.push(chars[i]);
                        i += 1;
                    }
                }
                i += 1;
            }
            '\\' => {
                if i + 1 < n {
                    cur.push(chars[i + 1]);
                }
                i += 2;
            }
            '$' => i = expand(&chars, i, lookup, &mut cur),
            _ => {
                cur.push(c);
                i += 1;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Expands the reference starting at `chars[i] == '$'`; returns the index after it. Anything that
/// is not a reference is kept literally.
fn expand(chars: &[char], i: usize, lookup: &dyn Fn(&str) -> Option<String>, out: &mut String) -> usize {
    let n = chars.len();
    if i + 1 < n && chars[i + 1] == '{' {
        if let Some(close) = chars[i + 2..].iter().position(|&c| c == '}') {
            let inner: String = chars[i + 2..i + 2 + close].iter().collect();
            let (name, op, word) = if let Some((n, w)) = inner.split_once(":-") {
                (n.to_string(), "-", w.to_string())
            } else if let Some((n, w)) = inner.split_once(":+") {
                (n.to_string(), "+", w.to_string())
            } else {
                (inner.clone(), "", String::new())
            };
            if is_var_name(&name) {
                let value = lookup(&name).unwrap_or_default();
                match op {
                    "-" if value.is_empty() => out.push_str(&word),
                    "+" if !value.is_empty() => out.push_str(&word),
                    "+" => {}
                    _ => out.push_str(&value),
                }
                return i + 3 + close;
            }
        }
        out.push('$');
        return i + 1;
    }
    let len = chars[i + 1..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == '_').count();
    if len == 0 || chars[i + 1].is_ascii_digit() {
        out.push('$');
        return i + 1;
    }
    let name: String = chars[i + 1..i + 1 + len].iter().collect();
    out.push_str(&lookup(&name).unwrap_or_default());
    i + 1 + len
}

// ------------------------------------------------------------------------------------------------
// Build contexts

/// An assembled build context, ready for replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembled {
    /// The build context; replicas run with it as their working folder.
    pub dir: PathBuf,
    /// The command the watchdog runs: the stack's `fprocess`, else the template's `local_fprocess`,
    /// else its `fprocess`. Not repeated in `env`.
    pub fprocess: String,
    /// Final-stage `ENV` values (without `fprocess`/`function_process`), then the function's
    /// environment (the stack wins).
    pub env: Vec<(String, String)>,
    pub local_build: Option<String>,
    /// FNV-1a of the template folder, the handler folder and the copied paths (names, modes,
    /// contents, symlink targets), the handler folder name and the `local_build` command.
    pub hash: u64,
    pub template: Template,
    /// False when [`prepare`] found the previous build unchanged and reused it.
    pub rebuilt: bool,
}

const DOCKERFILE_REASON: &str = "lang dockerfile needs a container runtime; deploy its image to a provider instead";

/// Everything about a function's build context except the copying itself.
struct Plan {
    template_dir: PathBuf,
    handler_dir: PathBuf,
    template: Template,
    /// (source, destination relative to the handler folder).
    copies: Vec<(PathBuf, PathBuf)>,
    fprocess: String,
    env: Vec<(String, String)>,
    hash: u64,
}

impl Plan {
    fn into_assembled(self, out_dir: &Path, rebuilt: bool) -> Assembled {
        Assembled {
            dir: out_dir.to_path_buf(),
            fprocess: self.fprocess,
            env: self.env,
            local_build: self.template.local_build.clone(),
            hash: self.hash,
            template: self.template,
            rebuilt,
        }
    }
}

fn plan(stack_dir: &Path, name: &str, f: &Function, stack: &Stack, out_dir: &Path) -> Result<Plan, StackError> {
    let err = |reason: String| StackError::Function { name: name.to_string(), reason };
    let lang = f.lang.as_deref().map(str::trim).filter(|l| !l.is_empty()).ok_or_else(|| {
        err("no lang: gateway up runs functions built from a template (deploy image-only functions to the gateway)".into())
    })?;
    if lang == "dockerfile" {
        return Err(err(DOCKERFILE_REASON.into()));
    }
    let template_dir = stack_dir.join("template").join(lang);
    if !is_plain_relative(Path::new(lang)) || lang.contains('/') || !template_dir.is_dir() {
        return Err(err(format!(
            "language template: {lang} not supported: no folder {} (run faas-cli template pull, or copy the template there)",
            template_dir.display()
        )));
    }
    let handler = f.handler.as_deref().filter(|h| !h.trim().is_empty()).ok_or_else(|| err("no handler folder".into()))?;
    let handler_dir = stack_dir.join(handler);
    if !handler_dir.is_dir() {
        return Err(err(format!("handler folder {} not found", handler_dir.display())));
    }
    let template = load_template(&template_dir).map_err(|e| e.for_function(name))?;
    let mut copies = Vec::new();
    for p in &stack.configuration.copy {
        copies.push(resolve_copy(stack_dir, p).map_err(err)?);
    }
    refuse_overlap(out_dir, &[stack_dir, &template_dir, &handler_dir]).map_err(err)?;

    let fprocess = [f.fprocess.as_ref(), template.local_fprocess.as_ref(), template.fprocess.as_ref()]
        .into_iter()
        .flatten()
        .find(|p| !p.trim().is_empty())
        .cloned()
        .ok_or_else(|| err(format!("no fprocess: set one in the stack file or in {}", template_dir.join("template.yml").display())))?;
    let mut env: Vec<(String, String)> = template.env.iter().filter(|(k, _)| k != "fprocess" && k != "function_process").cloned().collect();
    for (k, v) in &f.environment {
        set_var(&mut env, k.clone(), v.clone());
    }

    let exclude = exclusions(out_dir);
    let mut h = Fnv::new();
    h.field(b"v1");
    h.field(template.handler_folder.as_bytes());
    h.field(template.local_build.as_deref().unwrap_or("").as_bytes());
    h.field(b"template");
    hash_tree(&mut h, &template_dir, &[], &exclude).map_err(|e| e.for_function(name))?;
    h.field(b"handler");
    hash_tree(&mut h, &handler_dir, &["build", "template"], &exclude).map_err(|e| e.for_function(name))?;
    for (src, rel) in &copies {
        h.field(b"copy");
        h.field(rel.as_os_str().as_encoded_bytes());
        let md = fs::symlink_metadata(src).map_err(io_err("read", src)).map_err(|e| e.for_function(name))?;
        hash_entry(&mut h, Path::new(""), src, &md).map_err(|e| e.for_function(name))?;
        if md.is_dir() {
            hash_tree(&mut h, src, &[], &exclude).map_err(|e| e.for_function(name))?;
        }
    }
    Ok(Plan { template_dir, handler_dir, template, copies, fprocess, env, hash: h.0 })
}

/// A `configuration.copy` entry: it must name something inside the project (checked both by its
/// spelling and after resolving symlinks). Returns the resolved source and its path under the handler
/// folder.
fn resolve_copy(stack_dir: &Path, p: &str) -> Result<(PathBuf, PathBuf), String> {
    let outside = || format!("configuration.copy {p}: outside the project folder {}", stack_dir.display());
    let path = Path::new(p);
    let mut rel = PathBuf::new();
    if !path.is_absolute() {
        for c in path.components() {
            match c {
                Component::Normal(n) => rel.push(n),
                Component::CurDir => {}
                Component::ParentDir => {
                    if !rel.pop() {
                        return Err(outside());
                    }
                }
                Component::RootDir | Component::Prefix(_) => return Err(outside()),
            }
        }
    }
    let src = stack_dir.join(path);
    let root = fs::canonicalize(stack_dir).map_err(|e| format!("project folder {}: {}", stack_dir.display(), one_line(e)))?;
    let real = fs::canonicalize(&src).map_err(|e| format!("configuration.copy {p}: {}", one_line(e)))?;
    let Ok(inside) = real.strip_prefix(&root) else {
        return Err(outside());
    };
    if path.is_absolute() {
        rel = inside.to_path_buf();
    }
    if rel.as_os_str().is_empty() {
        return Err(format!("configuration.copy {p}: names the project folder itself; list the files or folders to copy"));
    }
    // The resolved path, so a listed symlink brings what it points to.
    Ok((real, rel))
}

/// The build folder is deleted and recreated: refuse when that would delete the project.
fn refuse_overlap(out_dir: &Path, keep: &[&Path]) -> Result<(), String> {
    let Ok(out) = fs::canonicalize(out_dir) else { return Ok(()) };
    for k in keep {
        if let Ok(k) = fs::canonicalize(k) {
            if k.starts_with(&out) {
                return Err(format!("build folder {} holds {}; refusing to delete it", out_dir.display(), k.display()));
            }
        }
    }
    Ok(())
}

/// Entries never copied nor hashed: the build folder, its marker and every folder leading to
/// them, in case a handler folder contains the gateway's state folder (`handler: .` with the
/// default `./gateway-state`): its builds, secrets and queue are no part of any function.
fn exclusions(out_dir: &Path) -> Vec<(u64, u64)> {
    let marker = marker_path(out_dir);
    std::iter::once(marker.as_path())
        .chain(out_dir.ancestors())
        .filter(|p| !p.as_os_str().is_empty())
        .filter_map(|p| fs::metadata(p).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect()
}

/// Assembles `out_dir` as templates.md §4 steps 1-5 describe (always from scratch) and returns
/// what a replica needs. Does not run `local_build` (see [`prepare`]).
pub fn assemble(stack_dir: &Path, fn_name: &str, f: &Function, stack: &Stack, out_dir: &Path) -> Result<Assembled, StackError> {
    let plan = plan(stack_dir, fn_name, f, stack, out_dir)?;
    write_tree(&plan, out_dir).map_err(|e| e.for_function(fn_name))?;
    Ok(plan.into_assembled(out_dir, true))
}

/// What `gateway up` calls per function: when the sources hash to the last successful build's
/// hash, reuse `out_dir` as it is (its `local_build` output included); otherwise re-assemble, run
/// `local_build` (output streamed to stderr) and record the hash.
pub fn prepare(stack_dir: &Path, fn_name: &str, f: &Function, stack: &Stack, out_dir: &Path) -> Result<Assembled, StackError> {
    let plan = plan(stack_dir, fn_name, f, stack, out_dir)?;
    if !needs_build(out_dir, plan.hash) {
        return Ok(plan.into_assembled(out_dir, false));
    }
    write_tree(&plan, out_dir).map_err(|e| e.for_function(fn_name))?;
    if let Some(cmd) = &plan.template.local_build {
        run_local_build(out_dir, cmd).map_err(|e| e.for_function(fn_name))?;
    }
    mark_built(out_dir, plan.hash).map_err(|e| e.for_function(fn_name))?;
    Ok(plan.into_assembled(out_dir, true))
}

fn write_tree(plan: &Plan, out_dir: &Path) -> Result<(), StackError> {
    // The marker goes first: from here on out_dir no longer holds the recorded build.
    remove_any(&marker_path(out_dir))?;
    remove_any(out_dir)?;
    make_dirs(out_dir)?;
    let exclude = exclusions(out_dir);
    copy_tree(&plan.template_dir, out_dir, &[], &exclude)?;
    let hf = out_dir.join(&plan.template.handler_folder);
    if fs::symlink_metadata(&hf).is_ok_and(|m| !m.is_dir()) {
        remove_any(&hf)?;
    }
    make_dirs(&hf)?;
    copy_tree(&plan.handler_dir, &hf, &["build", "template"], &exclude)?;
    for (src, rel) in &plan.copies {
        let dst = hf.join(rel);
        if let Some(parent) = dst.parent() {
            make_dirs(parent)?;
        }
        let md = fs::symlink_metadata(src).map_err(io_err("read", src))?;
        place(src, &dst, &md)?;
        if md.is_dir() {
            copy_tree(src, &dst, &[], &exclude)?;
        }
    }
    Ok(())
}

fn remove_any(path: &Path) -> Result<(), StackError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StackError::Io { action: "inspect", path: path.to_path_buf(), source: e }),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(io_err("remove", path)),
        Ok(_) => fs::remove_file(path).map_err(io_err("remove", path)),
    }
}

/// Folders of a build context are private (0700), as faas-cli makes them.
fn make_dirs(path: &Path) -> Result<(), StackError> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(io_err("create", path))
}

/// Visits `root`'s entries depth-first in name order, each folder before its contents, skipping
/// top-level names in `skip_top` and anything in `exclude` (device, inode).
fn walk(
    root: &Path,
    skip_top: &[&str],
    exclude: &[(u64, u64)],
    visit: &mut dyn FnMut(&Path, &Path, &fs::Metadata) -> Result<(), StackError>,
) -> Result<(), StackError> {
    fn rec(
        dir: &Path,
        rel: &Path,
        skip: &[&str],
        exclude: &[(u64, u64)],
        visit: &mut dyn FnMut(&Path, &Path, &fs::Metadata) -> Result<(), StackError>,
    ) -> Result<(), StackError> {
        let mut entries = fs::read_dir(dir).and_then(|rd| rd.collect::<io::Result<Vec<_>>>()).map_err(io_err("read", dir))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            if skip.iter().any(|s| name == **s) {
                continue;
            }
            let path = e.path();
            let md = fs::symlink_metadata(&path).map_err(io_err("inspect", &path))?;
            if exclude.contains(&(md.dev(), md.ino())) {
                continue;
            }
            let rel = rel.join(&name);
            visit(&rel, &path, &md)?;
            if md.is_dir() {
                rec(&path, &rel, &[], exclude, visit)?;
            }
        }
        Ok(())
    }
    rec(root, Path::new(""), skip_top, exclude, visit)
}

/// Copies `src`'s contents into `dst` (which exists), replacing same-named entries.
fn copy_tree(src: &Path, dst: &Path, skip_top: &[&str], exclude: &[(u64, u64)]) -> Result<(), StackError> {
    walk(src, skip_top, exclude, &mut |rel, path, md| place(path, &dst.join(rel), md))
}

/// Puts one entry at `dst`: a folder (0700; kept when one exists), a file (mode bits kept, as
/// `fs::copy` copies permissions) or a symlink (same target, relative targets stay relative).
/// Sockets, FIFOs and devices are skipped.
fn place(src: &Path, dst: &Path, md: &fs::Metadata) -> Result<(), StackError> {
    let existing = fs::symlink_metadata(dst).ok();
    let ft = md.file_type();
    if ft.is_dir() {
        match existing {
            Some(e) if e.is_dir() => Ok(()),
            Some(_) => {
                remove_any(dst)?;
                make_dirs(dst)
            }
            None => make_dirs(dst),
        }
    } else if ft.is_file() || ft.is_symlink() {
        if existing.is_some() {
            remove_any(dst)?;
        }
        if ft.is_symlink() {
            let target = fs::read_link(src).map_err(io_err("read", src))?;
            symlink(&target, dst).map_err(io_err("create", dst))
        } else {
            fs::copy(src, dst).map(|_| ()).map_err(io_err("copy", src))
        }
    } else {
        Ok(())
    }
}

/// 64-bit FNV-1a: stable across Rust versions, unlike `DefaultHasher`, since hashes are stored.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(&mut self, data: &[u8]) {
        for b in data {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    /// Length-prefixed, so adjacent fields cannot run into each other.
    fn field(&mut self, data: &[u8]) {
        self.bytes(&(data.len() as u64).to_le_bytes());
        self.bytes(data);
    }
}

fn hash_tree(h: &mut Fnv, root: &Path, skip_top: &[&str], exclude: &[(u64, u64)]) -> Result<(), StackError> {
    walk(root, skip_top, exclude, &mut |rel, path, md| hash_entry(h, rel, path, md))
}

fn hash_entry(h: &mut Fnv, rel: &Path, path: &Path, md: &fs::Metadata) -> Result<(), StackError> {
    let ft = md.file_type();
    if ft.is_dir() {
        h.field(b"d");
        h.field(rel.as_os_str().as_encoded_bytes());
    } else if ft.is_symlink() {
        h.field(b"l");
        h.field(rel.as_os_str().as_encoded_bytes());
        h.field(fs::read_link(path).map_err(io_err("read", path))?.as_os_str().as_encoded_bytes());
    } else if ft.is_file() {
        h.field(b"f");
        h.field(rel.as_os_str().as_encoded_bytes());
        h.bytes(&(md.mode() & 0o7777).to_le_bytes());
        let mut file = fs::File::open(path).map_err(io_err("read", path))?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = file.read(&mut buf).map_err(io_err("read", path))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            h.bytes(&buf[..n]);
        }
        h.bytes(&total.to_le_bytes());
    }
    Ok(())
}

/// Where the hash of `out_dir`'s last successful build is recorded: beside it, since assembling
/// deletes the folder itself.
pub fn marker_path(out_dir: &Path) -> PathBuf {
    let mut s = out_dir.components().collect::<PathBuf>().into_os_string();
    s.push(".built");
    PathBuf::from(s)
}

/// True unless `out_dir` exists and its last successful build had this hash.
pub fn needs_build(out_dir: &Path, hash: u64) -> bool {
    let recorded = fs::read_to_string(marker_path(out_dir)).ok();
    !(out_dir.is_dir() && recorded.as_deref().map(str::trim) == Some(format!("{hash:016x}").as_str()))
}

/// Records that `out_dir` holds a complete build of `hash`.
pub fn mark_built(out_dir: &Path, hash: u64) -> Result<(), StackError> {
    let path = marker_path(out_dir);
    fs::write(&path, format!("{hash:016x}\n")).map_err(io_err("write", &path))
}

/// Lines of a failed `local_build` shown in its error.
const TAIL_LINES: usize = 20;
/// Longest line kept in that tail.
const TAIL_LINE_MAX: usize = 1000;

/// Runs `sh -c cmd` in `dir` (stdin empty, the gateway's environment), relaying its stdout and
/// stderr line by line to the gateway's stderr. A non-zero exit is an error carrying the last
/// lines of output.
pub fn run_local_build(dir: &Path, cmd: &str) -> Result<(), StackError> {
    let failed = |status: String, tail: String| StackError::LocalBuild { command: cmd.to_string(), status, tail };
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot start sh in {}: {}", dir.display(), one_line(e)), String::new()))?;
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let (done_tx, done_rx) = mpsc::channel();
    let streams: Vec<Box<dyn Read + Send>> = [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect();
    let readers = streams.len();
    for stream in streams {
        let tail = Arc::clone(&tail);
        let done = done_tx.clone();
        std::thread::spawn(move || {
            relay(stream, &tail);
            let _ = done.send(());
        });
    }
    let status = child.wait().map_err(|e| failed(format!("cannot wait for sh: {}", one_line(e)), String::new()))?;
    // Readers end at EOF; a daemon the build started may keep the pipes open, so wait only briefly.
    let deadline = Instant::now() + Duration::from_secs(2);
    for _ in 0..readers {
        if done_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_err() {
            break;
        }
    }
    if status.success() {
        return Ok(());
    }
    let tail = tail.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect::<Vec<String>>().join("\n");
    Err(failed(describe(status), tail))
}

fn relay(stream: Box<dyn Read + Send>, tail: &Mutex<VecDeque<String>>) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        {
            let mut err = io::stderr().lock();
            let _ = err.write_all(&line);
            if !line.ends_with(b"\n") {
                let _ = err.write_all(b"\n");
            }
        }
        let mut text = String::from_utf8_lossy(&line).trim_end().to_string();
        if text.len() > TAIL_LINE_MAX {
            let mut cut = TAIL_LINE_MAX;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
        if t.len() == TAIL_LINES {
            t.pop_front();
        }
        t.push_back(text);
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A private folder under the system temp folder, removed on drop.
    struct Tmp(PathBuf);
    impl Tmp {
        fn new() -> Tmp {
            let p = std::env::temp_dir().join(format!("gateway-stack-test-{}", uuid::Uuid::new_v4()));
            fs::create_dir_all(&p).unwrap();
            Tmp(p)
        }
        fn path(&self, rel: &str) -> PathBuf {
            self.0.join(rel)
        }
        fn write(&self, rel: &str, text: &str) -> PathBuf {
            let p = self.0.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, text).unwrap();
            p
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn chmod(p: &Path, m: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
    }

    const HEADER: &str = "version: 1.0\nprovider:\n  name: openfaas\n  gateway: http://127.0.0.1:8080\n";

    fn load_text(t: &Tmp, body: &str) -> Result<Stack, StackError> {
        let p = t.write("stack.yml", body);
        load(&p, &no_env)
    }

    #[test]
    fn substitution_forms() {
        let env = |k: &str| match k {
            "TAG" => Some("1.2".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(substitute("img:${TAG}", &env), "img:1.2");
        assert_eq!(substitute("a${MISSING}b", &env), "ab");
        assert_eq!(substitute("${MISSING:-def} ${EMPTY:-d2} ${TAG:-x}", &env), "def d2 1.2");
        assert_eq!(substitute("sh -c 'echo $TAG' ${1} ${", &env), "sh -c 'echo $TAG' ${1} ${");
    }

    #[test]
    fn load_substitutes_before_parsing() {
        let t = Tmp::new();
        let p = t.write(
            "stack.yml",
            &format!("{HEADER}functions:\n  hello:\n    lang: bash-streaming\n    handler: ./hello\n    image: ${{REGISTRY:-docker.io}}/hello:${{TAG}}\n"),
        );
        let env = |k: &str| (k == "TAG").then(|| "0.3.1".to_string());
        let s = load(&p, &env).unwrap();
        assert_eq!(s.functions["hello"].image.as_deref(), Some("docker.io/hello:0.3.1"));
        assert_eq!(s.provider.gateway.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(s.version.as_deref(), Some("1.0"));
    }

    #[test]
    fn provider_must_be_openfaas() {
        let t = Tmp::new();
        let e = load_text(&t, "provider:\n  name: faas\nfunctions: {}\n").unwrap_err().to_string();
        assert!(e.contains("provider.name must be openfaas") && e.contains("\"faas\""), "{e}");
        assert!(!e.contains('\n'));
        let e = load_text(&t, "functions: {}\n").unwrap_err().to_string();
        assert!(e.contains("provider.name must be openfaas"), "{e}");
        let e = load_text(&t, "version: 2.0\nprovider: {name: openfaas}\n").unwrap_err().to_string();
        assert!(e.contains("unsupported version \"2.0\""), "{e}");
        assert!(load_text(&t, "provider: {name: openfaas}\n").unwrap().functions.is_empty());
    }

    #[test]
    fn function_fields_and_scalars() {
        let t = Tmp::new();
        let body = r#"functions:
  df:
    lang: Dockerfile
    handler: ./df
    image: df:latest
    unknown_key: [1, 2]
    secrets: [s1]
    skip_build: true
    readonly_root_filesystem: true
    limits: {memory: 128Mi, cpu: 0.5}
    requests: {memory: 64Mi}
    labels: {com.openfaas.scale.max: 5}
    annotations: {topic: x}
    constraints: ["node.platform.os == linux"]
    build_options: [dev]
    build_args: {ADDITIONAL_PACKAGE: jq}
    build_secrets: {npm: ./npmrc}
    namespace: openfaas-fn
    platforms: [linux/amd64, linux/arm64]
    environment:
      PORT: 8080
      DEBUG: true
      RATIO: 1.50
      EMPTY:
configuration:
  templates:
    - name: rust-http
      source: https://example.invalid/t
  copy: [./common]
extra_top_level: yes
"#;
        let s = load_text(&t, &format!("{HEADER}{body}")).unwrap();
        let f = &s.functions["df"];
        assert_eq!(f.lang.as_deref(), Some("dockerfile"));
        assert_eq!(f.environment["PORT"], "8080");
        assert_eq!(f.environment["DEBUG"], "true");
        assert_eq!(f.environment["RATIO"], "1.50");
        assert_eq!(f.environment["EMPTY"], "");
        assert_eq!(f.labels["com.openfaas.scale.max"], "5");
        assert_eq!(f.limits, Some(Resources { memory: Some("128Mi".into()), cpu: Some("0.5".into()) }));
        assert_eq!(f.requests.as_ref().unwrap().cpu, None);
        assert!(f.skip_build && f.readonly_root_filesystem);
        assert_eq!(f.secrets, ["s1"]);
        assert_eq!(f.build_args["ADDITIONAL_PACKAGE"], "jq");
        assert_eq!(f.build_secrets["npm"], "./npmrc");
        assert_eq!(f.platforms.as_deref(), Some("linux/amd64,linux/arm64"));
        assert_eq!(f.namespace.as_deref(), Some("openfaas-fn"));
        assert_eq!(s.configuration.copy, ["./common"]);
        assert_eq!(s.configuration.templates[0].name, "rust-http");
    }

    #[test]
    fn environment_file_wins_over_environment() {
        let t = Tmp::new();
        t.write("env/a.yml", "environment:\n  A: from-a\n  B: from-a\n  N: 7\n");
        t.write("env/b.yml", "environment:\n  B: from-b\n");
        let s = load_text(
            &t,
            &format!(
                "{HEADER}functions:\n  f:\n    environment: {{A: inline, C: inline}}\n    environment_file: [env/a.yml, ./env/b.yml]\n"
            ),
        )
        .unwrap();
        let env = &s.functions["f"].environment;
        assert_eq!((env["A"].as_str(), env["B"].as_str(), env["C"].as_str(), env["N"].as_str()), ("from-a", "from-b", "inline", "7"));
        let e = load_text(&t, &format!("{HEADER}functions:\n  f:\n    environment_file: [missing.yml]\n")).unwrap_err().to_string();
        assert!(e.starts_with("function f: environment_file missing.yml:"), "{e}");
    }

    #[test]
    fn function_names_are_dns_labels() {
        let t = Tmp::new();
        for bad in ["Fn_x", "-a", "a-", "a.b", &"a".repeat(64)] {
            let e = load_text(&t, &format!("{HEADER}functions:\n  {bad}:\n    image: x\n")).unwrap_err().to_string();
            assert!(e.starts_with(&format!("function {bad}: invalid name")), "{e}");
            assert!(!e.contains('\n'));
        }
        for good in ["a", "0", "hello-world-2", &"a".repeat(63)] {
            assert!(load_text(&t, &format!("{HEADER}functions:\n  {good}:\n    image: x\n")).is_ok(), "{good}");
        }
    }

    #[test]
    fn find_default_prefers_yml() {
        let t = Tmp::new();
        assert_eq!(find_default(&t.0), None);
        t.write("stack.yaml", "");
        assert_eq!(find_default(&t.0), Some(t.path("stack.yaml")));
        t.write("stack.yml", "");
        assert_eq!(find_default(&t.0), Some(t.path("stack.yml")));
        assert_eq!(project_dir(Path::new("stack.yml")), PathBuf::from("."));
        assert_eq!(project_dir(&t.path("stack.yml")), t.0);
    }

    #[test]
    fn env_of_final_stage_only() {
        let df = r#"
ARG WATCHDOG_IMAGE=example/fwatchdog:1
ARG GREETING=hi
FROM --platform=${TARGETPLATFORM} ${WATCHDOG_IMAGE} AS watchdog
ENV in_watchdog_stage=1

FROM --platform=${BUILDPLATFORM} rust AS base
ENV from_base="b"
# comment
FROM base AS ship
ARG GREETING
ARG LOCAL=there
env fprocess="./handler --flag"
ENV mode=http
ENV upstream_url="http://127.0.0.1:3000"  spaced='a b'
ENV legacy value with  spaces
ENV PATH="/home/app/bin:${PATH}"
ENV greeting="${GREETING} ${LOCAL}" escaped="\$x \"q\"" braces=${missing:-dflt}${mode:+set}
ENV multi=a \
    # comment inside
    other=b
ENV mode="streaming"
HEALTHCHECK --interval=3s CMD ["/usr/bin/fwatchdog", "-run-healthcheck"]
"#;
        let outer = |k: &str| (k == "PATH").then(|| "/usr/bin".to_string());
        let env = final_stage_env(df, &outer);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("in_watchdog_stage"), None);
        assert_eq!(get("from_base"), Some("b"));
        assert_eq!(get("fprocess"), Some("./handler --flag"));
        assert_eq!(get("mode"), Some("streaming"));
        assert_eq!(get("upstream_url"), Some("http://127.0.0.1:3000"));
        assert_eq!(get("spaced"), Some("a b"));
        assert_eq!(get("legacy"), Some("value with  spaces"));
        assert_eq!(get("PATH"), Some("/home/app/bin:/usr/bin"));
        assert_eq!(get("greeting"), Some("hi there"));
        assert_eq!(get("escaped"), Some("$x \"q\""));
        assert_eq!(get("braces"), Some("dfltset"));
        assert_eq!(get("multi"), Some("a"));
        assert_eq!(get("other"), Some("b"));
        // A repeated name keeps its first position.
        assert_eq!(env.iter().position(|(k, _)| k == "mode"), Some(2));
    }

    /// template/<lang>/ with a starter handler and an executable entry file.
    fn make_template(t: &Tmp, lang: &str, yml: &str) {
        t.write(&format!("template/{lang}/template.yml"), yml);
        t.write(
            &format!("template/{lang}/Dockerfile"),
            "ARG WATCHDOG_IMAGE=w\nFROM ${WATCHDOG_IMAGE} AS watchdog\nFROM base\nENV fprocess=\"sh ./entry.sh\"\nENV mode=\"streaming\"\nENV from_template=\"t\"\nENV shared=\"template\"\n",
        );
        let entry = t.write(&format!("template/{lang}/entry.sh"), "#!/bin/sh\nexec sh ./function/handler.sh\n");
        chmod(&entry, 0o755);
        t.write(&format!("template/{lang}/.dockerignore"), "build\n");
        t.write(&format!("template/{lang}/function/handler.sh"), "echo starter\n");
        t.write(&format!("template/{lang}/function/keep.txt"), "starter file\n");
        t.write(&format!("template/{lang}/function/sub/starter.txt"), "s\n");
    }

    fn stack_for(t: &Tmp, lang: &str, extra: &str) -> Stack {
        load_text(t, &format!("{HEADER}functions:\n  hello:\n    lang: {lang}\n    handler: ./hello\n{extra}")).unwrap()
    }

    #[test]
    fn load_template_defaults_and_env() {
        let t = Tmp::new();
        make_template(&t, "sh-t", "language: sh-t\nfprocess: sh ./entry.sh\nlocal_build: make\n");
        let tpl = load_template(&t.path("template/sh-t")).unwrap();
        assert_eq!(tpl.language, "sh-t");
        assert_eq!(tpl.handler_folder, "function");
        assert_eq!(tpl.local_build.as_deref(), Some("make"));
        assert_eq!(tpl.local_fprocess, None);
        assert_eq!(tpl.env[0], ("fprocess".to_string(), "sh ./entry.sh".to_string()));
        t.write("template/bad/template.yml", "handler_folder: ../out\n");
        let e = load_template(&t.path("template/bad")).unwrap_err().to_string();
        assert!(e.contains("handler_folder"), "{e}");
        let e = load_template(&t.path("template/none")).unwrap_err().to_string();
        assert!(e.contains("template.yml"), "{e}");
    }

    #[test]
    fn overlay_replaces_adds_keeps_and_skips() {
        let t = Tmp::new();
        make_template(&t, "sh-t", "language: sh-t\nfprocess: sh ./entry.sh\n");
        let h = t.write("hello/handler.sh", "echo mine\n");
        chmod(&h, 0o750);
        t.write("hello/new.txt", "new\n");
        t.write("hello/sub/deep/file.txt", "deep\n");
        t.write("hello/build/junk", "x\n");
        t.write("hello/template/junk", "x\n");
        t.write("hello/nested/build/kept", "only top-level build is skipped\n");
        symlink("new.txt", t.path("hello/link")).unwrap();
        let stack = stack_for(&t, "sh-t", "");
        let out = t.path("state/build/hello");
        t.write("state/build/hello/stale", "old\n");

        let a = assemble(&t.0, "hello", &stack.functions["hello"], &stack, &out).unwrap();
        assert_eq!(a.dir, out);
        let read = |rel: &str| fs::read_to_string(out.join(rel)).unwrap();
        assert_eq!(read("function/handler.sh"), "echo mine\n");
        assert_eq!(mode(&out.join("function/handler.sh")), 0o750);
        assert_eq!(read("function/keep.txt"), "starter file\n");
        assert_eq!(read("function/sub/starter.txt"), "s\n");
        assert_eq!(read("function/sub/deep/file.txt"), "deep\n");
        assert_eq!(read("function/new.txt"), "new\n");
        assert_eq!(read("function/nested/build/kept"), "only top-level build is skipped\n");
        assert_eq!(fs::read_link(out.join("function/link")).unwrap(), PathBuf::from("new.txt"));
        assert!(!out.join("function/build").exists() && !out.join("function/template").exists());
        assert_eq!(read("entry.sh"), "#!/bin/sh\nexec sh ./function/handler.sh\n");
        assert_eq!(mode(&out.join("entry.sh")), 0o755);
        assert!(out.join("Dockerfile").is_file() && out.join("template.yml").is_file() && out.join(".dockerignore").is_file());
        assert!(!out.join("stale").exists());
        assert_eq!(mode(&out), 0o700);
        assert_eq!(mode(&out.join("function/sub/deep")), 0o700);
    }

    #[test]
    fn handler_folder_from_template() {
        let t = Tmp::new();
        make_template(&t, "sh-t", "language: sh-t\nfprocess: sh ./entry.sh\nhandler_folder: src/handler\n");
        t.write("hello/handler.sh", "echo mine\n");
        let stack = stack_for(&t, "sh-t", "");
        let out = t.path("out/hello");
        assemble(&t.0, "hello", &stack.functions["hello"], &stack, &out).unwrap();
        assert_eq!(fs::read_to_string(out.join("src/handler/handler.sh")).unwrap(), "echo mine\n");
        // The template's own starter folder is copied as it is.
        assert_eq!(fs::read_to_string(out.join("function/handler.sh")).unwrap(), "echo starter\n");
    }

    #[test]
    fn dockerfile_missing_template_and_missing_handler() {
        let t = Tmp::new();
        t.write("hello/Dockerfile", "FROM scratch\n");
        let stack = stack_for(&t, "Dockerfile", "");
        let out = t.path("out/hello");
        let e = assemble(&t.0, "hello", &stack.functions["hello"], &stack, &out).unwrap_err().to_string();
        assert_eq!(e, "function hello: lang dockerfile needs a container runtime; deploy its image to a provider instead");
        assert!(!out.exists());

        let stack = stack_for(&t, "go", "");
        let e = assemble(&t.0, "hello", &stack.functions["hello"], &stack, &out).unwrap_err().to_string();
        assert!(e.starts_with("function hello: language template: go not supported"), "{e}");

        make_template(&t, "sh-t", "language: sh-t\nfprocess: sh ./entry.sh\n");
        let stack = load_text(&t, &format!("{HEADER}functions:\n  hello:\n    lang: sh-t\n    handler: ./nope\n")).unwrap();
        let e = assemble(&t.0, "hello", &stack.functions["hello"], &stack, &out).unwrap_err().to_string();
        assert!(e.starts_with("function hello: handler folder") && e.ends_with("not found"), "{e}");
    }

    #[test]
    fn configuration_copy_inside_and_outside() {
        let t = Tmp::new();
        make_template(&t, "sh-t", "language: sh-t\nfprocess: sh ./entry.sh\n");
        t.write("hello/handler.sh", "echo mine\n");
        t.write("common/lib.sh", "lib\n");
        t.write("shared.txt", "shared\n");
        let stack = stack_for(&t, "sh-t", "configuration:\n  copy: [./common, shared.txt]\n");
        let out = t.path("out/hello");
        assemble(&t.0, "hello", &stack.functions["hello"], &stack, &out).unwrap();
        assert_eq!(fs::read_to_string(out.join("function/common/lib.sh")).unwrap(), "lib\n");
        assert_eq!(fs::read_to_string(out.join("function/shared.txt")).unwrap(), "shared\n");

        let stack = stack_for(&t, "sh-t", "configuration:\n  copy: [../elsewhere]\n");
        let e = assemble(&t.0, "hello", &stack.functions["hello"], &stack, &out).unwrap_err().to_string();
        assert!(e.starts_with("function hello: configuration.copy ../elsewhere: outside the project"), "{e}");

        // Inside by its spelling, outside once the symlink is resolved.
        let other = Tmp::new();
        other.write("secret.txt", "no\n");
        symlink(other.path("secret.txt"), t.path("escape")).unwrap();
        let stack = stack_for(&t, "sh-t", "configuration:\n  copy: [escape]\n");
        let e = assemble(&t.0, "hello", &stack.functions["hello"], &stack, &out).unwrap_err().to_string();
        assert!(e.contains("configuration.copy escape: outside the project"), "{e}");
    }

    #[test]
    fn fprocess_and_env_precedence() {
        let t = Tmp::new();
        make_template(&t, "sh-t", "language: sh-t\nfprocess: sh ./entry.sh\n");
        make_template(&t, "local", "language: local\nfprocess: /home/app/entry\nlocal_fprocess: sh ./entry.sh\n");
        t.write("hello/handler.sh", "echo mine\n");
        let out = t.path("out/hello");

        let stack = stack_for(&t, "sh-t", "    environment: {shared: stack, extra: 1}\n");
        let a = assemble(&t.0, "hello", &stack.functions["hello"], &stack, &out).unwrap();
        assert_eq!(a.fprocess, "sh ./entry.sh");
        let want: Vec<(String, String)> = [("mode", "streaming"), ("from_template", "t"), ("shared", "stack"), ("extra", "1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(a.env, want);

        let stack = stack_for(&t, "local", "");
        let a = assemble(&t.0, "hello", &stack.functions["hello"], &stack, &out).unwrap();
        assert_eq!(a.fprocess, "sh ./entry.sh");

        let stack = stack_for(&t, "local", "    fprocess: cat\n");
        let a = assemble(&t.0, "hello", &stack.functions["hello"], &stack, &out).unwrap();
        assert_eq!(a.fprocess, "cat");
    }

    #[test]
    fn hash_follows_handler_content_and_modes() {
        let t = Tmp::new();
        make_template(&t, "sh-t", "language: sh-t\nfprocess: sh ./entry.sh\n");
        let h = t.write("hello/handler.sh", "echo one\n");
        let stack = stack_for(&t, "sh-t", "");
        let out = t.path("out/hello");
        let hash = || assemble(&t.0, "hello", &stack.functions["hello"], &stack, &out).unwrap().hash;
        let first = hash();
        assert_eq!(hash(), first, "assembling again changes nothing");
        fs::write(&h, "echo two\n").unwrap();
        let second = hash();
        assert_ne!(second, first);
        chmod(&h, 0o755);
        let third = hash();
        assert_ne!(third, second);
        t.write("hello/build/ignored", "skipped entries do not count\n");
        assert_eq!(hash(), third);
        t.write("template/sh-t/entry.sh", "changed\n");
        assert_ne!(hash(), third);
    }

    #[test]
    fn prepare_skips_unchanged_builds() {
        let t = Tmp::new();
        let count = t.path("count");
        make_template(
            &t,
            "built",
            &format!(
                "language: built\nfprocess: sh ./entry.sh\nlocal_build: echo building; echo x >> {}; cp function/handler.sh artefact\n",
                count.display()
            ),
        );
        let h = t.write("hello/handler.sh", "echo one\n");
        let stack = stack_for(&t, "built", "");
        let f = &stack.functions["hello"];
        let out = t.path("state/build/hello");
        let runs = || fs::read_to_string(&count).unwrap_or_default().lines().count();

        let a = prepare(&t.0, "hello", f, &stack, &out).unwrap();
        assert!(a.rebuilt);
        assert_eq!(runs(), 1);
        assert!(!needs_build(&out, a.hash));
        assert_eq!(fs::read_to_string(marker_path(&out)).unwrap().trim(), format!("{:016x}", a.hash));

        let b = prepare(&t.0, "hello", f, &stack, &out).unwrap();
        assert!(!b.rebuilt);
        assert_eq!((b.hash, b.fprocess.as_str()), (a.hash, "sh ./entry.sh"));
        assert_eq!(runs(), 1);
        assert_eq!(fs::read_to_string(out.join("artefact")).unwrap(), "echo one\n", "build output kept");

        fs::write(&h, "echo two\n").unwrap();
        let c = prepare(&t.0, "hello", f, &stack, &out).unwrap();
        assert!(c.rebuilt);
        assert_eq!(runs(), 2);
        assert_eq!(fs::read_to_string(out.join("artefact")).unwrap(), "echo two\n");

        // Assembling on its own invalidates the recorded build.
        assemble(&t.0, "hello", f, &stack, &out).unwrap();
        assert!(needs_build(&out, c.hash));
        assert!(prepare(&t.0, "hello", f, &stack, &out).unwrap().rebuilt);
        assert_eq!(runs(), 3);
    }

    #[test]
    fn failed_local_build_reports_its_output() {
        let t = Tmp::new();
        make_template(
            &t,
            "broken",
            "language: broken\nfprocess: sh ./entry.sh\nlocal_build: \"echo compiling; echo 'error: oops' >&2; exit 3\"\n",
        );
        t.write("hello/handler.sh", "echo one\n");
        let stack = stack_for(&t, "broken", "");
        let out = t.path("out/hello");
        let e = prepare(&t.0, "hello", &stack.functions["hello"], &stack, &out).unwrap_err().to_string();
        let first = e.lines().next().unwrap();
        assert!(
            first.starts_with("function hello: local_build `echo compiling;") && first.ends_with("failed: exit status 3; last output:"),
            "{e}"
        );
        assert!(e.contains("compiling") && e.contains("error: oops"), "{e}");
        assert!(!marker_path(&out).exists());

        let e = run_local_build(&t.0, "kill -9 $$").unwrap_err().to_string();
        assert_eq!(e, "local_build `kill -9 $$` failed: killed by signal 9");
        run_local_build(&t.0, "true").unwrap();
    }

    #[test]
    fn refuses_to_delete_the_project() {
        let t = Tmp::new();
        make_template(&t, "sh-t", "language: sh-t\nfprocess: sh ./entry.sh\n");
        t.write("hello/handler.sh", "echo one\n");
        let stack = stack_for(&t, "sh-t", "");
        let e = assemble(&t.0, "hello", &stack.functions["hello"], &stack, &t.0).unwrap_err().to_string();
        assert!(e.contains("refusing to delete"), "{e}");
        assert!(t.path("hello/handler.sh").exists());
    }

    #[test]
    fn handler_dot_does_not_copy_the_state_folder() {
        let t = Tmp::new();
        make_template(&t, "sh-t", "language: sh-t\nfprocess: sh ./entry.sh\n");
        t.write("handler.sh", "echo root\n");
        let stack = load_text(&t, &format!("{HEADER}functions:\n  hello:\n    lang: sh-t\n    handler: .\n")).unwrap();
        let f = &stack.functions["hello"];
        let out = t.path("gateway-state/build/hello");
        let a = prepare(&t.0, "hello", f, &stack, &out).unwrap();
        assert!(out.join("function/handler.sh").is_file() && out.join("function/stack.yml").is_file());
        assert!(!out.join("function/gateway-state").exists() && !out.join("function/template").exists());
        let b = prepare(&t.0, "hello", f, &stack, &out).unwrap();
        assert!(!b.rebuilt && a.hash == b.hash);
    }

    // ---- The repository's own bash-streaming template and example (templates.md §9) ----

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
    }

    /// Runs an assembled function's fprocess the way the watchdog's streaming mode does.
    fn invoke(a: &Assembled, body: &str) -> String {
        let argv = watchdog::shellwords::split(&a.fprocess).unwrap();
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .current_dir(&a.dir)
            .envs(a.env.iter().cloned())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    }

    /// The Dockerfile rules of templates.md §9 (items 6, 13, 16; 10 for http mode): returns the
    /// final stage's environment.
    fn check_dockerfile(path: &Path) -> Vec<(String, String)> {
        let df = fs::read_to_string(path).unwrap();
        let what = path.display();
        let lines: Vec<&str> = df.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        assert!(!lines[0].starts_with("# syntax"), "{what}: no syntax directive");
        let first_from = lines.iter().position(|l| l.starts_with("FROM")).unwrap();
        assert!(lines[..first_from].iter().any(|l| l.starts_with("ARG WATCHDOG_IMAGE=")), "{what}");
        assert!(lines.contains(&"FROM --platform=${TARGETPLATFORM} ${WATCHDOG_IMAGE} AS watchdog"), "{what}");
        let froms: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM")).collect();
        // Compiling stages run on the build machine; every other stage is the target's.
        for f in &froms {
            let build = f.starts_with("FROM --platform=${BUILDPLATFORM} ") && f.ends_with(" AS build");
            assert!(f.starts_with("FROM --platform=${TARGETPLATFORM} ") || build, "{what}: {f}");
        }
        assert!(froms.last().unwrap().starts_with("FROM --platform=${TARGETPLATFORM} "), "{what}: final stage");
        assert!(!df.contains("linux/amd64"), "{what}: no amd64 fallback");
        assert!(lines.contains(&"COPY --from=watchdog /fwatchdog /usr/bin/fwatchdog"), "{what}");
        assert!(lines.contains(&"HEALTHCHECK --interval=3s CMD [\"/usr/bin/fwatchdog\", \"-run-healthcheck\"]"), "{what}");
        assert_eq!(lines.last(), Some(&"CMD [\"fwatchdog\"]"), "{what}");
        let user = lines.iter().rev().find(|l| l.starts_with("USER ")).unwrap();
        assert!(!user.contains("root") && !user.starts_with("USER 0"), "{what}: {user}");
        assert!(lines.contains(&"WORKDIR /home/app"), "{what}");
        // §8: one variable per ENV line in the final stage.
        let last_from = lines.iter().rposition(|l| l.starts_with("FROM")).unwrap();
        for l in lines[last_from..].iter().filter(|l| l.starts_with("ENV ")) {
            let rest = &l[4..];
            let (k, v) = rest.split_once('=').unwrap_or_else(|| panic!("{what}: {l}: ENV name=value"));
            assert!(is_var_name(k), "{what}: {l}");
            let v = v.trim();
            assert!(!v.contains(char::is_whitespace) || (v.starts_with('"') && v.ends_with('"') && v.matches('"').count() == 2), "{what}: {l}: one variable");
        }
        let env = final_stage_env(&df, &|_| None);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("healthcheck_interval").as_deref(), Some("2s"), "{what}");
        if get("mode").as_deref() == Some("http") {
            let up: http::Uri = get("upstream_url").unwrap().parse().unwrap();
            assert!(!matches!(up.port_u16(), Some(8080 | 8081) | None), "{what}: upstream_url port");
            let secs = |k: &str| watchdog::format::parse_duration(&get(k).unwrap()).unwrap();
            assert!(secs("exec_timeout") <= secs("write_timeout"), "{what}: exec_timeout <= write_timeout");
        }
        env
    }

    /// templates.md §9 items 1, 2, 6, 10, 13, 16, 17 for every template of the repository.
    #[test]
    fn repository_templates_conform() {
        let modes = [("bash-streaming", "streaming"), ("dockerfile", "classic"), ("node-http", "http"), ("python3-http", "http"), ("rust-http", "http")];
        let mut found: Vec<String> = fs::read_dir(repo().join("template")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        found.sort();
        assert_eq!(found, modes.iter().map(|(l, _)| l.to_string()).collect::<Vec<_>>());
        for (lang, mode) in modes {
            let dir = repo().join("template").join(lang);
            assert!(dir.join("function").is_dir(), "{lang}: starter folder");
            let raw = fs::read_to_string(dir.join("template.yml")).unwrap();
            if lang == "dockerfile" {
                assert_eq!(raw.trim(), "language: dockerfile");
                let env = check_dockerfile(&dir.join("function/Dockerfile"));
                assert!(env.contains(&("fprocess".into(), "cat".into())) && env.contains(&("mode".into(), mode.into())), "{env:?}");
                continue;
            }
            let tpl = load_template(&dir).unwrap();
            assert_eq!(tpl.language, lang);
            assert!(tpl.fprocess.as_deref().is_some_and(|f| !f.trim().is_empty()), "{lang}: fprocess");
            let env = check_dockerfile(&dir.join("Dockerfile"));
            let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            assert_eq!(get("fprocess"), tpl.fprocess, "{lang}: ENV fprocess = template.yml fprocess");
            assert_eq!(get("mode").as_deref(), Some(mode), "{lang}");
        }
    }

    #[test]
    fn bash_streaming_starter_and_example_run_on_the_host() {
        let t = Tmp::new();
        let starter = Function {
            lang: Some("bash-streaming".into()),
            handler: Some("template/bash-streaming/function".into()),
            ..Function::default()
        };
        let stack = Stack::default();
        let a = assemble(&repo(), "starter", &starter, &stack, &t.path("starter")).unwrap();
        assert_eq!(invoke(&a, "hello, world"), "HELLO, WORLD");

        let stack_file = repo().join("stack.yml");
        assert_eq!(find_default(&repo()), Some(stack_file.clone()));
        let stack = load(&stack_file, &no_env).unwrap();
        let (name, f) = stack.functions.iter().next().unwrap();
        let a = prepare(&project_dir(&stack_file), name, f, &stack, &t.path(name)).unwrap();
        assert_eq!(invoke(&a, "Ada"), "Hello from bash: Ada\n");
    }
}
