use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Structural validity: the post-order invariant holds (it re-parses to the same tree).
fn valid(e: &LossExpr) -> bool {
    e.to_string().parse::<LossExpr>().as_ref() == Ok(e)
}

#[test]
fn initial_population_is_valid_and_in_the_height_range() {
    let cfg = GpConfig::default();
    let mut r = rng(1);
    for _ in 0..100 {
        let pop = initial_population(&mut r, &cfg);
        assert_eq!(pop.len(), 25);
        for e in &pop {
            assert!(e.contains_y_and_yhat() && valid(e), "{e}");
            // Repair can add one level below a terminal at the maximum height.
            assert!(e.height() <= cfg.init_max_height + 1, "{e}");
        }
    }
}

#[test]
fn operators_keep_every_invariant_over_thousands_of_draws() {
    let cfg = GpConfig::default();
    let mut r = rng(2);
    let mut pop = initial_population(&mut r, &cfg);
    let mut grew = 0;
    for generation in 0..400 {
        let fitness: Vec<f64> = (0..pop.len())
            .map(|i| if i % 7 == 3 { f64::NAN } else { r.random() })
            .collect();
        pop = next_generation(&mut r, &cfg, &pop, &fitness);
        assert_eq!(pop.len(), cfg.population, "generation {generation}");
        for e in &pop {
            assert!(
                e.height() <= cfg.max_height,
                "generation {generation}: {e} is {} high",
                e.height()
            );
            assert!(e.contains_y_and_yhat(), "generation {generation}: {e}");
            assert!(valid(e), "generation {generation}: {e}");
            grew += (e.height() > cfg.init_max_height + 1) as usize;
        }
    }
    // The operators do change the trees: some outgrow the initial heights.
    assert!(grew > 0);
}

#[test]
fn crossover_and_mutation_obey_their_definitions() {
    let cfg = GpConfig::default();
    let mut r = rng(3);
    for _ in 0..2000 {
        let a = random_tree(&mut r, Method::Full, 1, 5);
        let b = random_tree(&mut r, Method::Grow, 1, 5);
        let (c, d) = crossover(&mut r, &a, &b);
        // Nodes are conserved: what one child gained, the other lost.
        assert_eq!(c.len() + d.len(), a.len() + b.len());
        assert!(valid(&c) && valid(&d));
        // Roots are never swapped.
        assert_eq!(c.op(c.root()), a.op(a.root()));
        let m = mutate(&mut r, &a, &cfg);
        assert!(valid(&m));
        assert!(
            m.height() <= a.height() + cfg.mutation_max_height,
            "{a} -> {m}"
        );
    }
}

#[test]
fn repair_always_yields_a_valid_tree() {
    let mut r = rng(4);
    for _ in 0..5000 {
        let e = random_tree(&mut r, Method::Grow, 0, 6);
        let fixed = repair(&mut r, &e);
        assert!(
            fixed.contains_y_and_yhat() && valid(&fixed),
            "{e} -> {fixed}"
        );
        if e.contains_y_and_yhat() {
            assert_eq!(fixed, e);
        } else {
            assert_eq!(fixed.len(), e.len() + 2);
        }
    }
}

#[test]
fn elitism_is_applied() {
    let cfg = GpConfig {
        population: 20,
        elitism_rate: 0.1,
        ..GpConfig::default()
    };
    assert_eq!(cfg.n_elites(), 2);
    assert_eq!(GpConfig::default().n_elites(), 1);
    let mut r = rng(5);
    let pop = initial_population(&mut r, &cfg);
    let mut fitness: Vec<f64> = (0..20).map(|i| 10.0 + i as f64).collect();
    fitness[13] = 0.5;
    fitness[7] = f64::NAN;
    fitness[4] = 0.1;
    let next = next_generation(&mut r, &cfg, &pop, &fitness);
    assert_eq!(next[0], pop[4]);
    assert_eq!(next[1], pop[13]);
    assert_eq!(elites(&fitness, 3), [4, 13, 0]);
}

#[test]
fn tournament_prefers_the_fitter_and_never_a_nan() {
    let mut r = rng(6);
    let fitness = [f64::NAN, 3.0, 1.0, f64::INFINITY];
    let mut wins = [0usize; 4];
    for _ in 0..4000 {
        wins[tournament(&mut r, &fitness, 4)] += 1;
    }
    assert!(
        wins[2] > wins[1] && wins[1] > wins[0].max(wins[3]),
        "{wins:?}"
    );
    let only_nan = [f64::NAN, f64::NAN];
    assert!(tournament(&mut r, &only_nan, 4) < 2);
}

#[test]
fn a_seed_fixes_the_search() {
    let cfg = GpConfig::default();
    let run = |seed| {
        let mut r = rng(seed);
        let mut pop = initial_population(&mut r, &cfg);
        for _ in 0..5 {
            let fitness: Vec<f64> = pop.iter().map(|e| e.len() as f64).collect();
            pop = next_generation(&mut r, &cfg, &pop, &fitness);
        }
        pop.iter().map(|e| e.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10));
}
