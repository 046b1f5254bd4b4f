use std::path::{Path, PathBuf};

/// A CA and one certificate it issued for `names`, as PEM files in `dir`.
pub struct Issued {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Issued {
    pub fn new(dir: &Path, prefix: &str, names: &[String]) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // a CA of its own name: another test CA is a stranger, not a twin
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{prefix} test CA"));
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.to_vec()).unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        let cert = params
            .signed_by(&key, &Issuer::new(ca_params, ca_key))
            .unwrap();
        let write = |file: &str, pem: String| {
            let path = dir.join(format!("{prefix}-{file}"));
            std::fs::write(&path, pem).unwrap();
            path
        };
        Self {
            cert: write("cert.pem", cert.pem()),
            key: write("key.pem", key.serialize_pem()),
            ca: write("ca.pem", ca.pem()),
        }
    }
}
