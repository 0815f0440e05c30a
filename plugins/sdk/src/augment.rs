//! Training augmentation that the SDK draws itself, so that the GPU trainer can replay it
//! exactly: a random crop of each image padded by `pad` pixels of a fill value per channel,
//! then, with `flip`, a horizontal flip with probability 1/2 — torchvision's
//! `RandomCrop(size, padding)` and `RandomHorizontalFlip()`. A task asks for it in its
//! [`TaskInfo`](crate::TaskInfo) (`augments: AUGMENT_CROP_FLIP` and the recipe in `crop_flip`).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use crate::abi::CropFlip;

/// The stream of a training pass's seed that augmentation draws from (layers use theirs).
pub const AUGMENT_STREAM: u64 = u64::MAX;

/// One image's draw: where its crop starts in the padded image (0..=2 pad each way), and
/// whether it is mirrored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Draw {
    pub dy: u32,
    pub dx: u32,
    pub mirror: bool,
}

impl CropFlip {
    /// The draws of a training pass seeded `seed` for its first `n` images, in order.
    pub fn draws(&self, seed: u64, n: usize) -> impl Iterator<Item = Draw> + use<> {
        let mut rng = ChaCha8Rng::seed_from_u64(crate::mix_seed(seed, AUGMENT_STREAM));
        let (span, flip) = (2 * self.pad, self.flip != 0);
        (0..n).map(move |_| Draw {
            dy: rng.random_range(0..=span),
            dx: rng.random_range(0..=span),
            mirror: flip && rng.random_bool(0.5),
        })
    }

    /// Crops and flips the first `n` images of `x` (`[channel][row][column]` each, of `shape`)
    /// as [`CropFlip::draws`] draws them for a pass seeded `seed`.
    pub fn apply(&self, x: &mut [f32], n: usize, [c, h, w]: [usize; 3], seed: u64) {
        let pad = self.pad as isize;
        let mut src = vec![0.0f32; c * h * w];
        for (img, d) in x.chunks_exact_mut(c * h * w).zip(self.draws(seed, n)) {
            src.copy_from_slice(img);
            for ch in 0..c {
                let plane = &src[ch * h * w..][..h * w];
                for r in 0..h {
                    for col in 0..w {
                        let sr = (r + d.dy as usize) as isize - pad;
                        let sc = (col + d.dx as usize) as isize - pad;
                        let inside = (0..h as isize).contains(&sr) && (0..w as isize).contains(&sc);
                        let v = if inside {
                            plane[sr as usize * w + sc as usize]
                        } else {
                            self.fill[ch]
                        };
                        let out = if d.mirror { w - 1 - col } else { col };
                        img[ch * h * w + r * w + out] = v;
                    }
                }
            }
        }
    }

    /// The image shape `[channels, height, width]` of a task's `info` this recipe applies to,
    /// or why it cannot.
    pub fn shape(info: &crate::TaskInfo) -> Result<[usize; 3], String> {
        match (info.input_rank, info.input_shape) {
            (3, [c, h, w, _]) if (1..=4).contains(&c) => Ok([c as usize, h as usize, w as usize]),
            _ => Err(format!(
                "crop-and-flip augmentation needs images of 1 to 4 channels (input shape \
                 [channels, height, width]); the task's input shape is {:?}",
                &info.input_shape[..info.input_rank.min(4) as usize]
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_are_shifts_with_fill_and_flips_mirror() {
        let recipe = CropFlip {
            pad: 1,
            flip: 1,
            fill: [-1.0, -2.0, 0.0, 0.0],
        };
        let shape = [2, 3, 3];
        let image: Vec<f32> = (0..18).map(|v| v as f32).collect();
        let n = 16;
        let mut x = image.repeat(n);
        recipe.apply(&mut x, n, shape, 7);
        let draws: Vec<Draw> = recipe.draws(7, n).collect();
        assert!(draws.iter().any(|d| d.mirror) && draws.iter().any(|d| !d.mirror));
        assert!(draws.iter().any(|d| (d.dy, d.dx) != (1, 1)));
        for (img, d) in x.chunks_exact(18).zip(&draws) {
            for ch in 0..2 {
                for r in 0..3 {
                    for col in 0..3 {
                        let out = if d.mirror { 2 - col } else { col };
                        let (sr, sc) = (r + d.dy as i32 as usize, col + d.dx as usize);
                        let want = if (1..4).contains(&sr) && (1..4).contains(&sc) {
                            image[ch * 9 + (sr - 1) * 3 + sc - 1]
                        } else {
                            recipe.fill[ch]
                        };
                        assert_eq!(img[ch * 9 + r * 3 + out], want);
                    }
                }
            }
        }
        // The same seed draws the same; another seed draws otherwise.
        assert_eq!(draws, recipe.draws(7, n).collect::<Vec<_>>());
        assert_ne!(draws, recipe.draws(8, n).collect::<Vec<_>>());
    }
}
