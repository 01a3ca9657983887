//! A `cratopus control` process for tests: writes control.yaml (and any other files) into a
//! temp dir, starts the binary on it and reads its address from the log line
//! `control plane listening addr=...`. Its log is kept for assertions; the process is killed
//! on drop. The control.yaml should bind `127.0.0.1:0`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct ControlPlane {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    log: Arc<Mutex<Vec<String>>>,
}

impl ControlPlane {
    /// Starts `bin control -c <dir>/control.yaml` and waits until it listens (it applies the
    /// migrations first). Panics with its log if it exits or does not listen within 60 s.
    pub fn start(bin: &str, control_yaml: &str, files: &[(&str, &str)]) -> ControlPlane {
        Self::try_start(bin, control_yaml, files)
            .unwrap_or_else(|log| panic!("control plane did not start; its log:\n{log}"))
    }

    /// [`ControlPlane::start`], answering the log instead of panicking.
    pub fn try_start(bin: &str, control_yaml: &str, files: &[(&str, &str)]) -> Result<ControlPlane, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("control.yaml"), control_yaml).expect("write control.yaml");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write file");
        }
        let mut child = Command::new(bin)
            .arg("control")
            .arg("-c")
            .arg(dir.path().join("control.yaml"))
            .env("CRATOPUS_LOG", "info,cratopus_control=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start cratopus control");
        let (log, rx) = crate::follow_log(&mut child, "control", "control plane listening");
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => Ok(ControlPlane { child, addr, dir, log }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                // The reader threads finish once the pipes close.
                std::thread::sleep(Duration::from_millis(100));
                Err(log.lock().unwrap().join("\n"))
            }
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// One API call with a bearer token (none when empty), an optional JSON body and extra
    /// headers.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> crate::Reply {
        let mut b = http::Request::builder().method(method).uri(self.url(path));
        if !token.is_empty() {
            b = b.header("authorization", format!("Bearer {token}"));
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let body = match body {
            Some(v) => {
                b = b.header("content-type", "application/json");
                bytes::Bytes::from(v.to_string())
            }
            None => bytes::Bytes::new(),
        };
        let req = b.body(http_body_util::Full::new(body)).expect("a valid request");
        crate::send(&crate::client(), req).await
    }

    /// `http://ADDR{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn logs(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        self.logs().into_iter().filter(|l| l.contains(needle)).collect()
    }

    /// Waits until a log line contains `needle`; false on timeout.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.log_lines_with(needle).is_empty() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Kills the process now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.kill();
    }
}
