//! The file formats against files written here in the exact layouts, and the protocol.

use std::io::Write;
use std::path::Path;

use crate::formats::{IMAGE, Images, cifar_binary, svhn_mat};
use crate::images::Store;

/// A level 5 MAT-file holding `X` (uint8, 32 x 32 x 3 x n) and `y` (double), each as a
/// matrix element, zlib-compressed when `compress`.
pub fn svhn_file(x: &[u8], y: &[f64], compress: bool) -> Vec<u8> {
    let mut out = vec![b' '; 116];
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&0x0100u16.to_le_bytes());
    out.extend_from_slice(b"IM");
    let n = y.len() as u32;
    let doubles: Vec<u8> = y.iter().flat_map(|v| v.to_le_bytes()).collect();
    for (name, class, dims, ty, data) in [
        (b"X", 9u8, vec![32u32, 32, 3, n], 2u32, x.to_vec()),
        (b"y", 6u8, vec![n, 1], 9u32, doubles),
    ] {
        let mut m = Vec::new();
        element(&mut m, 6, &[class, 0, 0, 0, 0, 0, 0, 0]);
        let d: Vec<u8> = dims.iter().flat_map(|v| v.to_le_bytes()).collect();
        element(&mut m, 5, &d);
        // The small element format: size in the tag's upper half, 4 data bytes.
        m.extend_from_slice(&((1u32 << 16) | 1).to_le_bytes());
        m.extend_from_slice(&[name[0], 0, 0, 0]);
        element(&mut m, ty, &data);
        let mut matrix = Vec::new();
        element(&mut matrix, 14, &m);
        if compress {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(&matrix).unwrap();
            element(&mut out, 15, &z.finish().unwrap());
        } else {
            out.extend_from_slice(&matrix);
        }
    }
    out
}

fn element(out: &mut Vec<u8>, ty: u32, data: &[u8]) {
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(8), 0);
}

#[test]
fn svhn_files_read_the_same_compressed_or_not() {
    // Image i: pixel (row, col, channel) = i + row + 2 col + 3 channel (mod 256).
    let n = 3;
    let mut x = vec![0u8; n * IMAGE];
    for (k, v) in x.iter_mut().enumerate() {
        let (row, col, ch, img) = (k % 32, k / 32 % 32, k / 1024 % 3, k / IMAGE);
        *v = (img + row + 2 * col + 3 * ch) as u8;
    }
    let y = [10.0, 1.0, 7.0];
    for compress in [false, true] {
        let bytes = svhn_file(&x, &y, compress);
        let set = svhn_mat(&bytes, Path::new("t.mat")).unwrap();
        assert_eq!(set.labels, [0, 1, 7], "10 stands for the digit 0");
        let at = |img: usize, ch: usize, row: usize, col: usize| {
            set.pixels[img * IMAGE + ch * 1024 + row * 32 + col]
        };
        assert_eq!(at(2, 1, 5, 7), (2 + 5 + 14 + 3) as u8);
        assert_eq!(at(0, 2, 31, 0), (31 + 6) as u8);
    }
    let bad = svhn_file(&x, &[3.0, 11.0, 1.0], false);
    let err = svhn_mat(&bad, Path::new("t.mat")).err().unwrap();
    assert!(err.contains("label 11 of image 1 is not in 1..10"), "{err}");
    let truncated = &svhn_file(&x, &y, false)[..5000];
    let err = svhn_mat(truncated, Path::new("t.mat")).err().unwrap();
    assert!(err.contains("t.mat: truncated"), "{err}");
    let err = svhn_mat(b"MATLAB 7.3 MAT-file", Path::new("v73.mat"))
        .err()
        .unwrap();
    assert!(
        err.contains("not a little-endian level 5 MAT-file"),
        "{err}"
    );
}

#[test]
fn cifar_records_are_checked() {
    let mut rec = vec![3u8];
    rec.extend(std::iter::repeat_n(9u8, IMAGE));
    let set = cifar_binary(&rec.repeat(2), Path::new("b.bin"), 1, 10).unwrap();
    assert_eq!((set.len(), set.labels[1], set.pixels[IMAGE]), (2, 3, 9));
    let err = cifar_binary(&rec[..1000], Path::new("b.bin"), 1, 10)
        .err()
        .unwrap();
    assert!(
        err.contains("b.bin: 1000 bytes is not a whole number of 3073-byte records"),
        "{err}"
    );
    rec[0] = 10;
    let err = cifar_binary(&rec, Path::new("b.bin"), 1, 10).err().unwrap();
    assert!(
        err.contains("record 0 has label 10, but the data set has 10 classes"),
        "{err}"
    );
    // CIFAR-100: coarse label first, the fine label used.
    let mut rec100 = vec![1u8, 57];
    rec100.extend(std::iter::repeat_n(0u8, IMAGE));
    assert_eq!(
        cifar_binary(&rec100, Path::new("c"), 2, 100)
            .unwrap()
            .labels,
        [57]
    );
}

fn images(n: usize, classes: usize) -> Images {
    let mut set = Images::default();
    for i in 0..n {
        set.labels.push((i % classes) as u8);
        set.pixels
            .extend((0..IMAGE).map(|p| ((i * 7 + p * 13) % 251) as u8));
    }
    set
}

#[test]
fn the_validation_split_is_stratified_seeded_and_normalisation_uses_training_images() {
    let store = |seed| Store::new(images(200, 10), images(30, 10), 10, 0.1, seed, true).unwrap();
    let s = store(0);
    assert_eq!(s.sizes(), [180, 20, 30]);
    let mut labels = vec![0.0; 20];
    let mut x = vec![0.0; 20 * IMAGE];
    let idx: Vec<u64> = (0..20).collect();
    s.read(1, &idx, &mut x, &mut labels);
    for c in 0..10 {
        assert_eq!(
            labels.iter().filter(|&&l| l == c as f32).count(),
            2,
            "class {c}"
        );
    }
    let mut other = vec![0.0; 20 * IMAGE];
    store(1).read(1, &idx, &mut other, &mut labels);
    assert_ne!(x, other, "another seed holds out other images");
    // Training images are normalised to mean 0 and unit variance per channel.
    let idx: Vec<u64> = (0..180).collect();
    let mut x = vec![0.0; 180 * IMAGE];
    s.read(0, &idx, &mut x, &mut vec![0.0; 180]);
    for c in 0..3 {
        let v: Vec<f64> = x
            .chunks_exact(IMAGE)
            .flat_map(|img| img[c * 1024..(c + 1) * 1024].iter().map(|&v| v as f64))
            .collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(
            mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3,
            "channel {c}: {mean} {var}"
        );
    }
}

#[test]
fn augmentation_crops_and_flips_from_its_seed() {
    let s = Store::new(images(20, 10), images(10, 10), 10, 0.0, 0, true).unwrap();
    let mut x = vec![0.0; 4 * IMAGE];
    s.read(0, &[0, 1, 2, 3], &mut x, &mut [0.0; 4]);
    let (mut a, mut b, mut c) = (x.clone(), x.clone(), x.clone());
    s.crop_flip().apply(&mut a, 4, [3, 32, 32], 1);
    s.crop_flip().apply(&mut b, 4, [3, 32, 32], 1);
    s.crop_flip().apply(&mut c, 4, [3, 32, 32], 2);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(a, x);
    // Each augmented image is its original shifted by (dy, dx) in -4..=4, padded with black,
    // and mirrored or not: exactly one such transform reproduces it, and over four images and
    // two seeds both mirrored and plain ones occur.
    let black: Vec<f32> = (0..3).map(|ch| s.black(ch)).collect();
    let mut mirrored = [0; 2];
    for (aug, seed) in [(&a, 0), (&c, 1)] {
        for k in 0..4 {
            let (src, out) = (&x[k * IMAGE..][..IMAGE], &aug[k * IMAGE..][..IMAGE]);
            let mut found = Vec::new();
            for dy in -4isize..=4 {
                for dx in -4isize..=4 {
                    for mirror in [false, true] {
                        let fits = (0..IMAGE).all(|q| {
                            let (ch, r, col) =
                                (q / 1024, (q / 32 % 32) as isize, (q % 32) as isize);
                            let col = if mirror { 31 - col } else { col };
                            let (sr, sc) = (r + dy, col + dx);
                            let want = if (0..32).contains(&sr) && (0..32).contains(&sc) {
                                src[ch * 1024 + sr as usize * 32 + sc as usize]
                            } else {
                                black[ch]
                            };
                            out[q] == want
                        });
                        if fits {
                            found.push(mirror);
                        }
                    }
                }
            }
            assert_eq!(found.len(), 1, "seed {seed} image {k}: {found:?}");
            mirrored[found[0] as usize] += 1;
        }
    }
    assert!(mirrored[0] > 0 && mirrored[1] > 0, "{mirrored:?}");
}
