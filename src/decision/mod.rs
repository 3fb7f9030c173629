//! The decision: everything that decides what a pod receives, as pure functions over plain
//! data. No I/O, no async, no clock: the caller reads the values the plan names and hands them
//! back for rendering, so every denial that depends on the pod is decided before any secret is
//! read.
//!
//! [`reference`] parses the annotations (attacker-controlled input), [`names`] holds the
//! Kubernetes and product name rules, [`scope`] authorizes a reference for a namespace,
//! [`injection`] plans and renders the patch per delivery mechanism, over the [`pod`] fields it
//! reads; [`legacy`] is the `${secrets.key}` placeholder grammar, [`spark`] Spark's option
//! string rules and [`expansion`] the kubelet's `$(VAR)` rule.

pub mod delivery;
pub mod entrypoints;
pub mod expansion;
pub mod injection;
pub mod legacy;
pub mod names;
pub mod pod;
pub mod reference;
pub mod scope;
pub mod spark;
