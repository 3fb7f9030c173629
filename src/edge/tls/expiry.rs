//! When a certificate expires: its `notAfter`, read straight from the DER, for the
//! `serving_certificate_expiry_timestamp_seconds` metric (an alert fires well before the API
//! server starts refusing the webhook's certificate).
//!
//! Only the few fields in front of `validity` are stepped over; nothing else of the certificate
//! is interpreted (rustls has already accepted it for serving).

/// `notAfter` of a DER X.509 certificate, in Unix seconds; `None` when it cannot be read.
pub(super) fn not_after(der: &[u8]) -> Option<i64> {
    let (certificate, _) = element(der, SEQUENCE)?;
    let (mut tbs, _) = element(certificate, SEQUENCE)?;
    // version [0] EXPLICIT (absent for v1), serialNumber, signature, issuer; then validity.
    if tbs.first() == Some(&0xa0) {
        tbs = skip(tbs)?;
    }
    for _ in 0..3 {
        tbs = skip(tbs)?;
    }
    let (validity, _) = element(tbs, SEQUENCE)?;
    let not_after = skip(validity)?;
    match *not_after.first()? {
        UTC_TIME => time(element(not_after, UTC_TIME)?.0, 2),
        GENERALIZED_TIME => time(element(not_after, GENERALIZED_TIME)?.0, 4),
        _ => None,
    }
}

const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The contents of the element at the start of `input` if its tag is `tag`, and what follows.
fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *input.first()? != tag {
        return None;
    }
    let (length, header) = match *input.get(1)? {
        short @ 0..=0x7f => (usize::from(short), 2),
        long @ 0x81..=0x84 => {
            let bytes = usize::from(long & 0x7f);
            let length = input
                .get(2..2 + bytes)?
                .iter()
                .fold(0usize, |acc, byte| (acc << 8) | usize::from(*byte));
            (length, 2 + bytes)
        }
        _ => return None,
    };
    let end = header.checked_add(length)?;
    Some((input.get(header..end)?, input.get(end..)?))
}

/// What follows the element at the start of `input`, whatever its tag.
fn skip(input: &[u8]) -> Option<&[u8]> {
    element(input, *input.first()?).map(|(_, rest)| rest)
}

/// `YYMMDDHHMMSSZ` (UTCTime, `year_digits` 2) or `YYYYMMDDHHMMSSZ` (GeneralizedTime, 4), as
/// RFC 5280 requires them, in Unix seconds.
fn time(text: &[u8], year_digits: usize) -> Option<i64> {
    if text.len() != year_digits + 11 || text.last() != Some(&b'Z') {
        return None;
    }
    let number = |at: usize, digits: usize| -> Option<i64> {
        text.get(at..at + digits)?
            .iter()
            .try_fold(0i64, |acc, byte| {
                byte.is_ascii_digit()
                    .then(|| acc * 10 + i64::from(byte - b'0'))
            })
    };
    let mut year = number(0, year_digits)?;
    if year_digits == 2 {
        // RFC 5280: UTCTime years 50-99 are 19YY, 00-49 are 20YY.
        year += if year >= 50 { 1900 } else { 2000 };
    }
    let at = year_digits;
    let (month, day) = (number(at, 2)?, number(at + 2, 2)?);
    let (hour, minute, second) = (number(at + 4, 2)?, number(at + 6, 2)?, number(at + 8, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;

    /// A self-signed certificate valid until `not_after` (rcgen writes UTCTime before 2050 and
    /// GeneralizedTime from 2050 on, as RFC 5280 requires).
    fn certificate_until(not_after: i64) -> Vec<u8> {
        let mut params = CertificateParams::new(vec!["expiry.example".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(1970, 1, 1)
            + std::time::Duration::from_secs(u64::try_from(not_after).unwrap());
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_not_after_in_either_time_format() {
        // 2031-05-17T08:09:10Z (UTCTime) and 2071-02-03T04:05:06Z (GeneralizedTime).
        for expected in [1_936_771_750, 3_190_161_906] {
            assert_eq!(not_after(&certificate_until(expected)), Some(expected));
        }
    }

    #[test]
    fn reads_the_certificates_the_certs_subcommand_writes() {
        let bundle = crate::boot::certs::generate(&["svc.example".to_owned()]).unwrap();
        let der = CertificateDer::from_pem_slice(bundle.cert_pem.as_bytes()).unwrap();
        // rcgen's default validity: until 4096-01-01T00:00:00Z.
        assert_eq!(not_after(&der), Some(67_090_118_400));
    }

    #[test]
    fn civil_dates_match_known_timestamps() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        // The last UTCTime year is 2049, the first 1950.
        assert_eq!(time(b"491231235959Z", 2), Some(2_524_607_999));
        assert_eq!(time(b"500101000000Z", 2), Some(-631_152_000));
        assert_eq!(time(b"20380119031408Z", 4), Some(2_147_483_648));
    }

    #[test]
    fn anything_else_is_none() {
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(&[0x30, 0x82, 0xff]), None);
        assert_eq!(not_after(b"not a certificate"), None);
        assert_eq!(time(b"20380119031408", 4), None);
        assert_eq!(time(b"201301010000Z0", 2), None);
        assert_eq!(time(b"491331235959Z", 2), None);
    }
}
