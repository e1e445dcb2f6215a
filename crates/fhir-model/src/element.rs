//! The `fhir_element!` macro: one declaration gives a FHIR element its struct, a lossless serde
//! implementation and nothing else.
//!
//! Why not `#[serde(flatten)]` for the unknown members: flatten buffers the whole object first,
//! which loses the path of a type error (`Patient.name[0].given`) and costs an extra pass. The
//! visitor below deserializes each known member straight into its field, so error paths stay exact,
//! and puts every other member in `extra`, in the order it came.

use serde_json::{Map, Value};

/// Members of a JSON object that the typed model does not name, kept in arrival order.
pub type Extra = Map<String, Value>;

/// Whether a field is absent and is left out of the JSON (FHIR JSON has no empty arrays or nulls).
pub(crate) trait Absent {
    fn is_absent(&self) -> bool;
}

impl<T> Absent for Option<T> {
    fn is_absent(&self) -> bool {
        self.is_none()
    }
}

impl<T> Absent for Vec<T> {
    fn is_absent(&self) -> bool {
        self.is_empty()
    }
}

/// Declares a FHIR element (a datatype, a backbone element, or with `resource = "Name"` a
/// resource). Every field is `Option` or `Vec`: parsing is lenient about presence, and
/// [`crate::validation`] reports what is missing, all at once.
macro_rules! fhir_element {
    (
        $(#[$meta:meta])*
        $(@resource = $rtype:literal)?
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty => $json:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Default)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
            /// Members not modelled here, kept so that a round trip loses nothing.
            pub extra: $crate::element::Extra,
        }

        // Elements hold PHI (names, dates, identifiers, narrative): Debug names the element and
        // which members are present, never a value, so a stray `{:?}` in a log leaks nothing.
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                #[allow(unused_imports)]
                use $crate::element::Absent;
                let mut present = Vec::new();
                $( if !self.$field.is_absent() { present.push($json); } )*
                if !self.extra.is_empty() { present.push("(unmodelled members)"); }
                f.debug_struct(stringify!($name))
                    .field("present", &present)
                    .finish_non_exhaustive()
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct ElementVisitor;
                impl<'de> serde::de::Visitor<'de> for ElementVisitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str(concat!("an object (", stringify!($name), ")"))
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<$name, A::Error> {
                        let mut out = $name::default();
                        while let Some(key) = map.next_key::<String>()? {
                            match key.as_str() {
                                $( $json => out.$field = map.next_value()?, )*
                                $( "resourceType" => {
                                    let found: String = map.next_value()?;
                                    if found != $rtype {
                                        return Err(serde::de::Error::custom(format_args!(
                                            "resourceType is {found:?}, expected {:?}", $rtype
                                        )));
                                    }
                                } )?
                                _ => {
                                    let value: serde_json::Value = map.next_value()?;
                                    out.extra.insert(key, value);
                                }
                            }
                        }
                        Ok(out)
                    }
                }
                deserializer.deserialize_map(ElementVisitor)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                #[allow(unused_imports)]
                use $crate::element::Absent;
                let mut map = serializer.serialize_map(None)?;
                $( map.serialize_entry("resourceType", $rtype)?; )?
                $( if !self.$field.is_absent() { map.serialize_entry($json, &self.$field)?; } )*
                for (key, value) in &self.extra {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    };
}
