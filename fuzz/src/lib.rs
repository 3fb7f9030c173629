//! Harness-side models shared by the fuzz targets: what sits on either side of the webhook,
//! re-implemented from the upstream sources' behaviour rather than taken from the webhook's own
//! ports, so that a misreading shared by the product and its tests shows up as a finding instead
//! of agreeing with itself.
//!
//! - [`kubelet`]: the kubelet's `$(VAR)` expansion of env values, in both shapes it has had;
//! - [`launcher`]: Spark's `CommandBuilderUtils.parseOptionString`, which splits
//!   `SPARK_SUBMIT_OPTS`, with Java's UTF-16 and `Character.isWhitespace` semantics;
//! - [`names`]: the documented syntax of every name a reference may carry;
//! - [`cluster`]: the fixed cluster the decision target runs against, and its scope model.
//!
//! Each model checks itself against the upstream test tables the first time a target uses it
//! ([`kubelet::self_check`], [`launcher::self_check`]), so a wrong model fails loudly on the
//! first input instead of silently fuzzing against the wrong oracle.

pub mod cluster;
pub mod kubelet;
pub mod launcher;
pub mod names;
