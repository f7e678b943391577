//! `--override [event_type:]path=value`: change one field of a built-in fixture before it is
//! signed, like the Stripe CLI's `--override resource:path=value`. Paths are dot-separated and
//! relative to the event (`data.object.metadata.plan=pro`); numbers index arrays
//! (`data.object.items.data.0.quantity=3`). Without `event_type:` the triggered (last) event is
//! changed; with it, every event of that type in the sequence. The value is JSON when it parses
//! as JSON (`3`, `true`, `null`, `{"a":1}`), else the string as given.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// `None`: the last event of the sequence.
    pub event_type: Option<String>,
    pub path: Vec<String>,
    pub value: Value,
}

impl std::str::FromStr for Override {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let (target, value) = raw
            .split_once('=')
            .ok_or_else(|| format!("`{raw}`: expected [event_type:]path=value"))?;
        let (event_type, path) = match target.split_once(':') {
            Some((t, p)) => (Some(t.trim().to_owned()), p),
            None => (None, target),
        };
        if event_type.as_deref().is_some_and(str::is_empty) {
            return Err(format!("`{raw}`: empty event type before `:`"));
        }
        let path: Vec<String> = path.split('.').map(|s| s.trim().to_owned()).collect();
        if path.iter().any(String::is_empty) {
            return Err(format!("`{raw}`: empty path segment"));
        }
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        Ok(Override {
            event_type,
            path,
            value,
        })
    }
}

/// Applies every override in order. An override that matches no event, or whose path crosses
/// something that is neither an object nor an array, is an error: a silent no-op would send a
/// fixture the user did not ask for.
pub fn apply(events: &mut [Value], overrides: &[Override]) -> Result<(), String> {
    for o in overrides {
        let targets: Vec<usize> = match &o.event_type {
            None => events.len().checked_sub(1).into_iter().collect(),
            Some(t) => (0..events.len())
                .filter(|&i| events[i]["type"] == t.as_str())
                .collect(),
        };
        if targets.is_empty() {
            return Err(format!(
                "--override {}: no event of type `{}` in this sequence",
                o.path.join("."),
                o.event_type.as_deref().unwrap_or("?")
            ));
        }
        for i in targets {
            set(&mut events[i], &o.path, o.value.clone())
                .map_err(|e| format!("--override {}: {e}", o.path.join(".")))?;
        }
    }
    Ok(())
}

fn set(root: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty path".to_owned());
    };
    let mut node = root;
    for segment in parents {
        node = match node {
            Value::Object(map) => map
                .entry(segment.clone())
                .or_insert_with(|| Value::Object(Default::default())),
            Value::Array(items) => index(items, segment)?,
            _ => {
                return Err(format!(
                    "`{segment}` is inside a value that is not an object"
                ))
            }
        };
        // A null on the way (e.g. `pending_update: null`) becomes an object to write into.
        if node.is_null() {
            *node = Value::Object(Default::default());
        }
    }
    match node {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => {
            *index(items, last)? = value;
            Ok(())
        }
        _ => Err(format!("`{last}` is inside a value that is not an object")),
    }
}

fn index<'a>(items: &'a mut [Value], segment: &str) -> Result<&'a mut Value, String> {
    let len = items.len();
    segment
        .parse::<usize>()
        .ok()
        .and_then(|i| items.get_mut(i))
        .ok_or_else(|| format!("`{segment}` is not an index of an array of {len}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn events() -> Vec<Value> {
        vec![
            json!({"type": "customer.created", "data": {"object": {"metadata": {}}}}),
            json!({"type": "invoice.paid", "data": {"object": {"lines": {"data": [{"quantity": 1}]}, "pending": null}}}),
        ]
    }

    #[test]
    fn a_bare_path_changes_the_last_event_and_values_are_json_when_they_parse() {
        let mut e = events();
        let o: Vec<Override> = [
            "data.object.lines.data.0.quantity=3",
            "data.object.note=hello world",
            "data.object.pending.x=null",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        apply(&mut e, &o).unwrap();
        assert_eq!(e[1]["data"]["object"]["lines"]["data"][0]["quantity"], 3);
        assert_eq!(e[1]["data"]["object"]["note"], "hello world");
        assert_eq!(e[1]["data"]["object"]["pending"], json!({"x": null}));
        assert_eq!(e[0]["data"]["object"]["metadata"], json!({}));
    }

    #[test]
    fn an_event_type_prefix_targets_that_event_and_an_absent_type_is_an_error() {
        let mut e = events();
        let o: Override = "customer.created:data.object.metadata.user_id=user_9"
            .parse()
            .unwrap();
        apply(&mut e, &[o]).unwrap();
        assert_eq!(e[0]["data"]["object"]["metadata"]["user_id"], "user_9");
        let missing: Override = "charge.refunded:data.object.x=1".parse().unwrap();
        assert!(apply(&mut e, &[missing])
            .unwrap_err()
            .contains("charge.refunded"));
    }

    #[test]
    fn malformed_overrides_and_impossible_paths_are_refused() {
        assert!("data.object.x".parse::<Override>().is_err());
        assert!("data..x=1".parse::<Override>().is_err());
        assert!(":data.x=1".parse::<Override>().is_err());
        let mut e = events();
        let bad: Override = "type.x=1".parse().unwrap();
        assert!(apply(&mut e, &[bad]).is_err());
        let out_of_range: Override = "data.object.lines.data.5.quantity=1".parse().unwrap();
        assert!(apply(&mut e, &[out_of_range]).is_err());
    }
}
