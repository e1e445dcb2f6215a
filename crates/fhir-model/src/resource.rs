//! [`Resource`]: any R4 resource, and the pipeline that turns request bytes into one.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::datatypes::Meta;
use crate::json_reader;
use crate::outcome::{IssueSeverity, IssueType};
use crate::primitives::Id;
use crate::resource_type::ResourceType;
use crate::resources::{Bundle, CapabilityStatement, Immunization, OperationOutcome, Patient};
use crate::validation::{Issue, Issues, Location, Validate};

/// Any FHIR R4 resource.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    Patient(Box<Patient>),
    Immunization(Box<Immunization>),
    Bundle(Box<Bundle>),
    OperationOutcome(Box<OperationOutcome>),
    CapabilityStatement(Box<CapabilityStatement>),
    /// Every other R4 type: kept as JSON, with its id and meta reachable.
    Other(Box<GenericResource>),
}

/// A resource of a type this crate does not model: the type, id and meta, and the rest as JSON.
#[derive(Clone, PartialEq)]
pub struct GenericResource {
    pub resource_type: ResourceType,
    pub id: Option<Id>,
    pub meta: Option<Meta>,
    /// Every other member, in the order it came.
    pub rest: Map<String, Value>,
}

/// Why bytes are not an acceptable FHIR resource. Every problem found is in `issues`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("not a valid FHIR R4 resource ({} issue(s))", issues.len())]
pub struct ParseError {
    pub issues: Vec<Issue>,
}

// The rest may hold PHI (an Observation's value, a Condition's note): Debug shows names only.
impl std::fmt::Debug for GenericResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenericResource")
            .field("resource_type", &self.resource_type)
            .field("id", &self.id)
            .field("members", &self.rest.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ParseError {
    fn one(code: IssueType, location: Option<&Location>, diagnostics: impl Into<String>) -> Self {
        Self {
            issues: vec![Issue::error(code, location, diagnostics)],
        }
    }
}

impl Resource {
    /// Parses a resource from FHIR JSON and checks its structure: JSON syntax, the JSON rules
    /// of FHIR (no nulls, no empty values, no repeated names, no control characters, numbers a
    /// client can read), a known resourceType, and the type of every element the model knows.
    /// Reading is bounded in depth, issues and memory (see [`crate::json_reader`]). Rules about
    /// content are [`Resource::validate`]'s.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ParseError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ParseError::one(
                IssueType::Structure,
                None,
                "the body is empty; a FHIR resource in JSON was expected",
            ));
        }
        let value = json_reader::read(bytes).map_err(|issues| ParseError { issues })?;
        Self::from_value(value)
    }

    /// A resource from JSON already read under FHIR's JSON rules (a member of a Bundle that
    /// [`crate::json_reader`] read whole): the type, then the typed model, as
    /// [`Resource::from_json`] does after reading.
    pub fn from_value(value: Value) -> Result<Self, ParseError> {
        let Value::Object(object) = value else {
            return Err(ParseError::one(
                IssueType::Structure,
                None,
                "a FHIR resource must be a JSON object",
            ));
        };
        let resource_type = match object.get("resourceType") {
            Some(Value::String(name)) => ResourceType::parse(name).map_err(|err| {
                ParseError::one(
                    IssueType::NotSupported,
                    Some(&Location::root("Resource").child("resourceType")),
                    err.to_string(),
                )
            })?,
            Some(_) => {
                return Err(ParseError::one(
                    IssueType::Structure,
                    Some(&Location::root("Resource").child("resourceType")),
                    "resourceType must be a string",
                ));
            }
            None => {
                return Err(ParseError::one(
                    IssueType::Required,
                    Some(&Location::root("Resource").child("resourceType")),
                    "resourceType is required",
                ));
            }
        };
        Self::typed(resource_type, object).map_err(|(path, message)| {
            ParseError::one(
                IssueType::Structure,
                Some(&Location::root(&format!("{resource_type}{path}"))),
                message,
            )
        })
    }

    /// Deserializes into the typed model; on failure gives the path (`.name[0].given`) and a
    /// message that names what was expected but not the value found.
    fn typed(
        resource_type: ResourceType,
        object: Map<String, Value>,
    ) -> Result<Self, (String, String)> {
        fn de<T: for<'de> Deserialize<'de>>(
            object: Map<String, Value>,
        ) -> Result<T, (String, String)> {
            serde_path_to_error::deserialize(Value::Object(object)).map_err(|err| {
                let mut path = String::new();
                for segment in err.path().iter() {
                    match segment {
                        serde_path_to_error::Segment::Map { key } => {
                            path.push('.');
                            path.push_str(key);
                        }
                        serde_path_to_error::Segment::Seq { index } => {
                            path.push_str(&format!("[{index}]"))
                        }
                        _ => {}
                    }
                }
                let message = err.into_inner().to_string();
                // A nested resource (contained, Bundle.entry.resource) reports its own path.
                match message
                    .strip_prefix(NESTED)
                    .and_then(|m| m.split_once(NESTED))
                {
                    Some((inner, message)) => (format!("{path}{inner}"), message.to_owned()),
                    None => (path, without_value(&message)),
                }
            })
        }
        Ok(match resource_type {
            ResourceType::PATIENT => Self::Patient(Box::new(de(object)?)),
            ResourceType::IMMUNIZATION => Self::Immunization(Box::new(de(object)?)),
            ResourceType::BUNDLE => Self::Bundle(Box::new(de(object)?)),
            ResourceType::OPERATION_OUTCOME => Self::OperationOutcome(Box::new(de(object)?)),
            ResourceType::CAPABILITY_STATEMENT => Self::CapabilityStatement(Box::new(de(object)?)),
            _ => {
                let mut rest = object;
                rest.shift_remove("resourceType");
                let id = rest
                    .shift_remove("id")
                    .map(|v| de_field(v, ".id"))
                    .transpose()?;
                let meta = rest
                    .shift_remove("meta")
                    .map(|v| de_field(v, ".meta"))
                    .transpose()?;
                Self::Other(Box::new(GenericResource {
                    resource_type,
                    id,
                    meta,
                    rest,
                }))
            }
        })
    }

    /// Every rule violation in the resource, with locations. Empty when it is valid.
    pub fn validate(&self) -> Vec<Issue> {
        let mut issues = Issues::default();
        self.validate_at(&Location::root(self.resource_type().as_str()), &mut issues);
        issues.into_vec()
    }

    pub(crate) fn validate_at(&self, at: &Location, issues: &mut Issues) {
        match self {
            Self::Patient(r) => r.validate(at, issues),
            Self::Immunization(r) => r.validate(at, issues),
            Self::Bundle(r) => r.validate(at, issues),
            Self::OperationOutcome(r) => r.validate(at, issues),
            Self::CapabilityStatement(r) => r.validate(at, issues),
            Self::Other(r) => {
                crate::validation::one(&r.id, at, "id", issues);
                crate::validation::one(&r.meta, at, "meta", issues);
                if r.resource_type.as_str() == "Consent" {
                    crate::resources::validate_consent(&r.rest, at, issues);
                }
            }
        }
    }

    pub fn resource_type(&self) -> ResourceType {
        match self {
            Self::Patient(_) => ResourceType::PATIENT,
            Self::Immunization(_) => ResourceType::IMMUNIZATION,
            Self::Bundle(_) => ResourceType::BUNDLE,
            Self::OperationOutcome(_) => ResourceType::OPERATION_OUTCOME,
            Self::CapabilityStatement(_) => ResourceType::CAPABILITY_STATEMENT,
            Self::Other(r) => r.resource_type,
        }
    }

    pub fn id(&self) -> Option<&Id> {
        match self {
            Self::Patient(r) => r.id.as_ref(),
            Self::Immunization(r) => r.id.as_ref(),
            Self::Bundle(r) => r.id.as_ref(),
            Self::OperationOutcome(r) => r.id.as_ref(),
            Self::CapabilityStatement(r) => r.id.as_ref(),
            Self::Other(r) => r.id.as_ref(),
        }
    }

    pub fn set_id(&mut self, id: Option<Id>) {
        *self.id_mut() = id;
    }

    fn id_mut(&mut self) -> &mut Option<Id> {
        match self {
            Self::Patient(r) => &mut r.id,
            Self::Immunization(r) => &mut r.id,
            Self::Bundle(r) => &mut r.id,
            Self::OperationOutcome(r) => &mut r.id,
            Self::CapabilityStatement(r) => &mut r.id,
            Self::Other(r) => &mut r.id,
        }
    }

    pub fn meta(&self) -> Option<&Meta> {
        match self {
            Self::Patient(r) => r.meta.as_ref(),
            Self::Immunization(r) => r.meta.as_ref(),
            Self::Bundle(r) => r.meta.as_ref(),
            Self::OperationOutcome(r) => r.meta.as_ref(),
            Self::CapabilityStatement(r) => r.meta.as_ref(),
            Self::Other(r) => r.meta.as_ref(),
        }
    }

    /// The resource's meta, created empty if it had none.
    pub fn meta_mut(&mut self) -> &mut Meta {
        let meta = match self {
            Self::Patient(r) => &mut r.meta,
            Self::Immunization(r) => &mut r.meta,
            Self::Bundle(r) => &mut r.meta,
            Self::OperationOutcome(r) => &mut r.meta,
            Self::CapabilityStatement(r) => &mut r.meta,
            Self::Other(r) => &mut r.meta,
        };
        meta.get_or_insert_with(Meta::default)
    }

    pub(crate) fn has_contained(&self) -> bool {
        match self {
            Self::Patient(r) => !r.contained.is_empty(),
            Self::Immunization(r) => !r.contained.is_empty(),
            Self::OperationOutcome(r) => !r.contained.is_empty(),
            Self::CapabilityStatement(r) => !r.contained.is_empty(),
            Self::Bundle(_) => false,
            Self::Other(r) => r.rest.contains_key("contained"),
        }
    }

    /// The resource as FHIR JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing these types cannot fail: every map key is a string and no Serialize impl
        // returns an error. An empty body would be caught by every reader, so no panic here.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Marks a nested resource's error so the outer path can be joined with the inner one.
const NESTED: &str = "\u{1}";

fn de_field<T: for<'de> Deserialize<'de>>(value: Value, path: &str) -> Result<T, (String, String)> {
    T::deserialize(value).map_err(|err| (path.to_owned(), without_value(&err.to_string())))
}

/// serde's type errors quote the value found (`invalid type: string "Ada", expected u32`), and
/// values may be PHI: keep only what was expected.
fn without_value(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let expected = rest
                .rsplit_once(", expected ")
                .map_or("a different value", |(_, e)| e);
            return format!(
                "{}: expected {expected}",
                prefix.trim_end_matches([' ', ':'])
            );
        }
    }
    message.to_owned()
}

impl Serialize for Resource {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Patient(r) => r.serialize(serializer),
            Self::Immunization(r) => r.serialize(serializer),
            Self::Bundle(r) => r.serialize(serializer),
            Self::OperationOutcome(r) => r.serialize(serializer),
            Self::CapabilityStatement(r) => r.serialize(serializer),
            Self::Other(r) => {
                use serde::ser::SerializeMap;
                let mut map = serializer.serialize_map(None)?;
                map.serialize_entry("resourceType", &r.resource_type)?;
                if let Some(id) = &r.id {
                    map.serialize_entry("id", id)?;
                }
                if let Some(meta) = &r.meta {
                    map.serialize_entry("meta", meta)?;
                }
                for (key, value) in &r.rest {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    }
}

/// A resource nested in another (contained, Bundle.entry.resource). Its shape was checked with
/// the outer resource; here it is dispatched on its resourceType.
impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let Value::Object(object) = value else {
            return Err(serde::de::Error::custom(
                "expected a resource (a JSON object)",
            ));
        };
        let resource_type = match object.get("resourceType") {
            Some(Value::String(name)) => {
                ResourceType::parse(name).map_err(serde::de::Error::custom)?
            }
            _ => {
                return Err(serde::de::Error::custom(format_args!(
                    "{NESTED}.resourceType{NESTED}resourceType is required and must be a string"
                )));
            }
        };
        Self::typed(resource_type, object).map_err(|(path, message)| {
            serde::de::Error::custom(format_args!("{NESTED}{path}{NESTED}{message}"))
        })
    }
}

impl From<&ParseError> for OperationOutcome {
    fn from(err: &ParseError) -> Self {
        OperationOutcome::from_issues(&err.issues)
    }
}

impl OperationOutcome {
    /// An outcome for an unexpected server failure: says nothing internal, only the id that
    /// finds the failure in the server's logs.
    pub fn internal_error(correlation_id: &str) -> Self {
        OperationOutcome::single(
            IssueSeverity::Error,
            IssueType::Exception,
            format!("internal server error; quote correlation id {correlation_id} to the operator"),
        )
    }
}

#[cfg(test)]
mod tests;
