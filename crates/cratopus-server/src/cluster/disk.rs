//! The node's disk copy of the last config version it ran, to start from when Redis cannot
//! give one. Written after each successful swap, atomically: a temp file beside it (mode
//! 0600: organizations hold consumers' key hashes and secrets), fsynced, renamed over the old
//! copy, and the directory fsynced, so a crash leaves the old copy or the new one, never half
//! of one.

use cratopus_config::cluster::Bundle;
use std::path::Path;

/// Writes `bundle` to `path` atomically (blocking: call it off the runtime).
pub fn write(path: &Path, bundle: &Bundle) -> std::io::Result<()> {
    let text = serde_json::to_vec(bundle).map_err(std::io::Error::other)?;
    crate::atomic_file::write(path, &text, Some(0o600))
}

/// Reads the copy at `path`: `Ok(None)` when there is none, `Err` when it cannot be read or
/// is not a bundle (the caller says so and goes on without it).
pub fn read(path: &Path) -> Result<Option<Bundle>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: not a config version: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cratopus_config::cluster::BundleOrg;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_copy_is_written_private_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copy.json");
        assert_eq!(read(&path), Ok(None));
        let bundle = Bundle {
            version: 4,
            organizations: vec![BundleOrg {
                name: "acme".into(),
                document: serde_json::json!({"name": "acme"}),
            }],
            created_at: None,
        };
        write(&path, &bundle).unwrap();
        write(&path, &bundle).unwrap();
        assert_eq!(read(&path), Ok(Some(bundle)));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temp file left behind");
        std::fs::write(&path, "{").unwrap();
        assert!(read(&path).unwrap_err().contains("not a config version"));
    }
}
