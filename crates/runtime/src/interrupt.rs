//! Ctrl-C as a request to stop at the next safe point, for the commands that write step by
//! step (a plan): ended at an arbitrary moment, such a command would leave its work halfway
//! without saying where. Until a command [listens](Interrupt::listen), Ctrl-C ends the
//! process as usual.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Whether the user asked the command to stop.
#[derive(Clone, Default)]
pub struct Interrupt {
    asked: Arc<AtomicBool>,
    /// Whether [`Interrupt::listen`] takes the process's Ctrl-C over.
    from_ctrl_c: bool,
}

impl Interrupt {
    /// The process's Ctrl-C (SIGINT), once listened to.
    pub fn ctrl_c() -> Self {
        Interrupt {
            asked: Arc::default(),
            from_ctrl_c: true,
        }
    }

    /// Nothing interrupts: a command run in-process (the tests), whose host owns Ctrl-C.
    pub fn none() -> Self {
        Interrupt::default()
    }

    /// From now on Ctrl-C asks the command to stop ([`Interrupt::asked`]) instead of ending
    /// the process. Needs a tokio runtime.
    pub fn listen(&self) {
        if !self.from_ctrl_c {
            return;
        }
        let asked = self.asked.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                asked.store(true, Ordering::SeqCst);
            }
        });
    }

    /// Whether Ctrl-C was pressed since [`Interrupt::listen`].
    pub fn asked(&self) -> bool {
        self.asked.load(Ordering::SeqCst)
    }
}
