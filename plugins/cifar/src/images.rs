//! The protocol of the EvoMAL papers for image data: a stratified, seeded validation split
//! from the official training set, per-channel normalisation with the training part's
//! statistics, and training augmentation (a random crop of the image padded by 4 pixels, and
//! an optional horizontal flip) drawn from each training pass's seed.

use evomal_sdk::augment::CropFlip;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::formats::{IMAGE, Images};

const SIDE: usize = 32;
const PLANE: usize = SIDE * SIDE;
const PAD: usize = 4;

/// Train, validation and test images, normalised on the way out.
pub struct Store {
    train_pool: Images,
    test: Images,
    /// Indices into `train_pool` of the training and validation examples.
    train: Vec<u32>,
    valid: Vec<u32>,
    mean: [f32; 3],
    std: [f32; 3],
    pub flip: bool,
}

impl Store {
    /// Holds out `valid_fraction` of each class of `train_pool` (shuffled with `seed`) for
    /// validation, and normalises with the remaining training images' statistics.
    pub fn new(
        train_pool: Images,
        test: Images,
        classes: usize,
        valid_fraction: f64,
        seed: u64,
        flip: bool,
    ) -> Result<Store, String> {
        let mut by_class = vec![Vec::new(); classes];
        for (i, &l) in train_pool.labels.iter().enumerate() {
            by_class[l as usize].push(i as u32);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut train, mut valid) = (Vec::new(), Vec::new());
        for members in &mut by_class {
            members.shuffle(&mut rng);
            let k = (members.len() as f64 * valid_fraction).round() as usize;
            valid.extend_from_slice(&members[..k]);
            train.extend_from_slice(&members[k..]);
        }
        train.sort_unstable();
        valid.sort_unstable();
        if train.is_empty() || test.len() == 0 {
            return Err(format!(
                "{} training and {} test images: too few to train and test",
                train.len(),
                test.len()
            ));
        }
        let (mean, std) = channel_stats(&train_pool, &train);
        Ok(Store {
            train_pool,
            test,
            train,
            valid,
            mean,
            std,
            flip,
        })
    }

    pub fn sizes(&self) -> [u64; 3] {
        [
            self.train.len() as u64,
            self.valid.len() as u64,
            self.test.len() as u64,
        ]
    }

    /// The image and label of example `i` of `split` (0 train, 1 valid, 2 test).
    fn example(&self, split: usize, i: usize) -> (&[u8], u8) {
        let (set, at) = match split {
            0 => (&self.train_pool, self.train[i] as usize),
            1 => (&self.train_pool, self.valid[i] as usize),
            _ => (&self.test, i),
        };
        (&set.pixels[at * IMAGE..(at + 1) * IMAGE], set.labels[at])
    }

    /// Normalised images and labels of examples `idx` of `split`.
    pub fn read(&self, split: usize, idx: &[u64], x: &mut [f32], y: &mut [f32]) {
        for (k, &i) in idx.iter().enumerate() {
            let (img, label) = self.example(split, i as usize);
            let dst = &mut x[k * IMAGE..(k + 1) * IMAGE];
            for c in 0..3 {
                let (m, s) = (self.mean[c], self.std[c]);
                for (d, &p) in dst[c * PLANE..(c + 1) * PLANE]
                    .iter_mut()
                    .zip(&img[c * PLANE..(c + 1) * PLANE])
                {
                    *d = (p as f32 / 255.0 - m) / s;
                }
            }
            y[k] = label as f32;
        }
    }

    /// The normalised value of a black pixel in channel `c`.
    pub fn black(&self, c: usize) -> f32 {
        -self.mean[c] / self.std[c]
    }

    /// A random 32x32 crop of each image padded by 4 black pixels, then a horizontal flip
    /// with probability 1/2 when `flip`: torchvision's `RandomCrop(32, padding=4)` and
    /// `RandomHorizontalFlip()`, on normalised images (black is `-mean / std`), drawn by the
    /// SDK.
    pub fn crop_flip(&self) -> CropFlip {
        let mut fill = [0.0; 4];
        for (c, f) in fill.iter_mut().take(3).enumerate() {
            *f = self.black(c);
        }
        CropFlip {
            pad: PAD as u32,
            flip: self.flip as u32,
            fill,
        }
    }
}

/// Per-channel mean and (population) standard deviation of pixels in [0, 1] over `members`.
fn channel_stats(set: &Images, members: &[u32]) -> ([f32; 3], [f32; 3]) {
    let (mut sum, mut sq) = ([0.0f64; 3], [0.0f64; 3]);
    for &i in members {
        let img = &set.pixels[i as usize * IMAGE..(i as usize + 1) * IMAGE];
        for c in 0..3 {
            for &p in &img[c * PLANE..(c + 1) * PLANE] {
                let v = p as f64 / 255.0;
                sum[c] += v;
                sq[c] += v * v;
            }
        }
    }
    let n = (members.len() * PLANE) as f64;
    let mut mean = [0.0f32; 3];
    let mut std = [1.0f32; 3];
    for c in 0..3 {
        let m = sum[c] / n;
        mean[c] = m as f32;
        let var = sq[c] / n - m * m;
        // A constant channel (synthetic data) keeps unit scale rather than dividing by zero.
        std[c] = if var > 1e-12 { var.sqrt() as f32 } else { 1.0 };
    }
    (mean, std)
}
