//! Plugin-owned settings: each plugin validates its own.
//!
//! The host reads the TOML section of a module slot (`[storage]` for the
//! storage plugin, `[cluster]` for the cluster plugin) without knowing its
//! keys, and collects the environment variables the loaded plugin declared
//! (its [`SettingsDescription`]). Both reach the plugin's constructor as a
//! [`PluginSettings`] inside the module config; the plugin decodes them into
//! a type of its own with [`PluginSettings::decode`], which applies the
//! environment over the section (environment wins, as for the host's own
//! settings) and refuses unknown keys and wrong types with a message naming
//! the plugin, the key (and the variable that set it) and what was expected.
//!
//! A plugin declares its settings by implementing [`Settings`] and naming
//! the type in `export_plugin!` (`settings: MySettings`); the root module
//! then describes them to the host (`hangar plugins inspect` prints the
//! description, the host reads the environment variables listed in it).

use std::collections::BTreeMap;

use rmpv::Value;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, ModuleError};

/// A plugin's settings as the host hands them over: opaque to the host.
///
/// Crosses the plugin boundary inside the module config (msgpack).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PluginSettings {
    /// The plugin the settings are for (its manifest name), for messages;
    /// empty when the module is built in-process.
    pub plugin: String,
    /// The TOML section they came from (`storage` or `cluster`), for
    /// messages.
    pub section: String,
    /// The section's keys and values, as a map (empty when the section is
    /// absent).
    pub values: Value,
    /// The environment variables the plugin declared that are set: name to
    /// value.
    pub env: BTreeMap<String, String>,
}

impl Default for PluginSettings {
    fn default() -> Self {
        Self {
            plugin: String::new(),
            section: String::new(),
            values: Value::Map(Vec::new()),
            env: BTreeMap::new(),
        }
    }
}

/// An environment variable a plugin reads, and the setting it overrides.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    /// The variable's name (`STORAGE_BACKEND`).
    pub name: String,
    /// The key it sets, dotted for nested tables (`backend`).
    pub key: String,
}

/// One documented setting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingDoc {
    /// The key, dotted for nested tables.
    pub key: String,
    /// What it does and what values it takes.
    pub doc: String,
}

/// What a plugin says about its settings: the defaults, what each key
/// means and the environment variables it reads. Crosses the boundary as
/// msgpack (the root module's `describe_settings`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SettingsDescription {
    /// Every setting at its default, as a map (empty: no settings).
    pub defaults: Value,
    /// One line per key.
    pub keys: Vec<SettingDoc>,
    /// The environment variables read.
    pub env: Vec<EnvVar>,
}

impl Default for SettingsDescription {
    fn default() -> Self {
        Self {
            defaults: Value::Map(Vec::new()),
            keys: Vec::new(),
            env: Vec::new(),
        }
    }
}

impl SettingsDescription {
    /// The description of `T`.
    ///
    /// # Errors
    /// Only if `T::default()` cannot be represented as a msgpack value.
    pub fn of<T: Settings>() -> Result<Self, ModuleError> {
        Ok(Self {
            defaults: to_value(&T::default())?,
            keys: T::keys()
                .iter()
                .map(|(key, doc)| SettingDoc {
                    key: (*key).to_string(),
                    doc: (*doc).to_string(),
                })
                .collect(),
            env: T::env()
                .iter()
                .map(|(name, key)| EnvVar {
                    name: (*name).to_string(),
                    key: (*key).to_string(),
                })
                .collect(),
        })
    }

    /// This description followed by `other`'s keys and variables: for a
    /// plugin that wraps another module and passes it the settings it does
    /// not take itself.
    #[must_use]
    pub fn merged(mut self, other: Self) -> Self {
        if let (Value::Map(mine), Value::Map(theirs)) = (&mut self.defaults, other.defaults) {
            mine.extend(theirs);
        }
        self.keys.extend(other.keys);
        self.env.extend(other.env);
        self
    }
}

/// A plugin's settings type.
///
/// Contract: `Deserialize` MUST refuse unknown keys
/// (`#[serde(deny_unknown_fields)]`) and fill absent ones from `Default`
/// (`#[serde(default)]`); `keys` documents every top-level key of
/// `Default`'s serialisation; `env` maps variable names to keys.
pub trait Settings: Serialize + DeserializeOwned + Default {
    /// `(key, what it does)` for every setting.
    fn keys() -> &'static [(&'static str, &'static str)];
    /// `(variable, key)` for every environment variable read (none by
    /// default).
    fn env() -> &'static [(&'static str, &'static str)] {
        &[]
    }
    /// The description the root module hands the host: by default
    /// [`SettingsDescription::of`] this type; a plugin that passes settings
    /// on to a module it wraps merges that module's
    /// ([`SettingsDescription::merged`]).
    ///
    /// # Errors
    /// As [`SettingsDescription::of`].
    fn describe() -> Result<SettingsDescription, ModuleError> {
        SettingsDescription::of::<Self>()
    }
    /// Checks rules the types alone do not (ranges, combinations).
    ///
    /// # Errors
    /// A message naming the key and what was expected.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The body of the root module's `describe_settings` for a plugin without
/// settings: no keys, no variables.
#[must_use]
pub fn no_settings() -> SettingsDescription {
    SettingsDescription::default()
}

impl PluginSettings {
    /// Settings holding `settings`' serialisation: what an embedding host or
    /// a test passes to an in-process module.
    ///
    /// # Panics
    /// If `settings` cannot be represented as a msgpack value (a map with
    /// non-string keys would still work; only a failing `Serialize` does).
    #[must_use]
    pub fn of<T: Serialize>(settings: &T) -> Self {
        Self {
            values: to_value(settings).expect("settings serialise to a msgpack value"),
            ..Self::default()
        }
    }

    /// Sets one top-level key (for tests and embedding hosts), replacing its
    /// value if present.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        set_key(&mut self.values, key, value.into());
        self
    }

    /// Moves the given top-level keys (and the variables that set them) out
    /// into settings of their own: a plugin that wraps another module takes
    /// its keys out and passes the rest on.
    #[must_use]
    pub fn split_off(&mut self, keys: &[&str]) -> Self {
        let mut taken = Vec::new();
        if let Value::Map(entries) = &mut self.values {
            entries.retain(|(k, v)| {
                if k.as_str().is_some_and(|k| keys.contains(&k)) {
                    taken.push((k.clone(), v.clone()));
                    false
                } else {
                    true
                }
            });
        }
        Self {
            plugin: self.plugin.clone(),
            section: self.section.clone(),
            values: Value::Map(taken),
            env: self.env.clone(),
        }
    }

    /// Decodes the settings into `T`: the section, then the environment
    /// variables `T` declares over it, then `T::validate`.
    ///
    /// # Errors
    /// [`ErrorKind::CONFIG`] naming the plugin, the key (and the variable
    /// that set it) and what was expected: an unknown key, a wrong type, a
    /// value `validate` refuses.
    pub fn decode<T: Settings>(&self) -> Result<T, ModuleError> {
        let mut values = match &self.values {
            Value::Nil => Value::Map(Vec::new()),
            v @ Value::Map(_) => v.clone(),
            other => {
                return Err(self.error(
                    None,
                    &format!("expected a table of settings, found {other}"),
                ))
            }
        };
        let mut from_env: Vec<(&str, &str)> = Vec::new();
        for (name, key) in T::env() {
            if let Some(raw) = self.env.get(*name) {
                set_key(&mut values, key, env_value(raw));
                from_env.push((name, key));
            }
        }
        let decoded: Result<T, _> = serde_path_to_error::deserialize(values);
        let settings = decoded.map_err(|e| {
            let path = e.path().to_string();
            let message = match e.inner() {
                rmpv::ext::Error::Syntax(m) => m.clone(),
            };
            // The path names the key (an unknown one included).
            let key = path;
            let var = from_env
                .iter()
                .find(|(_, k)| key == *k || key.starts_with(&format!("{k}.")))
                .map(|(n, _)| *n);
            self.error(Some((&key, var)), &message)
        })?;
        settings.validate().map_err(|m| self.error(None, &m))?;
        Ok(settings)
    }

    fn error(&self, key: Option<(&str, Option<&str>)>, message: &str) -> ModuleError {
        let plugin = if self.plugin.is_empty() {
            String::new()
        } else {
            format!("plugin {}: ", self.plugin)
        };
        let section = if self.section.is_empty() {
            "settings"
        } else {
            self.section.as_str()
        };
        let at = match key {
            Some((key, Some(var))) => format!("setting {section}.{key} (set by {var}): "),
            Some((key, None)) => format!("setting {section}.{key}: "),
            None => format!("[{section}]: "),
        };
        ModuleError::new(ErrorKind::CONFIG, format!("{plugin}{at}{message}"))
    }
}

/// `v` as a value, structs as maps keyed by field name (what `decode`
/// reads back).
fn to_value<T: Serialize>(v: &T) -> Result<Value, ModuleError> {
    let bytes = crate::config::encode_config(v)?;
    rmpv::decode::read_value(&mut bytes.as_slice())
        .map_err(|e| ModuleError::new(ErrorKind::CONFIG, format!("cannot encode settings: {e}")))
}

/// An environment variable's text as a value: `true`/`false`, an integer,
/// a number, or else the text itself.
fn env_value(raw: &str) -> Value {
    let t = raw.trim();
    if let Ok(b) = t.parse::<bool>() {
        return Value::Boolean(b);
    }
    if let Ok(i) = t.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(f) = t.parse::<f64>() {
        return Value::F64(f);
    }
    Value::from(raw)
}

/// Sets a dotted key in a map value, making intermediate tables.
fn set_key(root: &mut Value, key: &str, value: Value) {
    let mut node = root;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        if !matches!(node, Value::Map(_)) {
            *node = Value::Map(Vec::new());
        }
        let Value::Map(entries) = node else {
            return;
        };
        let pos = entries
            .iter()
            .position(|(k, _)| k.as_str() == Some(part))
            .unwrap_or_else(|| {
                entries.push((Value::from(part), Value::Map(Vec::new())));
                entries.len() - 1
            });
        if parts.peek().is_none() {
            entries[pos].1 = value;
            return;
        }
        node = &mut entries[pos].1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Demo {
        limit: u32,
        name: String,
        nested: Inner,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize, Default)]
    #[serde(default, deny_unknown_fields)]
    struct Inner {
        depth: u8,
    }

    impl Default for Demo {
        fn default() -> Self {
            Self {
                limit: 10,
                name: "x".into(),
                nested: Inner::default(),
            }
        }
    }

    impl Settings for Demo {
        fn keys() -> &'static [(&'static str, &'static str)] {
            &[
                ("limit", "a limit"),
                ("name", "a name"),
                ("nested", "a table"),
            ]
        }
        fn env() -> &'static [(&'static str, &'static str)] {
            &[("DEMO_LIMIT", "limit"), ("DEMO_DEPTH", "nested.depth")]
        }
        fn validate(&self) -> Result<(), String> {
            if self.limit == 0 {
                return Err("limit = 0: expected at least 1".into());
            }
            Ok(())
        }
    }

    fn settings() -> PluginSettings {
        PluginSettings {
            plugin: "demo-plugin".into(),
            section: "storage".into(),
            ..PluginSettings::default()
        }
    }

    #[test]
    fn t10_absent_keys_take_their_defaults_and_env_overrides_the_section() {
        let s = settings().with("limit", 5).with("name", "y");
        assert_eq!(
            s.decode::<Demo>().unwrap(),
            Demo {
                limit: 5,
                name: "y".into(),
                nested: Inner::default()
            }
        );
        let mut s = s;
        s.env.insert("DEMO_LIMIT".into(), "7".into());
        s.env.insert("DEMO_DEPTH".into(), "3".into());
        s.env.insert("NOT_DECLARED".into(), "1".into());
        let d: Demo = s.decode().unwrap();
        assert_eq!((d.limit, d.nested.depth), (7, 3));
        assert_eq!(settings().decode::<Demo>().unwrap(), Demo::default());
    }

    #[test]
    fn t11_unknown_keys_and_wrong_types_name_the_plugin_key_and_expectation() {
        let e = settings().with("limt", 5).decode::<Demo>().unwrap_err();
        assert_eq!(e.kind, ErrorKind::CONFIG);
        let m = e.message.to_string();
        assert!(
            m.starts_with("plugin demo-plugin: setting storage.limt: unknown field `limt`"),
            "{m}"
        );
        assert!(m.contains("expected one of"), "{m}");

        let e = settings()
            .with("limit", "many")
            .decode::<Demo>()
            .unwrap_err();
        let m = e.message.to_string();
        assert!(
            m.contains("setting storage.limit: invalid type: string \"many\", expected u32"),
            "{m}"
        );

        let s = PluginSettings {
            values: Value::Map(vec![(
                "nested".into(),
                Value::Map(vec![("deep".into(), 1.into())]),
            )]),
            ..settings()
        };
        let m = s.decode::<Demo>().unwrap_err().message.to_string();
        assert!(
            m.contains("setting storage.nested.deep: unknown field `deep`"),
            "{m}"
        );

        let mut s = settings();
        s.env.insert("DEMO_DEPTH".into(), "300".into());
        let m = s.decode::<Demo>().unwrap_err().message.to_string();
        assert!(
            m.contains("setting storage.nested.depth (set by DEMO_DEPTH)"),
            "{m}"
        );

        let m = settings()
            .with("limit", 0)
            .decode::<Demo>()
            .unwrap_err()
            .message
            .to_string();
        assert!(
            m.contains("plugin demo-plugin: [storage]: limit = 0: expected at least 1"),
            "{m}"
        );
    }

    #[test]
    fn t12_split_off_moves_only_the_named_keys() {
        let mut s = settings().with("limit", 5).with("mine", 1);
        let own = s.split_off(&["mine"]);
        assert_eq!(own.values, Value::Map(vec![("mine".into(), 1.into())]));
        assert_eq!(s.decode::<Demo>().unwrap().limit, 5);
    }

    #[test]
    fn t13_the_description_lists_defaults_keys_and_variables() {
        let d = SettingsDescription::of::<Demo>().unwrap();
        assert_eq!(d.keys.len(), 3);
        assert_eq!(d.env[1].key, "nested.depth");
        let Value::Map(m) = &d.defaults else {
            panic!("defaults are a map")
        };
        assert_eq!(m[0], ("limit".into(), 10.into()));
        let d = d.merged(no_settings());
        assert_eq!(d.keys.len(), 3);
    }
}
