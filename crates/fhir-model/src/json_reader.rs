//! Reads request bytes into JSON under the rules of FHIR's JSON form, within bounds that keep one
//! request from exhausting the server.
//!
//! FHIR's rules (R4 §2.6.2 "JSON Representation of Resources"): no `null` outside arrays, no
//! empty objects, arrays or strings, no whitespace-only strings, no nested arrays, and each name
//! at most once in an object. R4's `string` (§2.24.0.1) leaves out control characters other than
//! tab, carriage return and line feed: XML cannot carry them, and a resource must mean the same
//! in both formats. A number must fit the range of an IEEE double, which is what clients read a
//! `decimal` into; `1e400` would come back to them as infinity.
//!
//! Problems of shape are collected, so that an integrator sees them together, up to
//! [`MAX_ISSUES`]. Reading stops at the first problem that makes going on pointless or costly:
//! bad syntax, a repeated name, nesting deeper than [`MAX_DEPTH`], or a tree that would take more
//! than [`COST_PER_BODY_BYTE`] times the body's size in memory. A body of five million `{}`
//! therefore costs a hundred issues, not gigabytes.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::outcome::IssueType;
use crate::resource_type::ResourceType;
use crate::validation::Issue;

/// The most issues reported for one body; the rest are counted, not listed.
pub const MAX_ISSUES: usize = 100;

/// The deepest nesting of objects and arrays accepted. The deepest R4 structures
/// (Questionnaire items, nested contained resources) stay well inside it.
pub const MAX_DEPTH: usize = 64;

/// How many bytes of parsed tree one byte of body may become. Compact FHIR JSON takes 9–13
/// times its size as a tree of `serde_json::Value`s (the R4 examples); only bodies built to
/// amplify reach past 16.
pub const COST_PER_BODY_BYTE: usize = 16;

/// The tree any body may take, however small, so that short bodies are never refused for cost.
const MIN_BUDGET: usize = 1 << 20;

/// What the allocator adds to every allocation, in the estimates below.
const ALLOCATION: usize = 16;

/// An object's member: its name, its entry in the map (hash, name, value) and its index slot.
const MEMBER: usize = size_of::<(u64, String, Value)>() + size_of::<usize>() + 2 * ALLOCATION;

/// An object's index table, whatever its size (the smallest has four slots and control bytes).
const OBJECT: usize = 4 * size_of::<usize>() + 32 + ALLOCATION;

/// How serde_json hands over a number when it keeps numbers exactly (`arbitrary_precision`):
/// as a one-member map under this name, holding the number's text.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Reads `bytes` as the JSON of a resource. On failure, every issue found (at most
/// [`MAX_ISSUES`] and one that counts the rest), located from the resource's type.
pub(crate) fn read(bytes: &[u8]) -> Result<Value, Vec<Issue>> {
    let limit = bytes
        .len()
        .saturating_mul(COST_PER_BODY_BYTE)
        .max(MIN_BUDGET);
    let mut reader = Reader {
        budget: limit,
        limit,
        depth: 0,
        path: Vec::new(),
        issues: Vec::new(),
        stopped: false,
        resource_type: None,
    };
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    // serde_json's own recursion guard (128 levels) is past ours, which names the limit.
    let parsed = Node {
        reader: &mut reader,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    match parsed {
        Ok(value) if reader.issues.is_empty() => Ok(value),
        Ok(_) => Err(reader.finish()),
        Err(_) if reader.stopped => Err(reader.finish()),
        Err(err) => Err(vec![Issue::error(
            IssueType::Structure,
            None,
            // serde_json's syntax messages give a line and column and never echo the input.
            format!("the body is not valid JSON: {err}"),
        )]),
    }
}

/// The state of one read: what may still be spent, where it is, and what it found.
struct Reader {
    /// Bytes of tree that may still be built.
    budget: usize,
    limit: usize,
    depth: usize,
    /// The member names and indexes from the root to the value being read.
    path: Vec<Step>,
    /// Located relative to the root (`.name[0]`) until the root's type is known.
    issues: Vec<Issue>,
    /// Set when reading ended on purpose; the error serde then returns says nothing more.
    stopped: bool,
    /// The root's `resourceType`, once read, to name the root in locations.
    resource_type: Option<String>,
}

enum Step {
    Member(String),
    Item(usize),
}

/// Ends the parse: the reason is already among the issues.
fn stop<E: serde::de::Error>() -> E {
    E::custom("reading stopped")
}

impl Reader {
    fn location(&self) -> String {
        let mut at = String::new();
        for step in &self.path {
            match step {
                Step::Member(name) => {
                    at.push('.');
                    at.push_str(name);
                }
                Step::Item(index) => at.push_str(&format!("[{index}]")),
            }
        }
        at
    }

    /// Records a problem of shape; past the cap, reading stops.
    fn shape<E: serde::de::Error>(&mut self, code: IssueType, diagnostics: &str) -> Result<(), E> {
        if self.issues.len() == MAX_ISSUES {
            return Err(self.fatal(
                IssueType::TooCostly,
                false,
                &format!(
                    "reading stopped after {MAX_ISSUES} issues; correct these and send the \
                     resource again"
                ),
            ));
        }
        let at = self.location();
        self.issues
            .push(Issue::error(code, None, diagnostics).located(at));
        Ok(())
    }

    /// Records the problem that ends reading.
    fn fatal<E: serde::de::Error>(&mut self, code: IssueType, here: bool, diagnostics: &str) -> E {
        let issue = Issue::error(code, None, diagnostics);
        self.issues.push(if here {
            issue.located(self.location())
        } else {
            issue
        });
        self.stopped = true;
        stop()
    }

    fn spend<E: serde::de::Error>(&mut self, bytes: usize) -> Result<(), E> {
        match self.budget.checked_sub(bytes) {
            Some(left) => {
                self.budget = left;
                Ok(())
            }
            None => {
                let limit = self.limit;
                Err(self.fatal(
                    IssueType::TooCostly,
                    false,
                    &format!(
                        "the body would take more than {limit} bytes of memory to process \
                         ({COST_PER_BODY_BYTE} times its size); it holds too many elements for \
                         its size"
                    ),
                ))
            }
        }
    }

    fn enter<E: serde::de::Error>(&mut self) -> Result<(), E> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.fatal(
                IssueType::Structure,
                true,
                &format!("objects and arrays are nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn string<E: serde::de::Error>(&mut self, text: &str) -> Result<(), E> {
        self.spend(text.len() + ALLOCATION)?;
        if text
            .chars()
            .any(|c| c < ' ' && !matches!(c, '\t' | '\r' | '\n'))
        {
            return Err(self.fatal(
                IssueType::Value,
                true,
                "a string contains a control character; FHIR strings allow only tab, carriage \
                 return and line feed among them",
            ));
        }
        if text.trim().is_empty() {
            self.shape(
                IssueType::Value,
                "a string must contain at least one non-whitespace character",
            )?;
        }
        Ok(())
    }

    fn number<E: serde::de::Error>(&mut self, text: String) -> Result<Value, E> {
        self.spend(text.len())?;
        let in_range = text.parse::<f64>().is_ok_and(|float| {
            // Underflow: a number with a non-zero digit that a double reads as zero.
            let mantissa = text.split(['e', 'E']).next().unwrap_or_default();
            float.is_finite()
                && (float != 0.0 || !mantissa.contains(|c: char| ('1'..='9').contains(&c)))
        });
        match text.parse::<Number>() {
            Ok(number) if in_range => Ok(Value::Number(number)),
            _ => Err(self.fatal(
                IssueType::Value,
                true,
                "a number is outside the range of a decimal (an IEEE double, about 1e-308 to \
                 1.8e308 in magnitude)",
            )),
        }
    }

    /// The issues, located from the root's type (`Resource` when it is not known).
    fn finish(self) -> Vec<Issue> {
        let root = self
            .resource_type
            .filter(|name| ResourceType::parse(name).is_ok())
            .unwrap_or_else(|| "Resource".to_owned());
        self.issues
            .into_iter()
            .map(|mut issue| {
                if let Some(at) = &issue.location {
                    issue.location = Some(format!("{root}{at}"));
                }
                issue
            })
            .collect()
    }
}

/// Reads one value of any kind.
struct Node<'r> {
    reader: &'r mut Reader,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Value, E> {
        self.reader.number(value.to_string())
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Value, E> {
        self.reader.string(value)?;
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, value: String) -> Result<Value, E> {
        self.reader.string(&value)?;
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let reader = self.reader;
        reader.enter()?;
        let mut items = Vec::new();
        loop {
            reader.spend(size_of::<Value>())?;
            reader.path.push(Step::Item(items.len()));
            let item = seq.next_element_seed(Node {
                reader: &mut *reader,
            })?;
            if let Some(Value::Array(_)) = item {
                reader.shape(IssueType::Structure, "arrays cannot be nested")?;
            }
            reader.path.pop();
            match item {
                Some(item) => items.push(item),
                None => break,
            }
        }
        reader.depth -= 1;
        // `_given: [null, {...}]` pairs with `given`: nulls are allowed inside arrays.
        if items.is_empty() {
            reader.shape(IssueType::Structure, "an array must not be empty")?;
        } else if items.iter().all(Value::is_null) {
            reader.shape(IssueType::Structure, "an array must not hold only nulls")?;
        }
        items.shrink_to_fit();
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let reader = self.reader;
        let mut members = Map::new();
        let mut first = true;
        while let Some(name) = map.next_key::<String>()? {
            if std::mem::take(&mut first) && name == NUMBER_TOKEN {
                let text: String = map.next_value()?;
                return reader.number(text);
            }
            if members.is_empty() {
                reader.enter()?;
                reader.spend(OBJECT)?;
            }
            reader.spend(name.len() + MEMBER)?;
            if members.contains_key(&name) {
                reader.path.push(Step::Member(name));
                return Err(reader.fatal(
                    IssueType::Structure,
                    true,
                    "this name appears more than once in its object; FHIR JSON allows each name \
                     once",
                ));
            }
            reader.path.push(Step::Member(name));
            let value = map.next_value_seed(Node {
                reader: &mut *reader,
            })?;
            if value.is_null() {
                reader.shape(
                    IssueType::Structure,
                    "null is not allowed here (leave the element out instead)",
                )?;
            }
            let Some(Step::Member(name)) = reader.path.pop() else {
                unreachable!("the step pushed above")
            };
            if reader.depth == 1
                && name == "resourceType"
                && let Value::String(resource_type) = &value
            {
                reader.resource_type = Some(resource_type.clone());
            }
            members.insert(name, value);
        }
        if members.is_empty() {
            reader.shape(
                IssueType::Structure,
                "an object must have at least one member",
            )?;
        } else {
            reader.depth -= 1;
        }
        // Growth leaves spare room, and the tree is held while the request lasts: move the
        // members into a map of their exact size.
        Ok(Value::Object(members.into_iter().collect()))
    }
}

#[cfg(test)]
mod tests;
