//! Finds and reads the files every command takes (`kubebid check`, `--config`, `serve dns --state`):
//! files, directories (walked recursively, sorted, hidden entries skipped, links not followed, only
//! `.yaml`, `.yml` and `.json` files), and `-` for standard input. No file larger than
//! [`MAX_FILE_BYTES`] is read into memory. The only module of this crate that touches the file system.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::load::SourceError;

/// Files larger than this are refused rather than read into memory.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// One input: a name to report and where to read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Standard input (`-`).
    Stdin,
    /// A file.
    File(PathBuf),
}

impl Input {
    /// The name errors give it: `-` or the path.
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            Input::Stdin => "-".into(),
            Input::File(p) => p.display().to_string(),
        }
    }
}

/// An input that could not be found or read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct InputError {
    /// The path as given or found (`-` for standard input).
    pub path: String,
    /// What went wrong.
    pub problem: InputProblem,
}

/// What went wrong with an input.
#[derive(Debug, thiserror::Error)]
pub enum InputProblem {
    /// It could not be opened or read.
    #[error("cannot read: {0}")]
    Read(#[source] std::io::Error),
    /// An entry of a directory could not be walked.
    #[error("{0}")]
    Walk(#[source] walkdir::Error),
    /// It is larger than [`MAX_FILE_BYTES`].
    #[error("larger than {} MiB; refused", MAX_FILE_BYTES / (1024 * 1024))]
    TooLarge,
    /// It is not UTF-8 text; the byte offset of the first invalid byte.
    #[error("not UTF-8 text (byte {0})")]
    NotUtf8(usize),
}

impl InputError {
    fn new(path: impl Into<String>, problem: InputProblem) -> Self {
        Self {
            path: path.into(),
            problem,
        }
    }
}

impl From<InputError> for SourceError {
    /// An error about the whole file (line 0).
    fn from(e: InputError) -> Self {
        SourceError {
            file: Arc::from(e.path),
            document: 0,
            line: 0,
            field: String::new(),
            message: e.problem.to_string(),
        }
    }
}

/// Whether a file found in a directory is a manifest (by its extension). A file named on its own is read
/// whatever its name.
#[must_use]
pub fn is_manifest(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Expands paths into inputs: `-` is standard input, a file is itself, a directory is walked (sorted,
/// hidden entries skipped, links not followed) for manifests. Paths that cannot be read, and entries that
/// cannot be walked, are errors; the rest are still returned.
pub fn expand<P: AsRef<Path>>(paths: &[P]) -> (Vec<Input>, Vec<InputError>) {
    let mut inputs = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        let path = p.as_ref();
        if path == Path::new("-") {
            inputs.push(Input::Stdin);
            continue;
        }
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => walk(path, &mut inputs, &mut errors),
            Ok(_) => inputs.push(Input::File(path.to_owned())),
            Err(e) => errors.push(InputError::new(
                path.display().to_string(),
                InputProblem::Read(e),
            )),
        }
    }
    (inputs, errors)
}

/// The manifests under directory `dir`, in name order.
fn walk(dir: &Path, inputs: &mut Vec<Input>, errors: &mut Vec<InputError>) {
    let walker = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walker {
        match entry {
            Ok(e) if e.file_type().is_file() && is_manifest(e.path()) => {
                inputs.push(Input::File(e.into_path()));
            }
            Ok(_) => {}
            Err(e) => errors.push(InputError::new(
                e.path().unwrap_or(dir).display().to_string(),
                InputProblem::Walk(e),
            )),
        }
    }
}

/// Reads an input as UTF-8 text (without a byte-order mark), refusing oversized or binary input.
///
/// # Errors
/// The input cannot be read, is larger than [`MAX_FILE_BYTES`], or is not UTF-8.
pub fn read(input: &Input) -> Result<String, InputError> {
    let name = input.name();
    let mut bytes = Vec::new();
    let res = match input {
        Input::Stdin => std::io::stdin()
            .lock()
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes),
        Input::File(p) => {
            std::fs::File::open(p).and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        }
    };
    if let Err(e) = res {
        return Err(InputError::new(name, InputProblem::Read(e)));
    }
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(InputError::new(name, InputProblem::TooLarge));
    }
    // A UTF-8 byte-order mark is legal in YAML and JSON files written on Windows.
    let body = bytes
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(&bytes);
    String::from_utf8(body.to_vec())
        .map_err(|e| InputError::new(name, InputProblem::NotUtf8(e.utf8_error().valid_up_to())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kubebid-input-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn directories_are_walked_sorted_without_hidden_entries_or_other_files() {
        let d = temp_dir("walk");
        std::fs::create_dir_all(d.join("b/.hidden")).unwrap();
        std::fs::create_dir_all(d.join("a")).unwrap();
        for f in [
            "b/2.yaml",
            "b/.hidden/x.yaml",
            "b/.dot.yaml",
            "a/1.json",
            "a/notes.txt",
            "0.yml",
        ] {
            std::fs::write(d.join(f), "{}").unwrap();
        }
        let (inputs, errors) = expand(&[&d]);
        assert!(errors.is_empty(), "{errors:?}");
        let names: Vec<_> = inputs
            .iter()
            .map(|i| match i {
                Input::File(p) => p.strip_prefix(&d).unwrap().display().to_string(),
                Input::Stdin => "-".into(),
            })
            .collect();
        assert_eq!(names, ["0.yml", "a/1.json", "b/2.yaml"]);
        // A file named on its own is read whatever its extension; `-` is standard input.
        let (inputs, _) = expand(&[d.join("a/notes.txt"), PathBuf::from("-")]);
        assert_eq!(inputs, [Input::File(d.join("a/notes.txt")), Input::Stdin]);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn missing_oversized_and_binary_files_are_errors_naming_the_file() {
        let d = temp_dir("errors");
        let (inputs, errors) = expand(&[d.join("missing.yaml")]);
        assert!(inputs.is_empty());
        assert!(matches!(
            errors[..],
            [InputError {
                problem: InputProblem::Read(_),
                ..
            }]
        ));
        assert!(errors[0].to_string().contains("missing.yaml: cannot read"));
        let big = d.join("big.yaml");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_FILE_BYTES + 1).unwrap();
        let e = read(&Input::File(big)).unwrap_err();
        assert!(matches!(e.problem, InputProblem::TooLarge), "{e}");
        let binary = d.join("binary.yaml");
        std::fs::write(&binary, b"a: \xff").unwrap();
        let e = read(&Input::File(binary)).unwrap_err();
        assert!(matches!(e.problem, InputProblem::NotUtf8(3)), "{e}");
        let source = SourceError::from(e);
        assert_eq!(source.line, 0);
        assert_eq!(source.message, "not UTF-8 text (byte 3)");
        let bom = d.join("bom.yaml");
        std::fs::write(&bom, b"\xEF\xBB\xBFa: 1").unwrap();
        assert_eq!(read(&Input::File(bom)).unwrap(), "a: 1");
        let _ = std::fs::remove_dir_all(d);
    }
}
