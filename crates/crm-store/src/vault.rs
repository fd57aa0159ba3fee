//! Personal data at rest. National ids and phone numbers are stored sealed
//! (AES-256-GCM, a fresh nonce per value) next to a keyed lookup hash
//! (HMAC-SHA256), so a database dump alone reveals neither, while an exact search
//! by phone or national id is still one index lookup.
//!
//! One 32-byte master key comes from the environment (`CRM_PII_KEY`, base64); the
//! sealing key, the lookup key and the page-token key are derived from it with
//! HKDF under distinct labels, so no key serves two purposes.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use crm_domain::pii::Pii;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{hkdf, hmac};
use secrecy::{ExposeSecret, SecretString};

/// Prefix of sealed values; a new key version gets a new prefix.
const SEALED_PREFIX: &str = "v1:";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("CRM_PII_KEY must be 32 bytes, base64-encoded (`openssl rand -base64 32`)")]
    BadKey,
    #[error("a sealed value could not be opened (wrong CRM_PII_KEY, or damaged data)")]
    CannotOpen,
    #[error("the system random source failed")]
    Random,
}

/// The keys derived from `CRM_PII_KEY`.
pub struct Vault {
    sealing: LessSafeKey,
    lookup: hmac::Key,
    signing: hmac::Key,
    random: SystemRandom,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(***)")
    }
}

struct KeyLength(usize);

impl hkdf::KeyType for KeyLength {
    fn len(&self) -> usize {
        self.0
    }
}

fn derive(master: &hkdf::Prk, label: &'static str) -> Result<[u8; 32], VaultError> {
    let mut key = [0u8; 32];
    let labels = [label.as_bytes()];
    master
        .expand(&labels, KeyLength(key.len()))
        .and_then(|okm| okm.fill(&mut key))
        .map_err(|_| VaultError::BadKey)?;
    Ok(key)
}

impl Vault {
    /// From the base64 text of `CRM_PII_KEY`.
    pub fn from_base64(key: &SecretString) -> Result<Self, VaultError> {
        let bytes = STANDARD
            .decode(key.expose_secret().trim())
            .map_err(|_| VaultError::BadKey)?;
        if bytes.len() != 32 {
            return Err(VaultError::BadKey);
        }
        let master = hkdf::Salt::new(hkdf::HKDF_SHA256, b"rm-crm/pii/v1").extract(&bytes);
        let sealing = UnboundKey::new(&AES_256_GCM, &derive(&master, "seal")?)
            .map_err(|_| VaultError::BadKey)?;
        Ok(Self {
            sealing: LessSafeKey::new(sealing),
            lookup: hmac::Key::new(hmac::HMAC_SHA256, &derive(&master, "lookup")?),
            signing: hmac::Key::new(hmac::HMAC_SHA256, &derive(&master, "sign")?),
            random: SystemRandom::new(),
        })
    }

    /// A fresh random key in `CRM_PII_KEY`'s format (demos and tests).
    pub fn generate_key() -> Result<SecretString, VaultError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| VaultError::Random)?;
        Ok(SecretString::from(STANDARD.encode(bytes)))
    }

    /// `v1:<base64(nonce ‖ ciphertext ‖ tag)>`; the empty value stays empty.
    pub fn seal(&self, value: &Pii) -> Result<String, VaultError> {
        if value.is_empty() {
            return Ok(String::new());
        }
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| VaultError::Random)?;
        let mut in_out = value.expose().as_bytes().to_vec();
        self.sealing
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut in_out,
            )
            .map_err(|_| VaultError::Random)?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&in_out);
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(sealed)))
    }

    pub fn open(&self, sealed: &str) -> Result<Pii, VaultError> {
        if sealed.is_empty() {
            return Ok(Pii::default());
        }
        let encoded = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(VaultError::CannotOpen)?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| VaultError::CannotOpen)?;
        if bytes.len() < NONCE_LEN {
            return Err(VaultError::CannotOpen);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| VaultError::CannotOpen)?;
        let mut in_out = ciphertext.to_vec();
        let clear = self
            .sealing
            .open_in_place(nonce, Aad::empty(), &mut in_out)
            .map_err(|_| VaultError::CannotOpen)?;
        let clear = std::str::from_utf8(clear).map_err(|_| VaultError::CannotOpen)?;
        Ok(Pii::new(clear))
    }

    /// The keyed hash an exact search looks up; equal values hash equal. The
    /// empty value hashes to the empty string so "no phone" never matches.
    pub fn lookup_hash(&self, value: &Pii) -> String {
        if value.is_empty() {
            return String::new();
        }
        let tag = hmac::sign(&self.lookup, value.expose().as_bytes());
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    /// A signature over `data` for tokens handed to callers (page tokens).
    pub fn sign(&self, data: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.signing, data).as_ref())
    }

    pub fn verify(&self, data: &[u8], signature: &str) -> bool {
        URL_SAFE_NO_PAD
            .decode(signature)
            .is_ok_and(|tag| hmac::verify(&self.signing, data, &tag).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> Vault {
        Vault::from_base64(&Vault::generate_key().unwrap()).unwrap()
    }

    #[test]
    fn sealed_values_open_and_never_show_the_clear_value() {
        let vault = vault();
        let phone = Pii::new("13812345678");
        let sealed = vault.seal(&phone).unwrap();
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("1381") && !sealed.contains("5678"));
        assert_ne!(
            sealed,
            vault.seal(&phone).unwrap(),
            "a fresh nonce each time"
        );
        assert_eq!(vault.open(&sealed).unwrap(), phone);
        assert_eq!(vault.seal(&Pii::default()).unwrap(), "");
    }

    #[test]
    fn another_key_cannot_open_or_match() {
        let (one, other) = (vault(), vault());
        let sealed = one.seal(&Pii::new("110101199001011234")).unwrap();
        assert!(matches!(other.open(&sealed), Err(VaultError::CannotOpen)));
        let id = Pii::new("110101199001011234");
        assert_eq!(one.lookup_hash(&id), one.lookup_hash(&id));
        assert_ne!(one.lookup_hash(&id), other.lookup_hash(&id));
        assert_eq!(one.lookup_hash(&Pii::default()), "");
    }

    #[test]
    fn signatures_verify_only_for_the_same_data_and_key() {
        let (one, other) = (vault(), vault());
        let signature = one.sign(b"after=C-1");
        assert!(one.verify(b"after=C-1", &signature));
        assert!(!one.verify(b"after=C-2", &signature));
        assert!(!other.verify(b"after=C-1", &signature));
        assert!(!one.verify(b"after=C-1", "not base64!"));
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(Vault::from_base64(&SecretString::from("short")).is_err());
        assert!(Vault::from_base64(&SecretString::from(STANDARD.encode([1u8; 16]))).is_err());
    }
}
