//! fwatchdog: the entrypoint of a function container. It hands each HTTP request to the
//! function (a process per request, a long-lived HTTP process, or files) as `shared/spec/watchdog.md`
//! specifies. Unsafe code lives only in `process`.
#![deny(unsafe_code)]

/// The git commit this build came from (`GIT_SHA` at build time wins), shared with the gateway.
pub const GIT_SHA: &str = env!("FWATCHDOG_SHA");

pub mod body;
pub mod config;
pub mod format;
pub mod logs;
pub mod metrics;
pub mod modes;
#[allow(unsafe_code)]
pub mod process;
pub mod server;
pub mod shellwords;
pub mod upstream;
