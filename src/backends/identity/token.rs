//! The pod-bound token as the broker holds it: a [`BearerToken`] that never prints, the digest
//! its review is cached under, and how long a review may be cached, from the token's own `exp`.
//!
//! The `exp` claim is read from the JWT payload without verifying its signature. That is safe
//! because it is read only after the API server accepted the token (a forged `exp` belongs to a
//! token the API server refused, whose review is never cached), and only to bound the cache: an
//! accepted token's `exp` is the one the API server signed.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// Longest bearer token accepted; a service account token is about 1 KiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// A cached review ends this long before its token expires, so clock skew between the API
/// server and the webhook cannot make a cached answer outlive the token.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// Longest time a review is cached, however long its token lives: a token the API server
/// invalidates (its pod or service account deleted) stops working here within this long, even
/// before the per-request pod read notices.
pub const MAX_CACHE_LIFETIME: Duration = Duration::from_secs(60);

/// A bearer token from an `Authorization` header. Its `Debug` redacts it; it leaves only for
/// the TokenReview and, as a SHA-256 digest, as a cache key.
#[derive(Clone)]
pub struct BearerToken(SecretString);

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl BearerToken {
    /// The token of an `Authorization: Bearer …` header value; `None` for any other scheme, an
    /// empty or oversized token, or one with characters a JWT cannot hold.
    pub fn from_authorization(header: &str) -> Option<BearerToken> {
        let (scheme, token) = header.trim().split_once(' ')?;
        let token = token.trim();
        let usable = scheme.eq_ignore_ascii_case("bearer")
            && !token.is_empty()
            && token.len() <= MAX_TOKEN_BYTES
            && token.bytes().all(|b| b.is_ascii_graphic());
        usable.then(|| BearerToken(SecretString::from(token)))
    }

    pub(super) fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The cache key of this token's review: its SHA-256, so the cache never holds a token.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.expose().as_bytes()).into()
    }

    /// The `exp` claim (Unix seconds) of the token's JWT payload, unverified; `None` when the
    /// token is not a JWT with a numeric `exp`.
    pub fn expiry(&self) -> Option<u64> {
        jwt_expiry(self.expose())
    }
}

/// The `exp` claim of a JWT's payload, unverified (see the module documentation).
pub fn jwt_expiry(token: &str) -> Option<u64> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let json = engine.decode(payload).ok()?;
    // A JSON object only (a derived reader would also take `[exp]`), `exp` a whole number.
    let claims: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&json).ok()?;
    claims.get("exp")?.as_u64()
}

/// How long a review of a token expiring at `expiry` (Unix seconds) may be cached at `now`
/// (Unix seconds): until [`EXPIRY_MARGIN`] before it expires, at most [`MAX_CACHE_LIFETIME`];
/// `None` (not cached) without an expiry or when it is that close already.
pub fn cache_lifetime(expiry: Option<u64>, now: u64) -> Option<Duration> {
    let remaining = expiry?.checked_sub(now)?;
    let usable = Duration::from_secs(remaining).checked_sub(EXPIRY_MARGIN)?;
    (!usable.is_zero()).then(|| usable.min(MAX_CACHE_LIFETIME))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn jwt(payload: &str) -> String {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.c2lnbmF0dXJl",
            engine.encode(r#"{"alg":"RS256"}"#),
            engine.encode(payload)
        )
    }

    #[rstest]
    #[case::plain(jwt(r#"{"exp":1700000600,"aud":["x"]}"#), Some(1_700_000_600))]
    #[case::padded("e30.eyJleHAiOjUwfQ==.s".to_owned(), Some(50))]
    #[case::no_exp(jwt(r#"{"aud":["x"]}"#), None)]
    #[case::string_exp(jwt(r#"{"exp":"1700000600"}"#), None)]
    #[case::negative_exp(jwt(r#"{"exp":-1}"#), None)]
    #[case::float_exp(jwt(r#"{"exp":1.5}"#), None)]
    #[case::not_json(jwt("not json"), None)]
    #[case::array(jwt("[1700000600]"), None)]
    #[case::two_parts("e30.e30".to_owned(), None)]
    #[case::four_parts(format!("{}.x", jwt(r#"{"exp":5}"#)), None)]
    #[case::bad_base64("e30.!!!.sig".to_owned(), None)]
    #[case::empty(String::new(), None)]
    #[case::dots("..".to_owned(), None)]
    fn reads_exp_and_never_panics(#[case] token: String, #[case] expected: Option<u64>) {
        assert_eq!(jwt_expiry(&token), expected);
    }

    const NOW: u64 = 1_700_000_000;

    #[rstest]
    #[case::long_lived(Some(NOW + 600), Some(MAX_CACHE_LIFETIME))]
    #[case::short_lived(Some(NOW + 45), Some(Duration::from_secs(15)))]
    #[case::inside_the_margin(Some(NOW + 30), None)]
    #[case::near_expiry(Some(NOW + 10), None)]
    #[case::expired(Some(NOW - 1), None)]
    #[case::no_expiry(None, None)]
    #[case::far_future(Some(u64::MAX), Some(MAX_CACHE_LIFETIME))]
    fn caches_only_well_before_expiry(
        #[case] expiry: Option<u64>,
        #[case] expected: Option<Duration>,
    ) {
        assert_eq!(cache_lifetime(expiry, NOW), expected);
    }

    #[rstest]
    #[case("Bearer abc.def.ghi", Some("abc.def.ghi"))]
    #[case("bearer  abc ", Some("abc"))]
    #[case("Basic abc", None)]
    #[case("Bearer ", None)]
    #[case("Bearer", None)]
    #[case("Bearer a b", None)]
    #[case("Bearer caf\u{e9}", None)]
    fn reads_the_bearer_header(#[case] header: &str, #[case] expected: Option<&str>) {
        let token = BearerToken::from_authorization(header);
        assert_eq!(token.as_ref().map(BearerToken::expose), expected);
    }

    #[test]
    fn oversized_tokens_are_refused_and_none_prints() {
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        assert!(BearerToken::from_authorization(&long).is_none());
        let token = BearerToken::from_authorization("Bearer canary-token").unwrap();
        assert!(!format!("{token:?}").contains("canary"));
        assert_ne!(token.digest(), [0; 32]);
    }
}
