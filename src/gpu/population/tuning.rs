//! The sizes the matrix products run at: three tilings and the shortest split-K chunk, chosen
//! from the adapter's limits, or set from the environment to tune them on new hardware.

use std::fmt;

use crate::gpu::GpuError;

/// The tilings each product's kernel is compiled for.
pub const TILINGS: usize = 3;

/// Overrides the three tilings: `TMxTNxTK/PMxPN,…,…` (`tile_m x tile_n x tile_k` outputs and
/// depth per workgroup, `per_m x per_n` outputs per invocation).
pub const TILES_VAR: &str = "EVOMAL_GPU_TILES";
/// Overrides [`Tuning::MIN_CHUNK`].
pub const MIN_CHUNK_VAR: &str = "EVOMAL_GPU_MIN_CHUNK";

/// A weight gradient's chunks are whole multiples of this, which every tiling's depth divides:
/// so no tile straddles two chunks, and the tilings leave the chunks, and every sum's order, as
/// they are.
pub const CHUNK_ALIGN: u32 = 64;

/// A product's tiling: `tile_m x tile_n` outputs per workgroup, `per_m x per_n` per invocation,
/// over slices of `tile_k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiles {
    pub tile_m: u32,
    pub tile_n: u32,
    pub tile_k: u32,
    pub per_m: u32,
    pub per_n: u32,
}

impl Tiles {
    const fn new(tile_m: u32, tile_n: u32, tile_k: u32, per_m: u32, per_n: u32) -> Tiles {
        Tiles {
            tile_m,
            tile_n,
            tile_k,
            per_m,
            per_n,
        }
    }

    /// Invocations per workgroup along x (columns) and y (rows).
    fn workgroup(&self) -> (u32, u32) {
        (self.tile_n / self.per_n, self.tile_m / self.per_m)
    }

    /// Why `tiled.wgsl` cannot run at these sizes on an adapter with `limits`, if it cannot.
    fn unfit(&self, limits: &wgpu::Limits) -> Option<String> {
        let Tiles {
            tile_m,
            tile_n,
            tile_k,
            per_m,
            per_n,
        } = *self;
        if [tile_m, tile_n, tile_k, per_m, per_n].contains(&0)
            || !tile_m.is_multiple_of(per_m)
            || !tile_n.is_multiple_of(per_n)
        {
            return Some(
                "each size is positive and the outputs per invocation divide the tile's".into(),
            );
        }
        if !CHUNK_ALIGN.is_multiple_of(tile_k) {
            return Some(format!("its depth does not divide {CHUNK_ALIGN}"));
        }
        let (x, y) = self.workgroup();
        let threads = x * y;
        let storage = (tile_m + tile_n) * tile_k * 4;
        // `tiled.wgsl` loads each invocation's B entries from one column, A's at one offset into
        // the slice.
        if !threads.is_multiple_of(tile_n) || !threads.is_multiple_of(tile_k) {
            Some(format!(
                "its {threads} invocations per workgroup are not a multiple of tile_n ({tile_n}) \
                 and tile_k ({tile_k})"
            ))
        } else if threads > limits.max_compute_invocations_per_workgroup {
            Some(format!(
                "it needs {threads} invocations per workgroup; this adapter allows {}",
                limits.max_compute_invocations_per_workgroup
            ))
        } else if x > limits.max_compute_workgroup_size_x || y > limits.max_compute_workgroup_size_y
        {
            Some(format!(
                "its workgroup is {x} x {y} invocations; this adapter allows {} x {}",
                limits.max_compute_workgroup_size_x, limits.max_compute_workgroup_size_y
            ))
        } else if storage > limits.max_compute_workgroup_storage_size {
            Some(format!(
                "it needs {storage} bytes of workgroup memory; this adapter allows {}",
                limits.max_compute_workgroup_storage_size
            ))
        } else {
            None
        }
    }

    /// A product of `m x n` outputs' cost in this tiling, in units of one multiply-add per
    /// entry of the sum: its outputs rounded up to whole tiles, each multiply-add with its
    /// share of the tiles' loads from memory (which count four: an index computation each).
    pub fn cost(&self, m: u32, n: u32) -> f64 {
        let padded =
            m.next_multiple_of(self.tile_m) as f64 * n.next_multiple_of(self.tile_n) as f64;
        let loads = (self.tile_m + self.tile_n) as f64 / (self.tile_m * self.tile_n) as f64;
        padded * (1.0 + 4.0 * loads)
    }

    /// A product's kernel `src` (`gemm.wgsl`, `conv_*.wgsl`) followed by the tile loop `tiled`
    /// at these sizes.
    pub fn shader(&self, src: &str, tiled: &str) -> String {
        let n = |v: u32| v.to_string();
        let (x, y) = self.workgroup();
        format!("{src}\n{tiled}")
            .replace("{{tile_m}}", &n(self.tile_m))
            .replace("{{tile_n}}", &n(self.tile_n))
            .replace("{{tile_k}}", &n(self.tile_k))
            .replace("{{per_m}}", &n(self.per_m))
            .replace("{{per_n}}", &n(self.per_n))
            .replace("{{wg_x}}", &n(x))
            .replace("{{wg_y}}", &n(y))
            .replace("{{a_tile}}", &n(self.tile_m * self.tile_k))
            .replace("{{b_tile}}", &n(self.tile_k * self.tile_n))
            .replace("{{acc}}", &n(self.per_m * self.per_n))
    }
}

/// `TMxTNxTK/PMxPN`, as [`TILES_VAR`] takes it.
impl fmt::Display for Tiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (m, n, k) = (self.tile_m, self.tile_n, self.tile_k);
        write!(f, "{m}x{n}x{k}/{}x{}", self.per_m, self.per_n)
    }
}

impl std::str::FromStr for Tiles {
    type Err = String;

    fn from_str(s: &str) -> Result<Tiles, String> {
        let numbers = |part: &str| -> Option<Vec<u32>> {
            part.split('x').map(|v| v.trim().parse().ok()).collect()
        };
        match s.split_once('/').map(|(t, p)| (numbers(t), numbers(p))) {
            Some((Some(t), Some(p))) if t.len() == 3 && p.len() == 2 => {
                Ok(Tiles::new(t[0], t[1], t[2], p[0], p[1]))
            }
            _ => Err(format!(
                "`{s}` is not TMxTNxTK/PMxPN (such as 64x64x16/4x4)"
            )),
        }
    }
}

/// The products' sizes on one adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// A product runs in the cheapest of these for its shape.
    pub tiles: [Tiles; TILINGS],
    /// The shortest chunk a convolution's weight gradient splits its sum into.
    pub min_chunk: u32,
}

impl Tuning {
    /// Long enough that a workgroup's loads outweigh writing its partial sums.
    pub const MIN_CHUNK: u32 = 1024;

    /// The tilings the device's limits allow, from the widest: 64 x 64 outputs per workgroup
    /// (4 x 4 per invocation), 16 x 64 (1 x 4) for products of few rows, 8 x 16 (1 x 1) for
    /// small ones (a small convolution's weight gradient); or halves of them.
    pub fn for_limits(limits: &wgpu::Limits) -> Tuning {
        let pick = |choices: [Tiles; 2]| {
            choices
                .into_iter()
                .find(|t| t.unfit(limits).is_none())
                .unwrap_or(Tiles::new(8, 8, 8, 1, 1))
        };
        Tuning {
            tiles: [
                pick([Tiles::new(64, 64, 16, 4, 4), Tiles::new(32, 32, 8, 4, 4)]),
                pick([Tiles::new(16, 64, 16, 1, 4), Tiles::new(8, 32, 8, 1, 4)]),
                pick([Tiles::new(8, 16, 16, 1, 1), Tiles::new(8, 8, 8, 1, 1)]),
            ],
            min_chunk: Self::MIN_CHUNK,
        }
    }

    /// [`Self::for_limits`] with what [`TILES_VAR`] and [`MIN_CHUNK_VAR`] set in the
    /// environment. The tilings change no result (each output's sum runs in the same order);
    /// the chunks change the order of a convolution's weight gradient's sum.
    pub fn from_env(limits: &wgpu::Limits) -> Result<Tuning, GpuError> {
        let var = |name: &'static str| match std::env::var(name) {
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(v)) => Err(GpuError::Setting {
                var: name,
                value: v.to_string_lossy().into_owned(),
                why: "it is not UTF-8".into(),
            }),
        };
        Tuning::with(
            limits,
            var(TILES_VAR)?.as_deref(),
            var(MIN_CHUNK_VAR)?.as_deref(),
        )
    }

    /// [`Self::for_limits`] with these settings of [`TILES_VAR`] and [`MIN_CHUNK_VAR`].
    pub fn with(
        limits: &wgpu::Limits,
        tiles: Option<&str>,
        min_chunk: Option<&str>,
    ) -> Result<Tuning, GpuError> {
        let mut tuning = Tuning::for_limits(limits);
        if let Some(v) = tiles {
            let setting = |why: String| GpuError::Setting {
                var: TILES_VAR,
                value: v.to_string(),
                why,
            };
            let parsed = v
                .split(',')
                .map(str::parse::<Tiles>)
                .collect::<Result<Vec<_>, _>>()
                .map_err(setting)?;
            tuning.tiles = parsed.try_into().map_err(|p: Vec<Tiles>| {
                setting(format!("it takes {TILINGS} tilings, not {}", p.len()))
            })?;
            for t in &tuning.tiles {
                if let Some(why) = t.unfit(limits) {
                    return Err(setting(format!("{t}: {why}")));
                }
            }
        }
        if let Some(v) = min_chunk {
            tuning.min_chunk = v
                .trim()
                .parse()
                .ok()
                .filter(|c| (1..=1 << 24).contains(c))
                .ok_or_else(|| GpuError::Setting {
                    var: MIN_CHUNK_VAR,
                    value: v.to_string(),
                    why: "it takes a whole number from 1 to 16777216".into(),
                })?;
        }
        Ok(tuning)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_adapters_limits_choose_the_tilings_and_settings_replace_them() {
        let limits = wgpu::Limits::default();
        let chosen = Tuning::for_limits(&limits);
        let text = chosen.tiles.map(|t| t.to_string()).join(",");
        assert_eq!(text, "64x64x16/4x4,16x64x16/1x4,8x16x16/1x1");
        assert_eq!(Tuning::with(&limits, Some(&text), None).unwrap(), chosen);
        let small = wgpu::Limits {
            max_compute_invocations_per_workgroup: 64,
            ..limits.clone()
        };
        assert_eq!(
            Tuning::for_limits(&small).tiles[0],
            Tiles::new(32, 32, 8, 4, 4)
        );
        let tuned = Tuning::with(
            &limits,
            Some("128x64x8/8x4, 32x32x16/2x2,8x8x8/1x1"),
            Some("256"),
        )
        .unwrap();
        assert_eq!(tuned.tiles[0], Tiles::new(128, 64, 8, 8, 4));
        assert_eq!(tuned.tiles[1], Tiles::new(32, 32, 16, 2, 2));
        assert_eq!(tuned.min_chunk, 256);
    }

    #[test]
    fn settings_the_adapter_or_the_tile_loop_cannot_take_are_refused_with_the_reason() {
        let limits = wgpu::Limits::default();
        let others = ",16x64x16/1x4,8x16x16/1x1";
        for (value, why) in [
            ("64x64x16".to_string(), "`64x64x16` is not TMxTNxTK/PMxPN"),
            ("64x64x16/4x4".into(), "it takes 3 tilings, not 1"),
            (
                format!("64x64x0/4x4{others}"),
                "64x64x0/4x4: each size is positive",
            ),
            (
                format!("64x64x16/3x4{others}"),
                "the outputs per invocation divide",
            ),
            (
                format!("64x64x12/4x4{others}"),
                "its depth does not divide 64",
            ),
            (
                format!("64x64x16/2x2{others}"),
                "needs 1024 invocations per workgroup; this adapter allows 256",
            ),
            (
                format!("8x64x16/4x4{others}"),
                "its 32 invocations per workgroup are not a multiple of tile_n (64)",
            ),
            (
                format!("128x128x32/8x8{others}"),
                "needs 32768 bytes of workgroup memory; this adapter allows 16384",
            ),
        ] {
            let err = Tuning::with(&limits, Some(&value), None)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("`{TILES_VAR}={value}`: ")) && err.contains(why),
                "{value}: {err}"
            );
        }
        for chunk in ["0", "-1", "lots", "16777217"] {
            let err = Tuning::with(&limits, None, Some(chunk))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("`{MIN_CHUNK_VAR}={chunk}`: "))
                    && err.contains("from 1 to 16777216"),
                "{chunk}: {err}"
            );
        }
    }
}
