//! Dotted-path access into a `serde_json::Value`: `"process.args"`,
//! `"linux.namespaces.0.type"`. Numeric segments index arrays.
//! Use the slice forms (`*_at`) when a key itself contains a dot
//! (annotation names such as `org.example.key`).

use serde_json::{Map, Value};

fn split(path: &str) -> Vec<&str> {
    if path.is_empty() {
        vec![]
    } else {
        path.split('.').collect()
    }
}

pub fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    get_at(v, &split(path))
}

pub fn get_at<'a>(mut v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    for seg in path {
        v = match v {
            Value::Object(m) => m.get(*seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

/// Sets the value at `path`, creating objects on the way (and growing an
/// array by one when the index equals its length).
pub fn set(v: &mut Value, path: &str, new: Value) {
    set_at(v, &split(path), new)
}

pub fn set_at(v: &mut Value, path: &[&str], new: Value) {
    let Some((last, parents)) = path.split_last() else {
        *v = new;
        return;
    };
    let parent = walk_create(v, parents);
    match parent {
        Value::Array(a) => {
            let i: usize = last.parse().unwrap_or_else(|_| panic!("index {last:?} into an array"));
            if i == a.len() {
                a.push(new);
            } else {
                a[i] = new;
            }
        }
        other => {
            if !other.is_object() {
                *other = Value::Object(Map::new());
            }
            other.as_object_mut().unwrap().insert(last.to_string(), new);
        }
    }
}

/// Appends to the array at `path` (created when missing).
pub fn push(v: &mut Value, path: &str, new: Value) {
    let target = walk_create(v, &split(path));
    if !target.is_array() {
        *target = Value::Array(vec![]);
    }
    target.as_array_mut().unwrap().push(new);
}

/// Removes the value at `path`; returns it if it was there.
pub fn remove(v: &mut Value, path: &str) -> Option<Value> {
    remove_at(v, &split(path))
}

pub fn remove_at(v: &mut Value, path: &[&str]) -> Option<Value> {
    let (last, parents) = path.split_last()?;
    let mut cur = v;
    for seg in parents {
        cur = match cur {
            Value::Object(m) => m.get_mut(*seg)?,
            Value::Array(a) => a.get_mut(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    match cur {
        Value::Object(m) => m.remove(*last),
        Value::Array(a) => {
            let i = last.parse::<usize>().ok()?;
            (i < a.len()).then(|| a.remove(i))
        }
        _ => None,
    }
}

fn walk_create<'a>(mut v: &'a mut Value, path: &[&str]) -> &'a mut Value {
    for seg in path {
        if let Value::Array(a) = v {
            let i: usize = seg.parse().unwrap_or_else(|_| panic!("index {seg:?} into an array"));
            if i == a.len() {
                a.push(Value::Object(Map::new()));
            }
            v = &mut a[i];
            continue;
        }
        if !v.is_object() {
            *v = Value::Object(Map::new());
        }
        v = v.as_object_mut().unwrap().entry(seg.to_string()).or_insert(Value::Object(Map::new()));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        let mut v = json!({"process": {"args": ["sh"]}, "linux": {"namespaces": [{"type": "pid"}]}});
        assert_eq!(get(&v, "process.args.0"), Some(&json!("sh")));
        set(&mut v, "process.args", json!(["true"]));
        set(&mut v, "linux.namespaces.1", json!({"type": "uts"}));
        set(&mut v, "hooks.prestart", json!([]));
        push(&mut v, "hooks.poststop", json!({"path": "/x"}));
        set_at(&mut v, &["annotations", "a.b"], json!("c"));
        assert_eq!(get(&v, "linux.namespaces.1.type"), Some(&json!("uts")));
        assert_eq!(get_at(&v, &["annotations", "a.b"]), Some(&json!("c")));
        assert_eq!(get(&v, "hooks.poststop.0.path"), Some(&json!("/x")));
        assert_eq!(remove(&mut v, "linux.namespaces.0"), Some(json!({"type": "pid"})));
        assert_eq!(get(&v, "linux.namespaces.0.type"), Some(&json!("uts")));
        assert_eq!(get(&v, "nope.x"), None);
    }
}
