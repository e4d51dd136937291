//! Client authentication: HS256 JWTs with `sub`, `roles` and `exp`, and
//! `nbf` when present.
//!
//! With a secret configured every connection must present a valid token in
//! its first `AUTH` frame; without one, auth is off and `AUTH` (if a client
//! sends it anyway) is acknowledged without checks.
//!
//! Every claim that limits a token is enforced: a token is refused before
//! its `nbf` and after its `exp`, and a connection does not outlive its
//! token: when `exp` passes, the connection is asked to authenticate again
//! (`AUTH_REQUIRED {reason}`) and serves nothing until it does (see
//! `ws.rs`). No leeway is granted for clock skew: the node's clock is the
//! one that counts.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Who a connection authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`.
    pub user_id: String,
    /// The token's `roles` (empty when absent).
    pub roles: Vec<String>,
    /// The token's `exp`, seconds since the Unix epoch: the connection must
    /// authenticate again by then.
    pub expires_at: u64,
}

impl Principal {
    /// Time left until `expires_at`, from `now_ms` (ms since the epoch);
    /// zero once it has passed.
    #[must_use]
    pub fn remaining(&self, now_ms: u64) -> std::time::Duration {
        std::time::Duration::from_millis(
            self.expires_at.saturating_mul(1000).saturating_sub(now_ms),
        )
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
    exp: u64,
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
        validation.validate_nbf = true;
        validation.leeway = 0;
        Self {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// Verifies signature, algorithm, expiry and `nbf`, and reads the
    /// principal.
    ///
    /// # Errors
    /// [`AuthError`] saying what was wrong: a bad signature, another
    /// algorithm, an expired token, a token not valid yet (`nbf` in the
    /// future), or missing `sub` / `exp`.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError(describe(&e)))?;
        Ok(Principal {
            user_id: data.claims.sub,
            roles: data.claims.roles,
            expires_at: data.claims.exp,
        })
    }
}

/// The refusal in words; the library's own text for the rest.
fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => "token expired (its exp has passed)".into(),
        ErrorKind::ImmatureSignature => "token not valid yet (its nbf lies in the future)".into(),
        _ => e.to_string(),
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

    #[test]
    fn t12_a_token_is_refused_before_its_nbf_and_accepted_after_it() {
        let v = Verifier::new("s3cret");
        let now = hangar_core::hlc::system_millis() / 1000;
        let early = token(
            "s3cret",
            Algorithm::HS256,
            &json!({"sub": "a", "exp": future(), "nbf": now + 600}),
        );
        let e = v.verify(&early).unwrap_err();
        assert!(e.0.contains("not valid yet"), "{e}");
        let ripe = token(
            "s3cret",
            Algorithm::HS256,
            &json!({"sub": "a", "exp": future(), "nbf": now - 1}),
        );
        assert!(v.verify(&ripe).is_ok());
    }

    #[test]
    fn t13_the_principal_carries_the_expiry() {
        let v = Verifier::new("s3cret");
        let exp = future();
        let p = v
            .verify(&token(
                "s3cret",
                Algorithm::HS256,
                &json!({"sub": "a", "exp": exp}),
            ))
            .unwrap();
        assert_eq!(p.expires_at, exp);
        assert_eq!(p.remaining(exp * 1000 - 1500).as_millis(), 1500);
        assert_eq!(p.remaining(exp * 1000 + 1).as_millis(), 0);
    }
}
