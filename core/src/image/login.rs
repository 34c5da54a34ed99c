//! `docker login`'s check: whether a registry accepts the credentials. The
//! images service owns the registry client, so the check is asked of it; it
//! stores nothing (the client keeps credentials, in its config.json).

use berth_model::AuthConfig;

use crate::error::EngineResult;
use super::ImageService;

impl ImageService {
    /// Checks `credentials` against the registry `server` (a host, or a URL
    /// as `docker login` takes it; Docker Hub when empty). Returns the
    /// identity token the registry's token service gave, if any.
    pub fn login(&self, server: &str, credentials: &AuthConfig) -> EngineResult<Option<String>> {
        let server = if server.is_empty() { berth_model::auth::DOCKER_HUB_AUTH_KEY } else { server };
        Ok(self.registry()?.login(server, credentials)?)
    }
}
