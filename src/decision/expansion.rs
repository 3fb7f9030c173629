//! The kubelet's `$(VAR)` expansion of env values, and the escaping that survives it.
//!
//! The kubelet expands `$(NAME)` inside `env[].value` and turns `$$` into `$` before the
//! container starts. A secret value written verbatim could therefore change (or pull in another
//! variable) on the way in. [`escape_for_kubelet`] doubles every `$`, which the kubelet undoes
//! exactly; [`kubelet_expand`] is a faithful port of the kubelet's algorithm
//! (`third_party/forked/golang/expansion/expand.go` in Kubernetes) used to prove that claim.

use std::borrow::Cow;

/// Writes `value` so that the kubelet's expansion yields it byte for byte.
pub fn escape_for_kubelet(value: &str) -> Cow<'_, str> {
    if value.contains('$') {
        Cow::Owned(value.replace('$', "$$"))
    } else {
        Cow::Borrowed(value)
    }
}

/// Expands `input` as the kubelet does; `lookup` answers for defined variables.
///
/// Works on bytes like the Go original, including its quirk: a `$` followed by a byte that starts
/// neither `$` nor `(` re-emits that byte as the code point of its value.
pub fn kubelet_expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.extend_from_slice(&bytes[checkpoint..cursor]);
            let rest = &bytes[cursor + 1..];
            let advance = match rest[0] {
                b'$' => {
                    out.push(b'$');
                    1
                }
                b'(' => match rest.iter().position(|&b| b == b')') {
                    Some(close) => {
                        let name = String::from_utf8_lossy(&rest[1..close]);
                        match lookup(&name) {
                            Some(value) => out.extend_from_slice(value.as_bytes()),
                            None => {
                                out.extend_from_slice(b"$(");
                                out.extend_from_slice(&rest[1..close]);
                                out.push(b')');
                            }
                        }
                        close + 1
                    }
                    None => {
                        out.extend_from_slice(b"$(");
                        1
                    }
                },
                other => {
                    out.push(b'$');
                    let mut encoded = [0u8; 4];
                    out.extend_from_slice(char::from(other).encode_utf8(&mut encoded).as_bytes());
                    1
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.extend_from_slice(&bytes[checkpoint.min(bytes.len())..]);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn context(name: &str) -> Option<String> {
        let value = match name {
            "VAR_A" => "A",
            "VAR_B" => "B",
            "VAR_C" => "C",
            "VAR_REF" => "$(VAR_A)",
            "VAR_EMPTY" => "",
            _ => return None,
        };
        Some(value.to_owned())
    }

    /// The table published with the kubelet's expansion (`expand_test.go`, `TestMapReference`
    /// and `TestExpand`), with its variables VAR_A=A, VAR_B=B, VAR_C=C, VAR_REF=$(VAR_A),
    /// VAR_EMPTY="".
    #[rstest]
    #[case("$(VAR_A)", "A")]
    #[case("$(VAR_A)-$(VAR_A)", "A-A")]
    #[case("$(VAR_A)-1", "A-1")]
    #[case("___$(VAR_B)___", "___B___")]
    #[case("___$(VAR_C)", "___C")]
    #[case("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C")]
    #[case("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A")]
    #[case("$$(VAR_A)_$$(VAR_B)", "$(VAR_A)_$(VAR_B)")]
    #[case("f000-$$VAR_A", "f000-$VAR_A")]
    #[case("foo\\$(VAR_C)bar", "foo\\Cbar")]
    #[case("foo\\\\$(VAR_C)bar", "foo\\\\Cbar")]
    #[case("foo\\\\\\\\$(VAR_A)bar", "foo\\\\\\\\Abar")]
    #[case("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))")]
    #[case("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)")]
    #[case("$(VAR_REF)", "$(VAR_A)")]
    #[case("%%$(VAR_REF)--$(VAR_REF)%%", "%%$(VAR_A)--$(VAR_A)%%")]
    #[case("foo$(VAR_EMPTY)bar", "foobar")]
    #[case("foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!")]
    #[case("f00__(VAR_A)__", "f00__(VAR_A)__")]
    #[case("$?_boo_$!", "$?_boo_$!")]
    #[case("$VAR_A", "$VAR_A")]
    #[case("$(VAR_DNE)", "$(VAR_DNE)")]
    #[case("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)")]
    #[case("$$$$$$(VAR_A)", "$$$(VAR_A)")]
    #[case("$$$$$$$(GOOD_ODDS)", "$$$$(GOOD_ODDS)")]
    #[case("$$$$$$$(VAR_A)", "$$$A")]
    #[case("$VAR_A)", "$VAR_A)")]
    #[case("${VAR_A}", "${VAR_A}")]
    #[case("$(VAR_B)_______$(A", "B_______$(A")]
    #[case("$(VAR_C)_______$(", "C_______$(")]
    #[case("$(VAR_A)foobarzab$", "Afoobarzab$")]
    #[case("foo-\\$(VAR_A", "foo-\\$(VAR_A")]
    #[case("--$($($($($--", "--$($($($($--")]
    #[case("$($($($($--foo$(", "$($($($($--foo$(")]
    #[case("foo0--$($($($(", "foo0--$($($($(")]
    #[case("$(foo$$var)", "$(foo$$var)")]
    #[case("\n", "\n")]
    #[case("", "")]
    fn port_matches_the_kubelet_table(#[case] input: &str, #[case] expected: &str) {
        assert_eq!(kubelet_expand(input, context), expected);
    }

    #[rstest]
    #[case("plain")]
    #[case("$")]
    #[case("$$")]
    #[case("$(VAR_A)")]
    #[case("$$(VAR_A)")]
    #[case("${VAR_A}")]
    #[case("trailing$")]
    #[case("$é and €$ and 𝄞")]
    #[case("`echo $HOME` \\$ '$' \"$\"")]
    #[case("p@ss$(VAR_REF)w0rd$")]
    fn escaped_values_survive_expansion_byte_for_byte(#[case] value: &str) {
        assert_eq!(kubelet_expand(&escape_for_kubelet(value), context), value);
    }

    #[test]
    fn values_without_dollar_are_not_copied() {
        assert!(matches!(escape_for_kubelet("no dollar"), Cow::Borrowed(_)));
    }
}
