//! The shared libraries a binary needs, read from `ldd`, so a FROM-scratch image can carry them
//! (including the dynamic loader itself, which `ldd` lists without `=>`).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::BuildError;

/// Runs `ldd` on `binary` and returns the libraries it resolves to, loader included. A static
/// binary yields an empty list.
pub fn libraries(binary: &Path) -> Result<Vec<PathBuf>, BuildError> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| BuildError::Ldd {
            binary: binary.to_path_buf(),
            message: format!("cannot run ldd: {e}"),
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        // glibc's ldd exits 1 with this text for static binaries.
        if stdout.contains("not a dynamic executable")
            || stderr.contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        return Err(BuildError::Ldd {
            binary: binary.to_path_buf(),
            message: stderr.trim().to_string(),
        });
    }
    parse(&stdout).map_err(|message| BuildError::Ldd {
        binary: binary.to_path_buf(),
        message,
    })
}

/// Parses `ldd` output. Lines look like `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x..)`,
/// `/lib64/ld-linux-x86-64.so.2 (0x..)` (the loader) or `linux-vdso.so.1 (0x..)` (provided by
/// the kernel, nothing to copy). A library that is `not found` is an error.
pub fn parse(output: &str) -> Result<Vec<PathBuf>, String> {
    let mut libs = Vec::new();
    for line in output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("statically linked") {
            continue;
        }
        let path = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    return Err(format!("library {} not found", name.trim()));
                }
                rest.split_whitespace().next().unwrap_or("")
            }
            None => line.split_whitespace().next().unwrap_or(""),
        };
        if path.starts_with('/') {
            let p = PathBuf::from(path);
            if !libs.contains(&p) {
                libs.push(p);
            }
        }
    }
    Ok(libs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loader and resolved libraries are kept, the vDSO is skipped, order is preserved.
    #[test]
    fn parses_glibc_ldd_output() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x00007f1)\n\
                   \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f2)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f3)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f4)\n";
        let libs = parse(out).unwrap();
        assert_eq!(
            libs,
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libssl.so.3"),
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    /// A missing library stops the build with its name.
    #[test]
    fn missing_library_is_an_error() {
        let err = parse("\tlibfoo.so.1 => not found\n").unwrap_err();
        assert!(err.contains("libfoo.so.1"), "{err}");
    }

    /// `ldd` on a real dynamic binary (the test binary itself) finds libc and the loader.
    #[test]
    fn real_binary_links_libc() {
        let me = std::env::current_exe().unwrap();
        let libs = libraries(&me).unwrap();
        assert!(
            libs.iter().any(|l| l.to_string_lossy().contains("libc.so")),
            "{libs:?}"
        );
        assert!(
            libs.iter()
                .any(|l| l.to_string_lossy().contains("ld-linux")),
            "{libs:?}"
        );
    }
}
