//! TLS for the Riemann client (the `tls` feature), through the rustls and ring that ureq uses.
//!
//! Riemann servers usually run their own certificate authority and ask clients for a certificate
//! of it, so the CA is named explicitly (no system store) and a client certificate is optional.

use std::fmt;
use std::io;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::client::Stream;

/// A TLS session over TCP.
pub(super) type TlsStream = StreamOwned<ClientConnection, TcpStream>;

impl Stream for TlsStream {
    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.sock.set_read_timeout(Some(timeout))
    }
}

/// What a TLS connection trusts and shows: loaded once, shared by every connection.
#[derive(Clone)]
pub struct TlsSettings {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TlsSettings {
    /// Trusts the certificates of the PEM file `ca` for a server named `server_name` (a DNS name or
    /// an IP address), showing the client certificate `(cert, key)` (PEM files) when given.
    pub fn new(
        server_name: &str,
        ca: &Path,
        client: Option<(&Path, &Path)>,
    ) -> Result<TlsSettings, String> {
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| format!("invalid server name {server_name:?}: {e}"))?;
        let mut roots = RootCertStore::empty();
        for cert in crate::tls::certificates(ca)? {
            roots
                .add(cert)
                .map_err(|e| format!("{}: unusable CA certificate: {e}", ca.display()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let key = crate::tls::private_key(key)?;
                builder
                    .with_client_auth_cert(crate::tls::certificates(cert)?, key)
                    .map_err(|e| format!("{}: {e}", cert.display()))?
            }
        };
        Ok(TlsSettings {
            config: Arc::new(config),
            server_name,
        })
    }

    /// Runs the handshake over `tcp`, within the socket's timeouts.
    pub(super) fn handshake(&self, mut tcp: TcpStream) -> io::Result<TlsStream> {
        let mut conn = ClientConnection::new(self.config.clone(), self.server_name.clone())
            .map_err(io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        Ok(StreamOwned::new(conn, tcp))
    }
}
