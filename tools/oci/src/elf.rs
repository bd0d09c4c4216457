//! The program interpreter of an executable (`PT_INTERP`, the dynamic loader): whether it is
//! static (one with an interpreter would not start on the controller image's empty root
//! filesystem), and which loader a generic image must carry for it ([`crate::rootfs`]).

use anyhow::{bail, Context, Result};

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;

/// How an ELF file links.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Linking {
    /// The program interpreter it names (`PT_INTERP`), for an executable linked dynamically.
    pub interpreter: Option<String>,
    /// Whether it has a dynamic section (`PT_DYNAMIC`): a dynamic executable or a shared
    /// library, which may need other libraries.
    pub dynamic: bool,
}

/// Whether `bytes` start as an ELF file does (the magic only).
pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF")
}

/// The program interpreter a 64-bit little-endian ELF names (`/lib64/ld-linux-x86-64.so.2`),
/// `None` for a static one. Errors on anything else, or on headers pointing outside the file.
pub fn interpreter(binary: &[u8]) -> Result<Option<String>> {
    Ok(linking(binary)?.interpreter)
}

/// How a 64-bit little-endian ELF links. Errors on anything else, or on headers pointing
/// outside the file.
pub fn linking(binary: &[u8]) -> Result<Linking> {
    if binary.len() < 64 || !is_elf(binary) {
        bail!("not an ELF executable");
    }
    if binary[4] != 2 || binary[5] != 1 {
        bail!("not a 64-bit little-endian ELF executable");
    }
    let u16_at = |at: usize| u16::from_le_bytes([binary[at], binary[at + 1]]) as usize;
    let u64_at = |at: usize| -> Result<usize> {
        let bytes = binary
            .get(at..at.saturating_add(8))
            .context("a program header lies outside the file")?;
        Ok(u64::from_le_bytes(bytes.try_into()?) as usize)
    };
    let phoff = u64_at(32)?;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    let mut linking = Linking::default();
    for index in 0..phnum {
        let at = phoff
            .checked_add(index * phentsize)
            .context("program header offset overflows")?;
        let Some(p_type) = binary.get(at..at.saturating_add(4)) else {
            bail!("program header {index} lies outside the file");
        };
        match u32::from_le_bytes(p_type.try_into()?) {
            PT_DYNAMIC => {
                linking.dynamic = true;
                continue;
            }
            PT_INTERP => {}
            _ => continue,
        }
        let (offset, size) = (
            u64_at(at.saturating_add(8))?,
            u64_at(at.saturating_add(32))?,
        );
        let Some(path) = binary.get(offset..offset.saturating_add(size)) else {
            bail!("the program interpreter's name lies outside the file");
        };
        let path = path.strip_suffix(b"\0").unwrap_or(path);
        let path = std::str::from_utf8(path).context("the program interpreter's name")?;
        if !path.starts_with('/') {
            bail!("the program interpreter {path:?} is not an absolute path");
        }
        linking.interpreter = Some(path.to_owned());
    }
    Ok(linking)
}

/// `Ok` for a 64-bit little-endian ELF without a program interpreter.
pub fn check_static(binary: &[u8]) -> Result<()> {
    if interpreter(binary)?.is_some() {
        bail!("dynamically linked (it names a program interpreter): build it for x86_64-unknown-linux-musl");
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An ELF64 header followed by program headers of `types`; a `PT_INTERP` one points at
    /// `interp` (NUL-terminated), appended after the headers.
    pub(crate) fn elf_with(types: &[u32], interp: &str) -> Vec<u8> {
        let mut bytes = vec![0u8; 64];
        bytes[..6].copy_from_slice(b"\x7fELF\x02\x01");
        bytes[32..40].copy_from_slice(&64u64.to_le_bytes());
        bytes[54..56].copy_from_slice(&56u16.to_le_bytes());
        bytes[56..58].copy_from_slice(&(types.len() as u16).to_le_bytes());
        let name_at = 64 + 56 * types.len() as u64;
        let name_len = interp.len() as u64 + 1;
        for p_type in types {
            let mut header = vec![0u8; 56];
            header[..4].copy_from_slice(&p_type.to_le_bytes());
            if *p_type == PT_INTERP {
                header[8..16].copy_from_slice(&name_at.to_le_bytes());
                header[32..40].copy_from_slice(&name_len.to_le_bytes());
            }
            bytes.extend(header);
        }
        bytes.extend(interp.as_bytes());
        bytes.push(0);
        bytes
    }

    fn elf(types: &[u32]) -> Vec<u8> {
        elf_with(types, "/lib64/ld-linux-x86-64.so.2")
    }

    #[test]
    fn the_test_binary_itself_is_dynamic_on_glibc_and_junk_is_refused() {
        let own = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        // Test binaries link glibc dynamically (the host target); a musl build would pass.
        if cfg!(target_env = "gnu") {
            let err = check_static(&own).unwrap_err().to_string();
            assert!(err.contains("dynamically linked"), "{err}");
        }
        assert!(check_static(b"#!/bin/sh\necho hi\n").is_err());
        assert!(check_static(&elf(&[1, 1])).is_ok(), "two PT_LOAD headers");
        let err = check_static(&elf(&[1, PT_INTERP])).unwrap_err().to_string();
        assert!(err.contains("dynamically linked"), "{err}");
        assert!(check_static(&[0x7f, b'E', b'L', b'F']).is_err());
    }

    #[test]
    fn the_interpreter_is_read_from_pt_interp() {
        assert_eq!(interpreter(&elf(&[1, 1])).unwrap(), None);
        assert_eq!(
            interpreter(&elf(&[1, PT_INTERP])).unwrap().as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        let mut truncated = elf(&[PT_INTERP]);
        truncated.truncate(64 + 56 + 3);
        assert!(interpreter(&truncated).is_err(), "name outside the file");
        assert!(interpreter(&elf_with(&[PT_INTERP], "ld.so")).is_err());
        let library = linking(&elf(&[1, PT_DYNAMIC])).unwrap();
        assert_eq!(
            library,
            Linking {
                interpreter: None,
                dynamic: true
            }
        );
        assert!(!linking(&elf(&[1])).unwrap().dynamic);
        if cfg!(target_env = "gnu") {
            let own = std::fs::read(std::env::current_exe().unwrap()).unwrap();
            let interp = interpreter(&own).unwrap().unwrap();
            assert!(std::path::Path::new(&interp).exists(), "{interp}");
        }
    }
}
