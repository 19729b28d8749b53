//! `CLINIVOX_SECTION__KEY=value` environment overrides. A double underscore
//! separates path segments (`CLINIVOX_DATABASE__URL` → `database.url`), so
//! variables without one (`CLINIVOX_CONFIG`, test switches) are not overrides.

const PREFIX: &str = "CLINIVOX_";

pub fn apply_overrides(root: &mut toml::Table, vars: impl IntoIterator<Item = (String, String)>) {
    for (name, raw) in vars {
        let Some(rest) = name.strip_prefix(PREFIX) else { continue };
        if !rest.contains("__") {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        set(root, &path, &raw);
    }
}

fn set(table: &mut toml::Table, path: &[String], raw: &str) {
    let (last, parents) = path.split_last().expect("split on '__' yields at least two segments");
    let mut here = table;
    for key in parents {
        let entry = here.entry(key.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        here = entry.as_table_mut().expect("just made a table");
    }
    let value = parse_value(raw, here.get(last));
    here.insert(last.clone(), value);
}

/// Reads the value as TOML (numbers, booleans, arrays) when that is what the
/// key holds or plainly looks like; otherwise it is a string. Phone numbers
/// such as `+34911…` stay strings.
fn parse_value(raw: &str, existing: Option<&toml::Value>) -> toml::Value {
    if matches!(existing, Some(toml::Value::String(_))) {
        return toml::Value::String(raw.to_string());
    }
    let looks_textual = raw.starts_with('+') || (raw.starts_with('0') && raw.len() > 1);
    if !looks_textual {
        if let Ok(t) = format!("v = {raw}").parse::<toml::Table>() {
            if let Some(v) = t.get("v") {
                return v.clone();
            }
        }
    }
    toml::Value::String(raw.to_string())
}
