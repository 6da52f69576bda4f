//! The connection file a Jupyter client writes for a kernel: transport, address, the five
//! ports, the signing key and scheme (see the "connection files" section of the Jupyter client
//! docs). The kernel binds; the client connects.

use std::path::Path;

use anyhow::{bail, Context, Result};
pub use jupyter_protocol::{ConnectionInfo, Transport};

/// Reads and checks a connection file.
pub fn load(path: &Path) -> Result<ConnectionInfo> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading connection file {}", path.display()))?;
    parse(&text).with_context(|| format!("connection file {}", path.display()))
}

/// Parses and checks connection-file JSON. Unknown fields are ignored.
pub fn parse(json: &str) -> Result<ConnectionInfo> {
    let info: ConnectionInfo = serde_json::from_str(json).context("invalid connection file")?;
    check(&info)?;
    Ok(info)
}

/// Refuses what this kernel cannot honour: a signature scheme other than HMAC-SHA256 when a key
/// is set.
pub fn check(info: &ConnectionInfo) -> Result<()> {
    if !info.key.is_empty() && info.signature_scheme != "hmac-sha256" {
        bail!(
            "unsupported signature_scheme {:?} (only hmac-sha256)",
            info.signature_scheme
        );
    }
    Ok(())
}

/// The ZeroMQ endpoint of each channel, in the form `bind` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub shell: String,
    pub control: String,
    pub iopub: String,
    pub stdin: String,
    pub heartbeat: String,
}

impl Endpoints {
    pub fn of(info: &ConnectionInfo) -> Self {
        Endpoints {
            shell: info.shell_url(),
            control: info.control_url(),
            iopub: info.iopub_url(),
            stdin: info.stdin_url(),
            heartbeat: info.hb_url(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"{
        "shell_port": 5001, "iopub_port": 5002, "stdin_port": 5003,
        "control_port": 5004, "hb_port": 5005, "ip": "127.0.0.1",
        "key": "a0436f6c-1916-498b-8eb9-e81ab9368e84", "transport": "tcp",
        "signature_scheme": "hmac-sha256", "kernel_name": "qplay",
        "jupyter_session": "ignored"
    }"#;

    #[test]
    fn parses_a_jupyter_client_connection_file() {
        let info = parse(FILE).unwrap();
        assert_eq!(info.key, "a0436f6c-1916-498b-8eb9-e81ab9368e84");
        let e = Endpoints::of(&info);
        assert_eq!(e.shell, "tcp://127.0.0.1:5001");
        assert_eq!(e.iopub, "tcp://127.0.0.1:5002");
        assert_eq!(e.stdin, "tcp://127.0.0.1:5003");
        assert_eq!(e.control, "tcp://127.0.0.1:5004");
        assert_eq!(e.heartbeat, "tcp://127.0.0.1:5005");
    }

    #[test]
    fn refuses_other_signature_schemes_and_garbage() {
        let md5 = FILE.replace("hmac-sha256", "hmac-md5");
        assert!(parse(&md5).is_err());
        // Without a key the scheme does not matter.
        let unsigned = md5.replace("a0436f6c-1916-498b-8eb9-e81ab9368e84", "");
        assert!(parse(&unsigned).is_ok());
        assert!(parse("{}").is_err());
    }
}
