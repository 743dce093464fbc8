//! A real Prometheus Alertmanager on a free loopback port, killed by pid on drop; its
//! configuration and storage live in a temporary directory removed on drop. Mirrors
//! `tests/redis_support/`.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to install the server, in every failure message.
pub const INSTALL: &str =
    "prometheus-alertmanager not found: apt-get install -y prometheus-alertmanager";

/// The binaries tried, in order: `ALERTMANAGER_BIN` when set, else the Debian package's
/// `prometheus-alertmanager`, else upstream's `alertmanager` (as `scripts/test.sh` accepts).
fn binaries() -> Vec<String> {
    match std::env::var("ALERTMANAGER_BIN") {
        Ok(b) if !b.is_empty() => vec![b],
        _ => vec!["prometheus-alertmanager".into(), "alertmanager".into()],
    }
}

/// The configuration the tests run with: every alert to a receiver with no integration
/// (a null receiver), grouped by alert name and service, with short waits.
pub const CONFIG: &str = "\
route:
  receiver: 'null'
  group_by: [alertname, service]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: 'null'
";

/// A running Alertmanager.
pub struct AlertmanagerServer {
    child: Option<Child>,
    dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

/// A free loopback port (bind :0, read it, release it).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// `GET /-/ready` answered `200`.
fn ready(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let req =
        format!("GET /-/ready HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"HTTP/1.1 200"))
}

impl AlertmanagerServer {
    /// Starts an Alertmanager with [`CONFIG`] on a free port; panics with [`INSTALL`] when
    /// the binary is missing, or when it is not ready within 20 s.
    pub fn start() -> Self {
        Self::start_with(CONFIG)
    }

    /// Starts an Alertmanager with the configuration `config` (YAML).
    pub fn start_with(config: &str) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "tower-pressure-alertmanager-{}-{port}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).expect("create the temporary directory");
        let cfg = dir.join("alertmanager.yml");
        std::fs::write(&cfg, config).expect("write alertmanager.yml");
        let mut child = None;
        for bin in binaries() {
            let log = std::fs::File::create(dir.join("log")).expect("create the log file");
            let spawned = Command::new(&bin)
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                // No gossip: a lone instance, no UDP/TCP cluster port.
                .arg("--cluster.listen-address=")
                .arg(format!("--storage.path={}", dir.join("data").display()))
                .arg(format!("--config.file={}", cfg.display()))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn();
            match spawned {
                Ok(c) => {
                    child = Some(c);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    panic!("could not start {bin}: {e} ({INSTALL})")
                }
            }
        }
        let Some(child) = child else {
            let _ = std::fs::remove_dir_all(&dir);
            panic!("{INSTALL}")
        };
        let mut s = Self {
            child: Some(child),
            dir,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready(port) {
            if let Some(c) = s.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "prometheus-alertmanager exited at start with {status} (port {port} taken?):\n{}",
                    s.log()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "prometheus-alertmanager not ready on port {port} after 20 s:\n{}",
                    s.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the server wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Kills the server (SIGKILL by pid) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for AlertmanagerServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
