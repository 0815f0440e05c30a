//! ML3: the loss network's meta-training (one walk of the local search over its weights), then
//! its fitness like any candidate's. A run killed during the meta-training resumes by doing it
//! again from the start: it is one seeded walk, and its result does not change.

use evomal::plugin::PluginModel;
use evomal::search::learned::LearnedLoss;
use evomal::search::ml3::ml3_search;
use serde_json::json;

use super::report::{FitnessPlot, finite};
use super::{Context, Found, Searched};
use crate::cli::train::progress;

pub(super) fn search(cx: &Context<'_>, model: &mut PluginModel) -> anyhow::Result<Searched> {
    let (manifest, task) = (cx.manifest, cx.task);
    // A checkpoint from the start, so that an interrupted run can be resumed by name.
    cx.checkpoint("ml3", json!({"started": true}))?;
    let cfg = manifest.local_search_config();
    let started = std::time::Instant::now();
    let bar = progress(cfg.meta_steps, cx.job.options.quiet);
    bar.set_message("ML3 meta-training");
    let res = ml3_search(task, model, &cfg, manifest.search.seed, &mut |i| {
        bar.set_position(i as u64)
    })?;
    bar.finish_and_clear();
    let fitness = task.fitness_with(
        model,
        &res.net,
        &manifest.fitness_config(),
        manifest.search.seed,
        1,
    )?;
    let mut summary = vec![format!(
        "ML3: {} meta steps, validation task loss after the unrolled step {} -> {}",
        res.trace.len(),
        res.trace
            .first()
            .map_or("n/a".into(), |v| format!("{v:.5}")),
        res.trace.last().map_or("n/a".into(), |v| format!("{v:.5}")),
    )];
    if res.diverged {
        summary.push(format!(
            "note: a meta step went non-finite after {} steps; the last finite weights are kept",
            res.trace.len()
        ));
    }
    let mut details = serde_json::Map::new();
    details.insert(
        "ml3".into(),
        json!({
            "meta_steps": res.trace.len(), "diverged": res.diverged, "used_fd_jvp": res.used_fd_jvp,
            "seconds": started.elapsed().as_secs_f64(),
            "trace": res.trace.iter().map(|&v| finite(v as f64)).collect::<Vec<_>>(),
        }),
    );
    let trace = res
        .trace
        .iter()
        .enumerate()
        .map(|(i, &v)| ((i + 1) as f64, v as f64))
        .collect();
    let best = fitness.is_finite().then_some(Found {
        loss: LearnedLoss::Network(res.net),
        fitness,
        generation: None,
    });
    if best.is_none() {
        summary.push("the learned network diverged in its fitness run".into());
    }
    Ok(Searched {
        best,
        summary,
        details,
        plot: Some(FitnessPlot {
            title: "ML3: validation task loss after the unrolled step".into(),
            x: "meta step",
            y: task.task_loss_metric().name().into(),
            series: vec![("validation loss", trace)],
        }),
        device: "cpu".into(),
        ..Searched::default()
    })
}
