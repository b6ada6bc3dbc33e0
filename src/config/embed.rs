//! A section that embeds a reactor's configuration: one TOML table whose
//! keys are split between the section's own fields (`enabled`, the
//! gateways to dial, the rooms to open) and the reactor's configuration
//! type, which the reactor's crate deserializes (`PexConfig` under its
//! `serde` feature).
//!
//! `#[serde(flatten)]` would do this by first buffering the keys the
//! section does not know, which loses what makes errors useful: the
//! parser's position of a bad value, the key in `serde_path_to_error`'s
//! path, and `deny_unknown_fields` (it reports an unknown key only at the
//! end, and without its place). Here the table is read once, key by key:
//! a section key is read by the section, any other key goes straight to
//! the embedded type's own deserializer, so the parser and the path
//! tracker see every key and value where they are. An unknown key is
//! refused at that key, naming the section's keys and the embedded
//! type's together.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::StrDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, forward_to_deserialize_any};

/// The keys a section reads itself beside its embedded configuration.
/// Implemented with the `section_keys!` macro.
pub(super) trait SectionKeys<'de> {
    /// The section's own keys.
    const KEYS: &'static [&'static str];

    /// Reads the value of `key`, one of [`KEYS`](Self::KEYS), from `map`.
    fn read_value<A: MapAccess<'de>>(
        &mut self,
        key: &'static str,
        map: &mut A,
    ) -> Result<(), A::Error>;
}

/// Implements [`SectionKeys`] for a section from the list of its own
/// fields, each read as its type's `Deserialize`, or with the
/// `DeserializeSeed` after `with`.
macro_rules! section_keys {
    ($section:ty { $($key:ident $(with $seed:expr)?),+ $(,)? }) => {
        impl<'de> $crate::config::embed::SectionKeys<'de> for $section {
            const KEYS: &'static [&'static str] = &[$(stringify!($key)),+];

            fn read_value<A: serde::de::MapAccess<'de>>(
                &mut self,
                key: &'static str,
                map: &mut A,
            ) -> Result<(), A::Error> {
                $(
                    if key == stringify!($key) {
                        self.$key = section_keys!(@read map $(, $seed)?);
                        return Ok(());
                    }
                )+
                map.next_value::<serde::de::IgnoredAny>().map(drop)
            }
        }
    };
    (@read $map:ident) => { $map.next_value()? };
    (@read $map:ident, $seed:expr) => { $map.next_value_seed($seed)? };
}
pub(super) use section_keys;

/// Reads a table: the keys of `section` into it, every other key into the
/// returned `C`.
pub(super) fn deserialize<'de, D, S, C>(d: D, section: &mut S) -> Result<C, D::Error>
where
    D: Deserializer<'de>,
    S: SectionKeys<'de>,
    C: Deserialize<'de>,
{
    d.deserialize_map(TableVisitor {
        section,
        embedded: PhantomData,
    })
}

struct TableVisitor<'s, S, C> {
    section: &'s mut S,
    embedded: PhantomData<C>,
}

impl<'de, S: SectionKeys<'de>, C: Deserialize<'de>> Visitor<'de> for TableVisitor<'_, S, C> {
    type Value = C;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<C, A::Error> {
        C::deserialize(Embedded {
            map,
            section: self.section,
        })
    }
}

/// The table, as the embedded type's deserializer sees it.
struct Embedded<'s, A, S> {
    map: A,
    section: &'s mut S,
}

impl<'de, A: MapAccess<'de>, S: SectionKeys<'de>> Deserializer<'de> for Embedded<'_, A, S> {
    type Error = A::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
        visitor.visit_map(Keys {
            map: self.map,
            section: self.section,
            fields: None,
        })
    }

    /// A derived `Deserialize` names its fields here, which lets an
    /// unknown key be refused with the full list of keys the table takes.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        visitor.visit_map(Keys {
            map: self.map,
            section: self.section,
            fields: Some(fields),
        })
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// The table's entries with the section's own keys taken out.
struct Keys<'s, A, S> {
    map: A,
    section: &'s mut S,
    /// The embedded type's fields, when it said.
    fields: Option<&'static [&'static str]>,
}

impl<'de, A: MapAccess<'de>, S: SectionKeys<'de>> MapAccess<'de> for Keys<'_, A, S> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let mut seed = Some(seed);
        loop {
            let route = Route {
                section: S::KEYS,
                fields: self.fields,
                seed: &mut seed,
            };
            match self.map.next_key_seed(route)? {
                None => return Ok(None),
                Some(Routed::Section(key)) => self.section.read_value(key, &mut self.map)?,
                Some(Routed::Embedded(key)) => return Ok(Some(key)),
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

enum Routed<K> {
    /// One of the section's keys.
    Section(&'static str),
    /// A key of the embedded type, as its seed made it.
    Embedded(K),
}

/// Reads one key inside the parser's key deserializer, so that an error
/// about the key carries its position, and the path tracker has it.
struct Route<'k, K> {
    section: &'static [&'static str],
    fields: Option<&'static [&'static str]>,
    seed: &'k mut Option<K>,
}

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for Route<'_, K> {
    type Value = Routed<K::Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<'de, K: DeserializeSeed<'de>> Visitor<'de> for Route<'_, K> {
    type Value = Routed<K::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        if let Some(own) = self.section.iter().find(|own| **own == key) {
            return Ok(Routed::Section(own));
        }
        if self.fields.is_some_and(|fields| !fields.contains(&key)) {
            let fields = self.fields.unwrap_or_default();
            return Err(E::custom(format_args!(
                "unknown field `{key}`, expected one of {}",
                OneOf(self.section, fields)
            )));
        }
        // The embedded type reads one key per call; a section key loops
        // without using the seed, so it is still here.
        let seed = self
            .seed
            .take()
            .ok_or_else(|| E::custom("a key was routed to the embedded configuration twice"))?;
        seed.deserialize(StrDeserializer::<E>::new(key))
            .map(Routed::Embedded)
    }
}

/// "`a`, `b`, `c`", as serde lists the fields an unknown one could be.
struct OneOf(&'static [&'static str], &'static [&'static str]);

impl fmt::Display for OneOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, key) in self.0.iter().chain(self.1).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "`{key}`")?;
        }
        Ok(())
    }
}
