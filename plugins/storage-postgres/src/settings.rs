//! [`PostgresSettings`]: everything the plugin reads from its operator, in
//! one struct read by one function ([`PostgresSettings::load`]).
//!
//! Today a plugin cannot get a configuration section of its own from the
//! host, so [`PostgresSettings::load`] reads environment variables:
//!
//! | variable | field | default |
//! |---|---|---|
//! | `HANGAR_POSTGRES_URL`, else `DATABASE_URL` | `url` | none: required |
//! | `HANGAR_POSTGRES_POOL_SIZE` | `pool_size` | 8 |
//! | `HANGAR_POSTGRES_SCHEMA` | `schema` | `hangar` |
//! | `HANGAR_POSTGRES_CONNECT_TIMEOUT_MS` | `connect_timeout_ms` | 5000 |
//! | `HANGAR_POSTGRES_RETRY_MS` | `retry_ms` | 30000 |
//!
//! The struct is `Deserialize` with unknown fields refused, so that it can
//! become the plugin's TOML section as it is.

use std::time::Duration;

use serde::Deserialize;

/// The plugin's settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSettings {
    /// Connection URL (`postgres://user:password@host:port/database`) or
    /// key-value string (`host=... user=...`). When absent, `DATABASE_URL`.
    #[serde(default)]
    pub url: Option<String>,
    /// Largest number of connections the pool opens (at least 1).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// The PostgreSQL schema holding the tables; created if missing. Each
    /// node needs a schema (or database) of its own.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// How long one connection attempt may take.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How long a call keeps retrying while the database is unreachable
    /// (restarting) before it fails. Long enough for a database restart;
    /// writes waiting for PERSISTED meanwhile time out on their own
    /// timeout. A commit that gives up fails the store until the node
    /// restarts (the storage module's group commit is fail-stop).
    #[serde(default = "default_retry_ms")]
    pub retry_ms: u64,
}

fn default_pool_size() -> usize {
    8
}
fn default_schema() -> String {
    "hangar".into()
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}
fn default_retry_ms() -> u64 {
    30_000
}

impl Default for PostgresSettings {
    fn default() -> Self {
        Self {
            url: None,
            pool_size: default_pool_size(),
            schema: default_schema(),
            connect_timeout_ms: default_connect_timeout_ms(),
            retry_ms: default_retry_ms(),
        }
    }
}

/// A setting that is missing or not what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("PostgreSQL storage setting {name}: {problem}")]
pub struct SettingsError {
    /// The setting (environment variable or field).
    pub name: String,
    /// What was wrong and what was expected.
    pub problem: String,
}

fn err(name: &str, problem: impl Into<String>) -> SettingsError {
    SettingsError {
        name: name.into(),
        problem: problem.into(),
    }
}

impl PostgresSettings {
    /// Reads the settings from `env` (a lookup such as
    /// `|k| std::env::var(k).ok()`), then checks them. The one place the
    /// plugin reads its settings.
    ///
    /// # Errors
    /// [`SettingsError`] naming the variable that is missing or malformed.
    pub fn load(env: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        fn number<T: std::str::FromStr>(
            env: &impl Fn(&str) -> Option<String>,
            name: &str,
            default: T,
        ) -> Result<T, SettingsError> {
            match env(name) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| err(name, format!("{v:?} is not a number, expected e.g. 8"))),
            }
        }
        let d = Self::default();
        let s = Self {
            url: env("HANGAR_POSTGRES_URL").or_else(|| env("DATABASE_URL")),
            pool_size: number(&env, "HANGAR_POSTGRES_POOL_SIZE", d.pool_size)?,
            schema: env("HANGAR_POSTGRES_SCHEMA").unwrap_or(d.schema),
            connect_timeout_ms: number(
                &env,
                "HANGAR_POSTGRES_CONNECT_TIMEOUT_MS",
                d.connect_timeout_ms,
            )?,
            retry_ms: number(&env, "HANGAR_POSTGRES_RETRY_MS", d.retry_ms)?,
        };
        s.validate()?;
        Ok(s)
    }

    /// Checks the values: a URL is present, the pool has a connection, the
    /// schema is a plain identifier (it is put into SQL text).
    ///
    /// # Errors
    /// [`SettingsError`] naming the bad setting.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.url.as_deref().is_none_or(|u| u.trim().is_empty()) {
            return Err(err(
                "url",
                "no connection URL: set HANGAR_POSTGRES_URL or DATABASE_URL, \
                 e.g. postgres://hangar:secret@127.0.0.1:5432/hangar",
            ));
        }
        if self.pool_size == 0 {
            return Err(err("pool_size", "0, expected at least 1 connection"));
        }
        let ok = self.schema.len() <= 63
            && self
                .schema
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && self
                .schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(err(
                "schema",
                format!(
                    "{:?} is not a plain identifier, expected 1 to 63 characters of a-z, 0-9 \
                     and _ not starting with a digit",
                    self.schema
                ),
            ));
        }
        Ok(())
    }

    /// The URL (validated present).
    #[must_use]
    pub fn url(&self) -> &str {
        self.url.as_deref().unwrap_or_default()
    }

    /// The URL with its password replaced by `***`, for messages and logs.
    #[must_use]
    pub fn redacted_url(&self) -> String {
        redact(self.url())
    }

    /// [`Self::connect_timeout_ms`] as a duration.
    #[must_use]
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// [`Self::retry_ms`] as a duration.
    #[must_use]
    pub fn retry_window(&self) -> Duration {
        Duration::from_millis(self.retry_ms)
    }
}

/// `url` with any password replaced by `***`: the `user:password@` part of
/// a URL, and `password=...` in a key-value string.
#[must_use]
pub fn redact(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            let userinfo = &rest[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &rest[at..]
                );
            }
        }
        return url.to_string();
    }
    url.split_whitespace()
        .map(|part| {
            if part.starts_with("password=") {
                "password=***".to_string()
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn t10_url_falls_back_to_database_url_and_defaults_apply() {
        let s = PostgresSettings::load(env_of(&[("DATABASE_URL", "postgres://a@h/db")])).unwrap();
        assert_eq!(s.url(), "postgres://a@h/db");
        assert_eq!(s.pool_size, 8);
        assert_eq!(s.schema, "hangar");
        let s = PostgresSettings::load(env_of(&[
            ("DATABASE_URL", "postgres://a@h/db"),
            ("HANGAR_POSTGRES_URL", "postgres://b@h/db"),
            ("HANGAR_POSTGRES_POOL_SIZE", "3"),
            ("HANGAR_POSTGRES_SCHEMA", "node_1"),
        ]))
        .unwrap();
        assert_eq!(
            (s.url(), s.pool_size, s.schema.as_str()),
            ("postgres://b@h/db", 3, "node_1")
        );
    }

    #[test]
    fn t11_bad_settings_name_the_variable_and_what_was_expected() {
        let e = PostgresSettings::load(env_of(&[])).unwrap_err();
        assert!(e.to_string().contains("DATABASE_URL"), "{e}");
        let e = PostgresSettings::load(env_of(&[
            ("DATABASE_URL", "postgres://h/db"),
            ("HANGAR_POSTGRES_POOL_SIZE", "many"),
        ]))
        .unwrap_err();
        assert_eq!(e.name, "HANGAR_POSTGRES_POOL_SIZE");
        assert!(e.problem.contains("\"many\""), "{e}");
        let e = PostgresSettings::load(env_of(&[
            ("DATABASE_URL", "postgres://h/db"),
            ("HANGAR_POSTGRES_SCHEMA", "a\"; drop"),
        ]))
        .unwrap_err();
        assert_eq!(e.name, "schema");
        let e = PostgresSettings::load(env_of(&[
            ("DATABASE_URL", "postgres://h/db"),
            ("HANGAR_POSTGRES_POOL_SIZE", "0"),
        ]))
        .unwrap_err();
        assert_eq!(e.name, "pool_size");
    }

    #[test]
    fn t12_passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:s3cret@h:5432/db?sslmode=disable"),
            "postgres://u:***@h:5432/db?sslmode=disable"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("host=h user=u password=s3cret dbname=d"),
            "host=h user=u password=*** dbname=d"
        );
    }

    #[test]
    fn t13_the_struct_refuses_unknown_fields() {
        let e = serde_json::from_str::<PostgresSettings>(r#"{"url":"x","pool":3}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `pool`"), "{e}");
        let s: PostgresSettings = serde_json::from_str(r#"{"url":"x"}"#).unwrap();
        assert_eq!(s.pool_size, 8);
    }
}
