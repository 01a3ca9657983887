//! Files written so that a reader, or a restart after a crash, finds the old content or the new
//! one, never a part: a temp file beside the target, fsynced, renamed over it, and the
//! directory fsynced (the rename itself is durable once the directory is). Used for the
//! organization files the admin API edits, a cluster node's disk copy of its version, and the
//! certificates, keys and accounts ACME stores.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `bytes` to `file` atomically (blocking: call it off the runtime). `mode`: the new
/// file's permission bits; `None` keeps those of the file it replaces (0644 for a new one).
pub fn write(file: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = file.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.cratopus-{}.tmp", std::process::id()));
    let mode = mode.unwrap_or_else(|| std::fs::metadata(file).map_or(0o644, |m| m.permissions().mode() & 0o7777));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // `mode` at creation is reduced by the umask; the file it replaces had its own bits.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
