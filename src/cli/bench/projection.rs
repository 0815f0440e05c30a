//! What `bench fitness` reports: each device's timings and, from two short ones, a
//! generation and a search projected at the manifest's settings, as text or JSON.

use std::io::Write;

use evomal::gpu::Gpu;
use evomal::gpu::population::MetaHostTime;
use serde_json::json;

/// Seconds spent in each phase, and the fitness values.
pub(super) struct Timing {
    pub(super) local_s: f64,
    pub(super) fitness_s: f64,
    pub(super) fitness: Vec<f64>,
    /// The GPU local search's host time, where it took meta steps.
    pub(super) meta_host: Option<MetaHostTime>,
}

impl Timing {
    fn rate(&self, n: usize) -> f64 {
        n as f64 / (self.local_s + self.fitness_s)
    }
}

/// A candidate's work: local-search meta steps, then fitness steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Steps {
    pub(super) meta: usize,
    pub(super) fitness: usize,
}

impl Steps {
    /// The two short settings a projection times: 1/125 and 3/125 of `full` (at least 1 and
    /// 3 steps; none where `full` has none), so that a fit through them splits each phase into
    /// a fixed cost and a cost per step.
    pub(super) fn short(full: Steps) -> [Steps; 2] {
        let scale = |n: usize, k: usize| if n == 0 { 0 } else { k * (n / 125).max(1) };
        [1, 3].map(|k| Steps {
            meta: scale(full.meta, k),
            fitness: scale(full.fitness, k),
        })
    }
}

/// `seconds` (taken at `steps[0]` and `steps[1]` steps) at `target` steps, as a fixed cost
/// plus a cost per step fitted through the two; neither is negative, so timing noise on a
/// small model cannot project below the first timing's fixed part.
fn extrapolate(steps: [usize; 2], seconds: [f64; 2], target: usize) -> (f64, f64) {
    if steps[1] == steps[0] {
        return (seconds[1], 0.0);
    }
    let per_step = ((seconds[1] - seconds[0]) / (steps[1] - steps[0]) as f64).max(0.0);
    let fixed = (seconds[0] - per_step * steps[0] as f64).max(0.0);
    (fixed + per_step * target as f64, per_step)
}

/// One device's generation at the manifest's settings, projected from two short timings.
#[derive(Debug)]
struct Projected {
    meta_step_s: f64,
    fitness_step_s: f64,
    local_s: f64,
    fitness_s: f64,
}

impl Projected {
    fn new(timed: [(Steps, &Timing); 2], full: Steps) -> Projected {
        let [(a, ta), (b, tb)] = timed;
        let (local_s, meta_step_s) =
            extrapolate([a.meta, b.meta], [ta.local_s, tb.local_s], full.meta);
        let (fitness_s, fitness_step_s) = extrapolate(
            [a.fitness, b.fitness],
            [ta.fitness_s, tb.fitness_s],
            full.fitness,
        );
        Projected {
            meta_step_s,
            fitness_step_s,
            local_s,
            fitness_s,
        }
    }

    fn generation_s(&self) -> f64 {
        self.local_s + self.fitness_s
    }
}

/// `x` to three significant digits (whole numbers from 100 up).
fn sig3(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let digits = (2 - x.abs().log10().floor() as i32).clamp(0, 6) as usize;
    format!("{x:.digits$}")
}

/// `s` seconds to three significant digits, in hours from two hours up.
fn seconds(s: f64) -> String {
    if s >= 7200.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{} s", sig3(s))
    }
}

/// Timings per device, each at the step settings it was taken at.
pub(super) struct Report<'g> {
    pub(super) n: usize,
    pub(super) threads: usize,
    pub(super) full: Steps,
    pub(super) generations: usize,
    pub(super) gpu: Option<&'g Gpu>,
    pub(super) cpu: Vec<(Steps, Timing)>,
    pub(super) on_gpu: Vec<(Steps, Timing)>,
}

impl Report<'_> {
    fn software(&self) -> bool {
        self.gpu.is_some_and(Gpu::is_software)
    }

    /// Fitness values of the last timing that agree between the devices within 1e-3.
    fn agreeing(&self) -> Option<usize> {
        let (cpu, gpu) = (&self.cpu.last()?.1, &self.on_gpu.last()?.1);
        Some(
            cpu.fitness
                .iter()
                .zip(&gpu.fitness)
                .filter(|(a, b)| {
                    (*a - *b).abs() <= 1e-3 * a.abs() || (a.is_infinite() && b.is_infinite())
                })
                .count(),
        )
    }

    /// The projection from a device's two short timings, when it has them.
    fn projected(&self, timed: &[(Steps, Timing)]) -> Option<Projected> {
        match timed {
            [(a, ta), (b, tb)] => Some(Projected::new([(*a, ta), (*b, tb)], self.full)),
            _ => None,
        }
    }

    pub(super) fn json(&self) -> serde_json::Value {
        let n = self.n;
        let timing = |(s, t): &(Steps, Timing)| {
            let mut v = json!({"meta_steps": s.meta, "fitness_steps": s.fitness,
                "local_search_s": t.local_s, "fitness_s": t.fitness_s,
                "evals_per_s": t.rate(n)});
            if let Some(h) = t.meta_host {
                v["meta_host"] = json!({"device_steps": h.steps, "init_s": h.init_s,
                    "wait_s": h.wait_s});
            }
            v
        };
        let projection = |timed: &[(Steps, Timing)]| {
            self.projected(timed).map(|p| {
                json!({"meta_step_s": p.meta_step_s, "fitness_step_s": p.fitness_step_s,
                    "local_search_s": p.local_s, "fitness_s": p.fitness_s,
                    "generation_s": p.generation_s(),
                    "search_s": p.generation_s() * self.generations as f64})
            })
        };
        let device = |timed: &[(Steps, Timing)]| {
            json!({"timings": timed.iter().map(timing).collect::<Vec<_>>(),
                "projected": projection(timed)})
        };
        json!({
            "candidates": n, "meta_steps": self.full.meta, "fitness_steps": self.full.fitness,
            "generations": self.generations,
            "cpu": (!self.cpu.is_empty()).then(|| {
                let mut v = device(&self.cpu);
                v["threads"] = json!(self.threads);
                v
            }),
            "gpu": self.gpu.map(|gpu| {
                let mut v = device(&self.on_gpu);
                v["device"] = json!(gpu.describe());
                v["software"] = json!(self.software());
                v
            }),
            "agreeing_within_1e-3": self.agreeing(),
        })
    }

    pub(super) fn text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let n = self.n;
        let cpu_name = format!("cpu, {} threads", self.threads);
        let gpu_name = self.gpu.map(|g| format!("gpu, {}", g.describe()));
        let devices = [(Some(cpu_name), &self.cpu), (gpu_name, &self.on_gpu)];
        for (name, timed) in &devices {
            for (s, t) in timed.iter() {
                let at = match timed.len() {
                    1 => String::new(),
                    _ => format!(" at {}/{} steps", s.meta, s.fitness),
                };
                writeln!(
                    out,
                    "  {}{at}: {} evaluations/s (local search {:.2} s, fitness {:.2} s)",
                    name.as_deref().unwrap_or_default(),
                    sig3(t.rate(n)),
                    t.local_s,
                    t.fitness_s
                )?;
                if let Some(h) = t.meta_host {
                    writeln!(
                        out,
                        "    local search, per meta step on the device: {} drawing \
                         initialisations on the host, {} waiting for the device",
                        seconds(h.init_s / h.steps as f64),
                        seconds(h.wait_s / h.steps as f64)
                    )?;
                }
            }
        }
        if self.software() {
            writeln!(
                out,
                "  (the GPU is a software rasteriser: these are not GPU figures)"
            )?;
        }
        if let Some(agree) = self.agreeing() {
            writeln!(
                out,
                "  {agree} of {n} fitness values agree within 1e-3 (the others train chaotically)"
            )?;
        }
        if devices.iter().any(|(_, t)| t.len() == 2) {
            writeln!(
                out,
                "projected to {} meta and {} fitness steps (an upper bound: the search's filters \
                 skip some candidates; its final selection and meta-test are not counted):",
                self.full.meta, self.full.fitness
            )?;
        }
        for (name, timed) in &devices {
            let Some(p) = self.projected(timed) else {
                continue;
            };
            writeln!(
                out,
                "  {}: {} per meta step, {} per fitness step; a generation of {n} {} \
                 {} ({} each); {} generations {}",
                name.as_deref().unwrap_or_default(),
                seconds(p.meta_step_s),
                seconds(p.fitness_step_s),
                if n == 1 { "candidate" } else { "candidates" },
                seconds(p.generation_s()),
                seconds(p.generation_s() / n as f64),
                self.generations,
                seconds(p.generation_s() * self.generations as f64)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projections_time_1_and_3_125ths_of_the_steps() {
        let short = |meta, fitness| Steps::short(Steps { meta, fitness });
        let s = |meta, fitness| Steps { meta, fitness };
        assert_eq!(short(250, 500), [s(2, 4), s(6, 12)]);
        assert_eq!(short(10, 300), [s(1, 2), s(3, 6)]);
        assert_eq!(short(0, 1000), [s(0, 8), s(0, 24)]);
    }

    #[test]
    fn a_line_through_two_timings_projects_fixed_plus_per_step_costs() {
        // 72 s fixed, 4.9 s a step.
        let t = |n: usize| 72.0 + 4.9 * n as f64;
        let (at, per_step) = extrapolate([4, 12], [t(4), t(12)], 500);
        assert!((per_step - 4.9).abs() < 1e-9 && (at - t(500)).abs() < 1e-9);
        // Noise that makes the longer run faster projects the fixed cost alone, not less.
        assert_eq!(extrapolate([1, 3], [0.5, 0.4], 300), (0.5, 0.0));
        // A per-step cost larger than the first timing projects no negative fixed cost.
        let (at, per_step) = extrapolate([1, 3], [1.0, 5.0], 10);
        assert_eq!((at, per_step), (20.0, 2.0));
        assert_eq!(extrapolate([0, 0], [0.0, 0.0], 0), (0.0, 0.0));
    }

    #[test]
    fn a_generation_is_both_phases_projected() {
        let timing = |local_s, fitness_s| Timing {
            local_s,
            fitness_s,
            fitness: Vec::new(),
            meta_host: None,
        };
        let (a, b) = (timing(37.0, 92.0), timing(91.0, 131.0));
        let steps = Steps::short(Steps {
            meta: 250,
            fitness: 500,
        });
        let p = Projected::new(
            [(steps[0], &a), (steps[1], &b)],
            Steps {
                meta: 250,
                fitness: 500,
            },
        );
        assert!((p.meta_step_s - 13.5).abs() < 1e-9);
        assert!((p.fitness_step_s - 39.0 / 8.0).abs() < 1e-9);
        assert!((p.local_s - (10.0 + 250.0 * 13.5)).abs() < 1e-6);
        assert!((p.fitness_s - (72.5 + 500.0 * 4.875)).abs() < 1e-6);
        assert!((p.generation_s() - p.local_s - p.fitness_s).abs() < 1e-9);
    }

    #[test]
    fn seconds_keep_three_digits_and_turn_to_hours() {
        assert_eq!(seconds(0.000650), "0.000650 s");
        assert_eq!(seconds(4.6), "4.60 s");
        assert_eq!(seconds(5900.0), "5900 s");
        assert_eq!(seconds(9000.0), "2.5 h");
        assert_eq!(seconds(0.0), "0 s");
    }
}
