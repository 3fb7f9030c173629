//! The edges: thin infrastructure around the admission path. The HTTPS [`server`] binds, serves
//! and drains; [`broker`] is the broker's HTTP handler; [`tls`] loads and reloads the serving
//! certificate; [`admin`] serves health,
//! readiness and metrics from a state it is given; [`metrics`] defines what is counted and
//! [`telemetry`] how logs are written. None of them imports a backend or a decision type.

pub mod admin;
pub mod broker;
pub mod metrics;
pub mod server;
pub mod telemetry;
pub mod tls;
