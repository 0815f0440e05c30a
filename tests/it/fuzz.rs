//! Seeded fuzzing of the two parsers users feed by hand: loss expressions and manifests. Each
//! input is a mutation of a valid one; whatever comes out must be a value or a clean error,
//! never a panic, and an accepted input must make sense.

use std::path::Path;

use evomal::expr::{LossExpr, MAX_NODES};
use evomal::manifest::{self, Manifest};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PIECES: &[&str] = &[
    "add(", "sub(", "mul(", "div(", "log(", "sqrt(", "square(", "tanh(", "abs(", "neg(", "min(",
    "max(", "y", "yhat", "1", "-1", "+1", ",", ")", "(", " ", "0.5*", "-2e3*", "inf*", "NaN*",
    "1e40*", "é", "\n", "*", "..", "lg(", "",
];

/// `text` with one to four random edits: a piece inserted, a span deleted, or a span repeated.
fn mutate(rng: &mut ChaCha8Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..rng.random_range(1..=4) {
        let at = rng.random_range(0..=chars.len());
        match rng.random_range(0..3) {
            0 => {
                let piece = PIECES.choose(rng).unwrap();
                chars.splice(at..at, piece.chars());
            }
            1 => {
                let end = (at + rng.random_range(0..8)).min(chars.len());
                chars.drain(at..end);
            }
            _ => {
                let end = (at + rng.random_range(0..16)).min(chars.len());
                let span: Vec<char> = chars[at..end].to_vec();
                chars.splice(at..at, span);
            }
        }
    }
    chars.into_iter().collect()
}

#[test]
fn mutated_expressions_parse_or_fail_cleanly() {
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let seeds = [
        "mul(-1, mul(y, log(yhat)))",
        "square(sub(y, yhat))",
        "0.93*add(mul(y, 1.5*log(yhat)), div(-1, sqrt(abs(yhat))))",
        "max(min(y, yhat), tanh(neg(square(y))))",
    ];
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..20_000 {
        let text = mutate(&mut rng, seeds[i % seeds.len()]);
        match text.parse::<LossExpr>() {
            Ok(e) => {
                accepted += 1;
                assert!(e.len() <= MAX_NODES);
                let again: LossExpr = e.to_string().parse().unwrap_or_else(|err| {
                    panic!("{text:?} printed as {e} does not parse back: {err}")
                });
                assert_eq!(again.to_string(), e.to_string(), "{text:?}");
            }
            Err(err) => {
                refused += 1;
                assert!(
                    (1..=text.chars().count() + 1).contains(&err.column),
                    "{text:?}: column {}",
                    err.column
                );
                let shown = err.render(&text);
                assert!(shown.lines().count() <= 2, "{text:?}: {shown}");
                assert!(shown.chars().count() < 400, "{text:?}: {shown}");
            }
        }
    }
    assert!(accepted > 200 && refused > 5_000, "{accepted} / {refused}");
}

/// Values a hurried user might type in place of a number.
const VALUES: &[&str] = &[
    "0",
    "-1",
    "1",
    "2",
    "0.0",
    "1.0",
    "-0.1",
    "nan",
    "inf",
    "-inf",
    "1e9",
    "1e12",
    "18446744073709551615",
    "1000000000000",
    "\"x\"",
    "[]",
    "[0, 0]",
    "true",
    "3.5",
    "1e-30",
];

fn mutate_manifest(rng: &mut ChaCha8Rng, text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for _ in 0..rng.random_range(1..=3) {
        let i = rng.random_range(0..lines.len());
        match rng.random_range(0..4) {
            // A new value for a `key = value` line.
            0 | 1 => {
                if let Some((key, _)) = lines[i].split_once(" = ") {
                    lines[i] = format!("{key} = {}", VALUES.choose(rng).unwrap());
                }
            }
            2 => {
                lines.remove(i);
                if lines.is_empty() {
                    lines.push(String::new());
                }
            }
            _ => {
                let line = lines[i].clone();
                lines.insert(i, line);
            }
        }
    }
    lines.join("\n")
}

#[test]
fn mutated_manifests_load_or_fail_cleanly() {
    let tasks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tasks");
    let mut originals: Vec<(std::path::PathBuf, String)> = std::fs::read_dir(&tasks)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect();
    originals.sort();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..4_000 {
        let (path, text) = &originals[i % originals.len()];
        let text = mutate_manifest(&mut rng, text);
        match Manifest::parse(path, &text) {
            Ok(m) => {
                accepted += 1;
                let s = &m.search;
                assert!(
                    (2..=manifest::MAX_POPULATION).contains(&s.population),
                    "{text}"
                );
                assert!((1..=s.population).contains(&s.tournament), "{text}");
                assert!(s.max_height <= manifest::MAX_HEIGHT, "{text}");
                assert!(m.local_search.meta_steps <= manifest::MAX_STEPS, "{text}");
                for steps in [m.fitness.steps, m.testing.steps, m.filters.rejection_steps] {
                    assert!((1..=manifest::MAX_STEPS).contains(&steps), "{text}");
                }
                for x in [
                    m.fitness.lr,
                    m.testing.lr,
                    m.testing.gamma,
                    m.local_search.meta_lr,
                ] {
                    assert!(x.is_finite() && x > 0.0, "{text}");
                }
                assert!(m.fitness.weight_decay >= 0.0 && m.testing.weight_decay >= 0.0);
            }
            Err(e) => {
                refused += 1;
                let msg = e.to_string();
                assert!(msg.contains(&path.display().to_string()), "{msg}");
            }
        }
    }
    assert!(accepted > 200 && refused > 1_000, "{accepted} / {refused}");
}
