//! Loopback ports handed out so that two fleetbus processes on one machine (parallel tests,
//! a test beside `local-up`) never get the same one. Binding `127.0.0.1:0` and releasing the
//! port is not enough: another process can take it before the child that was meant to bind
//! it starts. Ports here come from below the kernel's ephemeral range (so no `:0` bind by
//! anyone takes them) and are reserved with a file per port, created exclusively and naming
//! the owning process; a reservation whose owner has exited is taken over.

use std::io::{self, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// The range ports are handed out from: below Linux's default ephemeral range (32768–60999).
const RANGE: std::ops::Range<u16> = 20000..32000;

/// A loopback TCP port that is free now and reserved for this process until it exits.
pub fn free_port() -> io::Result<u16> {
    let dir = reservations();
    std::fs::create_dir_all(&dir)?;
    let span = RANGE.end - RANGE.start;
    let start = rand::random::<u16>() % span;
    for i in 0..span {
        let port = RANGE.start + (start + i) % span;
        if reserve(&dir, port)? && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!(
            "no free port left in {}..{} (reservations in {})",
            RANGE.start,
            RANGE.end,
            dir.display()
        ),
    ))
}

fn reservations() -> PathBuf {
    std::env::temp_dir().join("fleetbus-ports")
}

/// Reserves `port` for this process; false if a live process holds it.
fn reserve(dir: &Path, port: u16) -> io::Result<bool> {
    let path = dir.join(port.to_string());
    for _ in 0..2 {
        match std::fs::File::create_new(&path) {
            Ok(mut file) => {
                file.write_all(std::process::id().to_string().as_bytes())?;
                return Ok(true);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let owner = std::fs::read_to_string(&path).unwrap_or_default();
                if owner.trim() == std::process::id().to_string() || alive(owner.trim()) {
                    return Ok(false);
                }
                // The owner exited: its reservation is stale.
                let _ = std::fs::remove_file(&path);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Whether a process with this pid exists. An empty file is a reservation being written.
fn alive(pid: &str) -> bool {
    pid.is_empty() || Path::new("/proc").join(pid).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_free_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..20).map(|_| free_port().unwrap()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len());
        assert!(ports.iter().all(|p| RANGE.contains(p)));
        for port in ports {
            assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
        }
    }

    #[test]
    fn a_dead_owners_reservation_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        // Beyond pid_max: no such process.
        std::fs::write(dir.path().join("20001"), "999999999").unwrap();
        assert!(reserve(dir.path(), 20001).unwrap());
        assert!(
            !reserve(dir.path(), 20001).unwrap(),
            "now ours: not handed out twice"
        );
        std::fs::write(dir.path().join("20002"), "1").unwrap();
        assert!(!reserve(dir.path(), 20002).unwrap(), "pid 1 is alive");
    }
}
