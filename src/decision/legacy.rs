//! Legacy `${secrets.KEY}` placeholders inside env values.
//!
//! Before the V2 annotations, pods wrote `${secrets.KEY}` inside a literal env value and the
//! webhook substituted the global store's value in place. This module finds and validates those
//! placeholders; it never sees values, only the template they will be written into.

use crate::decision::names::validate_secret_key;

const OPENING: &str = "${secrets.";

/// A placeholder that cannot be resolved as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceholderError {
    #[error("placeholder at byte {offset} has no closing '}}'")]
    Unclosed { offset: usize },
    #[error("placeholder at byte {offset}: {problem}")]
    InvalidKey { offset: usize, problem: String },
    #[error(
        "placeholder at byte {offset} is inside a $(...) reference, which the kubelet keeps as written without unescaping it, so the value would not arrive intact; move the placeholder out of the $(...)"
    )]
    InsideReference { offset: usize },
}

/// One piece of an env value that holds placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Text the user wrote, kept byte for byte.
    Literal(String),
    /// A global-store key whose value replaces the placeholder.
    Secret(String),
}

/// An env value split into literal text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub segments: Vec<Segment>,
}

impl Template {
    /// The global-store keys this template needs, in order of appearance (repeats kept).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|segment| match segment {
            Segment::Secret(key) => Some(key.as_str()),
            Segment::Literal(_) => None,
        })
    }
}

/// Whether `value` mentions a placeholder at all (cheap pre-check before [`parse_template`]).
pub fn mentions_placeholder(value: &str) -> bool {
    value.contains(OPENING)
}

/// Splits `value` into literals and placeholders; `None` when it holds no placeholder.
///
/// The scan follows the kubelet's escaping: `$$` is a literal `$`, so `$${secrets.k}` is text,
/// not a placeholder. That is also what keeps an injected value (written with every `$`
/// doubled) from being read as a placeholder when the pod comes back on reinvocation.
///
/// A placeholder inside the kubelet's `$(` … `)` (or after an unclosed `$(`) is refused: the
/// kubelet keeps an unknown `$(NAME)` as written, `$$` included, and a `)` in the value would
/// end the reference early, so no escaping could deliver the value intact.
pub fn parse_template(value: &str) -> Result<Option<Template>, PlaceholderError> {
    if !mentions_placeholder(value) {
        return Ok(None);
    }
    let bytes = value.as_bytes();
    let mut segments = Vec::new();
    let mut literal_start = 0;
    let mut cursor = 0;
    // Where the kubelet's `$(` … `)` span around the cursor ends (0: not inside one).
    let mut reference_end = 0;
    while cursor < bytes.len() {
        if bytes[cursor] != b'$' {
            cursor += 1;
            continue;
        }
        if bytes.get(cursor + 1) == Some(&b'$') {
            cursor += 2;
            continue;
        }
        if bytes.get(cursor + 1) == Some(&b'(') && cursor >= reference_end {
            reference_end = value[cursor + 2..]
                .find(')')
                .map_or(value.len(), |close| cursor + 2 + close + 1);
        }
        if !value[cursor..].starts_with(OPENING) {
            cursor += 1;
            continue;
        }
        let offset = cursor;
        if offset < reference_end {
            return Err(PlaceholderError::InsideReference { offset });
        }
        let key_start = offset + OPENING.len();
        let key_end = value[key_start..]
            .find('}')
            .map(|end| key_start + end)
            .ok_or(PlaceholderError::Unclosed { offset })?;
        let key = &value[key_start..key_end];
        validate_secret_key(key)
            .map_err(|problem| PlaceholderError::InvalidKey { offset, problem })?;
        if literal_start < offset {
            segments.push(Segment::Literal(value[literal_start..offset].to_owned()));
        }
        segments.push(Segment::Secret(key.to_owned()));
        cursor = key_end + 1;
        literal_start = cursor;
    }
    if segments.is_empty() {
        return Ok(None);
    }
    if literal_start < value.len() {
        segments.push(Segment::Literal(value[literal_start..].to_owned()));
    }
    Ok(Some(Template { segments }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn lit(text: &str) -> Segment {
        Segment::Literal(text.to_owned())
    }
    fn secret(key: &str) -> Segment {
        Segment::Secret(key.to_owned())
    }

    #[rstest]
    #[case("${secrets.db_password}", vec![secret("db_password")])]
    #[case("jdbc://u:${secrets.pw}@host", vec![lit("jdbc://u:"), secret("pw"), lit("@host")])]
    #[case("${secrets.a}${secrets.b}", vec![secret("a"), secret("b")])]
    #[case("${secrets.a}-${secrets.a}", vec![secret("a"), lit("-"), secret("a")])]
    #[case("$(HOME)/${secrets.k.v-1_2}", vec![lit("$(HOME)/"), secret("k.v-1_2")])]
    #[case("$$$${secrets.b}x${secrets.c}", vec![lit("$$$${secrets.b}x"), secret("c")])]
    #[case("$$${secrets.d}", vec![lit("$$"), secret("d")])]
    fn templates_split_into_literals_and_keys(#[case] value: &str, #[case] expected: Vec<Segment>) {
        let template = parse_template(value).unwrap().unwrap();
        assert_eq!(template.segments, expected);
    }

    #[rstest]
    #[case("plain value")]
    #[case("${HOME}")]
    #[case("$(secrets.x)")]
    #[case("")]
    #[case("$${secrets.escaped}")]
    #[case("a $${secrets.x} and $$$${secrets.y}")]
    fn values_without_placeholders_are_left_alone(#[case] value: &str) {
        assert_eq!(parse_template(value).unwrap(), None);
    }

    #[rstest]
    #[case::whole_reference("$(${secrets.k})", 2)]
    #[case::inside_text("pre $(X ${secrets.k} Y) post", 8)]
    #[case::unclosed_reference("$(${secrets.k}", 2)]
    #[case::after_a_closed_one("$(A)$(${secrets.k}", 6)]
    #[case::second_of_two("${secrets.a} $(${secrets.k})", 15)]
    fn placeholders_inside_a_kubelet_reference_are_refused(
        #[case] value: &str,
        #[case] offset: usize,
    ) {
        assert_eq!(
            parse_template(value),
            Err(PlaceholderError::InsideReference { offset })
        );
    }

    /// Wherever a template is accepted, the kubelet delivers each value intact: what the
    /// container sees is each literal as the kubelet expands it on its own, with the raw value
    /// in place of each placeholder, even for a value holding `$`, `$(` and `)`.
    #[rstest]
    #[case("$(HOME)/${secrets.k}")]
    #[case("$$(${secrets.k})")]
    #[case("$(A) ${secrets.k} $(B)")]
    #[case("x$${secrets.k}y ${secrets.k}")]
    #[case("${secrets.k}$(HOME)")]
    fn accepted_templates_deliver_values_intact(#[case] value: &str) {
        use crate::decision::expansion::{escape_for_kubelet, kubelet_expand};
        let secret = "a)b$(HOME)$$c$";
        let lookup = |name: &str| (name == "HOME").then(|| "/home".to_owned());
        let template = parse_template(value).unwrap().unwrap();
        let (mut written, mut expected) = (String::new(), String::new());
        for segment in &template.segments {
            match segment {
                Segment::Literal(text) => {
                    written.push_str(text);
                    expected.push_str(&kubelet_expand(text, lookup));
                }
                Segment::Secret(_) => {
                    written.push_str(&escape_for_kubelet(secret));
                    expected.push_str(secret);
                }
            }
        }
        assert_eq!(kubelet_expand(&written, lookup), expected, "{value}");
    }

    #[rstest]
    #[case("${secrets.open", PlaceholderError::Unclosed { offset: 0 })]
    #[case("x ${secrets.}", PlaceholderError::InvalidKey { offset: 2, problem: String::new() })]
    #[case("${secrets.a b}", PlaceholderError::InvalidKey { offset: 0, problem: String::new() })]
    #[case("${secrets.ok} ${secrets.a/b}", PlaceholderError::InvalidKey { offset: 14, problem: String::new() })]
    #[case("${secrets...}", PlaceholderError::InvalidKey { offset: 0, problem: String::new() })]
    fn malformed_placeholders_are_rejected_with_their_offset(
        #[case] value: &str,
        #[case] expected: PlaceholderError,
    ) {
        let error = parse_template(value).unwrap_err();
        match (&error, &expected) {
            (
                PlaceholderError::InvalidKey { offset, .. },
                PlaceholderError::InvalidKey { offset: want, .. },
            ) => assert_eq!(offset, want, "{error}"),
            _ => assert_eq!(error, expected),
        }
    }
}
