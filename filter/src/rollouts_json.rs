//! The multi-rollout form, `{"rollouts": [...]}`: its wire types and their parser, written by
//! hand, naming the field of every error with its full path as the single form's derived
//! parser does.
//!
//! Deriving it cost 10.5 KB of the `.wasm` (measured), more than its size budget left: serde
//! instantiates its JSON reader and `serde_path_to_error`'s path tracking anew for every type
//! it parses, and the multi-rollout form adds four (the document, the list of rollouts, a
//! rollout, the list of services). Here one visitor type, [`Walk`], reads all four, so the
//! reader is instantiated once, and each rollout's `config` goes to the very code that parses
//! the single form. serde errors carry no path, so each value remembers where it is and the
//! innermost one that fails records it.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor};
use serde::Serialize;

use crate::config::{ConfigError, PluginConfig};

/// The multi-rollout form: `{"rollouts": [...]}`. Parsed by [`crate::FilterConfig::from_json`]
/// (with this module's parser), which
/// refuses unknown fields as the single form does.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutsConfig {
    /// The rollouts; with none, the filter leaves every request alone.
    pub rollouts: Vec<RolloutConfig>,
}

/// One rollout of the multi-rollout form.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutConfig {
    /// `<namespace>/<name>` of the rollout's `StickyCanary`: unique, and the `sticky_rollout`
    /// label of its counters.
    pub name: String,
    /// The services whose requests this rollout decides: the host part of Istio's cluster
    /// names, such as `shop.prod.svc.cluster.local`. A service belongs to one rollout at most.
    pub services: Vec<String>,
    /// The rollout's own configuration, exactly the single-rollout form's.
    pub config: PluginConfig,
}

/// The fields of the document.
const DOCUMENT_FIELDS: &[&str] = &["rollouts"];
/// The fields of a rollout.
const ROLLOUT_FIELDS: &[&str] = &["name", "services", "config"];
/// The path of the document itself in errors, as the single form names it.
const ROOT: &str = "(root)";

/// Parses the multi-rollout form.
pub(crate) fn parse(json: &[u8]) -> Result<RolloutsConfig, ConfigError> {
    let failed_at = Cell::new(None);
    let mut rollouts = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(json);
    let walk = Walk {
        sink: Sink::Document(&mut rollouts),
        at: At::Root,
        failed_at: &failed_at,
    };
    match walk.deserialize(&mut de).and_then(|()| de.end()) {
        Ok(()) => Ok(RolloutsConfig { rollouts }),
        Err(err) => Err(ConfigError::new(
            failed_at.take().as_deref().unwrap_or(ROOT),
            err.to_string(),
        )),
    }
}

/// Where a [`Walk`] puts what it reads, and so what it expects to read.
enum Sink<'a> {
    /// The document: an object with `rollouts` only.
    Document(&'a mut Vec<RolloutConfig>),
    /// The list of rollouts.
    Rollouts(&'a mut Vec<RolloutConfig>),
    /// One rollout, added to the list once complete.
    Rollout(&'a mut Vec<RolloutConfig>),
    /// A rollout's name.
    Name(&'a mut Option<String>),
    /// The list of a rollout's services.
    Services(&'a mut Vec<String>),
    /// One service, added to the list.
    Service(&'a mut Vec<String>),
    /// A rollout's `config`, read by the single form's own parser, which tracks the path
    /// inside it.
    Config(&'a mut Option<PluginConfig>),
}

impl Sink<'_> {
    /// The same sink, for one more value.
    fn reborrow(&mut self) -> Sink<'_> {
        match self {
            Sink::Document(out) => Sink::Document(out),
            Sink::Rollouts(out) => Sink::Rollouts(out),
            Sink::Rollout(out) => Sink::Rollout(out),
            Sink::Name(out) => Sink::Name(out),
            Sink::Services(out) => Sink::Services(out),
            Sink::Service(out) => Sink::Service(out),
            Sink::Config(out) => Sink::Config(out),
        }
    }

    /// For a list: its length so far, and where its next element goes.
    fn element(&mut self) -> Option<(usize, Sink<'_>)> {
        match self {
            Sink::Rollouts(out) => Some((out.len(), Sink::Rollout(out))),
            Sink::Services(out) => Some((out.len(), Sink::Service(out))),
            _ => None,
        }
    }
}

/// Where a value is in the document, as a chain up to the document: written out as a path
/// such as `rollouts[1].services[0]` only when something fails there.
#[derive(Clone, Copy)]
enum At<'a> {
    /// The document itself.
    Root,
    /// A field of an object.
    Field(&'a At<'a>, &'a str),
    /// An element of a list.
    Element(&'a At<'a>, usize),
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match *self {
            At::Root => f.write_str(ROOT),
            At::Field(&At::Root, key) => f.write_str(key),
            At::Field(parent, key) => write!(f, "{parent}.{key}"),
            At::Element(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

/// Reads one value of the multi-rollout form's outer layer.
struct Walk<'a> {
    sink: Sink<'a>,
    /// Where the value is.
    at: At<'a>,
    /// The path of the innermost value that failed, once one has.
    failed_at: &'a Cell<Option<String>>,
}

/// Records `path` as where parsing failed, unless a value inside it failed first.
fn record(failed_at: &Cell<Option<String>>, path: &dyn fmt::Display) {
    let first = failed_at.take().unwrap_or_else(|| path.to_string());
    failed_at.set(Some(first));
}

/// `error`, recorded at `at`.
fn fail_at<E>(failed_at: &Cell<Option<String>>, at: &At, error: E) -> E {
    record(failed_at, at);
    error
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let (at, failed_at) = (self.at, self.failed_at);
        let read = match self.sink {
            Sink::Config(out) => match serde_path_to_error::deserialize(deserializer) {
                Ok(config) => {
                    *out = Some(config);
                    return Ok(());
                }
                Err(err) => {
                    // Outside any field of the config, the config's own path is the one.
                    if err.path().iter().next().is_some() {
                        record(failed_at, &format_args!("{at}.{}", err.path()));
                    }
                    Err(err.into_inner())
                }
            },
            Sink::Document(_) | Sink::Rollout(_) => deserializer.deserialize_map(self),
            Sink::Rollouts(_) | Sink::Services(_) => deserializer.deserialize_seq(self),
            Sink::Name(_) | Sink::Service(_) => deserializer.deserialize_str(self),
        };
        // Type errors come from serde's default visitor methods, so they are recorded here.
        read.inspect_err(|_| record(failed_at, &at))
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self.sink {
            Sink::Document(_) => "an object with `rollouts`",
            Sink::Rollouts(_) => "a list of rollouts",
            Sink::Rollout(_) => "a rollout object",
            Sink::Services(_) => "a list of service names",
            Sink::Name(_) | Sink::Service(_) => "a string",
            Sink::Config(_) => "a configuration",
        })
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        match self.sink {
            Sink::Name(out) => *out = Some(value.to_owned()),
            Sink::Service(out) => out.push(value.to_owned()),
            _ => return Err(E::invalid_type(Unexpected::Str(value), &self)),
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Walk {
            mut sink,
            at,
            failed_at,
        } = self;
        if sink.element().is_none() {
            let list = Walk {
                sink,
                at,
                failed_at,
            };
            return Err(de::Error::invalid_type(Unexpected::Seq, &list));
        }
        while let Some((index, element)) = sink.element() {
            let element = Walk {
                sink: element,
                at: At::Element(&at, index),
                failed_at,
            };
            if seq.next_element_seed(element)?.is_none() {
                break;
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Walk {
            sink,
            at,
            failed_at,
        } = self;
        let missing = |field| fail_at(failed_at, &at, de::Error::missing_field(field));
        match sink {
            Sink::Document(out) => {
                let mut rollouts = Vec::new();
                let mut fields = [Sink::Rollouts(&mut rollouts)];
                if read_fields(&mut map, &at, failed_at, DOCUMENT_FIELDS, &mut fields)? == 0 {
                    return Err(missing("rollouts"));
                }
                *out = rollouts;
            }
            Sink::Rollout(out) => {
                let (mut name, mut services, mut config) = (None, Vec::new(), None);
                let mut fields = [
                    Sink::Name(&mut name),
                    Sink::Services(&mut services),
                    Sink::Config(&mut config),
                ];
                let seen = read_fields(&mut map, &at, failed_at, ROLLOUT_FIELDS, &mut fields)?;
                if seen & 0b10 == 0 {
                    return Err(missing("services"));
                }
                out.push(RolloutConfig {
                    name: name.ok_or_else(|| missing("name"))?,
                    services,
                    config: config.ok_or_else(|| missing("config"))?,
                });
            }
            sink => {
                let object = Walk {
                    sink,
                    at,
                    failed_at,
                };
                return Err(de::Error::invalid_type(Unexpected::Map, &object));
            }
        }
        Ok(())
    }
}

/// Reads an object whose fields are `names`, each value into the sink at the same index,
/// refusing unknown and repeated fields. Returns which were seen, one bit per field.
fn read_fields<'de, A: MapAccess<'de>>(
    map: &mut A,
    at: &At<'_>,
    failed_at: &Cell<Option<String>>,
    names: &'static [&'static str],
    sinks: &mut [Sink<'_>],
) -> Result<u32, A::Error> {
    let mut seen = 0;
    while let Some(key) = map.next_key::<String>()? {
        let field = At::Field(at, &key);
        let found = names
            .iter()
            .position(|name| *name == key)
            .and_then(|index| Some((index, sinks.get_mut(index)?)));
        let Some((index, sink)) = found else {
            let error = de::Error::unknown_field(&key, names);
            return Err(fail_at(failed_at, &field, error));
        };
        if seen & (1 << index) != 0 {
            let error = de::Error::duplicate_field(names[index]);
            return Err(fail_at(failed_at, &field, error));
        }
        seen |= 1 << index;
        map.next_value_seed(Walk {
            sink: sink.reborrow(),
            at: field,
            failed_at,
        })?;
    }
    Ok(seen)
}
