//! Two long-lived bench threads, for the two-thread cases of `concurrency.rs` and `stack.rs`.
//!
//! The threads are spawned once per service, not per sample: criterion's `iter_custom`
//! sizes its samples from the *wall* time of the whole closure (setup included), so
//! spawning threads (or building a runtime, or building and warming a limiter) inside it
//! made criterion believe one iteration took milliseconds and run few calls per sample, which
//! then measured a freshly spawned thread's cold first calls. Here a sample only sends `iters`
//! to both threads, which meet at a barrier, time their own loops and answer with their
//! elapsed time; the sample's value is the slower thread's (time per call per thread).

use std::sync::{Arc, Barrier, mpsc};
use std::time::Duration;

pub(crate) struct Pair {
    jobs: Vec<mpsc::Sender<u64>>,
    done: mpsc::Receiver<Duration>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pair {
    /// Spawns one thread per worker; `worker(iters)` makes `iters` calls and returns their
    /// elapsed time (it is built on its thread by `make`, so it may own a runtime).
    pub(crate) fn spawn<M, W>(make: impl Fn() -> M) -> Self
    where
        M: FnOnce() -> W + Send + 'static,
        W: FnMut(u64) -> Duration,
    {
        let barrier = Arc::new(Barrier::new(2));
        let (done_tx, done) = mpsc::channel();
        let mut jobs = Vec::new();
        let mut threads = Vec::new();
        for _ in 0..2 {
            let (tx, rx) = mpsc::channel::<u64>();
            let build = make();
            let barrier = barrier.clone();
            let done_tx = done_tx.clone();
            jobs.push(tx);
            threads.push(std::thread::spawn(move || {
                let mut worker = build();
                while let Ok(iters) = rx.recv() {
                    barrier.wait();
                    let _ = done_tx.send(worker(iters));
                }
            }));
        }
        Self {
            jobs,
            done,
            threads,
        }
    }

    /// `iters` calls on each thread at once; the slower thread's elapsed time.
    pub(crate) fn run(&self, iters: u64) -> Duration {
        for j in &self.jobs {
            j.send(iters).expect("bench thread alive");
        }
        let a = self.done.recv().expect("bench thread answers");
        let b = self.done.recv().expect("bench thread answers");
        a.max(b)
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.jobs.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
