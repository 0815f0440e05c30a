//! The GP searches: EvoMAL (with the local search) and GP-LFL (weights fixed at 1), with the
//! GPU's population trainer when one is chosen, a checkpoint per generation, and the optional
//! robust selection.

use std::io::IsTerminal;

use evomal::gpu::population::PopulationTrainer;
use evomal::gpu::{DeviceChoice, Gpu};
use evomal::manifest::SearchMethod;
use evomal::search::learned::LearnedLoss;
use evomal::search::run::{Search, SearchError, SearchPlan};
use evomal::search::select::robust_selection;
use evomal::train::TrainError;
use indicatif::{MultiProgress, ProgressDrawTarget};
use serde_json::json;

use super::report::{finite, hall_of_fame_csv};
use super::{Context, Found, Searched};
use crate::cli::train::progress;

pub(super) fn search(cx: &Context<'_>) -> anyhow::Result<Searched> {
    let (manifest, task) = (cx.manifest, cx.task);
    let plan = SearchPlan {
        gp: manifest.gp_config(),
        local_search: (manifest.search.method == SearchMethod::Evomal)
            .then(|| manifest.local_search_config()),
        fitness: manifest.fitness_config(),
        rejection: manifest
            .filters
            .rejection
            .then(|| manifest.rejection_config()),
        gradient_tolerance: (manifest.filters.rejection && manifest.filters.gradient_equivalence)
            .then_some(manifest.filters.gradient_tolerance),
        seed: manifest.search.seed,
    };
    let device_choice = cx.job.options.device.unwrap_or_default();
    let gpu = Gpu::choose(device_choice)?;
    let model = cx.make_model()?;
    let trainer = match &gpu {
        None => None,
        Some(gpu) => match PopulationTrainer::new(gpu, task, &model, plan.gp.population, 1) {
            Ok(t) => Some(t),
            Err(TrainError::Gpu(e)) if device_choice == DeviceChoice::Auto => {
                eprintln!("note: local searches and fitness runs train on the CPU: {e}");
                None
            }
            Err(e) => return Err(e.into()),
        },
    };
    let device = match (&gpu, &trainer) {
        (Some(gpu), Some(_)) => gpu.describe(),
        _ => "cpu".to_string(),
    };
    let mut search = match cx.resumed("search") {
        Some(cp) => Search::restore(task, plan.clone(), cp).map_err(|e| {
            anyhow::anyhow!(
                "resuming from {}: {e}",
                cx.dir.join(super::CHECKPOINT).display()
            )
        })?,
        None => Search::new(task, plan.clone()),
    };
    if let Some(trainer) = &trainer {
        search = search.with_gpu(trainer);
    }
    let make_model = || cx.make_model();
    let done = search.generations.len();
    // Two bars: generations (with the best fitness so far), and this generation's candidates.
    let multi = MultiProgress::new();
    if cx.job.options.quiet || !std::io::stderr().is_terminal() {
        multi.set_draw_target(ProgressDrawTarget::hidden());
    }
    let bar = multi.add(progress(plan.gp.generations, false));
    bar.set_position(done as u64);
    let candidates = multi.add(progress(plan.gp.population, false));
    candidates.set_message("candidates");
    let on_candidate = |_, _| candidates.inc(1);
    let mut on_generation = |s: &Search<'_, '_>| {
        let best = s
            .best
            .as_ref()
            .map_or("none yet".to_string(), |b| format!("{:.5}", b.fitness));
        bar.set_position(s.generations.len() as u64);
        bar.set_message(format!("generations, best {best}"));
        candidates.reset();
        cx.checkpoint("search", s.checkpoint())
            .map_err(|e| SearchError::Io(format!("writing the checkpoint: {e:#}")))
    };
    cx.pool
        .install(|| search.run(&make_model, &on_candidate, &mut on_generation))?;
    candidates.finish_and_clear();
    bar.finish_and_clear();

    // The loss to keep: the search's best, or the best mean of the finalists scored again.
    let selection = match manifest.selection_config() {
        Some(cfg) => cx
            .pool
            .install(|| robust_selection(task, &search, &cfg, &make_model))?,
        None => None,
    };
    let best = match &selection {
        Some((rescored, chosen)) => {
            let r = &rescored[*chosen];
            Some(Found {
                loss: LearnedLoss::Expr(r.loss.clone()),
                fitness: r.search_fitness,
                generation: r.generation,
            })
        }
        None => search.best.as_ref().map(|b| Found {
            loss: LearnedLoss::Expr(b.loss.clone()),
            fitness: b.fitness,
            generation: Some(b.generation),
        }),
    };

    let mut summary = Vec::new();
    if !search.generations.is_empty() {
        summary.push(format!(
            "{:>4} {:>11} {:>11} {:>5} {:>5} {:>5} {:>5} {:>5} {:>7}",
            "gen", "best", "median", "eval", "canon", "grad", "rej", "div", "seconds"
        ));
        for g in &search.generations {
            let c = |k: &str| g.counts.get(k).copied().unwrap_or(0);
            summary.push(format!(
                "{:>4} {:>11.5} {:>11.5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>7.2}",
                g.index + 1,
                g.best,
                g.median,
                c("evaluated"),
                c("canonical_hits"),
                c("gradient_hits"),
                c("rejected"),
                c("diverged"),
                g.seconds
            ));
        }
    }
    let mut details = serde_json::Map::new();
    if let Some((rescored, chosen)) = &selection {
        let kept = match rescored[*chosen].generation {
            Some(_) => format!("#{}", chosen + 1),
            None => "the baseline: no candidate's mean beat it".to_string(),
        };
        summary.push(format!(
            "robust selection: {} finalists trained {} times each; kept {kept} (mean {} {:.5})",
            rescored.len(),
            rescored[0].fitness.len(),
            task.metric().name(),
            rescored[*chosen].mean()
        ));
        details.insert(
            "selection".into(),
            json!({
                "chosen": chosen,
                "candidates": rescored.iter().map(|r| json!({
                    "loss": r.loss.to_string(), "generation": r.generation.map(|g| g + 1),
                    "baseline": r.generation.is_none(), "search_fitness": finite(r.search_fitness),
                    "fitness": r.fitness.iter().map(|&f| finite(f)).collect::<Vec<_>>(),
                    "task_loss": r.task_loss.iter().map(|&f| finite(f)).collect::<Vec<_>>(),
                    "mean": finite(r.mean()), "task_loss_mean": finite(r.task_loss_mean()),
                })).collect::<Vec<_>>(),
            }),
        );
    } else {
        details.insert("selection".into(), serde_json::Value::Null);
    }
    let generations = search
        .generations
        .iter()
        .map(|g| json!({"generation": g.index + 1, "best": finite(g.best), "median": finite(g.median), "counts": g.counts, "seconds": g.seconds}))
        .collect();
    let plot = super::report::per_generation(
        task.metric().name(),
        search
            .generations
            .iter()
            .map(|g| (g.best, g.median))
            .collect(),
    );
    Ok(Searched {
        best,
        generations,
        summary,
        details,
        plot: Some(plot),
        hall_of_fame: Some(hall_of_fame_csv(&search)?),
        device,
    })
}
