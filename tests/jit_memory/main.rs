//! Compiling thousands of candidates in one process must not leak code memory.
//!
//! A test binary of its own because it reads the process's resident set size, which other
//! tests running in parallel threads would disturb.

use evomal::backend::KernelKind;
use evomal::backend::jit::JitBatch;
use evomal::expr::random::{Method, random_tree};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Resident set size in bytes (Linux).
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn compile_generation(rng: &mut ChaCha8Rng) -> usize {
    let mut batch = JitBatch::new().unwrap();
    for _ in 0..100 {
        let e = random_tree(rng, Method::Grow, 2, 8);
        batch.add(&e, KernelKind::Full).unwrap();
    }
    let kernels = batch.finish().unwrap();
    let mut out = [0.0f32; 1];
    let e = random_tree(rng, Method::Full, 1, 1);
    let k = JitBatch::new().and_then(|mut b| {
        b.add(&e, KernelKind::Loss)?;
        b.finish()
    });
    k.unwrap()[0]
        .loss(&[1.0], &[0.5], e.weights(), &mut out)
        .unwrap();
    kernels.len()
}

#[test]
fn compiling_many_generations_does_not_grow_memory() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for _ in 0..5 {
        compile_generation(&mut rng);
    }
    let before = rss();
    let mut compiled = 0;
    for _ in 0..40 {
        compiled += compile_generation(&mut rng);
    }
    let grown = rss().saturating_sub(before);
    eprintln!(
        "{compiled} kernels in 40 batches: RSS grew by {} KiB",
        grown / 1024
    );
    // Leaked code pages would cost at least one 4 KiB page per batch and typically several per
    // kernel (measured with the module leaked instead of freed: 15 MiB for these 4,000).
    assert!(
        grown < 4 << 20,
        "RSS grew by {} KiB over {compiled} kernels",
        grown / 1024
    );
}
