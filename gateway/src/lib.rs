//! The gateway: the OpenFaaS `/system` API that faas-cli drives, `/function/<name>` routing and
//! basic auth (`shared/spec/gateway.md`). This first slice serves health, info and auth.
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod server;
