//! Personal data at rest. National ids and phone numbers are stored sealed
//! (AES-256-GCM, a fresh nonce per value) next to a keyed lookup hash
//! (HMAC-SHA256), so a database dump alone reveals neither, while an exact search
//! by phone or national id is still one index lookup.
//!
//! One 32-byte master key comes from the environment (`CRM_PII_KEY`, base64); the
//! sealing key, the lookup key and the page-token key are derived from it with
//! HKDF under distinct labels, so no key serves two purposes.
//!
//! Rotation: a new `CRM_PII_KEY` seals and hashes what is written from then on,
//! while the keys it replaced (`CRM_PII_PREVIOUS_KEYS`) still open what they
//! sealed — each sealed value names its key — and lookups search under every key's
//! hash. `crm jobs reseal-client-pii` and `reseal-referral-pii` then re-seal the
//! old rows under the new key, after which the previous keys can go.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use crm_domain::pii::Pii;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{hkdf, hmac};
use secrecy::{ExposeSecret, SecretString};

/// Prefix of values sealed before keys had ids (any key may have sealed them).
const LEGACY_PREFIX: &str = "v1:";
/// Prefix of values that name their key: `v2:<key id>:<sealed>`.
const KEYED_PREFIX: &str = "v2:";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("CRM_PII_KEY must be 32 bytes, base64-encoded (`openssl rand -base64 32`)")]
    BadKey,
    #[error("a sealed value could not be opened (wrong CRM_PII_KEY, or damaged data)")]
    CannotOpen,
    #[error("the system random source failed")]
    Random,
}

/// The keys derived from one master key.
struct Keys {
    /// Names the key in what it seals; derived, so it says nothing of the key.
    id: String,
    sealing: LessSafeKey,
    lookup: hmac::Key,
    signing: hmac::Key,
}

/// The keys derived from `CRM_PII_KEY`, and from the keys it replaced.
pub struct Vault {
    current: Keys,
    previous: Vec<Keys>,
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

impl Keys {
    fn from_base64(key: &SecretString) -> Result<Self, VaultError> {
        let bytes = STANDARD
            .decode(key.expose_secret().trim())
            .map_err(|_| VaultError::BadKey)?;
        if bytes.len() != 32 {
            return Err(VaultError::BadKey);
        }
        let master = hkdf::Salt::new(hkdf::HKDF_SHA256, b"rm-crm/pii/v1").extract(&bytes);
        let sealing = UnboundKey::new(&AES_256_GCM, &derive(&master, "seal")?)
            .map_err(|_| VaultError::BadKey)?;
        let id = derive(&master, "key-id")?;
        Ok(Self {
            id: URL_SAFE_NO_PAD.encode(&id[..6]),
            sealing: LessSafeKey::new(sealing),
            lookup: hmac::Key::new(hmac::HMAC_SHA256, &derive(&master, "lookup")?),
            signing: hmac::Key::new(hmac::HMAC_SHA256, &derive(&master, "sign")?),
        })
    }

    fn open(&self, sealed: &str) -> Result<Pii, VaultError> {
        let bytes = STANDARD
            .decode(sealed)
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

    fn lookup_hash(&self, value: &Pii) -> String {
        let tag = hmac::sign(&self.lookup, value.expose().as_bytes());
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    }
}

impl Vault {
    /// From the base64 text of `CRM_PII_KEY`.
    pub fn from_base64(key: &SecretString) -> Result<Self, VaultError> {
        Self::with_previous_keys(key, &[])
    }

    /// `CRM_PII_KEY` and the keys it replaced (`CRM_PII_PREVIOUS_KEYS`), newest
    /// first: what they sealed still opens, what they hashed is still found.
    pub fn with_previous_keys(
        key: &SecretString,
        previous: &[SecretString],
    ) -> Result<Self, VaultError> {
        let current = Keys::from_base64(key)?;
        let previous = previous
            .iter()
            .map(Keys::from_base64)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|keys| keys.id != current.id)
            .collect();
        Ok(Self {
            current,
            previous,
            random: SystemRandom::new(),
        })
    }

    fn every_key(&self) -> impl Iterator<Item = &Keys> {
        std::iter::once(&self.current).chain(&self.previous)
    }

    /// A fresh random key in `CRM_PII_KEY`'s format (demos and tests).
    pub fn generate_key() -> Result<SecretString, VaultError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| VaultError::Random)?;
        Ok(SecretString::from(STANDARD.encode(bytes)))
    }

    /// `v2:<key id>:<base64(nonce ‖ ciphertext ‖ tag)>` under the current key;
    /// the empty value stays empty.
    pub fn seal(&self, value: &Pii) -> Result<String, VaultError> {
        if value.is_empty() {
            return Ok(String::new());
        }
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| VaultError::Random)?;
        let mut in_out = value.expose().as_bytes().to_vec();
        self.current
            .sealing
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut in_out,
            )
            .map_err(|_| VaultError::Random)?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&in_out);
        Ok(format!(
            "{KEYED_PREFIX}{}:{}",
            self.current.id,
            STANDARD.encode(sealed)
        ))
    }

    /// Opens what the current key or a previous one sealed.
    pub fn open(&self, sealed: &str) -> Result<Pii, VaultError> {
        if sealed.is_empty() {
            return Ok(Pii::default());
        }
        if let Some(keyed) = sealed.strip_prefix(KEYED_PREFIX) {
            let (id, sealed) = keyed.split_once(':').ok_or(VaultError::CannotOpen)?;
            let keys = self
                .every_key()
                .find(|keys| keys.id == id)
                .ok_or(VaultError::CannotOpen)?;
            return keys.open(sealed);
        }
        // Sealed before values named their key: whichever key opens it.
        let legacy = sealed
            .strip_prefix(LEGACY_PREFIX)
            .ok_or(VaultError::CannotOpen)?;
        self.every_key()
            .find_map(|keys| keys.open(legacy).ok())
            .ok_or(VaultError::CannotOpen)
    }

    /// Whether `sealed` is empty or sealed under the current key (nothing for a
    /// re-seal to do).
    pub fn is_current(&self, sealed: &str) -> bool {
        sealed.is_empty()
            || sealed
                .strip_prefix(KEYED_PREFIX)
                .and_then(|keyed| keyed.split_once(':'))
                .is_some_and(|(id, _)| id == self.current.id)
    }

    /// The keyed hash an exact search looks up, under the current key; equal
    /// values hash equal. The empty value hashes to the empty string so "no
    /// phone" never matches.
    pub fn lookup_hash(&self, value: &Pii) -> String {
        if value.is_empty() {
            return String::new();
        }
        self.current.lookup_hash(value)
    }

    /// `value`'s hash under every key, the current one first: what a lookup
    /// searches for, so rows hashed before a rotation are still found. Empty for
    /// the empty value.
    pub fn lookup_hashes(&self, value: &Pii) -> Vec<String> {
        if value.is_empty() {
            return Vec::new();
        }
        self.every_key()
            .map(|keys| keys.lookup_hash(value))
            .collect()
    }

    /// A signature over `data` for tokens handed to callers (page tokens).
    pub fn sign(&self, data: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.current.signing, data).as_ref())
    }

    /// Whether the current key or a previous one signed `data` (a page token
    /// handed out just before a rotation still works).
    pub fn verify(&self, data: &[u8], signature: &str) -> bool {
        URL_SAFE_NO_PAD.decode(signature).is_ok_and(|tag| {
            self.every_key()
                .any(|keys| hmac::verify(&keys.signing, data, &tag).is_ok())
        })
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
        assert!(sealed.starts_with("v2:"));
        assert!(vault.is_current(&sealed));
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
    fn a_rotated_vault_opens_and_finds_what_the_old_key_sealed() {
        let old_key = Vault::generate_key().unwrap();
        let old = Vault::from_base64(&old_key).unwrap();
        let phone = Pii::new("13812345678");
        let sealed_before = old.seal(&phone).unwrap();
        // As the first release sealed: no key id.
        let legacy = format!(
            "v1:{}",
            sealed_before.rsplit_once(':').map(|(_, b64)| b64).unwrap()
        );
        let rotated =
            Vault::with_previous_keys(&Vault::generate_key().unwrap(), &[old_key]).unwrap();
        assert_eq!(rotated.open(&sealed_before).unwrap(), phone);
        assert_eq!(rotated.open(&legacy).unwrap(), phone);
        assert!(!rotated.is_current(&sealed_before));
        let sealed_now = rotated.seal(&phone).unwrap();
        assert!(rotated.is_current(&sealed_now));
        assert!(
            old.open(&sealed_now).is_err(),
            "the old key can't open the new"
        );
        let hashes = rotated.lookup_hashes(&phone);
        assert_eq!(hashes[0], rotated.lookup_hash(&phone));
        assert!(
            hashes.contains(&old.lookup_hash(&phone)),
            "the old hash is searched"
        );
        let signature = old.sign(b"after=C-1");
        assert!(rotated.verify(b"after=C-1", &signature));
        // Without the previous key, nothing of the old opens.
        let forgotten = Vault::from_base64(&Vault::generate_key().unwrap()).unwrap();
        assert!(forgotten.open(&sealed_before).is_err());
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(Vault::from_base64(&SecretString::from("short")).is_err());
        assert!(Vault::from_base64(&SecretString::from(STANDARD.encode([1u8; 16]))).is_err());
    }
}
