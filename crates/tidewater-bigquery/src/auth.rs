//! Access tokens for BigQuery, held by the sink itself: `gcp-bigquery-client` keeps the
//! authenticator it builds private, and load-job uploads (`load`), which that client cannot
//! send, need the same tokens. So the sink builds the authenticator (the same `yup-oauth2`
//! flows, with BigQuery's scope) and hands one copy to the client.

use std::path::Path;
use std::sync::Arc;

use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::error::BQError;
use yup_oauth2::authenticator::{ApplicationDefaultCredentialsTypes, DefaultAuthenticator};
use yup_oauth2::ApplicationDefaultCredentialsFlowOpts;

const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";

/// A token for each request (yup-oauth2 caches and refreshes them).
#[derive(Clone)]
struct Yup(DefaultAuthenticator);

#[async_trait::async_trait]
impl Authenticator for Yup {
    async fn access_token(&self) -> Result<String, BQError> {
        let token = self.0.token(&[SCOPE]).await?;
        Ok(token.token().ok_or(BQError::NoToken)?.to_string())
    }
}

/// An emulator takes any token.
#[derive(Clone)]
struct NoAuth;

#[async_trait::async_trait]
impl Authenticator for NoAuth {
    async fn access_token(&self) -> Result<String, BQError> {
        Ok("emulator".into())
    }
}

/// No authentication (an emulator).
pub fn none() -> Arc<dyn Authenticator> {
    Arc::new(NoAuth)
}

/// A service-account key file.
pub async fn from_key_file(key: &Path) -> Result<Arc<dyn Authenticator>, String> {
    let key = yup_oauth2::read_service_account_key(key)
        .await
        .map_err(|e| e.to_string())?;
    let auth = yup_oauth2::ServiceAccountAuthenticator::builder(key)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(Yup(auth)))
}

/// Application-default credentials, as `gcp-bigquery-client` finds them: a gcloud user
/// login (`authorized_user`) at `GOOGLE_APPLICATION_CREDENTIALS` or gcloud's default path,
/// else a service-account key there, else the metadata server.
pub async fn application_default() -> Result<Arc<dyn Authenticator>, String> {
    let path = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            let home = std::env::var_os("HOME")?;
            Some(Path::new(&home).join(".config/gcloud/application_default_credentials.json"))
        });
    if let Some(path) = path {
        let text = tokio::fs::read_to_string(&path).await.unwrap_or_default();
        let kind: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if kind["type"] == "authorized_user" {
            let secret = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            let auth = yup_oauth2::AuthorizedUserAuthenticator::builder(secret)
                .build()
                .await
                .map_err(|e| e.to_string())?;
            return Ok(Arc::new(Yup(auth)));
        }
    }
    let opts = ApplicationDefaultCredentialsFlowOpts::default();
    let auth = match yup_oauth2::ApplicationDefaultCredentialsAuthenticator::builder(opts).await {
        ApplicationDefaultCredentialsTypes::InstanceMetadata(auth) => auth.build().await,
        ApplicationDefaultCredentialsTypes::ServiceAccount(auth) => auth.build().await,
    };
    Ok(Arc::new(Yup(auth.map_err(|e| e.to_string())?)))
}
