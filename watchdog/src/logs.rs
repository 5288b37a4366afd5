//! The watchdog's own log lines (text or JSON, UTC) and the relay of function output, which splits
//! over-long lines instead of ever stopping (spec §12).

use std::io::Write;
use std::sync::OnceLock;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;

use crate::config::LogFormat;
use crate::format::{json_str, log_time, rfc3339_now};

struct Settings {
    json: bool,
    prefix: bool,
    max_line: Option<usize>,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

fn settings() -> &'static Settings {
    SETTINGS.get_or_init(|| Settings { json: false, prefix: true, max_line: Some(65536) })
}

/// Sets the format once, before the first line.
pub fn init(format: LogFormat, prefix_logs: bool, max_line: Option<usize>) {
    let _ = SETTINGS.set(Settings { json: format == LogFormat::Json, prefix: prefix_logs, max_line });
}

#[derive(Clone, Copy)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// A JSON field value for structured lines.
pub enum Field<'a> {
    Str(&'a str),
    Num(f64),
    Int(i64),
}

fn write_stderr(line: &[u8]) {
    let _ = std::io::stderr().lock().write_all(line);
}

/// One log line with extra JSON fields (dropped in text format, where `msg` says it all).
pub fn log_fields(level: Level, msg: &str, fields: &[(&str, Field)]) {
    let mut line = String::with_capacity(msg.len() + 64);
    if settings().json {
        line.push_str("{\"time\":\"");
        line.push_str(&rfc3339_now());
        line.push_str("\",\"level\":\"");
        line.push_str(level.as_str());
        line.push_str("\",\"msg\":");
        json_str(&mut line, msg);
        for (k, v) in fields {
            line.push(',');
            json_str(&mut line, k);
            line.push(':');
            match v {
                Field::Str(s) => json_str(&mut line, s),
                Field::Num(n) => line.push_str(&format!("{n:.6}")),
                Field::Int(n) => line.push_str(&n.to_string()),
            }
        }
        line.push_str("}\n");
    } else {
        line.push_str(&log_time());
        line.push(' ');
        line.push_str(msg);
        line.push('\n');
    }
    write_stderr(line.as_bytes());
}

pub fn info(msg: &str) {
    log_fields(Level::Info, msg, &[]);
}

pub fn warn(msg: &str) {
    log_fields(Level::Warn, msg, &[]);
}

pub fn error(msg: &str) {
    log_fields(Level::Error, msg, &[]);
}

/// The per-request line: text `msg` in text format, `request` plus fields in JSON.
pub fn request(text: &str, fields: &[(&str, Field)]) {
    if settings().json {
        log_fields(Level::Info, "request", fields);
    } else {
        info(text);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Relays one line of function output to the watchdog's matching stream.
pub fn relay_line(stream: Stream, line: &[u8]) {
    let s = settings();
    let mut out: Vec<u8> = Vec::with_capacity(line.len() + 48);
    if !s.prefix {
        out.extend_from_slice(line);
        out.push(b'\n');
    } else if s.json {
        let mut j = String::with_capacity(line.len() + 80);
        j.push_str("{\"time\":\"");
        j.push_str(&rfc3339_now());
        j.push_str("\",\"level\":\"info\",\"stream\":\"");
        j.push_str(stream.name());
        j.push_str("\",\"msg\":");
        json_str(&mut j, &String::from_utf8_lossy(line));
        j.push_str("}\n");
        out = j.into_bytes();
    } else {
        out.extend_from_slice(log_time().as_bytes());
        out.push(b' ');
        out.extend_from_slice(stream.name().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    match stream {
        Stream::Stderr => write_stderr(&out),
        Stream::Stdout => {
            let _ = std::io::stdout().lock().write_all(&out);
        }
    }
}

/// Relays a pipe line by line until EOF; lines longer than `log_buffer_size` are split.
pub fn relay(mut pipe: pipe::Receiver, stream: Stream) -> JoinHandle<()> {
    tokio::spawn(async move {
        let max = settings().max_line;
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let n = match pipe.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            let mut start = 0;
            loop {
                let pending = &buf[start..];
                match pending.iter().position(|&b| b == b'\n') {
                    Some(i) if max.is_none_or(|m| i <= m) => {
                        relay_line(stream, &pending[..i]);
                        start += i + 1;
                    }
                    _ => match max {
                        Some(m) if pending.len() > m => {
                            relay_line(stream, &pending[..m]);
                            start += m;
                        }
                        _ => break,
                    },
                }
            }
            buf.drain(..start);
        }
        if !buf.is_empty() {
            relay_line(stream, &buf);
        }
    })
}
