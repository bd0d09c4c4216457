//! Where a command's words go: to standard output as they are written, a line at a time, so a
//! person watching a long command (a plan's handover, `status --watch`) sees each step when it
//! happens and a command stopped halfway has said what it did; or kept in memory, for the
//! in-process runs of the tests.
//!
//! A closed output (`stickyctl crd | head`) is not an error: what would be written is
//! dropped, quietly, as Unix tools do, and [`Console::is_closed`] lets a command that only
//! prints (a watch) end. A command that writes to a cluster finishes its work regardless:
//! stopping it at an arbitrary write because its reader left would leave the work halfway.
//!
//! Long waits show progress ([`Console::progress`]): on a terminal one line rewritten in
//! place; otherwise plain lines, when what is awaited changes and every [`PLAIN_EVERY`].

use std::fmt;
use std::io::{self, IsTerminal, Write as _};
use std::time::{Duration, Instant};

/// How often a wait repeats its progress as a plain line (not a terminal): often enough to
/// show the command is alive, seldom enough for a log.
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// Erases the terminal's current line: `\r`, then ECMA-48's "erase in line".
const ERASE_LINE: &str = "\r\x1b[2K";

/// A command's standard output.
pub struct Console {
    sink: Sink,
    /// A progress line stands on the terminal: erased before the next words.
    progress_shown: bool,
    /// What the last progress line was about, and when it was last printed.
    last_progress: Option<(String, Instant)>,
}

enum Sink {
    Memory(String),
    Stdout { terminal: bool, closed: bool },
}

impl Console {
    /// The process's standard output, written through line by line.
    pub fn stdout() -> Self {
        Self::with(Sink::Stdout {
            terminal: io::stdout().is_terminal(),
            closed: false,
        })
    }

    /// Kept in memory ([`Console::into_text`]): a command run in-process.
    pub fn memory() -> Self {
        Self::with(Sink::Memory(String::new()))
    }

    fn with(sink: Sink) -> Self {
        Console {
            sink,
            progress_shown: false,
            last_progress: None,
        }
    }

    /// What was written, kept in memory; empty for standard output (it is out already).
    pub fn into_text(self) -> String {
        match self.sink {
            Sink::Memory(text) => text,
            Sink::Stdout { .. } => String::new(),
        }
    }

    /// Whether the reader is gone (a closed pipe): nothing written arrives any more.
    pub fn is_closed(&self) -> bool {
        matches!(self.sink, Sink::Stdout { closed: true, .. })
    }

    /// Whether it is a terminal (a person reads it as it comes).
    pub fn is_terminal(&self) -> bool {
        matches!(self.sink, Sink::Stdout { terminal: true, .. })
    }

    /// Writes `text` (errors are the closed output's, dropped: see the module docs).
    pub fn push_str(&mut self, text: &str) {
        self.put(text, false);
    }

    /// Progress of a wait on `topic` (what is awaited), `line` saying how far it is: on a
    /// terminal the line is rewritten in place; otherwise a plain line when the topic changes
    /// and every [`PLAIN_EVERY`]. The next words written erase it from the terminal.
    pub fn progress(&mut self, topic: &str, line: &str) {
        let now = Instant::now();
        let fresh = match &self.last_progress {
            Some((last, at)) => last != topic || now.duration_since(*at) >= PLAIN_EVERY,
            None => true,
        };
        match self.sink {
            Sink::Stdout { terminal: true, .. } => {
                self.put(&format!("{ERASE_LINE}{line}"), true);
                if fresh {
                    self.last_progress = Some((topic.to_owned(), now));
                }
            }
            _ if fresh => {
                self.put(&format!("{line}\n"), false);
                self.last_progress = Some((topic.to_owned(), now));
            }
            _ => {}
        }
    }

    /// Writes `text`; `progress`: it is a progress line, sent at once and erased by the next
    /// words.
    fn put(&mut self, text: &str, progress: bool) {
        let erase = std::mem::replace(&mut self.progress_shown, progress) && !progress;
        match &mut self.sink {
            Sink::Memory(kept) => kept.push_str(text),
            Sink::Stdout { closed: true, .. } => {}
            Sink::Stdout { closed, .. } => {
                let mut stdout = io::stdout().lock();
                let mut write = || -> io::Result<()> {
                    if erase {
                        stdout.write_all(ERASE_LINE.as_bytes())?;
                    }
                    stdout.write_all(text.as_bytes())?;
                    // Standard output is line-buffered: a progress line has no newline to
                    // send it.
                    if progress {
                        stdout.flush()?;
                    }
                    Ok(())
                };
                // Whatever the error (a closed pipe, a full disk), the output is gone.
                *closed = write().is_err();
            }
        }
    }
}

impl fmt::Write for Console {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.push_str(text);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    /// Off a terminal, a wait prints a plain line when what it waits for changes, not at
    /// every look; the words around it are kept in order.
    #[test]
    fn plain_progress_is_a_line_per_topic() {
        let mut console = Console::memory();
        writeln!(console, "applying").ok();
        for seconds in 0..3 {
            console.progress("stable", &format!("waiting for stable: {seconds}s"));
        }
        console.progress("canary", "waiting for canary: 0s");
        console.push_str("done\n");
        assert_eq!(
            console.into_text(),
            "applying\nwaiting for stable: 0s\nwaiting for canary: 0s\ndone\n"
        );
    }
}
