//! Reading numbers and fields out of what a server sent, straight from the
//! bytes: no strings built, no full JSON parse. A load client reads every
//! message the server sends, and must not be what limits the benchmark.

/// A non-empty run of ASCII digits as a number, if it fits in a `u64`.
pub fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &byte| {
        let digit = byte.checked_sub(b'0').filter(|d| *d <= 9)?;
        value.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// The string value that follows the first `opening` in a compact JSON
/// object, without its closing quote: `opening` is the key with its quotes,
/// the colon and the value's opening quote (`"type":"`). A search rather than
/// a parse, for values that need no escaping (types, error codes, benchmark
/// texts). Inside a JSON string every `"` is escaped, so `"key":` only ever
/// matches a key.
pub fn string_after<'a>(object: &'a [u8], opening: &[u8]) -> Option<&'a [u8]> {
    let start = memchr::memmem::find(object, opening)? + opening.len();
    let len = memchr::memchr(b'"', &object[start..])?;
    Some(&object[start..start + len])
}

/// The non-negative integer that follows the first `key` (with its quotes
/// and colon: `"ref":`) in a compact JSON object, if that value is one.
pub fn number_after(object: &[u8], key: &[u8]) -> Option<u64> {
    let rest = &object[memchr::memmem::find(object, key)? + key.len()..];
    let len = rest
        .iter()
        .position(|byte| !byte.is_ascii_digit())
        .unwrap_or(rest.len());
    decimal(&rest[..len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_plain_digits_that_fit() {
        assert_eq!(decimal(b"0"), Some(0));
        assert_eq!(decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(decimal(b"18446744073709551616"), None, "beyond u64");
        assert_eq!(decimal(b""), None);
        assert_eq!(decimal(b"+3"), None);
        assert_eq!(decimal(b"3a"), None);
    }

    #[test]
    fn fields_are_found_by_key_only() {
        const TYPE: &[u8] = br#""type":""#;
        const REF: &[u8] = br#""ref":"#;
        let ack = br#"{"type":"ack","id":41,"ref":7}"#;
        assert_eq!(string_after(ack, TYPE), Some(&b"ack"[..]));
        assert_eq!(number_after(ack, REF), Some(7));
        assert_eq!(number_after(ack, br#""id":"#), Some(41));
        assert_eq!(number_after(ack, br#""missing":"#), None);
        assert_eq!(number_after(br#"{"ref":"seven"}"#, REF), None);
        assert_eq!(number_after(br#"{"ref":-1}"#, REF), None);
        assert_eq!(string_after(br#"{"type":"ack"#, TYPE), None, "cut off");
        // A key's name inside a string value is escaped, so it never matches.
        let tricky = br#"{"text":"say \"ref\":9","ref":3}"#;
        assert_eq!(number_after(tricky, REF), Some(3));
        assert_eq!(number_after(br#"{"xref":5}"#, REF), None);
    }
}
