//! gRPC on unix sockets. A socket is created with mode 0600 (under a umask of 0177, so there is no moment
//! in which another user could connect), its directory is created if missing, and a socket some process
//! still serves on is never replaced: starting a second copy fails instead of stealing the first one's
//! clients. A socket file nobody answers on (left by a crash) is removed and bound again.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::Shutdown;

/// Why a socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another process answers on the socket.
    #[error("{0} is in use: another process serves on it; stop it first")]
    InUse(PathBuf),
    /// The path exists and is something else.
    #[error("{0} exists and is not a socket")]
    NotASocket(PathBuf),
    /// Whether the socket is served could not be told.
    #[error("{path}: cannot tell whether the socket is in use: {source}")]
    Probe { path: PathBuf, source: io::Error },
    /// Creating the directory, removing a stale socket, binding or setting the mode failed.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl BindError {
    fn io(path: &Path, source: io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

impl From<BindError> for io::Error {
    fn from(e: BindError) -> Self {
        let kind = match &e {
            BindError::InUse(_) => io::ErrorKind::AddrInUse,
            BindError::NotASocket(_) => io::ErrorKind::AlreadyExists,
            BindError::Probe { source, .. } | BindError::Io { source, .. } => source.kind(),
        };
        io::Error::new(kind, e.to_string())
    }
}

/// Binds `path` as a 0600 unix socket, creating its directory.
///
/// # Errors
/// A [`BindError`] naming the path.
pub fn bind(path: &Path) -> Result<tokio::net::UnixListener, BindError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| BindError::io(dir, e))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(BindError::InUse(path.to_owned())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(|e| BindError::io(path, e))?;
            }
            Err(source) => {
                return Err(BindError::Probe {
                    path: path.to_owned(),
                    source,
                });
            }
        },
        Ok(_) => return Err(BindError::NotASocket(path.to_owned())),
        Err(_) => {}
    }
    let previous = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = tokio::net::UnixListener::bind(path);
    nix::sys::stat::umask(previous);
    let listener = bound.map_err(|e| BindError::io(path, e))?;
    // Again explicitly, in case the file system ignores the umask.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| BindError::io(path, e))?;
    Ok(listener)
}

/// Serves `routes` over gRPC on the bound `listener` at `path` until shutdown is requested, then lets the
/// calls in flight finish and removes the socket file.
///
/// # Errors
/// A transport error of the server.
pub async fn serve_grpc(
    routes: tonic::service::Routes,
    listener: tokio::net::UnixListener,
    path: &Path,
    shutdown: &Shutdown,
) -> Result<(), tonic::transport::Error> {
    let result = tonic::transport::Server::builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::UnixListenerStream::new(listener),
            shutdown.requested(),
        )
        .await;
    let _ = std::fs::remove_file(path);
    result
}
