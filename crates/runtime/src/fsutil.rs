//! File writes that readers never see half done.
//!
//! Envoy watches its config directory and reloads whatever file appears there; a file written
//! in place could be read while still partial. Writing a temporary file in the same directory
//! and renaming it over the target makes each update appear at once, whole.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Replaces `path` with `contents` atomically: a temp file in the same directory, fsynced,
/// then renamed over `path` (and the directory fsynced, so the rename survives a crash).
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    // Readable by an Envoy running as another user (temp files are created 0600).
    write_atomic_as(path, contents, 0o644)
}

/// [`write_atomic`] with file mode `mode` from the start (0600 for a secret, which must never
/// be readable by others, not even for a moment before a chmod).
pub fn write_atomic_as(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    temp.write_all(contents)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|err| err.error)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temp_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lds.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["lds.json"]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
    }

    #[test]
    fn missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("lds.json");
        assert!(write_atomic(&path, b"x").is_err());
    }
}
