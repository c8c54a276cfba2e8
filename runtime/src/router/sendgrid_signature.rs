//! SendGrid's signed Event Webhook: an ECDSA P-256 / SHA-256 signature (base64 of its ASN.1 DER
//! form) over the `X-Twilio-Email-Event-Webhook-Timestamp` header followed by the raw body,
//! checked with the account's verification key (base64 of its SubjectPublicKeyInfo DER, as
//! SendGrid shows it).
use base64::Engine;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};

/// The DER prefix of a P-256 SubjectPublicKeyInfo: the algorithm identifiers (id-ecPublicKey,
/// prime256v1) and the bit string's header; the 65-byte uncompressed point follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The verification key as SendGrid shows it, for the point `public_point` (65 bytes).
pub fn public_key_base64(public_point: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode([&P256_SPKI_PREFIX[..], public_point].concat())
}

/// Whether `signature` is the account's (key `public_key`) over `timestamp` and `body`. A key
/// that is not a P-256 SubjectPublicKeyInfo verifies nothing.
pub fn verify(public_key: &str, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let decode = |text: &str| base64::engine::general_purpose::STANDARD.decode(text.trim()).ok();
    let (Some(key), Some(signature)) = (decode(public_key), decode(signature)) else { return false };
    let Some(point) = key.strip_prefix(&P256_SPKI_PREFIX[..]).filter(|p| p.len() == 65) else { return false };
    let signed = [timestamp.as_bytes(), body].concat();
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point).verify(&signed, &signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

    #[test]
    fn a_signature_verifies_with_its_accounts_key_only_over_its_timestamp_and_body() {
        let rng = SystemRandom::new();
        let pair = |rng: &SystemRandom| {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, rng).expect("key");
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), rng).expect("pair")
        };
        let (account, other) = (pair(&rng), pair(&rng));
        let body = br#"[{"email":"lee@example.com","event":"delivered"}]"#;
        let signature = account.sign(&rng, &[b"1700000000".as_slice(), body].concat()).expect("sign");
        let signature = base64::engine::general_purpose::STANDARD.encode(signature.as_ref());
        let key = public_key_base64(account.public_key().as_ref());
        assert!(key.starts_with("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"), "SendGrid's spelling of a P-256 key");
        assert!(verify(&key, "1700000000", body, &signature));
        assert!(!verify(&key, "1700000001", body, &signature), "another timestamp");
        assert!(!verify(&key, "1700000000", b"[]", &signature), "another body");
        assert!(!verify(&public_key_base64(other.public_key().as_ref()), "1700000000", body, &signature));
        assert!(!verify("not a key", "1700000000", body, &signature));
    }
}
