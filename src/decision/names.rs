//! Name rules: what Kubernetes requires of the names it stores (DNS labels, env var names,
//! Secret keys) and what the product accepts as a Vault key or a Spark property. Used by the
//! annotation parser, the placeholder grammar and the configuration, none of which needs the
//! others.

const MAX_ENV_NAME_LEN: usize = 256;
const MAX_SECRET_KEY_LEN: usize = 253;
const MAX_VAULT_KEY_LEN: usize = 512;
const MAX_SPARK_PROPERTY_LEN: usize = 256;
pub const MAX_DNS_LABEL_LEN: usize = 63;

/// RFC 1123 label: what Kubernetes requires of namespace, container and (our) store ids.
pub fn is_dns_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_DNS_LABEL_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// The API server's rule for env var names (`IsEnvVarName`).
pub fn validate_env_name(name: &str) -> Result<(), String> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    let starts_with_digit = name.starts_with(|c: char| c.is_ascii_digit());
    if name.is_empty() || name.len() > MAX_ENV_NAME_LEN {
        return Err(format!(
            "env var name must be 1 to {MAX_ENV_NAME_LEN} characters"
        ));
    }
    if !name.chars().all(valid_char) || starts_with_digit {
        return Err(
            "not a valid env var name (letters, digits, '_', '-', '.'; not starting with a digit)"
                .to_owned(),
        );
    }
    Ok(())
}

/// The API server's rule for Secret keys (`IsConfigMapKey`).
pub fn validate_secret_key(key: &str) -> Result<(), String> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if key.is_empty() || key.len() > MAX_SECRET_KEY_LEN {
        return Err(format!(
            "a Secret key must be 1 to {MAX_SECRET_KEY_LEN} characters"
        ));
    }
    if !key.chars().all(valid_char) {
        return Err(format!(
            "{key:?} has characters a Secret key cannot have (allowed: letters, digits, '-', '_', '.')"
        ));
    }
    if key == "." || key == ".." || key.starts_with("..") {
        return Err(format!("{key:?} is not a valid Secret key"));
    }
    Ok(())
}

/// A Vault key: a secret path below the configuration's prefix (segments of letters, digits,
/// `-`, `_` and `.`, joined by `/`), optionally followed by `#field`. The charset keeps a key from
/// leaving the prefix (`..`), adding a query or fragment, or needing URL escaping.
pub fn validate_vault_key(key: &str) -> Result<(), String> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if key.is_empty() || key.len() > MAX_VAULT_KEY_LEN {
        return Err(format!(
            "a Vault key must be 1 to {MAX_VAULT_KEY_LEN} characters"
        ));
    }
    let (path, field) = match key.split_once('#') {
        Some((path, field)) => (path, Some(field)),
        None => (key, None),
    };
    let segment_ok = |segment: &str| {
        !segment.is_empty() && segment != "." && segment != ".." && segment.chars().all(valid_char)
    };
    if !path.split('/').all(segment_ok) {
        return Err(format!(
            "{key:?} is not a Vault key: expected path segments of letters, digits, '-', '_' and '.' \
             joined by '/' (no empty, '.' or '..' segment), optionally followed by '#field'"
        ));
    }
    if let Some(field) = field
        && (field.is_empty() || !field.chars().all(valid_char))
    {
        return Err(format!(
            "{key:?} is not a Vault key: the field after '#' must be letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

/// Spark property names we accept: `spark.` followed by a conservative character set.
pub fn validate_spark_property(property: &str) -> Result<(), String> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    let rest = property.strip_prefix("spark.").unwrap_or("");
    if property.len() > MAX_SPARK_PROPERTY_LEN || rest.is_empty() || !rest.chars().all(valid_char) {
        return Err(format!(
            "not a Spark property name: must match ^spark\\.[A-Za-z0-9._-]+$ and be at most {MAX_SPARK_PROPERTY_LEN} characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_vault_key;
    use rstest::rstest;

    #[rstest]
    #[case::plain("db-password", true)]
    #[case::nested("team/db/password", true)]
    #[case::field("db#username", true)]
    #[case::nested_field("team/db#user.name", true)]
    #[case::dots_inside("a..b/c.d", true)]
    #[case::empty("", false)]
    #[case::parent_segment("../admin/token", false)]
    #[case::parent_in_middle("team/../admin", false)]
    #[case::dot_segment("./db", false)]
    #[case::leading_slash("/db", false)]
    #[case::trailing_slash("db/", false)]
    #[case::double_slash("a//b", false)]
    #[case::empty_field("db#", false)]
    #[case::two_fields("db#a#b", false)]
    #[case::query("db?version=1", false)]
    #[case::percent("db%2F..", false)]
    #[case::space("db password", false)]
    #[case::backslash("a\\b", false)]
    #[case::unicode("pässword", false)]
    #[case::too_long(&"a".repeat(513), false)]
    fn vault_keys(#[case] key: &str, #[case] valid: bool) {
        assert_eq!(validate_vault_key(key).is_ok(), valid, "{key:?}");
    }
}
