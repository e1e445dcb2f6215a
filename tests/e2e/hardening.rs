//! The HTTP front's hardening seen from outside: TLS, limits on the request head and on time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::tls::TlsFiles;
use store_sql::testing::TestDatabase;
use tests::{TestApp, fhir_json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, ProtocolVersion, RootCertStore};

/// A self-signed certificate for `localhost`, written as PEM files into a temporary directory.
struct TestCertificate {
    files: TlsFiles,
    der: rustls::pki_types::CertificateDer<'static>,
    _dir: tempfile::TempDir,
}

fn test_certificate() -> TestCertificate {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    std::fs::write(&files.cert, generated.cert.pem()).unwrap();
    std::fs::write(&files.key, generated.signing_key.serialize_pem()).unwrap();
    TestCertificate {
        files,
        der: generated.cert.der().clone(),
        _dir: dir,
    }
}

/// A client that trusts only `certificate`, speaking the given TLS versions.
fn connector(
    certificate: &TestCertificate,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(certificate.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// Sends one HTTP/1.1 request over `stream` and returns the whole response as text.
async fn exchange<S>(stream: &mut S, request: &str) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("the server answers")
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

fn address(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_1_3_and_1_2_with_hsts_and_nothing_in_plain_text() {
    let certificate = test_certificate();
    let files = certificate.files.clone();
    let app = TestApp::start_with(TestDatabase::sqlite(), |config| config.tls = Some(files)).await;
    let address = address(&app);
    let name = ServerName::try_from("localhost").unwrap();

    // A client that connects and never says anything does not hold up anyone else.
    let _silent = TcpStream::connect(&address).await.unwrap();

    let request = format!(
        "GET /fhir/Patient?_count=1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Connection: close\r\n\r\n",
        app.token
    );
    for (versions, expected) in [
        (
            &[&rustls::version::TLS13, &rustls::version::TLS12][..],
            ProtocolVersion::TLSv1_3,
        ),
        (&[&rustls::version::TLS12][..], ProtocolVersion::TLSv1_2),
    ] {
        let tcp = TcpStream::connect(&address).await.unwrap();
        let mut tls = connector(&certificate, versions)
            .connect(name.clone(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.protocol_version(), Some(expected));
        let response = exchange(&mut tls, &request).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let head = response.to_ascii_lowercase();
        assert!(
            head.contains("strict-transport-security: max-age=63072000; includesubdomains"),
            "{head}"
        );
        assert!(head.contains("cache-control: no-store"), "{head}");
    }

    // HTTP/2 is offered by ALPN.
    let tcp = TcpStream::connect(&address).await.unwrap();
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates({
                let mut roots = RootCertStore::empty();
                roots.add(certificate.der.clone()).unwrap();
                roots
            })
            .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name.clone(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(&address).await.unwrap();
    let answer = exchange(
        &mut plain,
        "GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(!answer.contains("HTTP/1.1"), "{answer}");

    // A certificate the client does not trust fails the handshake.
    let stranger = test_certificate();
    let tcp = TcpStream::connect(&address).await.unwrap();
    assert!(
        connector(&stranger, &[&rustls::version::TLS13])
            .connect(name, tcp)
            .await
            .is_err()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_certificate_stops_start_up() {
    let certificate = test_certificate();
    // The key of another certificate.
    let other = test_certificate();
    let keys = tempfile::tempdir().unwrap();
    let db = TestDatabase::sqlite();
    let config = cairn::Config {
        database_url: db.url().to_owned(),
        listen: "127.0.0.1:0".to_owned(),
        keyring: keys.path().join("keyring.json"),
        tls: Some(TlsFiles {
            cert: certificate.files.cert.clone(),
            key: other.files.key.clone(),
        }),
        ..cairn::Config::default()
    };
    cairn::keys::init(&config).unwrap();
    let err = format!("{:#}", cairn::start(&config).await.unwrap_err());
    assert!(err.contains("does not suit the certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_get_414_and_431() {
    let app = TestApp::start_with(TestDatabase::sqlite(), |config| {
        config.max_header_bytes = 8 * 1024;
    })
    .await;
    let long_query = format!("/fhir/Patient?family={}", "a".repeat(9 * 1024));
    let response = app.get(&long_query).await;
    assert_eq!(response.status(), 414);
    let body = fhir_json(response).await;
    assert_eq!(body["issue"][0]["code"], "too-long");

    let response = app
        .client
        .get(app.url("/fhir/Patient?_count=1"))
        .header("x-padding", "b".repeat(9 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);
    let body = fhir_json(response).await;
    assert_eq!(body["issue"][0]["code"], "too-long");
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("limit of 8192")
    );
    // Within the limit, all is well.
    let response = app
        .client
        .get(app.url("/fhir/Patient?_count=1"))
        .header("x-padding", "b".repeat(4 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_arrives_gets_408_after_the_request_timeout() {
    let app = TestApp::start_with(TestDatabase::sqlite(), |config| {
        config.request_timeout_seconds = 1;
    })
    .await;
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    let started = Instant::now();
    let response = exchange(
        &mut stream,
        &format!(
            "POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/fhir+json\r\nContent-Length: 100\r\n\r\n{{\"resourceType\"",
            app.token
        ),
    )
    .await;
    let waited = started.elapsed();
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("\"timeout\""), "{response}");
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    // Nothing was stored.
    let page = fhir_json(app.get("/fhir/Patient?_total=accurate").await).await;
    assert_eq!(page["total"], 0);
    app.stop().await;
}
