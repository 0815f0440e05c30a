//! `evomal compare MANIFEST`: the manifest's task under several methods and search seeds, each
//! an ordinary run in its own directory (skipped when finished, resumed when interrupted), and
//! one table of the meta-test results: markdown on stdout, `compare.csv` and `compare.json`,
//! and `compare.svg`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use evomal::manifest::{Manifest, SearchMethod};
use evomal::plot::{self, Series};
use evomal::train::meta_test::mean_std;
use serde_json::{Value, json};

use super::run::{Job, RunOptions, method_name, resume_job, run_job, sha256_hex};
use super::train::progress;
use super::{read_json, write_atomic};

#[derive(Args)]
pub struct CompareArgs {
    /// The experiment manifest (TOML); its `[search] method` and `seed` are set per run.
    manifest: PathBuf,
    /// Methods to compare, in order (baseline, gplfl, evomal, ml3, taylorglo).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "baseline,gplfl,evomal,ml3,taylorglo"
    )]
    methods: Vec<String>,
    /// Search seeds: `A..B` (B excluded), `A..=B`, or a list `0,3,7`. The baseline does not
    /// search and runs once.
    #[arg(long, default_value = "0..5")]
    search_seeds: String,
    /// Where the runs and the table go (default: `<output.dir>/compare-<manifest name>`).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    #[command(flatten)]
    options: RunOptions,
}

/// One finished run's figures, read back from its run.json.
struct Row {
    method: String,
    /// The task's metric's name.
    metric: String,
    seed: Option<u64>,
    validation: Option<f64>,
    /// Per meta-test seed: the test metric (`None` when that seed diverged).
    tests: Vec<Option<f64>>,
    train: Option<(f64, f64)>,
    /// The mean test metric over meta-test seeds at evenly spaced steps.
    curve: Vec<(usize, f64)>,
    loss: String,
    seconds: f64,
    /// The search phase's seconds and the candidates it trained (see [`search_cost`]).
    search: Option<(f64, usize)>,
}

impl Row {
    fn test(&self) -> Option<(f64, f64)> {
        mean_std(self.tests.iter().flatten().copied())
    }
}

pub fn run(args: CompareArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let text = Manifest::read_text(&args.manifest)?;
    let manifest = Manifest::parse(&args.manifest, &text)?;
    let methods = args
        .methods
        .iter()
        .map(|m| parse_method(m))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let seeds = parse_seeds(&args.search_seeds)?;
    let stem = args
        .manifest
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let root = args
        .out_dir
        .clone()
        .unwrap_or_else(|| manifest.output.dir.join(format!("compare-{stem}")));
    let mut jobs: Vec<(SearchMethod, Option<u64>, PathBuf)> = Vec::new();
    for &m in &methods {
        if m == SearchMethod::Baseline {
            jobs.push((m, None, root.join("baseline")));
        } else {
            for &s in &seeds {
                jobs.push((
                    m,
                    Some(s),
                    root.join(method_name(m)).join(format!("seed-{s}")),
                ));
            }
        }
    }
    let bar = progress(jobs.len(), args.options.quiet);
    let quiet = RunOptions {
        quiet: true,
        ..args.options.clone()
    };
    for (method, seed, dir) in &jobs {
        bar.set_message(format!(
            "{}{}",
            method_name(*method),
            seed.map_or(String::new(), |s| format!(", search seed {s}"))
        ));
        let run_text = with_method(&text, *method, seed.unwrap_or(manifest.search.seed))
            .with_context(|| format!("rewriting `{}`", args.manifest.display()))?;
        if dir.join("run.json").is_file() {
            same_manifest(&dir.join("run.json"), &run_text)?;
        } else {
            let checkpoint = dir.join(super::run::CHECKPOINT);
            let job = if checkpoint.is_file() {
                same_manifest(&checkpoint, &run_text)?;
                resume_job(dir, quiet.clone())?
            } else {
                Job {
                    manifest_path: args.manifest.clone(),
                    manifest_text: run_text,
                    out_dir: Some(dir.clone()),
                    checkpoint: None,
                    options: quiet.clone(),
                }
            };
            let mut summary = Vec::new();
            run_job(job, &mut summary).with_context(|| {
                format!("the {} run in `{}`", method_name(*method), dir.display())
            })?;
            write_atomic(&dir.join("summary.txt"), &summary)?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    let rows = jobs
        .iter()
        .map(|(m, s, dir)| read_row(&method_name(*m), *s, dir))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let metric = rows[0].metric.clone();
    let table = markdown(&rows, &metric, &methods);
    write!(out, "{table}")?;
    write_atomic(&root.join("compare.md"), table.as_bytes())?;
    write_atomic(&root.join("compare.csv"), &csv_rows(&rows)?)?;
    let json = json!({
        "manifest": args.manifest.display().to_string(),
        "metric": metric,
        "search_seeds": seeds,
        "runs": rows.iter().map(|r| json!({
            "method": r.method, "search_seed": r.seed, "validation": r.validation,
            "test": r.tests, "test_mean": r.test().map(|t| t.0), "test_std": r.test().map(|t| t.1),
            "train_mean": r.train.map(|t| t.0), "loss": r.loss, "seconds": r.seconds,
            "dir": jobs.iter().find(|j| method_name(j.0) == r.method && j.1 == r.seed).map(|j| j.2.display().to_string()),
        })).collect::<Vec<_>>(),
        "methods": summaries(&rows, &methods).iter().map(|s| json!({
            "method": s.method, "search_seeds": s.n, "test_mean": s.mean, "test_std": s.std,
            "worst": s.worst, "best": s.best, "seconds": s.seconds,
            "ms_per_candidate": s.ms_per_candidate,
        })).collect::<Vec<_>>(),
    });
    write_atomic(
        &root.join("compare.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    draw(&root.join("compare.svg"), &metric, &rows, &methods)?;
    writeln!(out, "\nresults: {}", root.display())?;
    Ok(())
}

fn parse_method(name: &str) -> anyhow::Result<SearchMethod> {
    serde_json::from_value(Value::String(name.trim().to_string())).map_err(|_| {
        anyhow::anyhow!(
            "--methods: unknown method `{name}` (baseline, gplfl, evomal, ml3, taylorglo)"
        )
    })
}

/// `A..B`, `A..=B`, or `A,B,C`; at least one seed, none repeated.
fn parse_seeds(text: &str) -> anyhow::Result<Vec<u64>> {
    let num = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| anyhow::anyhow!("--search-seeds: `{s}` is not a seed (a whole number)"))
    };
    let seeds: Vec<u64> = if let Some((a, b)) = text.split_once("..=") {
        (num(a)?..=num(b)?).collect()
    } else if let Some((a, b)) = text.split_once("..") {
        (num(a)?..num(b)?).collect()
    } else {
        text.split(',').map(num).collect::<anyhow::Result<_>>()?
    };
    if seeds.is_empty() || seeds.len() > evomal::manifest::MAX_SEEDS {
        bail!(
            "--search-seeds `{text}` names {} seeds; give 1 to {}",
            seeds.len(),
            evomal::manifest::MAX_SEEDS
        );
    }
    let mut sorted = seeds.clone();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        bail!("--search-seeds `{text}` repeats a seed");
    }
    Ok(seeds)
}

/// The manifest's text with `[search] method` and `seed` set (its comments are not kept).
fn with_method(text: &str, method: SearchMethod, seed: u64) -> anyhow::Result<String> {
    let mut doc: toml::Table = toml::from_str(text)?;
    let search = doc
        .entry("search")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let table = search.as_table_mut().context("`search` is not a table")?;
    table.insert("method".into(), toml::Value::String(method_name(method)));
    table.insert("seed".into(), toml::Value::Integer(i64::try_from(seed)?));
    Ok(toml::to_string(&doc)?)
}

/// Refuses a run (its `run.json` or checkpoint at `path`) made from another manifest than
/// `text`: its results would not be this comparison's.
fn same_manifest(path: &Path, text: &str) -> anyhow::Result<()> {
    if read_json(path)?["manifest_sha256"].as_str() != Some(&sha256_hex(text)) {
        bail!(
            "`{}` holds a run of another manifest (it changed since, or the directory is another comparison's); choose another --out-dir, or remove that run",
            path.parent().unwrap_or(path).display()
        );
    }
    Ok(())
}

fn read_row(method: &str, seed: Option<u64>, dir: &Path) -> anyhow::Result<Row> {
    let r = read_json(&dir.join("run.json"))?;
    // The learned loss's meta-test, or the baseline's when the run has no learned loss.
    let entries = r["meta_test"].as_array().cloned().unwrap_or_default();
    let pick = if method == "baseline" {
        "baseline"
    } else {
        "learned"
    };
    let entry = entries.iter().find(|e| e["name"] == pick);
    let seeds = entry
        .and_then(|e| e["seeds"].as_array().cloned())
        .unwrap_or_default();
    let tests = seeds.iter().map(|s| s["test"].as_f64()).collect();
    let curves: Vec<Vec<(usize, f64)>> = seeds
        .iter()
        .map(|s| serde_json::from_value(s["curve"].clone()).unwrap_or_default())
        .collect();
    let curve = plot::mean_curve(&curves.iter().map(|c| c.as_slice()).collect::<Vec<_>>())
        .into_iter()
        .map(|(x, y)| (x as usize, y))
        .collect();
    let train =
        entry.and_then(|e| Some((e["train"]["mean"].as_f64()?, e["train"]["std"].as_f64()?)));
    let (validation, loss) = if method == "baseline" {
        (
            r["baseline"]["validation"].as_f64(),
            r["baseline"]["loss"].as_str().unwrap_or("").to_string(),
        )
    } else {
        let b = &r["best"];
        let loss = match (b["infix"].as_str(), b["network"].as_str()) {
            (Some(infix), _) => infix.to_string(),
            (None, Some(file)) => format!("ML3 network ({file})"),
            _ => "none (no candidate survived)".to_string(),
        };
        (b["validation"].as_f64(), loss)
    };
    Ok(Row {
        method: method.to_string(),
        metric: r["metric"].as_str().unwrap_or("metric").to_string(),
        seed,
        validation,
        tests,
        train,
        curve,
        loss,
        seconds: r["seconds"].as_f64().unwrap_or(f64::NAN),
        search: search_cost(&r),
    })
}

/// A run's search: its seconds and the candidates it trained for their fitness — GP: those
/// evaluated (EvoMAL's after their local search), TaylorGLO: every point scored, ML3: its one
/// network. `None` for the baseline.
fn search_cost(r: &Value) -> Option<(f64, usize)> {
    let generations = r["generations"].as_array()?;
    let seconds: f64 = generations
        .iter()
        .filter_map(|g| g["seconds"].as_f64())
        .sum();
    match r["method"].as_str()? {
        "evomal" | "gplfl" => {
            let n = generations
                .iter()
                .filter_map(|g| g["counts"]["evaluated"].as_u64())
                .sum::<u64>();
            Some((seconds, n as usize))
        }
        "taylorglo" => Some((seconds, r["taylorglo"]["points_scored"].as_u64()? as usize)),
        "ml3" => Some((r["ml3"]["seconds"].as_f64()?, 1)),
        _ => None,
    }
}

/// A method over its search seeds.
struct Summary {
    method: String,
    n: usize,
    mean: Option<f64>,
    std: Option<f64>,
    best: Option<f64>,
    worst: Option<f64>,
    seconds: f64,
    /// Search seconds per trained candidate, in milliseconds.
    ms_per_candidate: Option<f64>,
}

fn summaries(rows: &[Row], methods: &[SearchMethod]) -> Vec<Summary> {
    methods
        .iter()
        .map(|&m| {
            let name = method_name(m);
            let mine: Vec<&Row> = rows.iter().filter(|r| r.method == name).collect();
            let means: Vec<f64> = mine.iter().filter_map(|r| r.test().map(|t| t.0)).collect();
            let stats = mean_std(means.iter().copied());
            Summary {
                method: name,
                n: mine.len(),
                mean: stats.map(|s| s.0),
                std: stats.map(|s| s.1),
                best: means.iter().copied().reduce(f64::min),
                worst: means.iter().copied().reduce(f64::max),
                seconds: mine.iter().map(|r| r.seconds).sum(),
                ms_per_candidate: {
                    let (t, n) = mine
                        .iter()
                        .filter_map(|r| r.search)
                        .fold((0.0, 0), |(t, n), (s, c)| (t + s, n + c));
                    (n > 0).then(|| 1000.0 * t / n as f64)
                },
            }
        })
        .collect()
}

fn fmt(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |v| format!("{v:.4}"))
}

fn markdown(rows: &[Row], metric: &str, methods: &[SearchMethod]) -> String {
    let mut t = format!(
        "| method | search seeds | test {metric} (mean ± std over search seeds) | best | worst | seconds | ms per candidate |\n|---|---|---|---|---|---|---|\n"
    );
    for s in summaries(rows, methods) {
        t += &format!(
            "| {} | {} | {} ± {} | {} | {} | {:.1} | {} |\n",
            s.method,
            s.n,
            fmt(s.mean),
            fmt(s.std),
            fmt(s.best),
            fmt(s.worst),
            s.seconds,
            s.ms_per_candidate
                .map_or("-".into(), |ms| format!("{ms:.1}"))
        );
    }
    t += &format!(
        "\n| method | search seed | validation {metric} | test {metric} (mean ± std over meta-test seeds) | seconds | learned loss |\n|---|---|---|---|---|---|\n"
    );
    for r in rows {
        let test = r.test();
        t += &format!(
            "| {} | {} | {} | {} ± {} | {:.1} | `{}` |\n",
            r.method,
            r.seed.map_or("-".into(), |s| s.to_string()),
            fmt(r.validation),
            fmt(test.map(|t| t.0)),
            fmt(test.map(|t| t.1)),
            r.seconds,
            r.loss.replace('|', "\\|")
        );
    }
    t
}

fn csv_rows(rows: &[Row]) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "method",
        "search_seed",
        "validation",
        "test_mean",
        "test_std",
        "train_mean",
        "seconds",
        "loss",
    ])?;
    let opt = |x: Option<f64>| x.map_or(String::new(), |v| v.to_string());
    for r in rows {
        let test = r.test();
        w.write_record([
            r.method.clone(),
            r.seed.map_or(String::new(), |s| s.to_string()),
            opt(r.validation),
            opt(test.map(|t| t.0)),
            opt(test.map(|t| t.1)),
            opt(r.train.map(|t| t.0)),
            r.seconds.to_string(),
            r.loss.clone(),
        ])?;
    }
    Ok(w.into_inner()?)
}

/// Per method: the test metric of every search seed, and the meta-test curve averaged over
/// them.
fn draw(path: &Path, metric: &str, rows: &[Row], methods: &[SearchMethod]) -> anyhow::Result<()> {
    let names: Vec<String> = methods.iter().map(|&m| method_name(m)).collect();
    let spread: Vec<(&str, Vec<f64>)> = names
        .iter()
        .map(|n| {
            let v = rows
                .iter()
                .filter(|r| &r.method == n)
                .filter_map(|r| r.test().map(|t| t.0))
                .collect();
            (n.as_str(), v)
        })
        .collect();
    let curves: Vec<Series<'_>> = names
        .iter()
        .map(|n| {
            let mine: Vec<&[(usize, f64)]> = rows
                .iter()
                .filter(|r| &r.method == n)
                .map(|r| r.curve.as_slice())
                .collect();
            Series {
                name: n,
                points: plot::mean_curve(&mine),
            }
        })
        .collect();
    if spread.iter().all(|s| s.1.is_empty()) {
        return Ok(());
    }
    plot::comparison(path, metric, &spread, &curves)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ranges_and_lists() {
        assert_eq!(parse_seeds("0..3").unwrap(), vec![0, 1, 2]);
        assert_eq!(parse_seeds("2..=4").unwrap(), vec![2, 3, 4]);
        assert_eq!(parse_seeds("5, 1,9").unwrap(), vec![5, 1, 9]);
        for bad in ["3..3", "1,1", "a..4", "", "0..100000"] {
            assert!(parse_seeds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_method_and_seed_are_set_and_nothing_else_changes() {
        let text = "# a comment\n[task]\nplugin = \"sine\"\nmodel = \"mlp\"\n[search]\npopulation = 4\nseed = 9\n";
        let out = with_method(text, SearchMethod::Ml3, 3).unwrap();
        let doc: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(doc["search"]["method"].as_str(), Some("ml3"));
        assert_eq!(doc["search"]["seed"].as_integer(), Some(3));
        assert_eq!(doc["search"]["population"].as_integer(), Some(4));
        assert_eq!(doc["task"]["plugin"].as_str(), Some("sine"));
        let bare = with_method(
            "[task]\nplugin = \"x\"\nmodel = \"y\"\n",
            SearchMethod::Taylorglo,
            0,
        );
        assert!(bare.unwrap().contains("taylorglo"));
        assert!(parse_method("evomal").is_ok());
        assert!(parse_method("ml4").is_err());
    }
}
