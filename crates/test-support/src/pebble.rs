//! Debian's `pebble` (Let's Encrypt's test ACME server) for tests, started as the verified recipe
//! in shared/notes/real-servers.md says: its own CA and HTTPS certificate made with openssl,
//! `pebble-challtestsrv` as its DNS server answering every name with 127.0.0.1 (and no AAAA),
//! HTTP-01 validations sent to `http01_port` (the gateway's HTTP listener), and its random root
//! fetched from the management port. Both processes are stopped on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const UP_SCRIPT: &str = r#"#!/usr/bin/env bash
set -euo pipefail
D=$1; HTTP01=$2; mkdir -p "$D"; cd "$D"
freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
ACME=$(freeport); MGMT=$(freeport); TLS01=$(freeport); DNS=$(freeport); CTMGMT=$(freeport)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/CN=pebble test CA" -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout key.pem -out csr.pem 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n' > leaf.ext
openssl x509 -req -in csr.pem -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 -extfile leaf.ext -out cert.pem 2>/dev/null
cat > pebble.json <<JSON
{ "pebble": {
    "listenAddress": "127.0.0.1:$ACME",
    "managementListenAddress": "127.0.0.1:$MGMT",
    "certificate": "$PWD/cert.pem",
    "privateKey": "$PWD/key.pem",
    "httpPort": $HTTP01,
    "tlsPort": $TLS01,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false } }
JSON
pebble-challtestsrv -dns01 127.0.0.1:$DNS -management 127.0.0.1:$CTMGMT \
  -http01 "" -https01 "" -tlsalpn01 "" -defaultIPv4 127.0.0.1 -defaultIPv6 "" > challtestsrv.log 2>&1 &
CT_PID=$!
PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=${NONCEREJECT:-0} PEBBLE_AUTHZREUSE=0 \
  pebble -config pebble.json -dnsserver 127.0.0.1:$DNS > pebble.log 2>&1 &
PEBBLE_PID=$!
trap 'kill $CT_PID $PEBBLE_PID 2>/dev/null' ERR
# Up to 30 s each (a loaded machine): the ACME directory, then the management port, which
# pebble opens beside it and may open later.
fetch() { for i in $(seq 300); do curl -fsS --cacert ca.pem "$1" > "$2" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
fetch "https://127.0.0.1:$ACME/dir" /dev/null
fetch "https://127.0.0.1:$MGMT/roots/0" pebble-root.pem
fetch "https://127.0.0.1:$MGMT/intermediates/0" pebble-intermediate.pem
printf 'ACME_DIR_URL=https://127.0.0.1:%s/dir\nACME_CA=%s/ca.pem\nHTTP01=%s\nPEBBLE_PID=%s\nCT_PID=%s\n' \
  $ACME "$PWD" $HTTP01 $PEBBLE_PID $CT_PID > pebble.env
"#;

/// A running pebble and its challenge test server.
pub struct Pebble {
    dir: tempfile::TempDir,
    /// `https://127.0.0.1:PORT/dir`
    pub directory_url: String,
    /// The CA of pebble's own HTTPS certificate (for the ACME client).
    pub ca_pem: PathBuf,
    /// The root the issued certificates chain to (new at every start).
    pub root_pem: String,
    pids: Vec<u32>,
}

impl Pebble {
    /// Starts pebble with HTTP-01 validations sent to `http01_port` on 127.0.0.1.
    /// `nonce_reject`: pebble's share of good nonces rejected with badNonce (its default is 5).
    pub fn start(http01_port: u16, nonce_reject: u32) -> Pebble {
        let dir = tempfile::tempdir().expect("temp dir for pebble");
        let script = dir.path().join("pebble-up.sh");
        std::fs::write(&script, UP_SCRIPT).expect("write pebble-up.sh");
        let work = dir.path().join("pebble");
        let out = Command::new("bash")
            .arg(&script)
            .arg(&work)
            .arg(http01_port.to_string())
            .env("NONCEREJECT", nonce_reject.to_string())
            .output()
            .expect("run bash (is pebble installed? apt-get install pebble)");
        assert!(
            out.status.success(),
            "pebble-up.sh failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let env = std::fs::read_to_string(work.join("pebble.env")).expect("pebble.env");
        let get = |k: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("{k} not in pebble.env: {env}"))
                .to_string()
        };
        let pids = [get("PEBBLE_PID"), get("CT_PID")]
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect();
        let root_pem = std::fs::read_to_string(work.join("pebble-root.pem")).unwrap_or_default();
        assert!(
            root_pem.contains("BEGIN CERTIFICATE"),
            "pebble's root was not fetched: {}",
            std::fs::read_to_string(work.join("pebble.log")).unwrap_or_default()
        );
        Pebble {
            directory_url: get("ACME_DIR_URL"),
            ca_pem: work.join("ca.pem"),
            root_pem,
            pids,
            dir,
        }
    }

    /// pebble's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble/pebble.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        // Wait (briefly) until they are gone.
        for _ in 0..50 {
            let alive = self.pids.iter().any(|p| Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
