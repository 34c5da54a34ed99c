//! TLS to registries as Docker sets it up: the system's CAs plus those in
//! `certs.d/<host[:port]>/*.crt`, a client certificate when that directory
//! has an `x.cert` + `x.key` pair, and no verification at all only for a
//! registry the operator declared insecure (or a loopback one).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::RegistryError;

/// ring, not rustls' default aws-lc-rs: it builds without cmake and a C
/// toolchain's assembler, and registries need no post-quantum key exchange
/// (which is why rustls marks ring's provider deprecated).
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system's CAs, read once (`/etc/ssl/certs` and friends).
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!("reading the system's CA certificates: {e}");
        }
        found.certs
    })
}

/// The TLS client settings for `registry` (`host[:port]`, also the name of
/// its `certs.d` directory). `verify: false` accepts any certificate.
pub(crate) fn client_config(registry: &str, certs_dir: &Path, verify: bool) -> Result<ClientConfig, RegistryError> {
    let dir = certs_dir.join(registry);
    let files = registry_files(&dir)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| RegistryError::Tls(format!("setting up TLS: {e}")))?;
    let builder = if verify {
        let mut roots = RootCertStore::empty();
        let (_, _ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
        for ca in &files.cas {
            let certs = read_certs(ca)?;
            for cert in certs {
                roots.add(cert).map_err(|e| RegistryError::Tls(format!("CA certificate {}: {e}", ca.display())))?;
            }
        }
        builder.with_root_certificates(roots)
    } else {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
    };
    let config = match files.client {
        Some((cert, key)) => {
            let chain = read_certs(&cert)?;
            let key = PrivateKeyDer::from_pem_file(&key)
                .map_err(|e| RegistryError::Tls(format!("client key {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| RegistryError::Tls(format!("client certificate {}: {e}", cert.display())))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// What a registry's `certs.d` directory holds.
#[derive(Debug, Default)]
struct RegistryFiles {
    cas: Vec<std::path::PathBuf>,
    client: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// Reads `dir` as Docker does: `*.crt` are CAs; `x.cert` needs `x.key` and
/// the other way round (Docker's words when one is missing). No directory: nothing.
fn registry_files(dir: &Path) -> Result<RegistryFiles, RegistryError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RegistryFiles::default()),
        Err(e) => return Err(RegistryError::Tls(format!("reading {}: {e}", dir.display()))),
    };
    let mut names: Vec<String> = entries.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect();
    names.sort();
    let mut files = RegistryFiles::default();
    for name in &names {
        if name.ends_with(".crt") {
            files.cas.push(dir.join(name));
        } else if let Some(stem) = name.strip_suffix(".cert") {
            let key = format!("{stem}.key");
            if !names.contains(&key) {
                return Err(RegistryError::Tls(format!(
                    "missing key {key} for client certificate {name} in {}. CA certificates must use the extension .crt",
                    dir.display()
                )));
            }
            // Docker uses every pair; one client identity is all a handshake can present.
            files.client.get_or_insert((dir.join(name), dir.join(key)));
        } else if let Some(stem) = name.strip_suffix(".key") {
            if !names.contains(&format!("{stem}.cert")) {
                return Err(RegistryError::Tls(format!("missing client certificate {stem}.cert for key {name} in {}", dir.display())));
            }
        }
    }
    Ok(files)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, RegistryError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| RegistryError::Tls(format!("certificate {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(RegistryError::Tls(format!("certificate {}: no PEM certificate in it", path.display())));
    }
    Ok(certs)
}

/// For insecure registries: any certificate is accepted (the handshake's
/// signatures are still checked, so the connection is at least encrypted).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What went wrong in a TLS handshake, in the words Docker users know.
pub(crate) fn explain_failure(e: &(dyn std::error::Error + 'static), registry: &str, certs_dir: &Path) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut found = None;
    while let Some(err) = cur {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            found = Some(tls);
            break;
        }
        // An io::Error's source() skips the error it wraps; the TLS error sits
        // there, wrapped once by tokio-rustls and once more by hyper-rustls.
        cur = match err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    Some(match found? {
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => format!(
            "http: server gave HTTP response to HTTPS client (a registry on plain HTTP must be declared with \
             --insecure-registry {registry} or \"insecure-registries\" in daemon.json)"
        ),
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => format!(
            "x509: certificate signed by unknown authority (put the registry's CA certificate in {}/ca.crt)",
            certs_dir.join(registry).display()
        ),
        rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
        | rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { .. }) => {
            format!("x509: certificate is not valid for {registry}")
        }
        other => format!("tls: {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certs_d_pairs_must_be_complete() {
        let dir = tempfile::tempdir().unwrap();
        assert!(registry_files(&dir.path().join("absent")).unwrap().cas.is_empty());
        std::fs::write(dir.path().join("client.cert"), "x").unwrap();
        let err = registry_files(dir.path()).unwrap_err().to_string();
        assert!(err.contains("missing key client.key for client certificate client.cert"), "{err}");
        std::fs::write(dir.path().join("client.key"), "x").unwrap();
        std::fs::write(dir.path().join("ca.crt"), "x").unwrap();
        let files = registry_files(dir.path()).unwrap();
        assert_eq!(files.cas, vec![dir.path().join("ca.crt")]);
        assert!(files.client.is_some());
        std::fs::write(dir.path().join("other.key"), "x").unwrap();
        assert!(registry_files(dir.path()).unwrap_err().to_string().contains("missing client certificate other.cert"));
    }
}
