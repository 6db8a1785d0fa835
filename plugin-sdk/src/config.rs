//! A plugin's per-route configuration: ordered key/value pairs with typed accessors.

use std::str::FromStr;

/// The `config` table of a plugin in a route, as key/value strings in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// A configuration from key/value pairs.
    pub fn new(entries: Vec<(String, String)>) -> Self {
        Config { entries }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or an error naming the missing setting.
    pub fn require(&self, key: &str) -> Result<&str, String> {
        self.get(key)
            .ok_or_else(|| format!("missing required setting `{key}`"))
    }

    /// The value of `key` parsed as `T`; `Ok(None)` when it is not set, an error naming
    /// the setting and the value when it does not parse.
    pub fn parse<T>(&self, key: &str) -> Result<Option<T>, String>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.get(key)
            .map(|v| {
                v.parse::<T>()
                    .map_err(|e| format!("setting `{key}` = {v:?} is invalid: {e}"))
            })
            .transpose()
    }

    /// Fails, naming the first unknown key, if any key is not in `allowed`. Catches typos
    /// in the operator's configuration at load time.
    pub fn allow_only(&self, allowed: &[&str]) -> Result<(), String> {
        match self
            .entries
            .iter()
            .find(|(k, _)| !allowed.contains(&k.as_str()))
        {
            Some((k, _)) => Err(format!(
                "unknown setting `{k}` (expected one of: {})",
                allowed.join(", ")
            )),
            None => Ok(()),
        }
    }

    /// All entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Entries whose key starts with `prefix`, with the prefix removed, in file order.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.iter()
            .filter_map(move |(k, v)| k.strip_prefix(prefix).map(|rest| (rest, v)))
    }
}
