//! Proof that a request came through the gateway (or from another service of the shop): the
//! caller's `x-actor` is signed with a secret only the shop's parts share — an HMAC-SHA256 of the
//! actor and an expiry, sent as `x-actor-proof: <expiry>.<hex>`. Services refuse anything else
//! (401), so reaching a service's port directly does not let anyone act or read as someone.

use ring::hmac;

/// The proof of the caller's identity.
pub const PROOF_HEADER: &str = "x-actor-proof";
/// How long a proof is valid, in seconds (a request's lifetime, with room for clock skew).
pub const PROOF_TTL_S: i64 = 60;

/// The shared secret, as a signing key. Its bytes never print.
#[derive(Clone)]
pub struct IdentityKey(hmac::Key);

impl std::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityKey(…)")
    }
}

impl IdentityKey {
    pub fn new(secret: &[u8]) -> IdentityKey {
        IdentityKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// The proof header's value for `actor`, valid for `PROOF_TTL_S`.
    pub fn prove(&self, actor: &str) -> String {
        let expiry = chrono::Utc::now().timestamp() + PROOF_TTL_S;
        let tag = hmac::sign(&self.0, message(actor, expiry).as_bytes());
        format!("{expiry}.{}", hex(tag.as_ref()))
    }

    /// Whether `proof` was made for `actor` with this key and has not expired.
    pub fn verify(&self, actor: &str, proof: &str) -> bool {
        let Some((expiry, tag)) = proof.split_once('.') else {
            return false;
        };
        let (Ok(expiry), Some(tag)) = (expiry.parse::<i64>(), unhex(tag)) else {
            return false;
        };
        expiry >= chrono::Utc::now().timestamp()
            && hmac::verify(&self.0, message(actor, expiry).as_bytes(), &tag).is_ok()
    }
}

fn message(actor: &str, expiry: i64) -> String {
    format!("{actor}\n{expiry}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
