//! `[admin]`: where the admin endpoint listens, and who may use it.

use std::net::SocketAddr;

use serde::Deserialize;
use toml::Spanned;

use super::Located;

/// `[admin]`: the HTTP endpoint for metrics, health and reload.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on; loopback only by default. An empty string turns the endpoint
    /// off; the environment variable `SWITCHYARD_ADMIN_LISTEN` overrides this.
    #[serde(default = "AdminConfig::default_listen")]
    pub listen: Spanned<String>,
    /// Whether `listen` may be an address other machines can reach (`0.0.0.0:9464`, a
    /// pod's address). Such an endpoint also needs a `token`, or `unauthenticated = true`.
    #[serde(default)]
    pub allow_remote: bool,
    /// The bearer token every endpoint but `/health/*` then requires
    /// (`Authorization: Bearer TOKEN`); `"${ADMIN_TOKEN}"` takes it from the environment.
    #[serde(default)]
    pub token: Option<Spanned<String>>,
    /// The absolute path of a file holding the token instead (a mounted secret, say); its
    /// surrounding whitespace is ignored.
    #[serde(default)]
    pub token_file: Option<Spanned<String>>,
    /// With `allow_remote`, serve every endpoint without a token, on purpose.
    #[serde(default)]
    pub unauthenticated: bool,
}

impl AdminConfig {
    fn default_listen() -> Spanned<String> {
        Spanned::new(0..0, "127.0.0.1:9464".to_owned())
    }

    /// The token clients must send, if any; a problem with its place when the token or
    /// the address it guards is not what a run accepts. `listen` is the address the
    /// endpoint will use (`SWITCHYARD_ADMIN_LISTEN` may override the file's).
    pub fn access(&self, listen: &str) -> Result<Option<String>, Located> {
        let token = match (&self.token, &self.token_file) {
            (Some(token), Some(_)) => {
                return Err(Located::on(
                    token,
                    "[admin] `token` and `token_file` are both set: keep one".to_owned(),
                ));
            }
            (Some(token), None) if token.get_ref().trim().is_empty() => {
                return Err(Located::on(
                    token,
                    "[admin] `token` is empty (is its variable set?)".to_owned(),
                ));
            }
            (Some(token), None) => Some(token.get_ref().trim().to_owned()),
            (None, Some(file)) => Some(read_token(file)?),
            (None, None) => None,
        };
        let Ok(address) = listen.parse::<SocketAddr>() else {
            // Said by the address check.
            return Ok(token);
        };
        if address.ip().is_loopback() {
            return Ok(token);
        }
        if !self.allow_remote {
            return Err(Located::on(
                &self.listen,
                format!(
                    "[admin] `listen`: {listen} can be reached from other machines; set \
                     `allow_remote = true` and a `token` (or `token_file`) to mean it, or \
                     listen on 127.0.0.1"
                ),
            ));
        }
        if token.is_none() && !self.unauthenticated {
            return Err(Located::on(
                &self.listen,
                format!(
                    "[admin] `listen`: {listen} with no `token`: anyone who can reach it could \
                     read /metrics and /routes and trigger reloads; set `token = \
                     \"${{ADMIN_TOKEN}}\"` or `token_file`, or `unauthenticated = true` to mean \
                     it"
                ),
            ));
        }
        Ok(token)
    }
}

fn read_token(file: &Spanned<String>) -> Result<String, Located> {
    let path = std::path::Path::new(file.get_ref());
    if !path.is_absolute() {
        return Err(Located::on(
            file,
            format!(
                "[admin] `token_file`: {} is not an absolute path",
                file.get_ref()
            ),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        Located::on(
            file,
            format!("[admin] `token_file`: cannot read {}: {e}", file.get_ref()),
        )
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(Located::on(
            file,
            format!("[admin] `token_file`: {} is empty", file.get_ref()),
        ));
    }
    Ok(token.to_owned())
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: Self::default_listen(),
            allow_remote: false,
            token: None,
            token_file: None,
            unauthenticated: false,
        }
    }
}
