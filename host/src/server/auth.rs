//! Client authentication: HS256 JWTs with `sub`, `roles` and `exp`.
//!
//! With a secret configured every connection must present a valid token in
//! its first `AUTH` frame; without one, auth is off and `AUTH` (if a client
//! sends it anyway) is acknowledged without checks.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Who a connection authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`.
    pub user_id: String,
    /// The token's `roles` (empty when absent).
    pub roles: Vec<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
}

/// Why a token was refused; the text goes into `AUTH_FAIL.error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid token: {0}")]
pub struct AuthError(pub String);

/// Checks HS256 tokens against one secret.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(HS256)")
    }
}

impl Verifier {
    /// A verifier for tokens signed with `secret`.
    #[must_use]
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 0;
        Self {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// Verifies signature, algorithm and expiry, and reads the principal.
    ///
    /// # Errors
    /// [`AuthError`] saying what was wrong: a bad signature, another
    /// algorithm, an expired token, or missing `sub` / `exp`.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError(e.to_string()))?;
        Ok(Principal {
            user_id: data.claims.sub,
            roles: data.claims.roles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn token(secret: &str, alg: Algorithm, claims: &serde_json::Value) -> String {
        encode(
            &Header::new(alg),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn future() -> u64 {
        hangar_core::hlc::system_millis() / 1000 + 3600
    }

    #[test]
    fn t10_a_valid_token_yields_its_principal() {
        let v = Verifier::new("s3cret");
        let p = v
            .verify(&token(
                "s3cret",
                Algorithm::HS256,
                &json!({"sub": "alice", "roles": ["admin"], "exp": future()}),
            ))
            .unwrap();
        assert_eq!(p.user_id, "alice");
        assert_eq!(p.roles, vec!["admin".to_string()]);
    }

    #[test]
    fn t11_wrong_secret_expired_missing_claims_and_other_algorithms_fail() {
        let v = Verifier::new("s3cret");
        let past = hangar_core::hlc::system_millis() / 1000 - 10;
        for (what, t) in [
            (
                "wrong secret",
                token(
                    "other",
                    Algorithm::HS256,
                    &json!({"sub": "a", "exp": future()}),
                ),
            ),
            (
                "expired",
                token(
                    "s3cret",
                    Algorithm::HS256,
                    &json!({"sub": "a", "exp": past}),
                ),
            ),
            (
                "no exp",
                token("s3cret", Algorithm::HS256, &json!({"sub": "a"})),
            ),
            (
                "no sub",
                token("s3cret", Algorithm::HS256, &json!({"exp": future()})),
            ),
            (
                "HS512",
                token(
                    "s3cret",
                    Algorithm::HS512,
                    &json!({"sub": "a", "exp": future()}),
                ),
            ),
            ("garbage", "not.a.jwt".to_string()),
        ] {
            assert!(v.verify(&t).is_err(), "{what} must be refused");
        }
    }
}
