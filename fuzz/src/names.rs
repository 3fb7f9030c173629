//! The documented syntax of every name a reference may carry (README, "Strict parsing"), written
//! out again here so the reference-parser target can check what the webhook accepted against the
//! documentation rather than against its own validators.

/// An RFC 1123 label: store ids, container names, namespace names.
pub fn is_dns_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    (1..=63).contains(&bytes.len())
        && bytes.iter().all(allowed)
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

/// `[-._a-zA-Z][-._a-zA-Z0-9]*`, at most 256 bytes.
pub fn is_env_name(value: &str) -> bool {
    let mut chars = value.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '-' | '.' | '_'));
    first_ok
        && value.len() <= 256
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// A key a Secret can have: `[-._a-zA-Z0-9]+`, at most 253 bytes, and not `.`, `..` or `..*`
/// (the names the kubelet's atomic writer reserves).
pub fn is_secret_key(value: &str) -> bool {
    (1..=253).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        && value != "."
        && !value.starts_with("..")
}

/// `^spark\.[A-Za-z0-9._-]+$`, at most 256 bytes.
pub fn is_spark_property(value: &str) -> bool {
    value.len() <= 256
        && value.strip_prefix("spark.").is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        })
}
