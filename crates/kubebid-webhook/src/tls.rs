//! TLS for the webhook: the server shell's ([`kubebid_server::tls`]), re-exported where the webhook's
//! callers have always found it.

pub use kubebid_server::tls::*;
