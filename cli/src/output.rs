//! Turning hub replies into what a person reads: kubectl-style tables, ages and timestamps,
//! and OCM-shaped JSON/YAML.

use std::fmt::Write as _;

/// A plain-text table with columns padded to their widest cell, like kubectl's.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<w$}   ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// kubectl's age: `45s`, `12m`, `5h`, `3d`.
pub fn age(since_ms: i64, now_ms: i64) -> String {
    if since_ms <= 0 {
        return "<unknown>".into();
    }
    let secs = (now_ms - since_ms).max(0) / 1000;
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// RFC 3339 for Unix milliseconds (`null` for 0).
pub fn timestamp(ms: i64) -> serde_json::Value {
    if ms <= 0 {
        return serde_json::Value::Null;
    }
    time::OffsetDateTime::from_unix_timestamp(ms / 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or(serde_json::Value::Null, serde_json::Value::String)
}

/// A condition as Kubernetes prints it.
pub fn condition(c: &fleetbus_schema::v1::Condition) -> serde_json::Value {
    serde_json::json!({
        "type": c.r#type,
        "status": status_text(c.status()),
        "reason": c.reason,
        "message": c.message,
        "lastTransitionTime": timestamp(c.last_transition_ms),
    })
}

/// `True`, `False` or `Unknown`.
pub fn status_text(status: fleetbus_schema::v1::ConditionStatus) -> &'static str {
    match status {
        fleetbus_schema::v1::ConditionStatus::True => "True",
        fleetbus_schema::v1::ConditionStatus::False => "False",
        _ => "Unknown",
    }
}

/// Now as Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_columns() {
        let t = table(&["NAME", "AGE"], &[vec!["cluster1".into(), "5s".into()]]);
        assert_eq!(t, "NAME       AGE\ncluster1   5s\n");
    }

    #[test]
    fn ages_like_kubectl() {
        assert_eq!(age(1_000, 46_000), "45s");
        assert_eq!(age(1, 1 + 12 * 60_000), "12m");
        assert_eq!(age(1, 1 + 5 * 3_600_000), "5h");
        assert_eq!(age(1, 1 + 3 * 86_400_000), "3d");
        assert_eq!(age(0, 5), "<unknown>");
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(timestamp(0), serde_json::Value::Null);
        assert_eq!(timestamp(1_700_000_000_000), "2023-11-14T22:13:20Z");
    }
}
