//! The one way the harness waits for something: poll until it shows, or fail after a bounded
//! time with an error naming what was waited for.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// Polls `probe` every `every` until it yields a value, for at most `timeout` (`every` is the
/// caller's: an atomic is cheap to look at, a `stickyctl status` process is not). An error
/// from `probe` (a process that died meanwhile) ends the wait at once; running out of time
/// fails with "`what`: not within `timeout`".
pub fn until<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe()? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {timeout:?}");
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn returns_what_the_probe_found() {
        let mut polls = 0;
        let found = until("the third poll", Duration::from_secs(5), MS, || {
            polls += 1;
            Ok((polls == 3).then_some(polls))
        });
        assert_eq!(found.unwrap(), 3);
    }

    #[test]
    fn names_what_never_showed() {
        let err = until("nothing", Duration::from_millis(30), MS, || Ok(None::<()>)).unwrap_err();
        assert_eq!(err.to_string(), "nothing: not within 30ms");
    }

    #[test]
    fn a_failing_probe_ends_the_wait() {
        let err = until("a dead process", Duration::from_secs(60), MS, || {
            bail!("it exited")
        });
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err::<(), _>("it exited".to_owned())
        );
    }
}
