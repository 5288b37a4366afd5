//! The gateway: the OpenFaaS `/system` API that faas-cli drives, `/function/<name>` routing and
//! basic auth (`shared/spec/gateway.md`). This first slice serves health, info and auth.
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod server;
pub mod stack;
pub mod error;
pub mod local;
pub mod model;
pub mod api;
pub mod invoke;
pub mod metrics;
pub mod up;
pub mod external;
pub mod async_invoke;
pub mod queue;
