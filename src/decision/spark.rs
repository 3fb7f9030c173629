//! Spark properties delivered through `SPARK_SUBMIT_OPTS`, the variable Spark's launcher reads.
//!
//! A Spark driver's entrypoint, and a notebook's PySpark, start the JVM through `spark-submit`.
//! Its launcher (`org.apache.spark.launcher.Main`) splits `SPARK_SUBMIT_OPTS` with
//! `CommandBuilderUtils.parseOptionString` (bash-like quoting) and passes every token to the JVM,
//! and SparkConf loads every `spark.*` system property. [`encode_properties`] writes each property
//! as one single-quoted token `'-Dkey=value'`, every `'` in it written `'\''`, which that parser
//! reads back byte for byte for every value it accepts; the few values nothing can carry through
//! the launcher and `bin/spark-class` unchanged are refused by name, never by value.
//! [`check_existing_options`] decides whether a `SPARK_SUBMIT_OPTS` the pod already sets can
//! have tokens appended without changing how they are read.

use std::collections::BTreeMap;
use std::fmt;

use crate::decision::expansion::kubelet_expand;
use crate::decision::names::validate_spark_property;
use crate::decision::reference::SPARK_CONF_SECRETS_ANNOTATION;

/// The variable the launcher reads its JVM options from.
pub const SPARK_SUBMIT_OPTS: &str = "SPARK_SUBMIT_OPTS";
/// When set to anything non-empty, the launcher prints the whole JVM command line (with every
/// `-D` value) to stderr, that is, to the pod log.
pub const PRINT_LAUNCH_COMMAND: &str = "SPARK_PRINT_LAUNCH_COMMAND";
/// The pod label Spark sets to `driver` or `executor`.
pub const ROLE_LABEL: &str = "spark-role";
/// The [`ROLE_LABEL`] value of executor pods.
pub const EXECUTOR_ROLE: &str = "executor";
/// Linux refuses to start a process whose environment holds a string longer than
/// `MAX_ARG_STRLEN` (32 pages, 131072 bytes), counting `NAME=` and the terminating NUL; a pod
/// over it would fail to start with "argument list too long" instead of being told why here.
pub const MAX_OPTIONS_BYTES: usize = 131_072 - SPARK_SUBMIT_OPTS.len() - "=".len() - 1;

/// A character some layer between the pod spec and SparkConf cannot pass on unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uncarriable {
    /// `bin/spark-class` deletes every `\r` from the launcher's output (`ARG=${_ARG//$'\r'}`).
    CarriageReturn,
    /// No environment variable can hold one: the environment is a list of C strings.
    Nul,
    /// `parseOptionString` steps through the option string one UTF-16 unit at a time but appends
    /// whole code points, so a surrogate pair comes out with its low half repeated.
    AboveBmp,
}

impl Uncarriable {
    fn of(c: char) -> Option<Self> {
        match c {
            '\r' => Some(Uncarriable::CarriageReturn),
            '\0' => Some(Uncarriable::Nul),
            c if u32::from(c) > 0xFFFF => Some(Uncarriable::AboveBmp),
            _ => None,
        }
    }
}

impl fmt::Display for Uncarriable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Uncarriable::CarriageReturn => {
                "a carriage return, which Spark's bin/spark-class deletes from every launcher argument"
            }
            Uncarriable::Nul => "a NUL character, which no environment variable can hold",
            Uncarriable::AboveBmp => {
                "a character above U+FFFF, which Spark's launcher corrupts when it splits SPARK_SUBMIT_OPTS"
            }
        })
    }
}

/// Why Spark properties cannot be delivered through `SPARK_SUBMIT_OPTS` as asked. Messages name
/// properties and the variable, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SparkConfError {
    #[error("{property:?} is not a Spark property name (^spark\\.[A-Za-z0-9._-]+$)")]
    InvalidProperty { property: String },
    #[error(
        "the value of Spark property {property:?} contains {found}, so it cannot be delivered through {SPARK_SUBMIT_OPTS}; change the stored value or deliver it with secrets.iomete.com/env-secrets"
    )]
    Uncarriable {
        property: String,
        found: Uncarriable,
    },
    #[error(
        "{SPARK_SUBMIT_OPTS} is set with valueFrom, which the webhook cannot read or extend; set it as a literal value, or remove it, to use {SPARK_CONF_SECRETS_ANNOTATION}"
    )]
    OptionsFromValueFrom,
    #[error(
        "{SPARK_SUBMIT_OPTS} is also named in secrets.iomete.com/env-secrets; it cannot be both a secret and the carrier of {SPARK_CONF_SECRETS_ANNOTATION}"
    )]
    OptionsAreAnEnvSecret,
    #[error(
        "{SPARK_SUBMIT_OPTS} holds a legacy ${{secrets.…}} placeholder, and {SPARK_CONF_SECRETS_ANNOTATION} cannot be appended to a value that holds one; move that property to {SPARK_CONF_SECRETS_ANNOTATION}"
    )]
    OptionsHoldAPlaceholder,
    #[error(
        "the {SPARK_SUBMIT_OPTS} already set ends inside a quote or after a backslash, so Spark's launcher would reject it and print it, with the appended secrets, to the pod log; fix its quoting"
    )]
    OptionsEndMidToken,
    #[error(
        "the {SPARK_SUBMIT_OPTS} already set ends inside an unclosed $( reference, which the kubelet would close inside the appended secrets; close it, or write $$( for a literal $("
    )]
    OptionsEndInReference,
    #[error(
        "{SPARK_SUBMIT_OPTS} would be longer than the {MAX_OPTIONS_BYTES} bytes Linux allows one environment variable; deliver large values with secrets.iomete.com/env-secrets"
    )]
    OptionsTooLong,
}

/// Whether a pod with these labels is a Spark executor. Executors get the driver's SparkConf when
/// they register, and their entrypoint starts the JVM without `spark-submit`, so they never read
/// `SPARK_SUBMIT_OPTS`.
pub fn is_executor(labels: Option<&BTreeMap<String, String>>) -> bool {
    labels
        .and_then(|labels| labels.get(ROLE_LABEL))
        .is_some_and(|role| role == EXECUTOR_ROLE)
}

/// Checks that `value` reaches SparkConf unchanged once written into `SPARK_SUBMIT_OPTS`.
pub fn check_value(property: &str, value: &str) -> Result<(), SparkConfError> {
    match value.chars().find_map(Uncarriable::of) {
        Some(found) => Err(SparkConfError::Uncarriable {
            property: property.to_owned(),
            found,
        }),
        None => Ok(()),
    }
}

/// The launcher token for one property: `'-D{property}={value}'` with every `'` written `'\''`
/// (close the quote, an escaped quote, reopen), the one quoting in which nothing but `'` is
/// special, so no value can end the token early or start another.
pub fn encode_property(property: &str, value: &str) -> Result<String, SparkConfError> {
    validate_spark_property(property).map_err(|_| SparkConfError::InvalidProperty {
        property: property.to_owned(),
    })?;
    check_value(property, value)?;
    let mut token = String::with_capacity(property.len() + value.len() + 8);
    token.push_str("'-D");
    token.push_str(property);
    token.push('=');
    for c in value.chars() {
        if c == '\'' {
            token.push_str(r"'\''");
        } else {
            token.push(c);
        }
    }
    token.push('\'');
    Ok(token)
}

/// The tokens of every `(property, value)`, joined by single spaces.
pub fn encode_properties<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<String, SparkConfError> {
    let tokens = entries
        .into_iter()
        .map(|(property, value)| encode_property(property, value))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(tokens.join(" "))
}

/// Checks that tokens can be appended, after a space, to a literal `SPARK_SUBMIT_OPTS` the pod
/// already sets (`written` as it stands in the pod spec, for the kubelet) without changing how
/// they are read: the kubelet must not see an unclosed `$(` that our text would close, and the
/// launcher must end the existing text outside any quote or escape. `$(NAME)` references in it
/// are checked as written, since their values are only known inside the container.
pub fn check_existing_options(written: &str) -> Result<(), SparkConfError> {
    if ends_in_open_reference(written) {
        return Err(SparkConfError::OptionsEndInReference);
    }
    if ends_mid_token(&kubelet_expand(written, |_| None)) {
        return Err(SparkConfError::OptionsEndMidToken);
    }
    Ok(())
}

/// [`check_existing_options`] for a `SPARK_SUBMIT_OPTS` as the container sees it (the kubelet
/// has expanded it already, as `iomete-env` finds it): only the launcher's quoting is checked.
pub fn check_seen_options(seen: &str) -> Result<(), SparkConfError> {
    if ends_mid_token(seen) {
        return Err(SparkConfError::OptionsEndMidToken);
    }
    Ok(())
}

/// Checks the final value against [`MAX_OPTIONS_BYTES`]; `seen_len` is its length as the
/// container sees it, after the kubelet's expansion.
pub fn check_options_length(seen_len: usize) -> Result<(), SparkConfError> {
    if seen_len > MAX_OPTIONS_BYTES {
        return Err(SparkConfError::OptionsTooLong);
    }
    Ok(())
}

/// Whether the kubelet's scan of `written` ends inside `$(` with no `)` after it. It follows the
/// scan in `expansion::kubelet_expand`: `$$` is one escaped `$`, `$(` runs to the next `)`, and a
/// `$` before any other byte consumes that byte.
fn ends_in_open_reference(written: &str) -> bool {
    let bytes = written.as_bytes();
    let mut cursor = 0;
    while cursor + 1 < bytes.len() {
        if bytes[cursor] != b'$' {
            cursor += 1;
            continue;
        }
        if bytes[cursor + 1] == b'(' {
            match bytes[cursor + 2..].iter().position(|&b| b == b')') {
                Some(close) => cursor += 2 + close + 1,
                None => return true,
            }
        } else {
            cursor += 2;
        }
    }
    false
}

/// Whether Spark's `parseOptionString` would end `options` inside a quote or after a backslash
/// (and so throw, printing the whole string). Only its quote and escape state is tracked: the
/// characters it appends do not change that state, whatever their encoding.
fn ends_mid_token(options: &str) -> bool {
    let (mut single, mut double, mut escaped) = (false, false, false);
    for c in options.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if !single => escaped = true,
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            _ => {}
        }
    }
    single || double || escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::expansion::escape_for_kubelet;
    use rstest::rstest;

    /// Spark 3.5's `CommandBuilderUtils.parseOptionString`
    /// (launcher/src/main/java/org/apache/spark/launcher/CommandBuilderUtils.java), ported
    /// statement for statement. Java strings are UTF-16 and its loop steps one code unit at a
    /// time while reading whole code points (`s.codePointAt(i)` with `i++`), so this port works
    /// on UTF-16 too and returns Java strings; `Err` is its IllegalArgumentException.
    fn parse_option_string(s: &str) -> Result<Vec<Vec<u16>>, String> {
        let units: Vec<u16> = s.encode_utf16().collect();
        let mut opts: Vec<Vec<u16>> = Vec::new();
        let mut opt: Vec<u16> = Vec::new();
        let mut in_opt = false;
        let mut in_single_quote = false;
        let mut in_double_quote = false;
        let mut escape_next = false;
        // This is needed to detect when a quoted empty string is used as an argument ("" or '').
        let mut has_data = false;

        for i in 0..units.len() {
            let c = code_point_at(&units, i);
            if escape_next {
                append_code_point(&mut opt, c);
                escape_next = false;
            } else if in_opt {
                match c {
                    BACKSLASH => {
                        if in_single_quote {
                            append_code_point(&mut opt, c);
                        } else {
                            escape_next = true;
                        }
                    }
                    SINGLE_QUOTE => {
                        if in_double_quote {
                            append_code_point(&mut opt, c);
                        } else {
                            in_single_quote = !in_single_quote;
                        }
                    }
                    DOUBLE_QUOTE => {
                        if in_single_quote {
                            append_code_point(&mut opt, c);
                        } else {
                            in_double_quote = !in_double_quote;
                        }
                    }
                    _ => {
                        if !java_is_whitespace(c) || in_single_quote || in_double_quote {
                            append_code_point(&mut opt, c);
                        } else {
                            opts.push(std::mem::take(&mut opt));
                            in_opt = false;
                            has_data = false;
                        }
                    }
                }
            } else {
                match c {
                    SINGLE_QUOTE => {
                        in_single_quote = true;
                        in_opt = true;
                        has_data = true;
                    }
                    DOUBLE_QUOTE => {
                        in_double_quote = true;
                        in_opt = true;
                        has_data = true;
                    }
                    BACKSLASH => {
                        escape_next = true;
                        in_opt = true;
                        has_data = true;
                    }
                    _ => {
                        if !java_is_whitespace(c) {
                            in_opt = true;
                            has_data = true;
                            append_code_point(&mut opt, c);
                        }
                    }
                }
            }
        }

        if in_single_quote || in_double_quote || escape_next {
            return Err(format!("Invalid option string: {s}"));
        }
        if has_data {
            opts.push(opt);
        }
        Ok(opts)
    }

    const BACKSLASH: u32 = '\\' as u32;
    const SINGLE_QUOTE: u32 = '\'' as u32;
    const DOUBLE_QUOTE: u32 = '"' as u32;

    /// Java's `String.codePointAt`: a high surrogate followed by a low one is read as one code
    /// point, any other unit as itself.
    fn code_point_at(units: &[u16], index: usize) -> u32 {
        let unit = units[index];
        match units.get(index + 1) {
            Some(&low) if (0xD800..0xDC00).contains(&unit) && (0xDC00..0xE000).contains(&low) => {
                0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00)
            }
            _ => u32::from(unit),
        }
    }

    /// Java's `StringBuilder.appendCodePoint`.
    fn append_code_point(out: &mut Vec<u16>, code_point: u32) {
        if code_point >= 0x10000 {
            let offset = code_point - 0x10000;
            out.push(0xD800 + (offset >> 10) as u16);
            out.push(0xDC00 + (offset & 0x3FF) as u16);
        } else {
            out.push(code_point as u16);
        }
    }

    /// Java's `Character.isWhitespace(int)`: the space, line and paragraph separators except the
    /// no-break ones (U+00A0, U+2007, U+202F), plus U+0009–U+000D and U+001C–U+001F.
    fn java_is_whitespace(code_point: u32) -> bool {
        matches!(
            code_point,
            0x09..=0x0D
                | 0x1C..=0x20
                | 0x1680
                | 0x2000..=0x2006
                | 0x2008..=0x200A
                | 0x2028
                | 0x2029
                | 0x205F
                | 0x3000
        )
    }

    fn java(text: &str) -> Vec<u16> {
        text.encode_utf16().collect()
    }

    /// What the JVM makes of a launcher token: `-Dkey=value` splits at the first `=`.
    fn system_property(token: &[u16]) -> (String, String) {
        let text = String::from_utf16(token).expect("a token the JVM can read");
        let definition = text.strip_prefix("-D").expect("a -D token");
        let (key, value) = definition.split_once('=').expect("key=value");
        (key.to_owned(), value.to_owned())
    }

    // `hostile_values()`: values that break naive quoting, shells, the kubelet or the launcher.
    // The file is shared with the integration tests, where its items are public.
    #[allow(unreachable_pub)]
    mod hostile {
        include!("../../tests/support/hostile_values.rs");
    }
    use hostile::hostile_values;

    fn corpus_entries(values: &[String]) -> Vec<(String, &str)> {
        values
            .iter()
            .enumerate()
            .map(|(index, value)| (format!("spark.iomete.test.v{index}"), value.as_str()))
            .collect()
    }

    #[test]
    fn launcher_reads_back_every_hostile_value_exactly() {
        let values = hostile_values();
        let entries = corpus_entries(&values);
        let encoded =
            encode_properties(entries.iter().map(|(key, value)| (key.as_str(), *value))).unwrap();
        let tokens = parse_option_string(&encoded).expect("the launcher accepts the encoding");
        assert_eq!(tokens.len(), entries.len(), "one token per property");
        for (token, (key, value)) in tokens.iter().zip(&entries) {
            assert_eq!(token, &java(&format!("-D{key}={value}")), "{key}");
            assert_eq!(&system_property(token), &(key.clone(), value.to_string()));
        }
    }

    #[rstest]
    #[case::empty("")]
    #[case::spaces("  ")]
    #[case::one_option("-Xss4m")]
    #[case::several("-Dfoo=bar -XX:+UseG1GC")]
    #[case::quoted("'-Dspark.app.tag=a b' \"-Dx=y z\"")]
    #[case::trailing_space("-Dfoo=bar ")]
    #[case::trailing_tab("-Dfoo=bar\t")]
    #[case::quoted_empty("''")]
    #[case::escaped_space("-Dpath=a\\ b")]
    #[case::escaped_backslash("-Dpath=a\\\\")]
    #[case::kubelet_escape("-Dprice=$$5")]
    #[case::reference("-Dhome=$(HOME)")]
    fn existing_options_keep_their_tokens_and_ours_follow_unchanged(#[case] written: &str) {
        check_existing_options(written).expect("a literal the tokens can follow");
        let values = hostile_values();
        let entries = corpus_entries(&values);
        let ours =
            encode_properties(entries.iter().map(|(key, value)| (key.as_str(), *value))).unwrap();
        // As the webhook writes it: the user's text as is, ours escaped for the kubelet.
        let combined = format!("{written} {}", escape_for_kubelet(&ours));
        let seen = kubelet_expand(&combined, |_| None);
        assert_eq!(
            seen,
            format!("{} {ours}", kubelet_expand(written, |_| None))
        );
        let tokens = parse_option_string(&seen).unwrap();
        let theirs = parse_option_string(&kubelet_expand(written, |_| None)).unwrap();
        assert_eq!(tokens[..theirs.len()], theirs[..]);
        let appended: Vec<(String, String)> = tokens[theirs.len()..]
            .iter()
            .map(|token| system_property(token))
            .collect();
        let expected: Vec<(String, String)> = entries
            .iter()
            .map(|(key, value)| (key.clone(), value.to_string()))
            .collect();
        assert_eq!(appended, expected);
    }

    #[rstest]
    #[case("'")]
    #[case("-Dfoo='bar")]
    #[case("\"")]
    #[case("-Dfoo=\"bar 'x'")]
    #[case("\\")]
    #[case("-Dfoo=bar\\")]
    #[case("'it'\\''s")]
    fn existing_options_that_end_mid_token_are_refused(#[case] written: &str) {
        assert!(
            parse_option_string(written).is_err(),
            "the launcher rejects it"
        );
        assert_eq!(
            check_existing_options(written),
            Err(SparkConfError::OptionsEndMidToken)
        );
    }

    #[rstest]
    #[case("-Dfoo=$(")]
    #[case("-Dfoo=$(BAR")]
    #[case("$(A) $(B")]
    #[case("$$$(B")]
    fn existing_options_that_end_in_an_open_reference_are_refused(#[case] written: &str) {
        assert_eq!(
            check_existing_options(written),
            Err(SparkConfError::OptionsEndInReference)
        );
        // Why: the kubelet would read a `$(...)` reference running into our tokens, leaving
        // their `$$` escapes undone.
        let ours = encode_property("spark.a", "$)").unwrap();
        let combined = format!("{written} {}", escape_for_kubelet(&ours));
        assert!(!kubelet_expand(&combined, |_| None).ends_with(&ours));
    }

    #[rstest]
    #[case("$$(")]
    #[case("$(A)")]
    #[case("$(A)$(B)$$")]
    #[case("$x(")]
    #[case("$")]
    #[case("a$$$$")]
    fn closed_or_escaped_references_are_fine(#[case] written: &str) {
        assert_eq!(check_existing_options(written), Ok(()));
    }

    /// The refusals' quote tracking agrees with the full port on every prefix of tricky text.
    #[test]
    fn mid_token_check_agrees_with_the_launcher() {
        let samples = [
            "a 'b c' \"d 'e\" \\ f\\\\ 'g\\' h\" \\\"'",
            "'\\''\"\\\"\"\\'x",
            "𝄞'𝄞\\𝄞\"𝄞",
        ];
        for sample in samples {
            for (end, _) in sample.char_indices().chain([(sample.len(), ' ')]) {
                let prefix = &sample[..end];
                assert_eq!(
                    ends_mid_token(prefix),
                    parse_option_string(prefix).is_err(),
                    "{prefix:?}"
                );
            }
        }
    }

    /// The open-reference scan agrees with the kubelet's own expansion: if a `)` appended to the
    /// text closes a reference, expanding with every name defined as "" drops that reference.
    #[test]
    fn open_reference_scan_agrees_with_the_kubelet() {
        let samples = ["x$(a$$b)$$($x($(c", "$$$(d) $($(e", "$()$ ($"];
        for sample in samples {
            for end in 0..=sample.len() {
                let prefix = &sample[..end];
                let closed_by_us = kubelet_expand(&format!("{prefix})"), |_| Some(String::new()))
                    != format!("{})", kubelet_expand(prefix, |_| Some(String::new())));
                assert_eq!(ends_in_open_reference(prefix), closed_by_us, "{prefix:?}");
            }
        }
    }

    #[rstest]
    #[case::carriage_return("line\r\nnext", Uncarriable::CarriageReturn)]
    #[case::lone_carriage_return("\r", Uncarriable::CarriageReturn)]
    #[case::nul("a\0b", Uncarriable::Nul)]
    #[case::above_bmp("clef 𝄞", Uncarriable::AboveBmp)]
    #[case::emoji("🔑", Uncarriable::AboveBmp)]
    #[case::first_above_bmp("\u{10000}", Uncarriable::AboveBmp)]
    fn values_no_quoting_can_carry_are_refused_by_name(
        #[case] value: &str,
        #[case] found: Uncarriable,
    ) {
        let error = encode_property("spark.hadoop.fs.s3a.secret.key", value).unwrap_err();
        assert_eq!(
            error,
            SparkConfError::Uncarriable {
                property: "spark.hadoop.fs.s3a.secret.key".into(),
                found
            }
        );
        let message = error.to_string();
        assert!(
            message.starts_with(
                "the value of Spark property \"spark.hadoop.fs.s3a.secret.key\" contains "
            ),
            "{message}"
        );
        assert!(!message.contains(value), "{message}");
        assert!(check_value("spark.x", value).is_err());
    }

    /// Why characters above U+FFFF are refused: the launcher's parser repeats the low surrogate.
    #[test]
    fn launcher_corrupts_characters_above_u_ffff() {
        let token = "'-Dspark.a=𝄞'";
        let parsed = parse_option_string(token).unwrap();
        assert_ne!(parsed, vec![java("-Dspark.a=𝄞")]);
        assert_eq!(parsed, vec![[java("-Dspark.a=𝄞"), vec![0xDD1E]].concat()]);
    }

    #[rstest]
    #[case("spark.a", "", "'-Dspark.a='")]
    #[case("spark.a", "x", "'-Dspark.a=x'")]
    #[case(
        "spark.hadoop.fs.s3a.secret.key",
        "it's",
        "'-Dspark.hadoop.fs.s3a.secret.key=it'\\''s'"
    )]
    #[case("spark.b", "$(HOME) \\", "'-Dspark.b=$(HOME) \\'")]
    fn tokens_are_single_quoted_with_quotes_written_as_close_escape_reopen(
        #[case] property: &str,
        #[case] value: &str,
        #[case] expected: &str,
    ) {
        assert_eq!(encode_property(property, value).unwrap(), expected);
    }

    #[test]
    fn tokens_are_joined_by_single_spaces() {
        assert_eq!(
            encode_properties([("spark.a", "1"), ("spark.b", "2 3")]).unwrap(),
            "'-Dspark.a=1' '-Dspark.b=2 3'"
        );
        assert_eq!(encode_properties([]).unwrap(), "");
    }

    #[rstest]
    #[case("")]
    #[case("spark.")]
    #[case("spark")]
    #[case("other.key")]
    #[case("spark.a'b")]
    #[case("spark.a=b")]
    #[case("spark.a b")]
    fn invalid_property_names_are_refused(#[case] property: &str) {
        assert_eq!(
            encode_property(property, "v"),
            Err(SparkConfError::InvalidProperty {
                property: property.to_owned()
            })
        );
    }

    #[test]
    fn length_is_checked_against_the_kernel_limit() {
        assert_eq!(MAX_OPTIONS_BYTES, 131_053);
        assert_eq!(check_options_length(MAX_OPTIONS_BYTES), Ok(()));
        assert_eq!(
            check_options_length(MAX_OPTIONS_BYTES + 1),
            Err(SparkConfError::OptionsTooLong)
        );
    }

    #[rstest]
    #[case(Some(&[("spark-role", "executor")][..]), true)]
    #[case(Some(&[("spark-role", "driver")][..]), false)]
    #[case(Some(&[("spark-role", "Executor")][..]), false)]
    #[case(Some(&[("app", "executor")][..]), false)]
    #[case(Some(&[][..]), false)]
    #[case(None, false)]
    fn executors_are_recognised_by_their_role_label(
        #[case] labels: Option<&[(&str, &str)]>,
        #[case] expected: bool,
    ) {
        let labels: Option<BTreeMap<String, String>> = labels.map(|pairs| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        });
        assert_eq!(is_executor(labels.as_ref()), expected);
    }
}
