//! TLS for the clients that speak their own protocol over TCP (the Riemann output, the MQTT
//! output and source): the certificate keys of their config, and (with the `tls` feature) the
//! client side of the handshake, through the rustls and ring that ureq uses; `pem` (with `tls`)
//! loads the certificate and key files for them and for the HTTP endpoint.
//!
//! Riemann servers and MQTT brokers of a fleet usually run their own certificate authority and
//! may ask clients for a certificate of it, so the CA is named explicitly (no system store) and a
//! client certificate is optional. The keys are the same for every output: `tls_ca`, `tls_cert`,
//! `tls_key`.

#[cfg(feature = "tls")]
pub mod pem;

use std::path::PathBuf;

use crate::config::reader::{Problems, Table};

/// The certificate files of a TLS connection, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM file of the CA certificates the server's certificate must chain to.
    pub ca: PathBuf,
    /// PEM files of the client certificate and its private key, for servers that ask for one.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl TlsFiles {
    /// Reads `tls_ca`, `tls_cert` and `tls_key`: required (the CA) when `wanted` (the output's
    /// `"transport": "tls"`), refused otherwise. `plain` names the transports to use in a build
    /// without the `tls` feature, for its error.
    pub fn read(
        t: &mut Table<'_>,
        wanted: bool,
        plain: &str,
        problems: &mut Problems,
    ) -> Option<TlsFiles> {
        let ca_field = t.field("tls_ca");
        let ca = t.get::<PathBuf>("tls_ca", problems);
        let cert = t.get::<PathBuf>("tls_cert", problems);
        let key = t.get::<PathBuf>("tls_key", problems);
        if !wanted {
            if ca.is_some() || cert.is_some() || key.is_some() {
                problems.at(
                    t.as_field(),
                    "tls_ca, tls_cert and tls_key are only used with \"transport\": \"tls\"",
                );
            }
            return None;
        }
        if !cfg!(feature = "tls") {
            problems.at(
                t.as_field(),
                format!("this pipit was built without the \"tls\" feature: use transport {plain}"),
            );
        }
        if ca_field.is_none() {
            problems.at(t.as_field(), "missing required key \"tls_ca\" (a PEM file of the CA that signed the server's certificate)");
        }
        let client = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                problems.at(
                    t.as_field(),
                    "tls_cert and tls_key go together: set both or neither",
                );
                None
            }
        };
        Some(TlsFiles { ca: ca?, client })
    }

    /// Loads the files for a server named `server_name` (the target's host: a DNS name or an IP
    /// address); the error names the file that is missing or unusable.
    #[cfg(feature = "tls")]
    pub fn load(&self, server_name: &str) -> Result<TlsSettings, String> {
        let client = self
            .client
            .as_ref()
            .map(|(c, k)| (c.as_path(), k.as_path()));
        TlsSettings::new(server_name, &self.ca, client)
    }
}

#[cfg(feature = "tls")]
pub use settings::{TlsSettings, TlsStream, explain};

#[cfg(feature = "tls")]
mod settings {
    use std::fmt;
    use std::io;
    use std::net::TcpStream;
    use std::path::Path;
    use std::sync::Arc;

    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

    /// A TLS session over TCP.
    pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

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
        /// Trusts the certificates of the PEM file `ca` for a server named `server_name` (a DNS
        /// name or an IP address), showing the client certificate `(cert, key)` (PEM files) when
        /// given.
        pub fn new(
            server_name: &str,
            ca: &Path,
            client: Option<(&Path, &Path)>,
        ) -> Result<TlsSettings, String> {
            let server_name = ServerName::try_from(server_name.to_owned())
                .map_err(|e| format!("invalid server name {server_name:?}: {e}"))?;
            let mut roots = RootCertStore::empty();
            for cert in super::pem::certificates(ca)? {
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
                    let key = super::pem::private_key(key)?;
                    builder
                        .with_client_auth_cert(super::pem::certificates(cert)?, key)
                        .map_err(|e| format!("{}: {e}", cert.display()))?
                }
            };
            Ok(TlsSettings {
                config: Arc::new(config),
                server_name,
            })
        }

        /// Runs the handshake over `tcp`, within the socket's timeouts. A refused certificate
        /// says which side's files to check.
        pub fn handshake(&self, mut tcp: TcpStream) -> io::Result<TlsStream> {
            let mut conn = ClientConnection::new(self.config.clone(), self.server_name.clone())
                .map_err(io::Error::other)?;
            while conn.is_handshaking() {
                conn.complete_io(&mut tcp).map_err(explain)?;
            }
            Ok(StreamOwned::new(conn, tcp))
        }
    }

    /// A TLS error with what to check when it is about certificates. With TLS 1.3 a server
    /// refuses a client certificate after the client's side of the handshake is done, so the
    /// first read after it can fail this way too.
    pub fn explain(e: io::Error) -> io::Error {
        let text = e.to_string();
        let hint = if text.contains("invalid peer certificate") {
            "the server's certificate is not signed by the CA of \"tls_ca\", or not issued for \
             the target's host name"
        } else if text.contains("alert") && text.contains("Certificate") {
            "the server refused the client certificate: check \"tls_cert\" and \"tls_key\""
        } else {
            return e;
        };
        io::Error::new(e.kind(), format!("TLS handshake failed: {text} ({hint})"))
    }
}
