//! Reading the files a config names (gateway.yaml, organization files, certificates, keys, CAs,
//! JWKS and PEM keys, JSON Schemas) with a size limit.
//!
//! A setting that points at `/dev/zero`, a log file or a disk image must not make `check` or a
//! reload read without end: every such file is read through [`read_limited`], which stops one
//! byte past [`MAX_FILE_BYTES`] and says which file and which limit. Real config files, PEM
//! bundles and schemas are far below it (a CA bundle of every public root is about 220 KiB).

use std::io::Read;
use std::path::Path;

/// The largest file a config may name: 4 MiB.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// The bytes of `path`, or an error naming the file: unreadable, or larger than
/// [`MAX_FILE_BYTES`] (found after reading at most one byte more, whatever the file is).
pub fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    // The length a regular file declares sizes the buffer; devices and pipes declare 0.
    let declared = file.metadata().map(|m| m.len()).unwrap_or(0);
    if declared > MAX_FILE_BYTES {
        return Err(too_large(path));
    }
    let mut bytes = Vec::with_capacity(declared as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(path));
    }
    Ok(bytes)
}

/// [`read_limited`] for text files: the bytes must be UTF-8.
pub fn read_text_limited(path: &Path) -> Result<String, String> {
    let bytes = read_limited(path)?;
    String::from_utf8(bytes).map_err(|_| format!("`{}` is not UTF-8 text", path.display()))
}

fn too_large(path: &Path) -> String {
    format!(
        "`{}` is larger than {} MiB, the limit for a file the config names",
        path.display(),
        MAX_FILE_BYTES >> 20
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_file_is_cut_at_the_limit() {
        let e = read_limited(Path::new("/dev/zero")).unwrap_err();
        assert!(e.contains("/dev/zero") && e.contains("4 MiB"), "{e}");
    }

    #[test]
    fn a_small_file_is_read_whole() {
        let dir = std::env::temp_dir().join(format!("cratopus-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("a.txt");
        std::fs::write(&f, "héllo").unwrap();
        assert_eq!(read_text_limited(&f).unwrap(), "héllo");
        std::fs::write(&f, [0xff, 0xfe]).unwrap();
        assert!(read_text_limited(&f).unwrap_err().contains("not UTF-8"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
