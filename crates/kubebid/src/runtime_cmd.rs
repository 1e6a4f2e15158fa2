//! Runtime detection: the `syscall` rules the node sensor evaluates (KubeBid's and Falco's files).

use std::path::PathBuf;

/// KubeBid's runtime rules (unless `builtin` is false) and then `files`, compiled for the `syscall` source.
///
/// # Errors
/// A file that cannot be read, or does not load (with its file and line).
pub fn runtime_engine(
    files: &[PathBuf],
    builtin: bool,
) -> Result<kubebid_rules::Engine<kubebid_rules::Syscall>, String> {
    let own = builtin.then_some((
        kubebid_rules::KUBEBID_RUNTIME_RULES_FILE,
        kubebid_rules::kubebid_runtime_rules(),
    ));
    engine(own, files, kubebid_rules::Syscall::new())
}

/// Rules files compiled for `source`: `own` (a built-in file's name and text) first, then `files`.
///
/// # Errors
/// A file that cannot be read, or does not load (with its file and line).
pub fn engine<S: kubebid_rules::Source>(
    own: Option<(&str, &str)>,
    files: &[PathBuf],
    source: S,
) -> Result<kubebid_rules::Engine<S>, String> {
    let mut loader = kubebid_rules::Loader::new();
    if let Some((name, text)) = own {
        loader.add(name, text).map_err(|e| e.to_string())?;
    }
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        loader
            .add(&f.display().to_string(), &text)
            .map_err(|e| e.to_string())?;
    }
    let set = loader.finish().map_err(|e| e.to_string())?;
    kubebid_rules::Engine::compile(&set, source).map_err(|e| e.to_string())
}
