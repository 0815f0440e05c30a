//! TaylorGLO: CMA-ES over the Taylor loss's eight parameters, checkpointed after every
//! generation with every point scored so far; a resumed run replays CMA-ES and trains only the
//! points it has not scored.

use std::io::IsTerminal;

use evomal::search::learned::LearnedLoss;
use evomal::search::taylorglo::{N_PARAMS, Scored, TaylorGloError, taylorglo_search};
use indicatif::{MultiProgress, ProgressDrawTarget};
use serde_json::{Value, json};

use super::report::{finite, per_generation};
use super::{Context, Found, Searched};
use crate::cli::train::progress;

pub(super) fn search(cx: &Context<'_>) -> anyhow::Result<Searched> {
    let (manifest, task) = (cx.manifest, cx.task);
    let cfg = manifest.taylorglo_config();
    let mut scored = match cx.resumed("taylorglo") {
        Some(state) => read_scored(state).map_err(|e| {
            anyhow::anyhow!(
                "resuming from {}: `taylorglo.scored` {e}",
                cx.dir.join(super::CHECKPOINT).display()
            )
        })?,
        None => Scored::new(),
    };
    let multi = MultiProgress::new();
    if cx.job.options.quiet || !std::io::stderr().is_terminal() {
        multi.set_draw_target(ProgressDrawTarget::hidden());
    }
    let bar = multi.add(progress(cfg.generations, false));
    bar.set_message("CMA-ES generations");
    let candidates = multi.add(progress(cfg.population, false));
    candidates.set_message("candidates");
    let make_model = || cx.make_model();
    let on_candidate = || candidates.inc(1);
    let mut on_generation = |scored: &Scored, done: &[_]| {
        bar.set_position(done.len() as u64);
        candidates.reset();
        cx.checkpoint("taylorglo", json!({"scored": scored_json(scored)}))
            .map_err(|e| TaylorGloError::Stopped(format!("writing the checkpoint: {e:#}")))
    };
    let res = cx.pool.install(|| {
        taylorglo_search(
            task,
            &make_model,
            &manifest.fitness_config(),
            manifest.search.seed,
            &cfg,
            manifest.search.seed,
            &mut scored,
            &on_candidate,
            &mut on_generation,
        )
    })?;
    candidates.finish_and_clear();
    bar.finish_and_clear();

    let found_in = res.generations.iter().position(|g| g.best == res.fitness);
    let summary = vec![
        format!(
            "TaylorGLO: {} CMA-ES generations of {}, {} points scored; stopped: {}",
            res.generations.len(),
            cfg.population,
            scored.len(),
            res.stopped.join(", ")
        ),
        format!("  parameters t0..t7 = {:?}", res.params),
    ];
    let mut details = serde_json::Map::new();
    details.insert(
        "taylorglo".into(),
        json!({"params": res.params, "stopped": res.stopped, "points_scored": scored.len(),
               "sigma": cfg.sigma}),
    );
    let generations = res
        .generations
        .iter()
        .enumerate()
        .map(|(i, g)| json!({"generation": i + 1, "best": finite(g.best), "median": finite(g.median), "seconds": g.seconds}))
        .collect();
    let plot = per_generation(
        task.metric().name(),
        res.generations.iter().map(|g| (g.best, g.median)).collect(),
    );
    let best = res.fitness.is_finite().then(|| Found {
        loss: LearnedLoss::Expr(res.loss.clone()),
        fitness: res.fitness,
        generation: found_in,
    });
    Ok(Searched {
        best,
        generations,
        summary,
        details,
        plot: Some(plot),
        device: "cpu".into(),
        ..Searched::default()
    })
}

/// The scored points as JSON: the parameters' bits (exact), their values (for people), and
/// the fitness (null for +inf).
fn scored_json(scored: &Scored) -> Value {
    scored
        .iter()
        .map(|(bits, f)| {
            let params: Vec<f64> = bits.iter().map(|&b| f64::from_bits(b)).collect();
            json!({"bits": bits, "params": params, "fitness": finite(*f)})
        })
        .collect()
}

fn read_scored(state: &Value) -> Result<Scored, String> {
    let list = state["scored"].as_array().ok_or("is not a list")?;
    let mut scored = Scored::new();
    for (i, p) in list.iter().enumerate() {
        let bits: [u64; N_PARAMS] = serde_json::from_value(p["bits"].clone())
            .map_err(|e| format!("entry {i}: `bits`: {e}"))?;
        let fitness = match &p["fitness"] {
            Value::Null => f64::INFINITY,
            v => v
                .as_f64()
                .filter(|f| *f >= 0.0)
                .ok_or_else(|| format!("entry {i}: `fitness` is not a number >= 0"))?,
        };
        scored.insert(bits, fitness);
    }
    Ok(scored)
}
