//! The leaderboard of several models' reports: the release's claim, the measured top-1/top-5 and
//! the difference per model, as Markdown and as timm-style results CSV, and the grouping of
//! shard reports by model for an exact merge.

use crate::report::{merge_reports, results_csv_row, MergeError, Report, RESULTS_CSV_HEADER};

/// The name a report is listed under: its zoo model, else `fallback` (e.g. the weights file's stem).
pub fn model_name(report: &Report, fallback: &str) -> String {
    report.claim.as_ref().map_or_else(|| fallback.to_string(), |c| c.model.clone())
}

/// Groups shard reports by what they evaluated (weights, precision) in first-seen order and merges
/// each group exactly; `names[i]` names `reports[i]`'s group when it has no zoo model.
pub fn merge_by_model(reports: &[Report], names: &[String]) -> Result<Vec<(String, Report)>, MergeError> {
    let mut groups: Vec<((String, String), String, Vec<Report>)> = Vec::new();
    for (r, fallback) in reports.iter().zip(names) {
        let key = (r.weights.sha256.clone(), r.compute.clone());
        match groups.iter_mut().find(|(k, _, _)| *k == key) {
            Some((_, _, members)) => members.push(r.clone()),
            None => groups.push((key, model_name(r, fallback), vec![r.clone()])),
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for (_, name, members) in groups {
        let merged = merge_reports(&members).map_err(|e| match e {
            MergeError::Incompatible(m) => MergeError::Incompatible(format!("{name}: {m}")),
            other => other,
        })?;
        if out.iter().any(|(n, _): &(String, Report)| *n == name) {
            return Err(MergeError::Incompatible(format!("two different evaluations are both named {name}")));
        }
        out.push((name, merged));
    }
    Ok(out)
}

fn claim_cells(r: &Report) -> [String; 4] {
    match &r.claim {
        Some(c) => [
            format!("{:.2}", c.claimed_top1),
            format!("{:.2}", c.claimed_top5),
            format!("{:+.2}", c.delta_top1),
            format!("{:+.2}", c.delta_top5),
        ],
        None => ["—".into(), "—".into(), "—".into(), "—".into()],
    }
}

/// A Markdown table: model, architecture, precision, images, claimed and measured top-1/top-5, deltas.
pub fn markdown(rows: &[(String, Report)]) -> String {
    let mut s = String::from(
        "| model | arch | dtype | images | claimed top-1 | measured top-1 | Δ top-1 | claimed top-5 | measured top-5 | Δ top-5 |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (name, r) in rows {
        let [c1, c5, d1, d5] = claim_cells(r);
        s.push_str(&format!(
            "| {name} | {} | {} | {}{} | {c1} | {:.3} | {d1} | {c5} | {:.3} | {d5} |\n",
            r.weights.arch,
            r.compute,
            r.images,
            if r.failed > 0 { format!(" ({} failed)", r.failed) } else { String::new() },
            r.top1,
            r.top5
        ));
    }
    s
}

/// timm's results CSV (`model,top1,top1_err,top5,top5_err,param_count,img_size,crop_pct,interpolation`).
pub fn results_csv(rows: &[(String, Report)]) -> String {
    let mut s = format!("{RESULTS_CSV_HEADER}\n");
    for (name, r) in rows {
        s.push_str(&results_csv_row(name, r));
        s.push('\n');
    }
    s
}
