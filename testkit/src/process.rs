//! A live process that stands for another one in a test (e.g. the writer of
//! a journal that must look alive): `sleep`, killed and reaped on drop, even
//! when the test fails, so no test leaves it behind.

use std::process::{Child, Command, Stdio};

/// A `sleep 600` child, killed when dropped (or by [`LiveProcess::stop`]).
pub struct LiveProcess(Child);

impl LiveProcess {
    /// Starts it; panics (a test's set-up) if `sleep` cannot run.
    pub fn spawn() -> LiveProcess {
        LiveProcess(
            Command::new("sleep")
                .arg("600")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn sleep"),
        )
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Kills and reaps it (idempotent).
    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for LiveProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
