//! Which etcd keys hold Secrets, and of which namespace.
//!
//! The API server stores a Secret under `<etcd prefix>/secrets/<namespace>/<name>` (the prefix is its
//! `--etcd-prefix`, `/registry` by default). Only keys of exactly that shape are Secrets; anything else,
//! including the prefix itself and a namespace with no name after it, passes through.

/// The API server's `--etcd-prefix` by default.
pub const DEFAULT_PREFIX: &str = "/registry";

/// Reads etcd keys under one prefix.
#[derive(Clone, Debug)]
pub struct SecretKeys {
    /// `<prefix>/secrets/`, as bytes.
    secrets: Vec<u8>,
}

impl SecretKeys {
    /// For the API server's `--etcd-prefix`, normalised as the API server does (`path.Join("/", prefix)`):
    /// rooted, with empty, `.` and `..` segments resolved, no trailing `/`.
    #[must_use]
    pub fn new(prefix: &str) -> Self {
        let mut segs: Vec<&str> = Vec::new();
        for seg in prefix.split('/') {
            match seg {
                "" | "." => {}
                ".." => {
                    segs.pop();
                }
                s => segs.push(s),
            }
        }
        let mut secrets = String::from("/");
        for s in segs {
            secrets.push_str(s);
            secrets.push('/');
        }
        secrets.push_str("secrets/");
        Self {
            secrets: secrets.into_bytes(),
        }
    }

    /// The namespace of the Secret stored at `key`, or `None` when `key` is not a Secret's.
    #[must_use]
    pub fn namespace<'k>(&self, key: &'k [u8]) -> Option<&'k str> {
        let rest = key.strip_prefix(self.secrets.as_slice())?;
        let slash = rest.iter().position(|&b| b == b'/')?;
        let (ns, name) = (&rest[..slash], &rest[slash + 1..]);
        if ns.is_empty() || name.is_empty() || name.contains(&b'/') {
            return None;
        }
        std::str::from_utf8(ns).ok()
    }

    /// The key prefix of every Secret (for ranges over all of them).
    #[must_use]
    pub fn all(&self) -> &[u8] {
        &self.secrets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_is_normalised_as_the_api_server_joins_it() {
        for (flag, all) in [
            ("/registry", "/registry/secrets/"),
            ("registry", "/registry/secrets/"),
            ("/registry/", "/registry/secrets/"),
            ("//registry//./", "/registry/secrets/"),
            ("/a/../registry", "/registry/secrets/"),
            ("", "/secrets/"),
            ("/", "/secrets/"),
            ("/k8s/cluster-a", "/k8s/cluster-a/secrets/"),
        ] {
            assert_eq!(SecretKeys::new(flag).all(), all.as_bytes(), "{flag:?}");
        }
    }

    #[test]
    fn only_a_secrets_own_key_names_its_namespace() {
        let k = SecretKeys::new("/registry/");
        assert_eq!(
            k.namespace(b"/registry/secrets/acme-prod/db"),
            Some("acme-prod")
        );
        for other in [
            &b"/registry/secrets/acme-prod"[..],
            b"/registry/secrets/acme-prod/",
            b"/registry/secrets//db",
            b"/registry/secrets/acme-prod/db/extra",
            b"/registry/configmaps/acme-prod/db",
            b"/registry/secretsx/acme-prod/db",
            b"/other/secrets/acme-prod/db",
        ] {
            assert_eq!(
                k.namespace(other),
                None,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
        let custom = SecretKeys::new("/kubernetes.io");
        assert_eq!(custom.namespace(b"/kubernetes.io/secrets/ns/s"), Some("ns"));
        assert_eq!(custom.all(), b"/kubernetes.io/secrets/");
    }
}
