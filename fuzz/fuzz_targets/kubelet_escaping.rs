//! Fuzz target: every env value the webhook writes, through the kubelet's `$(VAR)` expansion.
//!
//! Input: any bytes, lossily decoded to the text of a secret value.
//!
//! Invariants: the escaped value comes back byte for byte from the kubelet (the harness's port of
//! `expand.go`, both revisions, with no variable defined and with every variable defined); the
//! escaping only doubles `$`; an escaped value is never read back as a legacy `${secrets.…}`
//! placeholder when the pod is re-admitted; and the webhook's own port of the kubelet
//! (`expansion::kubelet_expand`, which it uses to measure and check `SPARK_SUBMIT_OPTS`) agrees
//! with the harness's port of the revision it follows on any text, escaped or not.
#![no_main]

use iomete_secrets_webhook::decision::expansion::{escape_for_kubelet, kubelet_expand};
use iomete_secrets_webhook::decision::legacy;
use iomete_secrets_webhook_fuzz::kubelet::{self, VARIANTS, Variant};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kubelet::self_check();
    let value = String::from_utf8_lossy(data);
    let written = escape_for_kubelet(&value);

    for variant in VARIANTS {
        for lookup in [kubelet::undefined, kubelet::everything_defined] {
            assert_eq!(
                kubelet::expand(&written, variant, &lookup),
                value.as_bytes(),
                "the kubelet ({variant:?}) changes the escaped value {written:?}"
            );
        }
    }

    let dollars = value.matches('$').count();
    assert_eq!(written.len(), value.len() + dollars);
    assert_eq!(written.replace("$$", "$"), value);

    assert_eq!(
        legacy::parse_template(&written),
        Ok(None),
        "an injected value would be read as a placeholder on re-admission"
    );

    for lookup in [kubelet::undefined, kubelet::everything_defined] {
        let expected = kubelet::expand(&value, Variant::ByteQuirk, &lookup);
        assert_eq!(
            kubelet_expand(&value, lookup),
            String::from_utf8_lossy(&expected),
            "the webhook's kubelet port disagrees with expand.go on {value:?}"
        );
    }
});
