//! The status's times: RFC 3339 text in the stored object, [`Timestamp`] in memory. A time
//! that does not parse is refused when the rollout is read, naming its field, rather than
//! taken for some other time (an earlier version took it for "now": a step whose start was
//! garbled never reached the end of its interval).

use jiff::Timestamp;
use serde::{de::Error as _, Deserialize, Deserializer};

/// `field`'s time, or an error that names the field and quotes the text.
fn parse<'de, D: Deserializer<'de>>(field: &str, deserializer: D) -> Result<Timestamp, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(|err| {
        D::Error::custom(format!("{field}: {text:?} is not an RFC 3339 time: {err}"))
    })
}

pub(crate) fn step_started<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
    parse("status.step.started", d)
}

pub(crate) fn verdict_started<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
    parse("status.verdicts[].started", d)
}

pub(crate) fn verdict_judged<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
    parse("status.verdicts[].judged", d)
}

pub(crate) fn applied<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
    parse("status.lastApplied.time", d)
}

pub(crate) fn history<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
    parse("status.history[].time", d)
}
