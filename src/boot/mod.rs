//! Start-up: the binary's [`config`] (flags and their validation), the one place that wires
//! caches, backends, admitter and servers together ([`app`]), and the `certs` subcommand
//! ([`certs`]); the admin tools' flags ([`tool_args`]) and the broker mode's ([`broker_args`]).

pub mod app;
pub mod broker_args;
pub mod certs;
pub mod config;
pub mod tool_args;
