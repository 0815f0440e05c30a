//! A search's whole state as JSON, and the search continuing from it: the checkpoint that
//! `evomal run` writes after every generation, checked against the plan on resume.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::{Best, Evaluated, Generation, Search, SearchError, SearchPlan, Verdict, verdict_name};
use crate::expr::LossExpr;
use crate::train::Task;

impl Search<'_, '_> {
    /// The whole state as JSON: restoring it with [`Search::restore`] continues exactly where
    /// this search stands (same RNG stream, caches and best-so-far).
    pub fn checkpoint(&self) -> serde_json::Value {
        let finite = |x: f64| x.is_finite().then_some(x);
        json!({
            "version": 1,
            "seed": self.plan.seed,
            "next_generation": self.next,
            "population": self.population.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            "rng": {
                "seed": self.rng.get_seed().to_vec(),
                "stream": self.rng.get_stream(),
                "word_pos": self.rng.get_word_pos().to_string(),
            },
            "canonical": self.canonical.iter()
                .map(|(k, e)| json!([k.to_string(), finite(e.fitness), e.loss.to_string(), e.generation, verdict_name(e.verdict)]))
                .collect::<Vec<_>>(),
            "gradients": self.gradients.entries().map(|(n, f)| json!([n, finite(f)])).collect::<Vec<_>>(),
            "best": self.best.as_ref().map(|b| json!({"loss": b.loss.to_string(), "fitness": b.fitness, "generation": b.generation})),
            "generations": self.generations.iter().map(|g| json!({
                "index": g.index, "best": finite(g.best), "median": finite(g.median), "counts": g.counts, "seconds": g.seconds,
            })).collect::<Vec<_>>(),
        })
    }
}

impl<'t, 'p> Search<'t, 'p> {
    /// A search continuing from [`Search::checkpoint`]'s output, under the same plan.
    pub fn restore(
        task: &'t Task<'p>,
        plan: SearchPlan,
        cp: &serde_json::Value,
    ) -> Result<Search<'t, 'p>, SearchError> {
        let bad = |what: &str| SearchError::Checkpoint(format!("missing or malformed `{what}`"));
        let expr = |v: &serde_json::Value, what: &str| -> Result<LossExpr, SearchError> {
            v.as_str()
                .ok_or_else(|| bad(what))?
                .parse()
                .map_err(|e| SearchError::Checkpoint(format!("{what}: {e}")))
        };
        let fit = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::INFINITY);
        if cp["version"] != 1 || cp["seed"].as_u64() != Some(plan.seed) {
            return Err(SearchError::Checkpoint(
                "written by another version or for another seed".into(),
            ));
        }
        let mut s = Search::new(task, plan);
        s.next = cp["next_generation"]
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| bad("next_generation"))?;
        s.population = cp["population"]
            .as_array()
            .ok_or_else(|| bad("population"))?
            .iter()
            .map(|v| expr(v, "population"))
            .collect::<Result<_, _>>()?;
        let rng = &cp["rng"];
        let seed: Vec<u8> = rng["seed"]
            .as_array()
            .ok_or_else(|| bad("rng.seed"))?
            .iter()
            .map(|b| b.as_u64().map(|b| b as u8))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("rng.seed"))?;
        let seed: [u8; 32] = seed.try_into().map_err(|_| bad("rng.seed"))?;
        s.rng = ChaCha8Rng::from_seed(seed);
        s.rng
            .set_stream(rng["stream"].as_u64().ok_or_else(|| bad("rng.stream"))?);
        s.rng.set_word_pos(
            rng["word_pos"]
                .as_str()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| bad("rng.word_pos"))?,
        );
        for entry in cp["canonical"].as_array().ok_or_else(|| bad("canonical"))? {
            let key = entry[0]
                .as_str()
                .and_then(|k| k.parse().ok())
                .ok_or_else(|| bad("canonical"))?;
            let evaluated = Evaluated {
                fitness: fit(&entry[1]),
                loss: expr(&entry[2], "canonical")?,
                generation: entry[3].as_u64().ok_or_else(|| bad("canonical"))? as usize,
                verdict: entry[4]
                    .as_str()
                    .and_then(verdict_of)
                    .ok_or_else(|| bad("canonical"))?,
            };
            s.canonical.insert(key, evaluated);
        }
        for entry in cp["gradients"].as_array().ok_or_else(|| bad("gradients"))? {
            let norms = entry[0]
                .as_array()
                .ok_or_else(|| bad("gradients"))?
                .iter()
                .map(|v| v.as_f64().map(|x| x as f32))
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| bad("gradients"))?;
            s.gradients.insert(norms, fit(&entry[1]));
        }
        if let Some(b) = cp["best"].as_object() {
            s.best = Some(Best {
                loss: expr(&b["loss"], "best.loss")?,
                fitness: fit(&b["fitness"]),
                generation: b["generation"]
                    .as_u64()
                    .ok_or_else(|| bad("best.generation"))? as usize,
            });
        }
        for g in cp["generations"]
            .as_array()
            .ok_or_else(|| bad("generations"))?
        {
            let counts = g["counts"]
                .as_object()
                .ok_or_else(|| bad("generations.counts"))?
                .iter()
                .map(|(k, v)| (counter_name(k), v.as_u64().unwrap_or(0) as usize))
                .filter_map(|(k, v)| k.map(|k| (k, v)))
                .collect();
            s.generations.push(Generation {
                index: g["index"]
                    .as_u64()
                    .ok_or_else(|| bad("generations.index"))? as usize,
                best: fit(&g["best"]),
                median: fit(&g["median"]),
                counts,
                seconds: g["seconds"].as_f64().unwrap_or(0.0),
            });
        }
        s.check_restored()?;
        Ok(s)
    }

    /// A restored state that contradicts the plan (an edited or foreign checkpoint) is refused
    /// rather than continued.
    fn check_restored(&self) -> Result<(), SearchError> {
        let contradiction = |what: String| Err(SearchError::Checkpoint(what));
        let (population, generations) = (self.plan.gp.population, self.plan.gp.generations);
        if self.population.len() != population {
            return contradiction(format!(
                "`population` holds {} candidates, the manifest's search.population is {population}",
                self.population.len()
            ));
        }
        if self.next > generations {
            return contradiction(format!(
                "`next_generation` is {}, beyond the manifest's {generations} generations",
                self.next
            ));
        }
        if self.generations.len() != self.next
            || self
                .generations
                .iter()
                .enumerate()
                .any(|(i, g)| g.index != i)
        {
            return contradiction(format!(
                "`generations` does not list generations 0 to {} in order",
                self.next as i64 - 1
            ));
        }
        if let Some(b) = &self.best
            && b.generation >= self.next
        {
            return contradiction(format!(
                "`best.generation` is {}, but only {} generations were evaluated",
                b.generation, self.next
            ));
        }
        Ok(())
    }
}

const VERDICTS: [Verdict; 5] = [
    Verdict::Evaluated,
    Verdict::CanonicalHit,
    Verdict::GradientHit,
    Verdict::Rejected,
    Verdict::Diverged,
];

fn counter_name(name: &str) -> Option<&'static str> {
    VERDICTS.into_iter().map(verdict_name).find(|n| *n == name)
}

fn verdict_of(name: &str) -> Option<Verdict> {
    VERDICTS.into_iter().find(|v| verdict_name(*v) == name)
}
