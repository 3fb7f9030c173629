//! The broker: answers `iomete-env`'s start-time request for a broker-mode container's values.
//!
//! See [`protocol`] for the wire format.

pub mod protocol;
