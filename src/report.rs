//! Rendering plans, lists and status for people (tables) and programs (JSON), with
//! systemd's field names where systemd has them.

use crate::format::class::Class;
use crate::format::escape::{esc, escape};
use crate::format::json::Json;
use crate::inspect::fsutil::Root;
use crate::inspect::metadata::StatusRow;
use crate::inspect::release::Verdict;
use crate::inspect::Candidate;
use crate::plan::{MergePlan, Upper};

/// `time` / `since` as systemd's tables print a `TABLE_TIMESTAMP` (`format_timestamp()`,
/// `%a %Y-%m-%d %H:%M:%S %Z`), in UTC: `Mon 2026-12-07 05:21:48 UTC`.
pub fn format_usec(usec: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    let secs = (usec / 1_000_000) as i64;
    let days = secs.div_euclid(86_400);
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS[(days + 4).rem_euclid(7) as usize];
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{weekday} {y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A left-aligned text table as systemd's `format-table` prints it: columns one space
/// apart, the last one unpadded, and a cell with several lines (systemd's `TABLE_STRV`,
/// one extension a line) spread over as many lines, the other cells blank there.
pub fn table(header: &[&str], rows: &[Vec<String>], legend: bool) -> String {
    let width = |c: &str| c.split('\n').map(|l| l.chars().count()).max().unwrap_or(0);
    let mut w: Vec<usize> = if legend {
        header.iter().map(|h| h.len()).collect()
    } else {
        vec![0; header.len()]
    };
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(width(c));
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let lines: Vec<Vec<&str>> = cells.iter().map(|c| c.split('\n').collect()).collect();
        let height = lines.iter().map(Vec::len).max().unwrap_or(1);
        for k in 0..height {
            let n = lines.len();
            for (i, c) in lines.iter().enumerate() {
                let c = c.get(k).copied().unwrap_or("");
                out.push_str(c);
                if i + 1 < n {
                    out.push_str(&" ".repeat(w[i] - c.chars().count() + 1));
                }
            }
            out.push('\n');
        }
    };
    if legend {
        line(header.iter().map(|h| h.to_string()).collect());
    }
    for r in rows {
        line(r.clone());
    }
    out
}

/// One `list` entry as systemd's JSON (`name`, `type`, `path`, `time`), plus `class`
/// when `with_class`.
pub fn list_json(root: &Root, c: &Candidate, with_class: bool) -> Json {
    let i = &c.image;
    let mut o = vec![
        ("name".to_string(), Json::str(&i.name)),
        ("type".to_string(), Json::str(i.kind.as_str())),
        (
            "path".to_string(),
            Json::str(i.shown(root).to_string_lossy()),
        ),
        (
            "time".to_string(),
            i.mtime_usec.map(Json::UInt).unwrap_or(Json::Null),
        ),
    ];
    if with_class {
        o.push(("class".to_string(), Json::str(i.class.as_str())));
    }
    Json::Object(o)
}

/// `status` rows as systemd's JSON.
pub fn status_json(rows: &[StatusRow], class: Option<Class>) -> Vec<Json> {
    rows.iter()
        .map(|r| {
            let mut o = vec![
                ("hierarchy".to_string(), Json::str(&r.hierarchy)),
                (
                    "extensions".to_string(),
                    // Not merged: `[]` (systemd 262; 252 wrote "none").
                    Json::Array(r.extensions.iter().flatten().map(Json::str).collect()),
                ),
                (
                    "since".to_string(),
                    r.since_usec.map(Json::UInt).unwrap_or(Json::Null),
                ),
            ];
            if let Some(c) = class {
                o.push(("class".to_string(), Json::str(c.as_str())));
            }
            Json::Object(o)
        })
        .collect()
}

fn verdict_json(v: &Verdict) -> (Json, Json) {
    match v {
        Verdict::Match => (Json::str("match"), Json::Null),
        Verdict::Mismatch(r) => (Json::str("skip"), Json::str(r)),
        Verdict::Unusable(r) => (Json::str("unusable"), Json::str(r)),
    }
}

/// A plan as JSON: host, candidates with verdicts, skipped entries, hierarchies.
pub fn plan_json(root: &Root, p: &MergePlan) -> Json {
    let cands = p
        .candidates
        .iter()
        .map(|c| {
            let (v, r) = verdict_json(&c.verdict);
            Json::obj([
                ("name", Json::str(&c.image.name)),
                ("type", Json::str(c.image.kind.as_str())),
                ("path", Json::str(c.image.shown(root).to_string_lossy())),
                ("verdict", v),
                ("reason", r),
            ])
        })
        .collect();
    let skipped = p
        .skipped
        .iter()
        .map(|s| {
            Json::obj([
                (
                    "path",
                    Json::str(root.display_path(&s.path).to_string_lossy()),
                ),
                ("reason", Json::str(&s.reason)),
            ])
        })
        .collect();
    let hs = p
        .hierarchies
        .iter()
        .map(|h| {
            let upper = match &h.upper {
                None => Json::Null,
                Some(Upper::Ephemeral) => Json::str("ephemeral"),
                Some(Upper::Persistent { upper, .. }) => Json::str(upper.to_string_lossy()),
            };
            Json::obj([
                ("hierarchy", Json::str(&h.hierarchy)),
                (
                    "layers",
                    Json::Array(h.layers.iter().map(|l| Json::str(&l.name)).collect()),
                ),
                (
                    "import",
                    h.import
                        .as_ref()
                        .map(|p| Json::str(p.to_string_lossy()))
                        .unwrap_or(Json::Null),
                ),
                ("hostLower", Json::Bool(h.host_lower)),
                ("upper", upper),
                ("options", Json::str(flags_str(h))),
            ])
        })
        .collect();
    Json::obj([
        ("class", Json::str(p.class.as_str())),
        ("hostId", Json::str(&p.host.id)),
        ("scope", Json::str(p.host.scope.as_str())),
        ("mutable", Json::str(p.mutable.as_str())),
        (
            "extensions",
            Json::Array(p.extensions.iter().map(Json::str).collect()),
        ),
        ("candidates", Json::Array(cands)),
        ("skipped", Json::Array(skipped)),
        ("hierarchies", Json::Array(hs)),
        (
            "untouched",
            Json::Array(p.untouched.iter().map(Json::str).collect()),
        ),
    ])
}

fn flags_str(h: &crate::plan::HierarchyPlan) -> String {
    let f = h.flags;
    let mut v = vec![if f.read_only { "ro" } else { "rw" }];
    for (on, s) in [
        (f.nodev, "nodev"),
        (f.nosuid, "nosuid"),
        (f.noexec, "noexec"),
    ] {
        if on {
            v.push(s);
        }
    }
    v.join(",")
}

/// A plan for people. Names, paths and host values are escaped ([`esc`]); verdict
/// reasons are messages whose values were escaped where they were composed.
pub fn plan_text(root: &Root, p: &MergePlan) -> String {
    let mut s = format!(
        "{}: host {} ID={} VERSION_ID={} {}={} scope={} arch={}\n",
        p.class,
        esc(&p.host.os_release_path),
        esc(&p.host.id),
        esc(p.host.version_id.as_deref().unwrap_or("-")),
        p.class.level_key(),
        esc(p.host.level(p.class).unwrap_or("-")),
        p.host.scope.as_str(),
        esc(p.host.arch.as_deref().unwrap_or("unknown")),
    );
    for c in &p.candidates {
        let path = c.image.shown(root);
        let name = esc(&c.image.name);
        match &c.verdict {
            Verdict::Match => {
                s += &format!(
                    "  use  {name} ({}, {})\n",
                    c.image.kind.as_str(),
                    esc(&path)
                )
            }
            Verdict::Mismatch(r) => s += &format!("  skip {name} ({}): {r}\n", esc(&path)),
            // The error names the file already.
            Verdict::Unusable(r) => {
                s += &format!("  fail {name} ({}): {r}\n", c.image.kind.as_str())
            }
        }
    }
    for k in &p.skipped {
        s += &format!(
            "  ignore {}: {}\n",
            esc(&root.display_path(&k.path)),
            k.reason
        );
    }
    for h in &p.hierarchies {
        let names: Vec<String> = h.layers.iter().map(|l| escape(&l.name)).collect();
        s += &format!(
            "  {}: {} (top first){}{} [{}{}]\n",
            esc(&h.hierarchy),
            names.join(", "),
            if h.import.is_some() { ", import" } else { "" },
            if h.host_lower { ", host" } else { "" },
            flags_str(h),
            match &h.upper {
                None => String::new(),
                Some(Upper::Ephemeral) => ", upper=ephemeral".into(),
                Some(Upper::Persistent { upper, .. }) => format!(", upper={}", esc(upper)),
            }
        );
    }
    for h in &p.untouched {
        s += &format!("  {}: no extension contributes, left alone\n", esc(h));
    }
    let unusable = p
        .candidates
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::Unusable(_)))
        .count();
    if unusable > 0 {
        s += &format!(
            "  merge would fail: {unusable} extension(s) cannot be used (all or nothing)\n"
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        // As systemd's format_timestamp() in UTC, weekday first.
        assert_eq!(format_usec(0), "Thu 1970-01-01 00:00:00 UTC");
        assert_eq!(
            format_usec(1_795_046_400_000_000),
            "Thu 2026-11-19 00:00:00 UTC"
        );
        assert_eq!(
            format_usec(951_782_400_000_000 + 3_723_000_000),
            "Tue 2000-02-29 01:02:03 UTC"
        );
        // systemd-sysext 252 on this machine: `list` printed this for 1796623853532103.
        assert_eq!(
            format_usec(1_796_623_853_532_103),
            "Mon 2026-12-07 06:10:53 UTC"
        );
    }

    #[test]
    fn tables() {
        let t = table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]], true);
        assert_eq!(t, "A   BB\nxyz 1\n");
        assert_eq!(table(&["A"], &[vec!["x".into()]], false), "x\n");
    }

    #[test]
    fn multi_line_cells_as_systemd_status() {
        // systemd-sysext status (TABLE_STRV, one extension a line), byte for byte as
        // systemd 252 printed it, with and without the legend.
        let rows = [
            vec![
                "/opt".into(),
                "a\nb".into(),
                "Mon 2026-12-07 06:11:02 UTC".into(),
            ],
            vec!["/usr".into(), "none".into(), "-".into()],
        ];
        let h = ["HIERARCHY", "EXTENSIONS", "SINCE"];
        assert_eq!(
            table(&h, &rows, true),
            "HIERARCHY EXTENSIONS SINCE\n\
             /opt      a          Mon 2026-12-07 06:11:02 UTC\n          b          \n\
             /usr      none       -\n"
        );
        assert_eq!(
            table(&h, &rows, false),
            "/opt a    Mon 2026-12-07 06:11:02 UTC\n     b    \n/usr none -\n"
        );
    }
}
