//! admin::token: JWTs for the admin port — HS256 only (pinned), with exp, iat, nbf, iss, aud,
//! sub and jti all required and checked. The key is the keyring's JWT key.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};

use super::users::AdminRole;

/// Clock skew tolerated on exp/nbf, in seconds.
const LEEWAY_SECS: u64 = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: AdminRole,
    pub iss: String,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    pub nbf: u64,
    pub jti: String,
}

/// Issues and checks tokens. The key never leaves this struct (no Debug).
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl_secs: u64,
}

pub use crate::tokens::now_secs;

impl Tokens {
    pub fn new(key: &[u8; 32], issuer: &str, audience: &str, ttl_secs: u64) -> Self {
        // Security: the algorithm is pinned; a token naming any other (or "none") is refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl_secs,
        }
    }

    pub fn issue(
        &self,
        sub: &str,
        role: AdminRole,
    ) -> Result<(String, Claims), jsonwebtoken::errors::Error> {
        let now = now_secs();
        let claims = Claims {
            sub: sub.to_owned(),
            role,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp: now + self.ttl_secs,
            iat: now,
            nbf: now,
            jti: hex::encode(crate::wire::auth::new_salt()),
        };
        Ok((
            encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?,
            claims,
        ))
    }

    #[cfg(test)]
    pub fn sign(&self, claims: &Claims, alg: Algorithm) -> String {
        encode(&Header::new(alg), claims, &self.encoding).unwrap_or_default()
    }

    pub fn verify(&self, token: &str) -> Option<Claims> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|d| d.claims)
    }
}
