//! `sticky-canary-trim FILE.wasm`: removes from the filter's module the exports of the
//! proxy-wasm callbacks it does not implement ([`sticky_canary_filter::UNUSED_CALLBACKS`]).
//!
//! The proxy-wasm SDK exports every callback. Envoy calls each per-request one that is
//! exported, for every request, and entering the VM is the costliest thing the filter does; the
//! others only keep the SDK's dispatch code in the module. A callback that is not exported is
//! treated by the host as "continue", which is what the SDK's defaults return.
//! The file is replaced atomically; running it twice changes nothing the second time.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use wasm_encoder::{ExportKind, ExportSection, Module, RawSection};
use wasmparser::{ExternalKind, Parser, Payload};

/// `module` without the exports named in `drop`, and the names actually removed.
fn trim(module: &[u8], drop: &[&str]) -> Result<(Vec<u8>, Vec<String>)> {
    let mut out = Module::new();
    let mut removed = Vec::new();
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.context("not a valid WebAssembly module")?;
        match payload {
            Payload::Version { encoding, .. } => {
                if encoding != wasmparser::Encoding::Module {
                    bail!("a component, not a core WebAssembly module");
                }
            }
            Payload::ExportSection(reader) => {
                let mut exports = ExportSection::new();
                for export in reader {
                    let export = export.context("reading the export section")?;
                    if drop.contains(&export.name) {
                        removed.push(export.name.to_owned());
                        continue;
                    }
                    exports.export(export.name, export_kind(export.kind), export.index);
                }
                out.section(&exports);
            }
            Payload::CodeSectionStart { range, .. } => {
                // The code section is copied whole; its entries follow as separate payloads.
                out.section(&RawSection {
                    id: wasm_encoder::SectionId::Code as u8,
                    data: &module[range],
                });
            }
            Payload::CodeSectionEntry(_) | Payload::End(_) => {}
            other => {
                if let Some((id, range)) = other.as_section() {
                    out.section(&RawSection {
                        id,
                        data: &module[range],
                    });
                }
            }
        }
    }
    Ok((out.finish(), removed))
}

fn export_kind(kind: ExternalKind) -> ExportKind {
    match kind {
        ExternalKind::Func => ExportKind::Func,
        ExternalKind::Table => ExportKind::Table,
        ExternalKind::Memory => ExportKind::Memory,
        ExternalKind::Global => ExportKind::Global,
        ExternalKind::Tag => ExportKind::Tag,
    }
}

fn run(path: &Path) -> Result<()> {
    let module = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (trimmed, removed) = trim(&module, sticky_canary_filter::UNUSED_CALLBACKS)
        .with_context(|| format!("trimming {}", path.display()))?;
    if removed.is_empty() {
        eprintln!("{}: already trimmed", path.display());
        return Ok(());
    }
    wasmparser::Validator::new()
        .validate_all(&trimmed)
        .context("the trimmed module does not validate")?;
    let mut temporary = PathBuf::from(path);
    temporary.set_extension("wasm.trimming");
    std::fs::write(&temporary, &trimmed)
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("replacing {}", path.display()))?;
    eprintln!(
        "{}: removed the exports {} ({} → {} bytes)",
        path.display(),
        removed.join(", "),
        module.len(),
        trimmed.len()
    );
    Ok(())
}

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(path), None) = (args.next(), args.next()) else {
        bail!("usage: sticky-canary-trim FILE.wasm");
    };
    run(Path::new(&path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_encoder::{
        CodeSection, Function, FunctionSection, Instruction, MemorySection, MemoryType, TypeSection,
    };

    /// A module with three exported functions `keep`, `drop_me`, `also_drop` and a memory.
    fn module() -> Vec<u8> {
        let mut module = Module::new();
        let mut types = TypeSection::new();
        types.ty().function([], [wasm_encoder::ValType::I32]);
        module.section(&types);
        let mut functions = FunctionSection::new();
        for _ in 0..3 {
            functions.function(0);
        }
        module.section(&functions);
        let mut memory = MemorySection::new();
        memory.memory(MemoryType {
            minimum: 1,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        module.section(&memory);
        let mut exports = ExportSection::new();
        exports.export("keep", ExportKind::Func, 0);
        exports.export("drop_me", ExportKind::Func, 1);
        exports.export("also_drop", ExportKind::Func, 2);
        exports.export("memory", ExportKind::Memory, 0);
        module.section(&exports);
        let mut code = CodeSection::new();
        for value in 0..3 {
            let mut body = Function::new([]);
            body.instruction(&Instruction::I32Const(value));
            body.instruction(&Instruction::End);
            code.function(&body);
        }
        module.section(&code);
        module.finish()
    }

    fn exports(module: &[u8]) -> Vec<String> {
        Parser::new(0)
            .parse_all(module)
            .filter_map(|p| match p.unwrap() {
                Payload::ExportSection(reader) => Some(
                    reader
                        .into_iter()
                        .map(|e| e.unwrap().name.to_owned())
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn removes_only_the_named_exports_and_keeps_a_valid_module() {
        let original = module();
        let (trimmed, removed) = trim(&original, &["drop_me", "also_drop", "absent"]).unwrap();
        assert_eq!(removed, ["drop_me", "also_drop"]);
        assert_eq!(exports(&trimmed), ["keep", "memory"]);
        wasmparser::Validator::new().validate_all(&trimmed).unwrap();
        // Everything but the export section is carried over byte for byte.
        let (same, none) = trim(&original, &[]).unwrap();
        assert!(none.is_empty());
        assert_eq!(same, original);
    }

    #[test]
    fn a_second_trim_changes_nothing() {
        let (once, _) = trim(&module(), &["drop_me"]).unwrap();
        let (twice, removed) = trim(&once, &["drop_me"]).unwrap();
        assert!(removed.is_empty());
        assert_eq!(twice, once);
    }

    #[test]
    fn refuses_what_is_not_a_module() {
        assert!(trim(b"not wasm at all", &[]).is_err());
    }
}
