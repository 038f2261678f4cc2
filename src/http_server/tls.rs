//! HTTPS for the endpoint (the `tls` feature): the server's certificate chain and key, loaded
//! once when the endpoint starts, through the rustls and ring that the Riemann client uses.

use std::sync::Arc;

use rustls::ServerConfig;

use super::TlsFiles;

/// The TLS settings of every connection, from the PEM files `files` names.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, String> {
    let certs = crate::tls::pem::certificates(&files.cert)?;
    let key = crate::tls::pem::private_key(&files.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "{} and {} do not make a usable certificate and key: {e}",
                files.cert.display(),
                files.key.display()
            )
        })?;
    Ok(Arc::new(config))
}
