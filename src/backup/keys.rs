//! backup::keys: the backup key pairs — RSA (≥ 3072-bit) that wraps each backup's data key,
//! and Ed25519 that signs each backup — their files, ids and generation.
//!
//! Files: the RSA public key (SPKI PEM) on the proxy host; the RSA private key (PKCS#8 PEM,
//! 0600) for the offline restore, kept off the proxy host; the Ed25519 signing key (32-byte
//! seed in hex, 0600) and its verifying key (hex, `.pub` beside it).

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::Error;
use super::format::{DataKey, SIGNATURE_BYTES};
use crate::secure_file;

pub const MIN_RSA_BITS: usize = 3072;
pub const RSA_BITS: usize = 3072;

/// rand 0.9's thread RNG (a CSPRNG seeded from the OS) behind the rand_core 0.6 traits the
/// `rsa` crate takes.
struct Rng;

impl rsa::rand_core::RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        rand::RngCore::next_u32(&mut rand::rng())
    }
    fn next_u64(&mut self) -> u64 {
        rand::RngCore::next_u64(&mut rand::rng())
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        rand::RngCore::fill_bytes(&mut rand::rng(), dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        rand::RngCore::fill_bytes(&mut rand::rng(), dest);
        Ok(())
    }
}

impl rsa::rand_core::CryptoRng for Rng {}

fn short_id(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

fn read(path: &Path) -> Result<Zeroizing<String>, Error> {
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|e| Error::Key(format!("{}: {e}", path.display())))
}

/// The public half: wraps data keys.
pub struct WrapKey {
    key: RsaPublicKey,
    pub id: String,
}

impl WrapKey {
    pub fn load(path: &Path) -> Result<Self, Error> {
        let pem = read(path)?;
        let key = RsaPublicKey::from_public_key_pem(&pem)
            .or_else(|_| RsaPublicKey::from_pkcs1_pem(&pem))
            .map_err(|_| Error::Key(format!("{}: not an RSA public key (PEM)", path.display())))?;
        Self::new(key, path)
    }

    fn new(key: RsaPublicKey, path: &Path) -> Result<Self, Error> {
        if key.size() * 8 < MIN_RSA_BITS {
            return Err(Error::Key(format!(
                "{}: RSA key has {} bits; backups need at least {MIN_RSA_BITS}",
                path.display(),
                key.size() * 8
            )));
        }
        let der = key
            .to_public_key_der()
            .map_err(|_| Error::Key(format!("{}: cannot encode the key", path.display())))?;
        Ok(Self {
            id: short_id(der.as_bytes()),
            key,
        })
    }

    pub fn wrap(&self, data_key: &DataKey) -> Result<Vec<u8>, Error> {
        self.key
            .encrypt(&mut Rng, Oaep::new::<Sha256>(), data_key.bytes())
            .map_err(|_| Error::Crypto("RSA-OAEP wrapping failed".into()))
    }
}

/// The private half, for the offline restore only. No Debug or Clone; the `rsa` crate
/// zeroizes its key material on drop.
pub struct UnwrapKey {
    key: RsaPrivateKey,
    pub id: String,
}

impl UnwrapKey {
    pub fn load(path: &Path) -> Result<Self, Error> {
        secure_file::check_private(path).map_err(|e| Error::Key(e.to_string()))?;
        let pem = read(path)?;
        let key = RsaPrivateKey::from_pkcs8_pem(&pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(&pem))
            .map_err(|_| Error::Key(format!("{}: not an RSA private key (PEM)", path.display())))?;
        let id = WrapKey::new(key.to_public_key(), path)?.id;
        Ok(Self { key, id })
    }

    // Security: RUSTSEC-2023-0071 (Marvin) is a timing side channel on RSA decryption. This
    // runs only in the offline restore, once per backup, on a wrapped key whose header the
    // caller has already authenticated with the Ed25519 signature, so nobody can submit
    // chosen ciphertexts and time the answers (docs/adr/0004-backup-format.md).
    pub fn unwrap_data_key(&self, wrapped: &[u8]) -> Result<DataKey, Error> {
        let plain = Zeroizing::new(self.key.decrypt(Oaep::new::<Sha256>(), wrapped).map_err(
            |_| {
                Error::Key("the data key does not unwrap with this private key (wrong key?)".into())
            },
        )?);
        DataKey::from_slice(&plain)
            .ok_or_else(|| Error::Key("the data key has a wrong length".into()))
    }
}

/// The Ed25519 signing key (32-byte seed in hex, 0600). Zeroized on drop by ed25519-dalek.
pub struct SignKey {
    key: SigningKey,
}

impl SignKey {
    pub fn load(path: &Path) -> Result<Self, Error> {
        secure_file::check_private(path).map_err(|e| Error::Key(e.to_string()))?;
        let text = read(path)?;
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), seed.as_mut()).map_err(|_| {
            Error::Key(format!(
                "{}: not a 32-byte hex Ed25519 seed",
                path.display()
            ))
        })?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
        })
    }

    pub fn verify_key(&self) -> VerifyKey {
        VerifyKey::from(self.key.verifying_key())
    }

    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_BYTES] {
        self.key.sign(message).to_bytes()
    }
}

/// The Ed25519 verifying key that `verify` and `restore` trust.
#[derive(Clone)]
pub struct VerifyKey {
    key: VerifyingKey,
    pub id: String,
}

impl From<VerifyingKey> for VerifyKey {
    fn from(key: VerifyingKey) -> Self {
        Self {
            id: short_id(key.as_bytes()),
            key,
        }
    }
}

impl VerifyKey {
    /// A `.pub` file (hex), or the signing key file itself (its public half).
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = read(path)?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes)
            .map_err(|_| Error::Key(format!("{}: not a 32-byte hex key", path.display())))?;
        if path.extension().is_some_and(|e| e == "pub") {
            let key = VerifyingKey::from_bytes(&bytes).map_err(|_| {
                Error::Key(format!("{}: not an Ed25519 public key", path.display()))
            })?;
            return Ok(Self::from(key));
        }
        Ok(SignKey::load(path)?.verify_key())
    }

    pub fn verify(&self, message: &[u8], signature: &[u8; SIGNATURE_BYTES]) -> bool {
        self.key
            .verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    }
}

/// Where the verifying key of a signing key file lives.
pub fn verify_key_path(signing_key: &Path) -> PathBuf {
    signing_key.with_extension("pub")
}

/// Where keygen writes the RSA private key: beside the public key.
pub fn private_key_path(public_key: &Path) -> PathBuf {
    public_key.with_file_name("backup_rsa_private.pem")
}

/// What keygen did for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Generated {
    Written(PathBuf),
    Kept(PathBuf),
}

fn create_parent(path: &Path) -> Result<(), Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::Key(format!("{}: {e}", dir.display())))?;
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    create_parent(path)?;
    secure_file::write_private(path, bytes).map_err(|e| Error::Key(e.to_string()))
}

/// Creates the RSA pair (unless the public key exists) and the Ed25519 pair (unless the
/// signing key exists). Existing keys are never replaced.
pub fn generate(public_key: &Path, signing_key: &Path) -> Result<Vec<Generated>, Error> {
    let mut done = Vec::new();
    let private = private_key_path(public_key);
    if public_key.exists() {
        done.push(Generated::Kept(public_key.to_owned()));
    } else if private.exists() {
        return Err(Error::Key(format!(
            "{} exists without its public key; move it away or restore {}",
            private.display(),
            public_key.display()
        )));
    } else {
        let key = RsaPrivateKey::new(&mut Rng, RSA_BITS)
            .map_err(|_| Error::Crypto("RSA key generation failed".into()))?;
        let private_pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| Error::Crypto("RSA key encoding failed".into()))?;
        let public_pem = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|_| Error::Crypto("RSA key encoding failed".into()))?;
        write(&private, private_pem.as_bytes())?;
        write(public_key, public_pem.as_bytes())?;
        done.push(Generated::Written(public_key.to_owned()));
        done.push(Generated::Written(private));
    }
    let public_sign = verify_key_path(signing_key);
    if signing_key.exists() {
        done.push(Generated::Kept(signing_key.to_owned()));
        if !public_sign.exists() {
            let vk = SignKey::load(signing_key)?.verify_key();
            write(
                &public_sign,
                format!("{}\n", hex::encode(vk.key.as_bytes())).as_bytes(),
            )?;
            done.push(Generated::Written(public_sign));
        }
    } else {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rng(), seed.as_mut());
        let key = SigningKey::from_bytes(&seed);
        let seed_hex = Zeroizing::new(format!("{}\n", hex::encode(seed.as_ref())));
        write(signing_key, seed_hex.as_bytes())?;
        write(
            &public_sign,
            format!("{}\n", hex::encode(key.verifying_key().as_bytes())).as_bytes(),
        )?;
        done.push(Generated::Written(signing_key.to_owned()));
        done.push(Generated::Written(public_sign));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_keys_generate_load_sign_and_verify() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sk_path = dir.path().join("k/backup_signing.key");
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
        write(&sk_path, hex::encode(seed).as_bytes()).expect("write");
        let sk = SignKey::load(&sk_path).expect("load");
        let sig = sk.sign(b"m");
        let vk = VerifyKey::load(&sk_path).expect("from the signing key");
        assert!(vk.verify(b"m", &sig));
        assert!(!vk.verify(b"n", &sig));
        let pub_path = verify_key_path(&sk_path);
        write(&pub_path, hex::encode(vk.key.as_bytes()).as_bytes()).expect("write");
        assert_eq!(VerifyKey::load(&pub_path).expect("pub").id, vk.id);
    }
}
