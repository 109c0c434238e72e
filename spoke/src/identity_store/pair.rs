//! The key and certificate in the state folder as one pair.
//!
//! The TLS connector reads two files, so a pair cannot be replaced with one rename. A new pair
//! is first written completely beside the old one (`tls.key.next`, `tls.crt.next`), then moved
//! into place key first. A crash before both staged files exist leaves the old pair in use; a
//! crash after that leaves a staged certificate that [`settle`] moves into place at the next
//! start, because it belongs to the key already there. A pair that does not belong together
//! anyway (a crash under an older version, a hand edit) is reported by [`check`] as
//! [`Held::Mismatch`], and the spoke joins again with the key it has instead of retrying a
//! connection that cannot succeed.

use std::path::{Path, PathBuf};

use fleetbus_nats::files::write_atomic;
use fleetbus_nats::{TlsFiles, pki};
use fleetbus_schema::Identity;

/// What the state folder holds for an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// A key and a still valid certificate of this identity for that key.
    Valid,
    /// No certificate (or no key) yet.
    Missing,
    /// A file that is not a readable key or certificate.
    Unreadable,
    /// A certificate of another identity.
    OtherIdentity,
    /// The certificate has expired.
    Expired,
    /// The key and the certificate do not belong together.
    Mismatch,
}

/// What [`settle`] found of an interrupted write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Nothing was interrupted.
    Clean,
    /// A complete new pair was moved into place.
    Finished,
    /// An incomplete new pair was removed; the old pair is still in use.
    Discarded,
}

/// Replaces the pair: both new files are complete on disk before either old one is replaced.
pub fn write(tls: &TlsFiles, key_pem: &str, cert_pem: &str) -> std::io::Result<()> {
    let (key_next, cert_next) = (staged(&tls.key), staged(&tls.cert));
    write_atomic(&key_next, key_pem.as_bytes(), true)?;
    write_atomic(&cert_next, cert_pem.as_bytes(), false)?;
    sync_dir(&tls.cert)?;
    commit(&key_next, &tls.key)?;
    commit(&cert_next, &tls.cert)
}

/// Finishes or discards a [`write`] that a crash interrupted. Call before [`check`].
pub fn settle(tls: &TlsFiles) -> std::io::Result<Settled> {
    let (key_next, cert_next) = (staged(&tls.key), staged(&tls.cert));
    let staged_key = read(&key_next);
    let Some(staged_cert) = read(&cert_next) else {
        // The certificate is written second: without it the new pair is incomplete.
        return Ok(match staged_key {
            Some(_) => {
                remove(&key_next)?;
                Settled::Discarded
            }
            None => Settled::Clean,
        });
    };
    let key = staged_key.or_else(|| read(&tls.key));
    if key.is_some_and(|key| belong_together(&key, &staged_cert)) {
        if key_next.exists() {
            commit(&key_next, &tls.key)?;
        }
        commit(&cert_next, &tls.cert)?;
        return Ok(Settled::Finished);
    }
    remove(&key_next)?;
    remove(&cert_next)?;
    Ok(Settled::Discarded)
}

/// Whether the state folder holds a usable pair for `identity` at `now_ms`.
pub fn check(tls: &TlsFiles, identity: &Identity, now_ms: i64) -> Held {
    let (Some(key), Some(cert)) = (read(&tls.key), read(&tls.cert)) else {
        return Held::Missing;
    };
    let Ok(info) = pki::inspect(&cert) else {
        return Held::Unreadable;
    };
    let Ok(key_fingerprint) = pki::key_fingerprint(&key) else {
        return Held::Unreadable;
    };
    if info.identity.as_ref() != Some(identity) {
        Held::OtherIdentity
    } else if info.not_after_ms <= now_ms {
        Held::Expired
    } else if info.key_fingerprint != key_fingerprint {
        Held::Mismatch
    } else {
        Held::Valid
    }
}

/// Whether `cert_pem` is a certificate for the key `key_pem`.
pub fn belong_together(key_pem: &str, cert_pem: &str) -> bool {
    match (pki::key_fingerprint(key_pem), pki::inspect(cert_pem)) {
        (Ok(key), Ok(cert)) => key == cert.key_fingerprint,
        _ => false,
    }
}

/// Where the new version of `path` waits until its pair is complete.
fn staged(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".next");
    path.with_file_name(name)
}

fn commit(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    sync_dir(to)
}

/// Makes renames in `path`'s folder durable, so a power loss cannot reorder them.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().filter(|s| !s.is_empty())
}

fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbus_nats::pki::Ca;
    use fleetbus_schema::ClusterName;
    use std::time::Duration;

    const DAY: Duration = Duration::from_secs(86_400);

    struct Folder {
        _dir: tempfile::TempDir,
        tls: TlsFiles,
        ca: Ca,
        id: Identity,
    }

    impl Folder {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let tls = TlsFiles {
                ca: dir.path().join("ca.crt"),
                cert: dir.path().join("tls.crt"),
                key: dir.path().join("tls.key"),
            };
            let (ca, _) = Ca::generate("test CA", DAY).unwrap();
            let id = Identity::Spoke(ClusterName::new("c1").unwrap());
            Self {
                _dir: dir,
                tls,
                ca,
                id,
            }
        }

        /// A key and a certificate for it.
        fn pair(&self) -> (String, String) {
            let (key, csr) = pki::new_key_and_csr(&self.id).unwrap();
            (key.clone(), self.ca.sign_csr(&csr, &self.id, DAY).unwrap())
        }

        fn check(&self) -> Held {
            check(&self.tls, &self.id, 0)
        }

        fn put(&self, path: &Path, pem: &str) {
            std::fs::write(path, pem).unwrap();
        }
    }

    #[test]
    fn a_written_pair_is_valid_and_leaves_nothing_staged() {
        let f = Folder::new();
        assert_eq!(f.check(), Held::Missing);
        let (key, cert) = f.pair();
        write(&f.tls, &key, &cert).unwrap();
        assert_eq!(f.check(), Held::Valid);
        assert!(!staged(&f.tls.key).exists() && !staged(&f.tls.cert).exists());
        assert_eq!(settle(&f.tls).unwrap(), Settled::Clean);
        let (key, cert) = f.pair();
        write(&f.tls, &key, &cert).unwrap();
        assert_eq!(std::fs::read_to_string(&f.tls.key).unwrap(), key);
        assert_eq!(f.check(), Held::Valid);
    }

    #[test]
    fn a_new_key_beside_the_old_certificate_is_a_mismatch() {
        let f = Folder::new();
        let (_, cert) = f.pair();
        let (key, _) = f.pair();
        f.put(&f.tls.key, &key);
        f.put(&f.tls.cert, &cert);
        assert_eq!(f.check(), Held::Mismatch);
        assert!(!belong_together(&key, &cert));
    }

    #[test]
    fn other_identities_expiry_and_garbage_are_told_apart() {
        let f = Folder::new();
        let (key, cert) = f.pair();
        write(&f.tls, &key, &cert).unwrap();
        assert_eq!(check(&f.tls, &f.id, i64::MAX), Held::Expired);
        let other = Identity::Spoke(ClusterName::new("c2").unwrap());
        assert_eq!(check(&f.tls, &other, 0), Held::OtherIdentity);
        f.put(&f.tls.key, "garbage");
        assert_eq!(f.check(), Held::Unreadable);
        f.put(&f.tls.key, &key);
        f.put(&f.tls.cert, "garbage");
        assert_eq!(f.check(), Held::Unreadable);
    }

    #[test]
    fn a_crash_between_the_two_renames_is_finished_at_start() {
        let f = Folder::new();
        let (old_key, old_cert) = f.pair();
        write(&f.tls, &old_key, &old_cert).unwrap();
        let (new_key, new_cert) = f.pair();
        // The key was moved into place, the certificate is still staged.
        f.put(&f.tls.key, &new_key);
        f.put(&staged(&f.tls.cert), &new_cert);
        assert_eq!(f.check(), Held::Mismatch);
        assert_eq!(settle(&f.tls).unwrap(), Settled::Finished);
        assert_eq!(f.check(), Held::Valid);
        assert_eq!(std::fs::read_to_string(&f.tls.cert).unwrap(), new_cert);
        assert!(!staged(&f.tls.cert).exists());
    }

    #[test]
    fn a_complete_staged_pair_is_moved_into_place() {
        let f = Folder::new();
        let (old_key, old_cert) = f.pair();
        write(&f.tls, &old_key, &old_cert).unwrap();
        let (new_key, new_cert) = f.pair();
        f.put(&staged(&f.tls.key), &new_key);
        f.put(&staged(&f.tls.cert), &new_cert);
        assert_eq!(settle(&f.tls).unwrap(), Settled::Finished);
        assert_eq!(std::fs::read_to_string(&f.tls.key).unwrap(), new_key);
        assert_eq!(f.check(), Held::Valid);
    }

    #[test]
    fn an_incomplete_staged_pair_is_discarded_and_the_old_pair_kept() {
        let f = Folder::new();
        let (old_key, old_cert) = f.pair();
        write(&f.tls, &old_key, &old_cert).unwrap();
        let (new_key, new_cert) = f.pair();
        // Crash after the staged key, before the staged certificate.
        f.put(&staged(&f.tls.key), &new_key);
        assert_eq!(settle(&f.tls).unwrap(), Settled::Discarded);
        assert_eq!(std::fs::read_to_string(&f.tls.key).unwrap(), old_key);
        assert_eq!(f.check(), Held::Valid);
        // A staged certificate for neither key (a torn write of another kind) goes too.
        let (_, stray) = f.pair();
        f.put(&staged(&f.tls.cert), &stray);
        assert_eq!(settle(&f.tls).unwrap(), Settled::Discarded);
        assert!(!staged(&f.tls.cert).exists());
        assert_eq!(f.check(), Held::Valid);
        assert_ne!(new_cert, old_cert);
    }
}
