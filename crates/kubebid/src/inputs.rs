//! Finds and reads the files `kubebid check` and `--config` take: files, directories (recursively) and `-`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kubebid_model::SourceError;

/// Files larger than this are refused rather than read into memory.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// One input: a name to report and where to read it.
#[derive(Clone, Debug)]
pub enum Input {
    Stdin,
    File(PathBuf),
}

impl Input {
    pub fn name(&self) -> String {
        match self {
            Input::Stdin => "-".into(),
            Input::File(p) => p.display().to_string(),
        }
    }
}

fn is_manifest(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Expands paths into inputs: directories are walked (sorted, hidden entries skipped, links not followed).
pub fn expand(paths: &[String]) -> (Vec<Input>, Vec<SourceError>) {
    let mut inputs = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        if p == "-" {
            inputs.push(Input::Stdin);
            continue;
        }
        let path = PathBuf::from(p);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => {
                let walker = walkdir::WalkDir::new(&path)
                    .sort_by_file_name()
                    .into_iter()
                    .filter_entry(|e| {
                        e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.')
                    });
                for entry in walker {
                    match entry {
                        Ok(e) if e.file_type().is_file() && is_manifest(e.path()) => {
                            inputs.push(Input::File(e.into_path()));
                        }
                        Ok(_) => {}
                        Err(e) => errors.push(file_error(
                            &e.path()
                                .map_or_else(|| p.clone(), |x| x.display().to_string()),
                            e.to_string(),
                        )),
                    }
                }
            }
            Ok(_) => inputs.push(Input::File(path)),
            Err(e) => errors.push(file_error(p, format!("cannot read: {e}"))),
        }
    }
    (inputs, errors)
}

/// An error about a whole file (line 0).
pub fn file_error(file: &str, message: String) -> SourceError {
    SourceError {
        file: Arc::from(file),
        document: 0,
        line: 0,
        field: String::new(),
        message,
    }
}

/// Reads an input as UTF-8 text, refusing oversized or binary input.
pub fn read(input: &Input) -> Result<String, SourceError> {
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
        return Err(file_error(&name, format!("cannot read: {e}")));
    }
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(file_error(
            &name,
            format!(
                "larger than {} MiB; refused",
                MAX_FILE_BYTES / (1024 * 1024)
            ),
        ));
    }
    // A UTF-8 byte-order mark is legal in YAML and JSON files written on Windows.
    let body = bytes
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(&bytes);
    String::from_utf8(body.to_vec()).map_err(|e| {
        file_error(
            &name,
            format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        )
    })
}
