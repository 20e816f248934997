//! Where the signing credentials come from, in the standard order: the sink's own config keys
//! (`access_key_id` / `secret_access_key` / `session_token`), then aws-config's default chain —
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, the shared credentials and
//! config files with `AWS_PROFILE` (or the sink's `profile`), web identity tokens, the container
//! (ECS) endpoint and the instance metadata service (IMDSv2).
//!
//! The chain is aws-config's, not a hand-written one; its few HTTP requests (metadata endpoints)
//! go through this sink's own transport ([`super::client::credentials_http_client`]). Fetched
//! credentials are cached until five minutes before they expire (15 minutes for credentials
//! without an expiry), and dropped early when the service refuses them. Secrets never reach a
//! log line: `Credentials`' `Debug` redacts them and errors name only the provider.

use super::config::CloudWatchConfig;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::provider_config::ProviderConfig;
use aws_config::Region;
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use std::time::{Duration, SystemTime};
use tokio::sync::{Mutex, OnceCell};

/// Refresh this long before the credentials expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);
/// Re-read credentials that carry no expiry after this long.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(900);

/// The credentials a sink signs with.
pub struct CredentialSource {
    /// From the config keys: always wins.
    fixed: Option<Credentials>,
    region: String,
    profile: Option<String>,
    chain: OnceCell<DefaultCredentialsChain>,
    cache: Mutex<Option<(Credentials, SystemTime)>>,
}

/// No credentials could be had.
#[derive(Debug, thiserror::Error)]
#[error("no AWS credentials: {0}")]
pub struct NoCredentials(String);

impl CredentialSource {
    pub fn from_config(c: &CloudWatchConfig, region: &str) -> CredentialSource {
        let fixed = match (&c.access_key_id, &c.secret_access_key) {
            (Some(id), Some(secret)) => Some(Credentials::new(
                id.clone(),
                secret.expose().to_string(),
                c.session_token.as_ref().map(|t| t.expose().to_string()),
                None,
                "logwharf-config",
            )),
            _ => None,
        };
        CredentialSource {
            fixed,
            region: region.to_string(),
            profile: c.profile.clone(),
            chain: OnceCell::new(),
            cache: Mutex::new(None),
        }
    }

    /// Credentials to sign the next request with.
    pub async fn get(&self) -> Result<Credentials, NoCredentials> {
        if let Some(c) = &self.fixed {
            return Ok(c.clone());
        }
        let mut cache = self.cache.lock().await;
        if let Some((c, refresh_at)) = cache.as_ref() {
            if SystemTime::now() < *refresh_at {
                return Ok(c.clone());
            }
        }
        let chain = self
            .chain
            .get_or_init(|| async {
                let conf = ProviderConfig::default()
                    .with_http_client(super::client::credentials_http_client());
                let mut b = DefaultCredentialsChain::builder()
                    .region(Region::new(self.region.clone()))
                    .configure(conf);
                if let Some(p) = &self.profile {
                    b = b.profile_name(p);
                }
                b.build().await
            })
            .await;
        let creds = chain
            .provide_credentials()
            .await
            .map_err(|e| NoCredentials(error_chain(&e)))?;
        let refresh_at = match creds.expiry() {
            Some(exp) => exp
                .checked_sub(REFRESH_BEFORE_EXPIRY)
                .unwrap_or(exp)
                .max(SystemTime::now() + Duration::from_secs(10)),
            None => SystemTime::now() + DEFAULT_LIFETIME,
        };
        *cache = Some((creds.clone(), refresh_at));
        Ok(creds)
    }

    /// The service refused the credentials: fetch fresh ones next time.
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
