//! A JSON Schema validator for the subset `docs/openapi.json` uses, and the document's
//! response lookup. Loading the document walks every schema in it and refuses any keyword
//! outside the subset, so the document cannot silently use something this file ignores.

use serde_json::{Map, Value};

/// The keywords understood below. Anything else in a schema fails `Document::load`.
const KEYWORDS: &[&str] = &[
    "$ref",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "const",
    "oneOf",
    "anyOf",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "format",
    "description",
];
const TYPES: &[&str] = &[
    "null", "boolean", "integer", "number", "string", "array", "object",
];
const FORMATS: &[&str] = &["date-time", "int32", "int64"];

pub struct Document {
    pub root: Value,
}

impl Document {
    /// Parses the document and checks every schema in it against the subset.
    pub fn load(text: &str) -> Result<Document, String> {
        let root: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let doc = Document { root };
        let mut problems = Vec::new();
        for (at, schema) in doc.all_schemas() {
            doc.check_subset(&schema, &at, &mut problems);
        }
        if problems.is_empty() {
            Ok(doc)
        } else {
            Err(problems.join("\n"))
        }
    }

    /// Every schema object the document holds, with a JSON-pointer-like location.
    fn all_schemas(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        let empty = Map::new();
        let obj = |v: &Value| v.as_object().cloned().unwrap_or_default();
        for (name, s) in self.root["components"]["schemas"]
            .as_object()
            .unwrap_or(&empty)
        {
            out.push((format!("#/components/schemas/{name}"), s.clone()));
        }
        let mut responses: Vec<(String, Value)> = obj(&self.root["components"]["responses"])
            .into_iter()
            .map(|(k, v)| (format!("#/components/responses/{k}"), v))
            .collect();
        for (path, item) in obj(&self.root["paths"]) {
            for (method, op) in obj(&item) {
                let at = format!("paths.{path}.{method}");
                for (i, p) in op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    out.push((format!("{at}.parameters[{i}].schema"), p["schema"].clone()));
                }
                for (media, c) in obj(&op["requestBody"]["content"]) {
                    out.push((format!("{at}.requestBody.{media}"), c["schema"].clone()));
                }
                for (status, r) in obj(&op["responses"]) {
                    responses.push((format!("{at}.responses.{status}"), r));
                }
            }
        }
        for (at, r) in responses {
            for (media, c) in obj(&r["content"]) {
                out.push((format!("{at}.content.{media}.schema"), c["schema"].clone()));
            }
        }
        out
    }

    fn check_subset(&self, schema: &Value, at: &str, problems: &mut Vec<String>) {
        let Some(map) = schema.as_object() else {
            problems.push(format!("{at}: a schema must be an object"));
            return;
        };
        for (key, value) in map {
            let here = format!("{at}/{key}");
            match key.as_str() {
                k if !KEYWORDS.contains(&k) => problems.push(format!(
                    "{here}: keyword `{k}` is outside the subset tests/integration/openapi/schema.rs validates"
                )),
                "$ref" => {
                    if self.resolve(value.as_str().unwrap_or("")).is_none() {
                        problems.push(format!("{here}: `{value}` does not resolve"));
                    }
                    if map.keys().any(|k| k != "$ref" && k != "description") {
                        problems.push(format!("{at}: `$ref` with sibling keywords"));
                    }
                }
                "type" => {
                    let names: Vec<&Value> = match value {
                        Value::Array(a) => a.iter().collect(),
                        v => vec![v],
                    };
                    if names.iter().any(|n| !TYPES.contains(&n.as_str().unwrap_or(""))) {
                        problems.push(format!("{here}: unknown type {value}"));
                    }
                }
                "format" if !FORMATS.contains(&value.as_str().unwrap_or("")) => {
                    problems.push(format!("{here}: unknown format {value}"))
                }
                "properties" => {
                    for (name, s) in value.as_object().into_iter().flatten() {
                        self.check_subset(s, &format!("{here}/{name}"), problems);
                    }
                }
                "items" => self.check_subset(value, &here, problems),
                "additionalProperties" if !value.is_boolean() => {
                    self.check_subset(value, &here, problems)
                }
                "oneOf" | "anyOf" => {
                    for (i, s) in value.as_array().into_iter().flatten().enumerate() {
                        self.check_subset(s, &format!("{here}/{i}"), problems);
                    }
                }
                _ => {}
            }
        }
    }

    /// `#/components/...` to the value it names.
    pub fn resolve(&self, pointer: &str) -> Option<&Value> {
        let rest = pointer.strip_prefix('#')?;
        self.root.pointer(rest)
    }

    /// Validates `value`; the error names where and why, and which named schemas led there.
    pub fn validate(&self, schema: &Value, value: &Value) -> Result<(), String> {
        self.check(schema, value, "$", "")
    }

    fn check(&self, schema: &Value, value: &Value, at: &str, via: &str) -> Result<(), String> {
        let fail = |why: String| Err(format!("at {at}{via}: {why}"));
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let target = self.resolve(r).expect("checked at load");
            return self.check(target, value, at, &format!(" (in {r})"));
        }
        if let Some(t) = schema.get("type") {
            let allowed: Vec<&str> = match t {
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                v => vec![v.as_str().unwrap_or("")],
            };
            if !allowed.iter().any(|t| is_type(value, t)) {
                return fail(format!("{} is not of type {t}", short(value)));
            }
        }
        if let Some(e) = schema.get("enum").and_then(Value::as_array) {
            if !e.contains(value) {
                return fail(format!("{} is not in the enum", short(value)));
            }
        }
        if let Some(c) = schema.get("const") {
            if c != value {
                return fail(format!("{} is not the constant {c}", short(value)));
            }
        }
        self.check_number(schema, value).or_else(fail)?;
        self.check_string(schema, value).or_else(fail)?;
        if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
            for (i, v) in array.iter().enumerate() {
                self.check(items, v, &format!("{at}[{i}]"), via)?;
            }
        }
        if let Some(object) = value.as_object() {
            self.check_object(schema, object, at, via)?;
        }
        self.check_alternatives(schema, value, at, via)
    }

    fn check_number(&self, schema: &Value, value: &Value) -> Result<(), String> {
        let Some(n) = value.as_f64() else {
            return Ok(());
        };
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if n < min {
                return Err(format!("{n} is below the minimum {min}"));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if n > max {
                return Err(format!("{n} is above the maximum {max}"));
            }
        }
        if schema.get("format").and_then(Value::as_str) == Some("int32")
            && value.as_i64().and_then(|i| i32::try_from(i).ok()).is_none()
        {
            return Err(format!("{n} is not an int32"));
        }
        Ok(())
    }

    fn check_string(&self, schema: &Value, value: &Value) -> Result<(), String> {
        let Some(s) = value.as_str() else {
            return Ok(());
        };
        let len = s.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
            if len < min {
                return Err(format!("{} is shorter than {min}", short(value)));
            }
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            if len > max {
                return Err(format!("{} is longer than {max}", short(value)));
            }
        }
        if schema.get("format").and_then(Value::as_str) == Some("date-time")
            && chrono::DateTime::parse_from_rfc3339(s).is_err()
        {
            return Err(format!("{} is not an RFC 3339 date-time", short(value)));
        }
        Ok(())
    }

    fn check_object(
        &self,
        schema: &Value,
        object: &Map<String, Value>,
        at: &str,
        via: &str,
    ) -> Result<(), String> {
        let properties = schema.get("properties").and_then(Value::as_object);
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap_or("");
            if !object.contains_key(name) {
                return Err(format!(
                    "at {at}{via}: required property `{name}` is missing"
                ));
            }
        }
        for (name, v) in object {
            let here = format!("{at}.{name}");
            match properties.and_then(|p| p.get(name)) {
                Some(s) => self.check(s, v, &here, via)?,
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        return Err(format!(
                            "at {at}{via}: property `{name}` is not in the schema (additionalProperties: false)"
                        ))
                    }
                    Some(s @ Value::Object(_)) => self.check(s, v, &here, via)?,
                    _ => {}
                },
            }
        }
        Ok(())
    }

    fn check_alternatives(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        via: &str,
    ) -> Result<(), String> {
        for (keyword, exactly_one) in [("oneOf", true), ("anyOf", false)] {
            let Some(options) = schema.get(keyword).and_then(Value::as_array) else {
                continue;
            };
            let results: Vec<Result<(), String>> = options
                .iter()
                .map(|s| self.check(s, value, at, via))
                .collect();
            let passed = results.iter().filter(|r| r.is_ok()).count();
            let ok = if exactly_one {
                passed == 1
            } else {
                passed >= 1
            };
            if !ok {
                let why: Vec<String> = results.into_iter().filter_map(Result::err).collect();
                return Err(format!(
                    "at {at}{via}: {passed} of the {keyword} alternatives match; {}",
                    why.join("; ")
                ));
            }
        }
        Ok(())
    }
}

fn is_type(value: &Value, t: &str) -> bool {
    match t {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    }
}

/// A value for a message, cut short: a response may be large.
fn short(value: &Value) -> String {
    let s = value.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}
