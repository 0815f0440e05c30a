//! The files of a results directory besides run.json: the hall of fame and the plots.

use std::path::Path;

use evomal::plot::{self, Series};
use evomal::search::learned::LearnedLoss;
use evomal::search::run::{Search, verdict_name};
use evomal::train::meta_test::SeedResult;

use super::Searched;

/// Every distinct candidate the search evaluated, best first: one CSV row each.
pub(super) fn hall_of_fame_csv(search: &Search<'_, '_>) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "rank",
        "generation",
        "fitness",
        "verdict",
        "size",
        "height",
        "canonical",
        "loss",
        "infix",
    ])?;
    for (rank, e) in search.hall_of_fame().into_iter().enumerate() {
        let fitness = finite(e.fitness).map_or(String::new(), |f| f.to_string());
        w.write_record([
            (rank + 1).to_string(),
            (e.generation + 1).to_string(),
            fitness,
            verdict_name(e.verdict).to_string(),
            e.loss.len().to_string(),
            e.loss.height().to_string(),
            e.loss.unweighted().canonical().to_string(),
            e.loss.to_string(),
            e.loss.to_infix(),
        ])?;
    }
    Ok(w.into_inner()?)
}

/// The SHA-256 of `text`, in hex: a checkpoint's seal on the manifest it carries.
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// JSON has no infinity: non-finite fitness is written as null.
pub(super) fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// A search's own curve: `fitness.svg`.
pub(super) struct FitnessPlot {
    pub title: String,
    pub x: &'static str,
    pub y: String,
    pub series: Vec<(&'static str, Vec<(f64, f64)>)>,
}

/// Best and median validation fitness per generation.
pub(super) fn per_generation(metric: &str, best_median: Vec<(f64, f64)>) -> FitnessPlot {
    let pick = |f: fn(&(f64, f64)) -> f64| {
        best_median
            .iter()
            .enumerate()
            .map(|(i, v)| ((i + 1) as f64, f(v)))
            .collect()
    };
    FitnessPlot {
        title: format!("validation {metric} per generation"),
        x: "generation",
        y: metric.to_string(),
        series: vec![("best", pick(|v| v.0)), ("median", pick(|v| v.1))],
    }
}

/// `fitness.svg` (the search's curve: best and median validation fitness per generation, or
/// ML3's validation loss per meta step) and `meta_test.svg` (the test metric during
/// meta-testing, mean over seeds, learned vs baseline).
pub(super) fn draw_plots(
    dir: &Path,
    metric: &str,
    searched: &Searched,
    tested: &[(&str, &LearnedLoss, Vec<SeedResult>)],
) -> anyhow::Result<()> {
    // A search where every candidate failed has no finite fitness to draw.
    if let Some(p) = &searched.plot
        && p.series.iter().any(|s| s.1.iter().any(|v| v.1.is_finite()))
    {
        let series: Vec<Series<'_>> = p
            .series
            .iter()
            .map(|(name, points)| Series {
                name,
                points: points.clone(),
            })
            .collect();
        plot::lines(&dir.join("fitness.svg"), &p.title, p.x, &p.y, &series)?;
    }
    let series: Vec<Series<'_>> = tested
        .iter()
        .map(|(name, _, rows)| Series {
            name,
            points: plot::mean_curve(&rows.iter().map(|r| r.curve.as_slice()).collect::<Vec<_>>()),
        })
        .collect();
    if series
        .iter()
        .any(|s| s.points.iter().any(|p| p.1.is_finite()))
    {
        let title = format!("meta-testing: test {metric} (mean over seeds)");
        plot::lines(
            &dir.join("meta_test.svg"),
            &title,
            "training step",
            metric,
            &series,
        )?;
    }
    Ok(())
}
