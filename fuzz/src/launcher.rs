//! Spark's launcher option splitter, `CommandBuilderUtils.parseOptionString` (Spark 3.5,
//! `launcher/src/main/java/org/apache/spark/launcher/CommandBuilderUtils.java`), which turns
//! `SPARK_SUBMIT_OPTS` into JVM arguments.
//!
//! Its rules: outside quotes, whitespace (Java's `Character.isWhitespace`) separates options;
//! `'...'` keeps everything literally, backslash included; inside `"..."` and outside quotes a
//! backslash takes the next character literally, whatever it is; quotes and escapes may be glued
//! to other text (`'a'b` is `ab`); `''` and `""` alone make an empty option; ending inside a
//! quote or after a backslash is an `IllegalArgumentException`. Java strings are UTF-16 and the
//! loop steps one code unit at a time while reading whole code points, so a character above
//! U+FFFF comes out with its low surrogate repeated; this model keeps that, working on UTF-16.

use std::sync::Once;

/// Java's `IllegalArgumentException("Invalid option string: ...")`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidOptionString;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

/// Splits `options` as the launcher does; each option is a Java string (UTF-16 units).
pub fn parse_option_string(options: &str) -> Result<Vec<Vec<u16>>, InvalidOptionString> {
    let units: Vec<u16> = options.encode_utf16().collect();
    let mut parsed = Vec::new();
    let mut current: Vec<u16> = Vec::new();
    // `started`: an option is open, even an empty one opened by a quote (Java's inOpt/hasData).
    let mut started = false;
    let mut quote = Quote::None;
    let mut escaped = false;
    for index in 0..units.len() {
        let c = code_point_at(&units, index);
        if escaped {
            push_code_point(&mut current, c);
            escaped = false;
            continue;
        }
        match (c, quote) {
            (BACKSLASH, Quote::Single) => push_code_point(&mut current, c),
            (BACKSLASH, _) => escaped = true,
            (SINGLE_QUOTE, Quote::Double) | (DOUBLE_QUOTE, Quote::Single) => {
                push_code_point(&mut current, c)
            }
            (SINGLE_QUOTE, Quote::Single) | (DOUBLE_QUOTE, Quote::Double) => quote = Quote::None,
            (SINGLE_QUOTE, Quote::None) => quote = Quote::Single,
            (DOUBLE_QUOTE, Quote::None) => quote = Quote::Double,
            (_, Quote::None) if is_java_whitespace(c) => {
                if started {
                    parsed.push(std::mem::take(&mut current));
                }
                started = false;
                continue;
            }
            _ => push_code_point(&mut current, c),
        }
        started = true;
    }
    if quote != Quote::None || escaped {
        return Err(InvalidOptionString);
    }
    if started {
        parsed.push(current);
    }
    Ok(parsed)
}

const BACKSLASH: u32 = '\\' as u32;
const SINGLE_QUOTE: u32 = '\'' as u32;
const DOUBLE_QUOTE: u32 = '"' as u32;

/// `String.codePointAt(index)`: a high surrogate followed by a low one is one code point; any
/// other unit, a lone or a trailing surrogate included, is itself.
fn code_point_at(units: &[u16], index: usize) -> u32 {
    let high = units[index];
    if let Some(&low) = units.get(index + 1)
        && (0xD800..=0xDBFF).contains(&high)
        && (0xDC00..=0xDFFF).contains(&low)
    {
        return 0x10000 + ((u32::from(high) & 0x3FF) << 10) + (u32::from(low) & 0x3FF);
    }
    u32::from(high)
}

/// `StringBuilder.appendCodePoint`.
fn push_code_point(out: &mut Vec<u16>, code_point: u32) {
    let mut buffer = [0u16; 2];
    match char::from_u32(code_point) {
        Some(c) => out.extend_from_slice(c.encode_utf16(&mut buffer)),
        // A lone surrogate is not a `char` but is a valid Java char: appended as is.
        None => out.push(code_point as u16),
    }
}

/// Java's `Character.isWhitespace(int)`: Unicode space, line and paragraph separators except the
/// no-break ones (U+00A0, U+2007, U+202F), and the controls U+0009–U+000D, U+001C–U+001F.
pub fn is_java_whitespace(code_point: u32) -> bool {
    matches!(
        code_point,
        0x0009..=0x000D
            | 0x001C..=0x001F
            | 0x0020
            | 0x1680
            | 0x2000..=0x2006
            | 0x2008..=0x200A
            | 0x2028
            | 0x2029
            | 0x205F
            | 0x3000
    )
}

/// A Java string from Rust text.
pub fn java(text: &str) -> Vec<u16> {
    text.encode_utf16().collect()
}

/// `CommandBuilderUtilsSuite.testValidOptionStrings` and `testInvalidOptionStrings` (Spark 3.5).
const VALID: &[(&str, &[&str])] = &[
    ("a b c d e", &["a", "b", "c", "d", "e"]),
    ("a 'b c' \"d\" e", &["a", "b c", "d", "e"]),
    ("a 'b\\\"c' \"'d'\" e", &["a", "b\\\"c", "'d'", "e"]),
    ("a 'b\"c' \"\\\"d\\\"\" e", &["a", "b\"c", "\"d\"", "e"]),
    (" a b c \\\\ ", &["a", "b", "c", "\\"]),
    ("", &[]),
    ("a", &["a"]),
    ("aaa", &["aaa"]),
    ("a b c", &["a", "b", "c"]),
    ("  a   b\t c ", &["a", "b", "c"]),
    ("a 'b c'", &["a", "b c"]),
    ("a 'b c' d", &["a", "b c", "d"]),
    ("'b c'", &["b c"]),
    ("a \"b c\"", &["a", "b c"]),
    ("a \"b c\" d", &["a", "b c", "d"]),
    ("\"b c\"", &["b c"]),
    ("a 'b\" c' \"d' e\"", &["a", "b\" c", "d' e"]),
    ("a\t'b\nc'\nd", &["a", "b\nc", "d"]),
    ("a \"b\\\\c\"", &["a", "b\\c"]),
    ("a \"b\\\"c\"", &["a", "b\"c"]),
    ("a 'b\\\"c'", &["a", "b\\\"c"]),
    ("'a'b", &["ab"]),
    ("'a''b'", &["ab"]),
    ("\"a\"b", &["ab"]),
    ("\"a\"\"b\"", &["ab"]),
    ("''", &[""]),
    ("\"\"", &[""]),
];
const INVALID: &[&str] = &["\\", "\"abcde", "'abcde"];

/// Checks the model against Spark's own test suite and the surrogate behaviour the webhook's
/// refusal of characters above U+FFFF rests on. Panics when the model is wrong.
pub fn self_check() {
    static CHECKED: Once = Once::new();
    CHECKED.call_once(|| {
        for (input, expected) in VALID {
            let expected: Vec<Vec<u16>> = expected.iter().map(|option| java(option)).collect();
            assert_eq!(
                parse_option_string(input),
                Ok(expected),
                "launcher model disagrees with CommandBuilderUtilsSuite on {input:?}"
            );
        }
        for input in INVALID {
            assert_eq!(
                parse_option_string(input),
                Err(InvalidOptionString),
                "launcher model accepts {input:?}, which Spark rejects"
            );
        }
        // U+1D11E is D834 DD1E in UTF-16: appended whole at D834, then DD1E again on its own.
        assert_eq!(
            parse_option_string("𝄞"),
            Ok(vec![vec![0xD834, 0xDD1E, 0xDD1E]])
        );
        assert!(!is_java_whitespace(0xA0) && !is_java_whitespace(0x85));
    });
}
