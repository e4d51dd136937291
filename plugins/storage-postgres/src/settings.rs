//! [`PostgresSettings`]: the plugin's own settings, in the `[storage]`
//! section of the node's TOML next to the default storage module's (the
//! plugin runs that module and passes it the keys it does not take), or in
//! the environment variables below, which override the file (see
//! `hangar_core::settings`). `hangar plugins inspect` prints them.
//!
//! ```toml
//! [plugins]
//! storage = "hangar-storage-postgres"
//! [storage]
//! url = "postgres://hangar:secret@127.0.0.1:5432/hangar"
//! pool_size = 8
//! schema = "hangar"
//! journal_capacity = 10000   # the default module's own key
//! ```
//!
//! | key | variable | default |
//! |---|---|---|
//! | `url` | `HANGAR_POSTGRES_URL`; `DATABASE_URL` when neither is set | none: required |
//! | `pool_size` | `HANGAR_POSTGRES_POOL_SIZE` | 8 |
//! | `schema` | `HANGAR_POSTGRES_SCHEMA` | `hangar` |
//! | `connect_timeout_ms` | `HANGAR_POSTGRES_CONNECT_TIMEOUT_MS` | 5000 |
//! | `retry_ms` | `HANGAR_POSTGRES_RETRY_MS` | 30000 |

use std::time::Duration;

use hangar_core::settings::{PluginSettings, Settings, SettingsDescription};
use hangar_core::ModuleResult;
use serde::{Deserialize, Serialize};

/// The plugin's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresSettings {
    /// Connection URL (`postgres://user:password@host:port/database`) or
    /// key-value string (`host=... user=...`). Empty: `DATABASE_URL`;
    /// required one way or the other.
    pub url: String,
    /// Largest number of connections the pool opens (at least 1).
    pub pool_size: usize,
    /// The PostgreSQL schema holding the tables; created if missing. Each
    /// node needs a schema (or database) of its own.
    pub schema: String,
    /// How long one connection attempt may take.
    pub connect_timeout_ms: u64,
    /// How long a call keeps retrying while the database is unreachable
    /// (restarting) before it fails. A commit that gives up fails the
    /// writes it carried; the storage module then refuses writes and
    /// retries the commit by itself until the database is back (see
    /// `hangar_storage::persistence::group_commit`).
    pub retry_ms: u64,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            pool_size: 8,
            schema: "hangar".into(),
            connect_timeout_ms: 5_000,
            retry_ms: 30_000,
        }
    }
}

/// The conventional variable the URL falls back to.
pub const DATABASE_URL: &str = "DATABASE_URL";

impl Settings for PostgresSettings {
    fn keys() -> &'static [(&'static str, &'static str)] {
        &[
            ("url", "PostgreSQL connection URL (postgres://user:password@host:port/database) or key-value string; when unset, DATABASE_URL"),
            ("pool_size", "most connections the pool opens (at least 1)"),
            ("schema", "PostgreSQL schema holding the tables, created if missing; one per node (a-z, 0-9, _)"),
            ("connect_timeout_ms", "how long one connection attempt may take, in ms"),
            ("retry_ms", "how long a call retries while the database is unreachable before it fails, in ms; the node keeps retrying failed commits by itself and refuses writes meanwhile"),
        ]
    }

    // `DATABASE_URL` first: it is applied before `HANGAR_POSTGRES_URL`,
    // which wins; `from_plugin` drops it when the file sets `url`.
    fn env() -> &'static [(&'static str, &'static str)] {
        &[
            (DATABASE_URL, "url"),
            ("HANGAR_POSTGRES_URL", "url"),
            ("HANGAR_POSTGRES_POOL_SIZE", "pool_size"),
            ("HANGAR_POSTGRES_SCHEMA", "schema"),
            ("HANGAR_POSTGRES_CONNECT_TIMEOUT_MS", "connect_timeout_ms"),
            ("HANGAR_POSTGRES_RETRY_MS", "retry_ms"),
        ]
    }

    // Its own keys, then the default module's, which it passes the rest
    // to, without the keys of that module's own backends (refused here).
    fn describe() -> ModuleResult<SettingsDescription> {
        let mut inner = SettingsDescription::of::<hangar_storage::StorageSettings>()?;
        inner
            .keys
            .retain(|k| !Self::BACKEND_KEYS.contains(&k.key.as_str()));
        inner
            .env
            .retain(|v| !Self::BACKEND_KEYS.contains(&v.key.as_str()));
        if let rmpv::Value::Map(defaults) = &mut inner.defaults {
            defaults.retain(|(k, _)| k.as_str().is_none_or(|k| !Self::BACKEND_KEYS.contains(&k)));
        }
        Ok(SettingsDescription::of::<Self>()?.merged(inner))
    }

    /// A URL is present, the pool has a connection, the schema is a plain
    /// identifier (it is put into SQL text).
    fn validate(&self) -> Result<(), String> {
        if self.url.trim().is_empty() {
            return Err(
                "url is not set: expected a connection URL in [storage] url, HANGAR_POSTGRES_URL \
                 or DATABASE_URL, e.g. postgres://hangar:secret@127.0.0.1:5432/hangar"
                    .into(),
            );
        }
        if self.pool_size == 0 {
            return Err("pool_size = 0: expected at least 1 connection".into());
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
            return Err(format!(
                "schema = {:?} is not a plain identifier: expected 1 to 63 characters of a-z, \
                 0-9 and _ not starting with a digit",
                self.schema
            ));
        }
        Ok(())
    }
}

impl PostgresSettings {
    /// Keys of the default storage module that choose or check its own
    /// backends: this plugin refuses them in the file and leaves them out
    /// of its description (variables setting them are not applied: the
    /// backend is PostgreSQL).
    pub const BACKEND_KEYS: &'static [&'static str] =
        &["backend", "reset_damaged_store", "check_integrity_on_start"];

    /// The top-level keys this plugin takes out of `[storage]`; the rest
    /// goes to the default storage module.
    pub const KEYS: &'static [&'static str] = &[
        "url",
        "pool_size",
        "schema",
        "connect_timeout_ms",
        "retry_ms",
    ];

    /// Takes the plugin's keys out of `settings` (leaving the default
    /// module's) and decodes them: the section, then the variables over it;
    /// the URL comes from `HANGAR_POSTGRES_URL`, else `[storage] url`, else
    /// `DATABASE_URL`.
    ///
    /// # Errors
    /// [`hangar_core::ErrorKind::CONFIG`] naming the plugin, the key (and
    /// the variable that set it) and what was expected: an unknown type, a
    /// missing URL, a pool of 0, a schema that is not a plain identifier.
    pub fn from_plugin(settings: &mut PluginSettings) -> ModuleResult<Self> {
        if let rmpv::Value::Map(m) = &settings.values {
            if let Some(key) = m
                .iter()
                .filter_map(|(k, _)| k.as_str())
                .find(|k| Self::BACKEND_KEYS.contains(k))
            {
                return Err(hangar_core::ModuleError::new(
                    hangar_core::ErrorKind::CONFIG,
                    format!(
                        "setting storage.{key}: it belongs to the default storage plugin's own \
                         backends (redb, memory), and hangar-storage-postgres keeps its data in \
                         PostgreSQL: remove storage.{key}"
                    ),
                ));
            }
        }
        let mut own = settings.split_off(Self::KEYS);
        let file_sets_url = match &own.values {
            rmpv::Value::Map(m) => m.iter().any(|(k, _)| k.as_str() == Some("url")),
            _ => false,
        };
        if file_sets_url {
            own.env.remove(DATABASE_URL);
        }
        own.decode()
    }

    /// Checks the values ([`Settings::validate`]).
    ///
    /// # Errors
    /// A message naming the bad key and what was expected.
    pub fn check(&self) -> Result<(), String> {
        Settings::validate(self)
    }

    /// The URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
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

    fn section() -> PluginSettings {
        PluginSettings {
            plugin: "hangar-storage-postgres".into(),
            section: "storage".into(),
            ..PluginSettings::default()
        }
    }

    fn env(mut s: PluginSettings, pairs: &[(&str, &str)]) -> PluginSettings {
        for (k, v) in pairs {
            s.env.insert((*k).into(), (*v).into());
        }
        s
    }

    fn decode(mut s: PluginSettings) -> Result<PostgresSettings, String> {
        PostgresSettings::from_plugin(&mut s).map_err(|e| e.message.to_string())
    }

    #[test]
    fn t10_url_falls_back_to_database_url_and_defaults_apply() {
        let s = decode(env(section(), &[(DATABASE_URL, "postgres://a@h/db")])).unwrap();
        assert_eq!(s.url(), "postgres://a@h/db");
        assert_eq!((s.pool_size, s.schema.as_str()), (8, "hangar"));
        // The file's url wins over DATABASE_URL ...
        let s = decode(env(
            section()
                .with("url", "postgres://f@h/db")
                .with("pool_size", 3),
            &[(DATABASE_URL, "postgres://a@h/db")],
        ))
        .unwrap();
        assert_eq!((s.url(), s.pool_size), ("postgres://f@h/db", 3));
        // ... and HANGAR_POSTGRES_URL over both.
        let s = decode(env(
            section().with("url", "postgres://f@h/db"),
            &[
                (DATABASE_URL, "postgres://a@h/db"),
                ("HANGAR_POSTGRES_URL", "postgres://b@h/db"),
                ("HANGAR_POSTGRES_SCHEMA", "node_1"),
            ],
        ))
        .unwrap();
        assert_eq!(
            (s.url(), s.schema.as_str()),
            ("postgres://b@h/db", "node_1")
        );
    }

    #[test]
    fn t11_bad_settings_name_the_plugin_key_and_what_was_expected() {
        let e = decode(section()).unwrap_err();
        assert!(
            e.starts_with("plugin hangar-storage-postgres: [storage]: url is not set")
                && e.contains("HANGAR_POSTGRES_URL or DATABASE_URL"),
            "{e}"
        );
        let e = decode(env(
            section().with("url", "postgres://h/db"),
            &[("HANGAR_POSTGRES_POOL_SIZE", "many")],
        ))
        .unwrap_err();
        assert!(
            e.contains(
                "setting storage.pool_size (set by HANGAR_POSTGRES_POOL_SIZE): invalid type: \
                 string \"many\", expected usize"
            ),
            "{e}"
        );
        let e = decode(section().with("url", "x").with("schema", "a\"; drop")).unwrap_err();
        assert!(
            e.contains("schema = \"a\\\"; drop\" is not a plain identifier"),
            "{e}"
        );
        let e = decode(section().with("url", "x").with("pool_size", 0)).unwrap_err();
        assert!(e.contains("pool_size = 0: expected at least 1"), "{e}");
        let e = decode(section().with("url", "x").with("retry_ms", "soon")).unwrap_err();
        assert!(
            e.contains("setting storage.retry_ms: invalid type: string \"soon\", expected u64"),
            "{e}"
        );
        for key in PostgresSettings::BACKEND_KEYS {
            let e = decode(section().with("url", "x").with(key, "embedded")).unwrap_err();
            assert!(
                e.contains(&format!("setting storage.{key}: it belongs to the default storage plugin's own backends"))
                    && e.contains(&format!("remove storage.{key}")),
                "{e}"
            );
        }
        // A variable is process-wide (other nodes may use it): not refused.
        let s = decode(env(
            section().with("url", "postgres://h/db"),
            &[("STORAGE_BACKEND", "memory")],
        ));
        assert!(s.is_ok(), "{s:?}");
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
    fn t13_the_default_modules_keys_stay_for_it_and_the_description_lists_both() {
        let mut s = section()
            .with("url", "postgres://h/db")
            .with("journal_capacity", 5)
            .with("pool", 3);
        let own = PostgresSettings::from_plugin(&mut s).unwrap();
        assert_eq!(own.url(), "postgres://h/db");
        // What is left is the default module's, unknown keys included:
        // it refuses them by name.
        let e = s
            .decode::<hangar_storage::StorageSettings>()
            .unwrap_err()
            .message
            .to_string();
        assert!(
            e.contains("setting storage.pool: unknown field `pool`"),
            "{e}"
        );
        let d = PostgresSettings::describe().unwrap();
        let keys: Vec<&str> = d.keys.iter().map(|k| k.key.as_str()).collect();
        for k in PostgresSettings::KEYS.iter().chain(&["journal_capacity"]) {
            assert!(keys.contains(k), "{k} missing from {keys:?}");
        }
        for k in PostgresSettings::BACKEND_KEYS {
            assert!(!keys.contains(k), "{k} is not this plugin's: {keys:?}");
            assert!(!d.env.iter().any(|v| v.key == *k), "{k}: {:?}", d.env);
        }
        assert!(d
            .env
            .iter()
            .any(|v| v.name == DATABASE_URL && v.key == "url"));
        let rmpv::Value::Map(defaults) = &SettingsDescription::of::<PostgresSettings>()
            .unwrap()
            .defaults
        else {
            panic!("defaults are a map")
        };
        let names: Vec<&str> = defaults.iter().filter_map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, PostgresSettings::KEYS, "KEYS lists every field");
    }
}
