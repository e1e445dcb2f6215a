//! TLS for `cairn serve` when a certificate and key are configured (`CAIRN_TLS_CERT`,
//! `CAIRN_TLS_KEY`): rustls with TLS 1.3 and 1.2 only; rustls picks 1.3 whenever the client
//! offers it, and has no implementation of anything older.
//!
//! Why not poem's own rustls listener: it is hard-wired to the aws-lc provider, a second C
//! crypto library beside the `ring` that sqlx and `phi-crypto` already use, and rustls panics
//! at first use when it finds two providers and none chosen. This acceptor uses `ring`.
//!
//! Handshakes run in their own tasks, each with a deadline, so a client that connects and
//! never finishes its handshake holds only its own socket, never the accept loop.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use poem::http::uri::Scheme;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{ServerConfig, crypto, version};
use tokio_rustls::server::TlsStream;

/// How long a client has to complete its handshake.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait in the kernel's backlog.
const CONCURRENT_HANDSHAKES: usize = 1024;

/// Where the server's certificate chain and private key are, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The rustls server configuration for `files`: TLS 1.3 and 1.2, ring's cipher suites (AEAD
/// only, forward secret), ALPN for HTTP/2 and HTTP/1.1.
pub fn server_config(files: &TlsFiles) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = read_chain(&files.cert)?;
    // The key's bytes are a secret: errors name the file, never its content.
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|err| {
        anyhow::anyhow!(
            "cannot read a private key from {}: {err}",
            files.key.display()
        )
    })?;
    let provider = Arc::new(crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .context("the TLS protocol versions are not supported by the crypto provider")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "the key in {} does not suit the certificate in {}",
                files.key.display(),
                files.cert.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_chain(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| {
            anyhow::anyhow!("cannot read certificates from {}: {err}", path.display())
        })?;
    anyhow::ensure!(
        !chain.is_empty(),
        "{} holds no PEM certificate",
        path.display()
    );
    Ok(chain)
}

/// A connection whose handshake is done.
type Handshaken = (TlsStream<TcpStream>, LocalAddr, RemoteAddr);

/// Accepts TCP connections, completes their TLS handshakes concurrently and hands poem only
/// those that succeeded.
pub struct TlsAcceptor {
    local_addr: Vec<LocalAddr>,
    ready: mpsc::Receiver<Handshaken>,
    accepting: JoinHandle<()>,
}

impl TlsAcceptor {
    pub fn new(tcp: TcpAcceptor, config: Arc<ServerConfig>) -> Self {
        let local_addr = tcp.local_addr();
        let (sender, ready) = mpsc::channel(CONCURRENT_HANDSHAKES);
        let accepting = tokio::spawn(accept_loop(
            tcp,
            tokio_rustls::TlsAcceptor::from(config),
            sender,
        ));
        Self {
            local_addr,
            ready,
            accepting,
        }
    }
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Drop for TlsAcceptor {
    fn drop(&mut self) {
        // The server stopped: stop listening too.
        self.accepting.abort();
    }
}

impl Acceptor for TlsAcceptor {
    type Io = TlsStream<TcpStream>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.local_addr.clone()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        match self.ready.recv().await {
            Some((stream, local, remote)) => Ok((stream, local, remote, Scheme::HTTPS)),
            // Only when the accept loop ended, which it does only when aborted by `drop`.
            // poem retries a failed accept at once, so wait instead of spinning on errors.
            None => std::future::pending().await,
        }
    }
}

async fn accept_loop(
    mut tcp: TcpAcceptor,
    tls: tokio_rustls::TlsAcceptor,
    ready: mpsc::Sender<Handshaken>,
) {
    let slots = Arc::new(Semaphore::new(CONCURRENT_HANDSHAKES));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, local, remote, _) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: back off rather than spin.
                tracing::warn!(error = %err, "cannot accept a TCP connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let tls = tls.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(HANDSHAKE_DEADLINE, tls.accept(stream)).await {
                Ok(Ok(stream)) => {
                    // The receiver is gone only when the server stopped.
                    let _ = ready.send((stream, local, remote)).await;
                }
                Ok(Err(err)) => tracing::debug!(error = %err, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_unreadable_certificate_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        };
        let err = format!("{:#}", server_config(&files).unwrap_err());
        assert!(err.contains("cert.pem"), "{err}");
        std::fs::write(&files.cert, "not a certificate").unwrap();
        let err = format!("{:#}", server_config(&files).unwrap_err());
        assert!(err.contains("holds no PEM certificate"), "{err}");
    }
}
