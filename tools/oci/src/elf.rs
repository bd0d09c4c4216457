//! Whether an executable is static: a binary with a program interpreter (`PT_INTERP`, the
//! dynamic loader) would not start on the controller image's empty root filesystem.

use anyhow::{bail, Result};

const PT_INTERP: u32 = 3;

/// `Ok` for a 64-bit little-endian ELF without a program interpreter.
pub fn check_static(binary: &[u8]) -> Result<()> {
    if binary.len() < 64 || &binary[..4] != b"\x7fELF" {
        bail!("not an ELF executable");
    }
    if binary[4] != 2 || binary[5] != 1 {
        bail!("not a 64-bit little-endian ELF executable");
    }
    let u16_at = |at: usize| u16::from_le_bytes([binary[at], binary[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(binary[32..40].try_into()?) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    for index in 0..phnum {
        let at = phoff + index * phentsize;
        let Some(p_type) = binary.get(at..at + 4) else {
            bail!("program header {index} lies outside the file");
        };
        if u32::from_le_bytes(p_type.try_into()?) == PT_INTERP {
            bail!("dynamically linked (it names a program interpreter): build it for x86_64-unknown-linux-musl");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF64 header followed by program headers of `types`.
    fn elf(types: &[u32]) -> Vec<u8> {
        let mut bytes = vec![0u8; 64];
        bytes[..6].copy_from_slice(b"\x7fELF\x02\x01");
        bytes[32..40].copy_from_slice(&64u64.to_le_bytes());
        bytes[54..56].copy_from_slice(&56u16.to_le_bytes());
        bytes[56..58].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for p_type in types {
            let mut header = vec![0u8; 56];
            header[..4].copy_from_slice(&p_type.to_le_bytes());
            bytes.extend(header);
        }
        bytes
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
}
