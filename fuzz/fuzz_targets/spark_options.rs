//! Fuzz target: Spark properties through `SPARK_SUBMIT_OPTS`, from the value in the store to
//! the value in the JVM.
//!
//! Input: parts separated by the byte 0xFF. Unless the input starts with 0xFE, the first part is
//! a literal `SPARK_SUBMIT_OPTS` the pod already sets; every other part is a property value
//! (lossily decoded), delivered as `spark.fuzz.v<N>`.
//!
//! The path a value takes is modelled outside the webhook: the webhook encodes the tokens
//! ([`spark::encode_properties`]), escapes them for the kubelet and appends them to the pod's
//! literal when [`spark::check_existing_options`] allows; the kubelet expands the env value (the
//! harness's port, both revisions, with variables undefined and defined); Spark's launcher splits
//! the result (the harness's `parseOptionString`). Invariants: the launcher accepts the result,
//! the pod's own options come out unchanged and first, and each property comes out as exactly one
//! `-Dspark.fuzz.v<N>=<value>`. A value is refused only when it holds a character nothing can
//! carry (CR, NUL, above U+FFFF), by a message that names the property and never the value; a
//! pod literal is refused only when the launcher would in fact reject it or the kubelet would in
//! fact read into the tokens.
#![no_main]

use std::borrow::Cow;

use iomete_secrets_webhook::decision::expansion::escape_for_kubelet;
use iomete_secrets_webhook::decision::spark::{self, SparkConfError};
use iomete_secrets_webhook_fuzz::kubelet::{self, VARIANTS, Variant};
use iomete_secrets_webhook_fuzz::launcher::{self, java};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kubelet::self_check();
    launcher::self_check();
    let (existing, values) = split(data);
    let entries: Vec<(String, String)> = values
        .into_iter()
        .enumerate()
        .map(|(index, value)| (format!("spark.fuzz.v{index}"), value))
        .collect();
    let encoded = spark::encode_properties(entries.iter().map(|(p, v)| (p.as_str(), v.as_str())));
    let tokens = match encoded {
        Ok(tokens) => tokens,
        Err(error) => return check_refused_value(&entries, &error),
    };
    for (property, value) in &entries {
        assert!(
            !uncarriable(value),
            "{property}: an uncarriable value was encoded"
        );
    }
    let escaped = escape_for_kubelet(&tokens);
    let literal = existing.filter(|literal| match spark::check_existing_options(literal) {
        Ok(()) => true,
        Err(error) => {
            check_refused_literal(literal, &error);
            false
        }
    });
    let written = match &literal {
        Some(literal) => format!("{literal} {escaped}"),
        None => escaped.into_owned(),
    };
    for variant in VARIANTS {
        for lookup in [kubelet::undefined, kubelet::everything_defined] {
            check_launch(&written, literal.as_deref(), &entries, variant, &lookup);
        }
    }
});

fn split(data: &[u8]) -> (Option<String>, Vec<String>) {
    let (has_literal, data) = match data.split_first() {
        Some((0xFE, rest)) => (false, rest),
        _ => (true, data),
    };
    let mut parts = data
        .split(|&b| b == 0xFF)
        .map(|part| String::from_utf8_lossy(part).into_owned());
    let literal = if has_literal { parts.next() } else { None };
    (literal, parts.collect())
}

fn uncarriable(value: &str) -> bool {
    value
        .chars()
        .any(|c| c == '\r' || c == '\0' || u32::from(c) > 0xFFFF)
}

/// What the container sees, as text: the byte quirk can split a UTF-8 sequence of the pod's own
/// literal, which only ever touches the pod's own options.
fn seen(written: &str, variant: Variant, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    match String::from_utf8_lossy(&kubelet::expand(written, variant, lookup)) {
        Cow::Borrowed(text) => text.to_owned(),
        Cow::Owned(text) => text,
    }
}

fn check_launch(
    written: &str,
    literal: Option<&str>,
    entries: &[(String, String)],
    variant: Variant,
    lookup: &dyn Fn(&str) -> Option<String>,
) {
    let options = launcher::parse_option_string(&seen(written, variant, lookup))
        .unwrap_or_else(|_| panic!("the launcher rejects {written:?} ({variant:?})"));
    let theirs = match literal {
        Some(literal) => launcher::parse_option_string(&seen(literal, variant, lookup))
            .expect("an accepted literal parses on its own"),
        None => Vec::new(),
    };
    assert!(
        options.len() >= theirs.len() && options[..theirs.len()] == theirs[..],
        "the pod's own options changed ({variant:?}): {written:?}"
    );
    let ours = &options[theirs.len()..];
    assert_eq!(
        ours.len(),
        entries.len(),
        "one option per property ({variant:?}): {written:?}"
    );
    for (option, (property, value)) in ours.iter().zip(entries) {
        assert_eq!(
            *option,
            java(&format!("-D{property}={value}")),
            "{property} arrives changed ({variant:?})"
        );
    }
}

/// The encoder stops at the first value it cannot carry, and says so without the value.
fn check_refused_value(entries: &[(String, String)], error: &SparkConfError) {
    let SparkConfError::Uncarriable { property, .. } = error else {
        panic!("unexpected refusal of valid property names: {error}");
    };
    let first = entries
        .iter()
        .find(|(_, value)| uncarriable(value))
        .unwrap_or_else(|| panic!("{error}, but every value is carriable"));
    assert_eq!(*property, first.0);
    let message = error.to_string();
    assert!(message.contains(&format!("{property:?}")), "{message}");
    // Every refused value holds a CR, a NUL or a character above U+FFFF, none of which a message
    // ever contains; so this can only match if the value itself was printed.
    assert!(
        !message.contains(first.1.as_str()),
        "the refusal prints the value"
    );
}

/// A pod literal is refused only for a real reason.
fn check_refused_literal(literal: &str, error: &SparkConfError) {
    match error {
        SparkConfError::OptionsEndMidToken => {
            for variant in VARIANTS {
                assert!(
                    launcher::parse_option_string(&seen(literal, variant, &kubelet::undefined))
                        .is_err(),
                    "{literal:?} refused as ending mid-token, but the launcher accepts it ({variant:?})"
                );
            }
        }
        SparkConfError::OptionsEndInReference => {
            // Open `$(`: a `)` after it closes a reference, which changes the text once defined.
            for variant in VARIANTS {
                let closed = kubelet::expand(
                    &format!("{literal})"),
                    variant,
                    &kubelet::everything_defined,
                );
                let mut apart = kubelet::expand(literal, variant, &kubelet::everything_defined);
                apart.push(b')');
                assert_ne!(
                    closed, apart,
                    "{literal:?} refused as ending in an open $(, but nothing after it is read into it ({variant:?})"
                );
            }
        }
        other => panic!("unexpected refusal of a literal: {other}"),
    }
}
