//! The kubelet's expansion of `$(VAR)` references in `env[].value`, from Kubernetes'
//! `third_party/forked/golang/expansion/expand.go`.
//!
//! Two revisions of that file are in circulation and differ in one corner: after a `$` that
//! starts neither `$$` nor `$(`, the older one re-emits the next *byte* as the code point of its
//! value (so `$é` comes out as `$Ã` plus a stray byte), the newer one decodes the next *rune* and
//! re-emits it intact. Clusters run both, so every property the targets check must hold under
//! [`Variant::ByteQuirk`] and [`Variant::RuneAware`] alike.

use std::sync::Once;

/// Which revision of the kubelet's expansion to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `string(input[0])` on a byte: the character after a lone `$` is read one byte at a time.
    ByteQuirk,
    /// `utf8.DecodeRuneInString`: the character after a lone `$` is read whole.
    RuneAware,
}

pub const VARIANTS: [Variant; 2] = [Variant::ByteQuirk, Variant::RuneAware];

/// Expands `input` as the kubelet does. `lookup` answers for defined variables; an undefined
/// `$(NAME)` is written back as it was. Returns bytes, as Go strings are: the byte quirk can
/// leave a UTF-8 sequence split.
pub fn expand(input: &str, variant: Variant, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<u8> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.extend_from_slice(&bytes[checkpoint..cursor]);
            // `consumed` counts the bytes read after the `$`; Go's loop then steps past the last.
            let consumed = after_operator(input, cursor + 1, variant, lookup, &mut out);
            cursor += consumed;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.extend_from_slice(&bytes[checkpoint..]);
    out
}

/// Go's `tryReadVariableName` plus the write that follows it, for the text starting at `start`
/// (just after a `$`). Returns how many bytes it consumed.
fn after_operator(
    input: &str,
    start: usize,
    variant: Variant,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut Vec<u8>,
) -> usize {
    let rest = &input.as_bytes()[start..];
    match rest[0] {
        b'$' => {
            out.push(b'$');
            1
        }
        b'(' => match rest[1..].iter().position(|&b| b == b')') {
            Some(offset) => {
                let close = offset + 1;
                // Both ends are ASCII, so the name is whole UTF-8 even when the input is not ASCII.
                let name = &input[start + 1..start + close];
                match lookup(name) {
                    Some(value) => out.extend_from_slice(value.as_bytes()),
                    None => {
                        out.extend_from_slice(b"$(");
                        out.extend_from_slice(name.as_bytes());
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
        first => {
            out.push(b'$');
            match variant {
                Variant::ByteQuirk => {
                    let mut buffer = [0u8; 4];
                    out.extend_from_slice(char::from(first).encode_utf8(&mut buffer).as_bytes());
                    1
                }
                Variant::RuneAware => {
                    let c = input[start..].chars().next().expect("a byte follows the $");
                    let mut buffer = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
                    c.len_utf8()
                }
            }
        }
    }
}

/// A lookup that defines nothing: every `$(NAME)` stays as written.
pub fn undefined(_: &str) -> Option<String> {
    None
}

/// A lookup that defines every name, so any `$(...)` that survives escaping would visibly
/// change the text.
pub fn everything_defined(name: &str) -> Option<String> {
    Some(format!("<{name}>"))
}

/// The variables of `expand_test.go`'s `TestMapping`.
fn upstream_context(name: &str) -> Option<String> {
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

/// `doExpansionTest` from `expand_test.go`: input, expected output.
const UPSTREAM_TABLE: &[(&str, &str)] = &[
    ("$(VAR_A)", "A"),
    ("$(VAR_A)-$(VAR_A)", "A-A"),
    ("$(VAR_A)-1", "A-1"),
    ("___$(VAR_B)___", "___B___"),
    ("___$(VAR_C)", "___C"),
    ("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
    ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
    ("$$(VAR_A)_$$(VAR_B)", "$(VAR_A)_$(VAR_B)"),
    ("f000-$$VAR_A", "f000-$VAR_A"),
    ("foo\\$(VAR_C)bar", "foo\\Cbar"),
    ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
    ("foo\\\\\\\\$(VAR_A)bar", "foo\\\\\\\\Abar"),
    ("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))"),
    ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
    ("$(VAR_REF)", "$(VAR_A)"),
    ("%%$(VAR_REF)--$(VAR_REF)%%", "%%$(VAR_A)--$(VAR_A)%%"),
    ("foo$(VAR_EMPTY)bar", "foobar"),
    ("foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!"),
    ("f00__(VAR_A)__", "f00__(VAR_A)__"),
    ("$?_boo_$!", "$?_boo_$!"),
    ("$VAR_A", "$VAR_A"),
    ("$(VAR_DNE)", "$(VAR_DNE)"),
    ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
    ("$$$$$$(VAR_A)", "$$$(VAR_A)"),
    ("$$$$$$$(GOOD_ODDS)", "$$$$(GOOD_ODDS)"),
    ("$$$$$$$(VAR_A)", "$$$A"),
    ("$VAR_A)", "$VAR_A)"),
    ("${VAR_A}", "${VAR_A}"),
    ("$(VAR_B)_______$(A", "B_______$(A"),
    ("$(VAR_C)_______$(", "C_______$("),
    ("$(VAR_A)foobarzab$", "Afoobarzab$"),
    ("foo-\\$(VAR_A", "foo-\\$(VAR_A"),
    ("--$($($($($--", "--$($($($($--"),
    ("$($($($($--foo$(", "$($($($($--foo$("),
    ("foo0--$($($($(", "foo0--$($($($("),
    ("$(foo$$var)", "$(foo$$var)"),
    ("\n", "\n"),
];

/// Checks the port against the upstream table, and the one place the two revisions differ.
/// Panics (a libFuzzer crash on the first input) when the model is wrong.
pub fn self_check() {
    static CHECKED: Once = Once::new();
    CHECKED.call_once(|| {
        for variant in VARIANTS {
            for (input, expected) in UPSTREAM_TABLE {
                let got = expand(input, variant, &upstream_context);
                assert_eq!(
                    got,
                    expected.as_bytes(),
                    "kubelet model {variant:?} disagrees with expand_test.go on {input:?}"
                );
            }
        }
        assert_eq!(
            expand("$é", Variant::ByteQuirk, &undefined),
            b"$\xc3\x83\xa9",
            "byte quirk: the lead byte comes back as U+00C3, the continuation byte is copied"
        );
        assert_eq!(
            expand("$é", Variant::RuneAware, &undefined),
            "$é".as_bytes()
        );
    });
}
