//! The webhook never logs credentials or the query string. Alone in its own test binary:
//! tracing caches each call site's interest process-wide, so a test running in parallel that
//! hits the same call site with no subscriber could make this test's scoped subscriber miss
//! the event (seen once in 40 runs when it shared `tests/alert.rs`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tower_pressure::alert::{AlertManager, WebhookSink};
use tower_pressure::event::{CustomEvent, Event};

async fn wait_until(mut f: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached within 10 s");
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn credentials_and_query_never_appear_in_logs() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // A port with nothing listening: every attempt fails, and the failure is logged.
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("http://admin:hunter2@{addr}/hook?token=SECRET-TOKEN");
    let hook = WebhookSink::builder(&url)
        .allow_private_destinations(true)
        .retries(1)
        .backoff(Duration::from_millis(1))
        .build()
        .unwrap();
    let shown = format!("{hook:?}");
    let m = AlertManager::builder().sink(hook).build().unwrap();
    m.process_event(&Event::Custom(CustomEvent::new("t", "test")));
    wait_until(|| m.sink_stats()[0].1.failed == 1).await;
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("webhook delivery failed"), "{text}");
    assert!(text.contains(&format!("http://{addr}/hook")), "{text}");
    for secret in ["hunter2", "admin", "SECRET-TOKEN", "token="] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
    let err = WebhookSink::builder("ftp://admin:hunter2@example.com/x?token=SECRET-TOKEN")
        .build()
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2") && !err.to_string().contains("SECRET"));
}
