// The hostile value corpus for Spark option encoding, shared by `src/decision/spark.rs`'s unit tests and
// `tests/spark_submit.rs` (through `include!`, since integration tests cannot see test-only
// library code): everything naive quoting, a shell, the kubelet or Spark's launcher could
// mangle, and that the encoding must carry byte for byte.

pub fn hostile_values() -> Vec<String> {
    let mut values: Vec<String> = [
        "",
        " ",
        "plain",
        "with space",
        "  leading and trailing  ",
        "\ttab\tseparated\t",
        "it's",
        "'",
        "''",
        "'\\''",
        "say \"hi\"",
        "\"",
        "mixed '\" quotes \"'",
        "x' -Dspark.evil=1 '",
        "x\" -Dspark.evil=1 \"",
        "x -Dspark.evil=1",
        "-Xmx1g -XX:OnOutOfMemoryError=reboot",
        "$",
        "$$",
        "$$$",
        "$(HOME)",
        "$$(HOME)",
        "${HOME}",
        "$HOME",
        "trailing$",
        "$(",
        "`id`",
        "$(id)",
        "back\\slash",
        "\\",
        "trailing\\",
        "\\\\",
        "\\'",
        "\\\"",
        "a=b=c",
        "=",
        "line one\nline two",
        "\n",
        "ends with newline\n",
        "\u{1}\u{1b}[31mred\u{7f}",
        "\u{b}\u{c}\u{1c}\u{1f}",
        "é ü ß ñ € ✓ 中文 Ωμέγα",
        "\u{a0}no-break\u{2007}\u{202f}",
        "\u{85}\u{2028}\u{2029}\u{3000}",
        "\u{fffd}\u{e000}\u{ffff}",
        ";|&<>(){}[]*?!#~%^",
        "--conf spark.evil=1",
        "#not a comment",
    ]
    .iter()
    .map(|value| value.to_string())
    .collect();
    let mut four_kib = String::with_capacity(4096);
    for c in "a'b\"c\\d$e(f)g h\té€ ".chars().cycle() {
        if four_kib.len() + c.len_utf8() > 4096 {
            break;
        }
        four_kib.push(c);
    }
    values.push(four_kib);
    values
}
