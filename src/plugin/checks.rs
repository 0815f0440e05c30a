//! What the host checks before trusting a plugin: that its file is a whole shared library for
//! this machine (before the loader maps it), that its task description is usable, and that the
//! targets and inputs it returns are what the task promised.

use std::path::Path;

use evomal_sdk::abi::{KIND_CLASSIFICATION, KIND_REGRESSION, TaskInfo};
use object::{Object, ObjectKind, ObjectSection, ObjectSegment};

use super::PluginError;

/// Refuses anything the dynamic loader should not map: a missing path, something other than a
/// regular file, a file that is not a shared library for this machine, or one whose segments
/// or sections reach past its end (a truncated copy, which would fault when touched).
pub(super) fn check_library_file(path: &Path) -> Result<(), PluginError> {
    let malformed = |reason: String| PluginError::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| PluginError::Missing {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "a device, FIFO or socket"
        };
        return Err(PluginError::NotAFile {
            path: path.to_path_buf(),
            what,
        });
    }
    let data = std::fs::read(path).map_err(|e| malformed(e.to_string()))?;
    let file = object::File::parse(&*data)
        .map_err(|e| malformed(format!("not a shared library ({e})")))?;
    if file.kind() != ObjectKind::Dynamic {
        return Err(malformed(format!(
            "an object file of kind {:?}, not a shared library",
            file.kind()
        )));
    }
    if let Some(host) = host_architecture()
        && file.architecture() != host
    {
        return Err(malformed(format!(
            "built for {:?}, but this machine is {host:?}",
            file.architecture()
        )));
    }
    let len = data.len() as u64;
    let beyond = |(offset, size): (u64, u64)| offset.checked_add(size).is_none_or(|end| end > len);
    let segments = file.segments().map(|s| s.file_range());
    let sections = file.sections().filter_map(|s| s.file_range());
    if let Some((offset, size)) = segments.chain(sections).find(|&r| beyond(r)) {
        return Err(malformed(format!(
            "truncated: it is {len} bytes long, but its contents run to byte {} (from {offset}, {size} bytes)",
            offset.saturating_add(size)
        )));
    }
    Ok(())
}

fn host_architecture() -> Option<object::Architecture> {
    match std::env::consts::ARCH {
        "x86_64" => Some(object::Architecture::X86_64),
        "aarch64" => Some(object::Architecture::Aarch64),
        "riscv64" => Some(object::Architecture::Riscv64),
        _ => None,
    }
}

/// A task the host can train on: a known kind, outputs, inputs, and examples in every split.
pub(super) fn check_task_info(info: &TaskInfo) -> Result<(), String> {
    if info.kind != KIND_REGRESSION && info.kind != KIND_CLASSIFICATION {
        return Err(format!("unknown task kind {}", info.kind));
    }
    if info.n_outputs == 0 || info.target_width == 0 {
        return Err("the task has no outputs or no targets".into());
    }
    let rank = info.input_rank as usize;
    if rank == 0 || rank > info.input_shape.len() || info.input_shape[..rank].contains(&0) {
        return Err(format!(
            "input shape {:?} (rank {rank}) is empty",
            &info.input_shape[..rank.min(info.input_shape.len())]
        ));
    }
    for (split, &n) in info.split_sizes.iter().enumerate() {
        if n == 0 {
            return Err(format!(
                "its {} split is empty; every split needs examples (is the data set too small for its validation fraction?)",
                split_name(split as u32)
            ));
        }
    }
    Ok(())
}

/// What targets a task's plugin may return.
#[derive(Clone, Copy, Debug)]
pub(super) enum TargetRule {
    /// Class indices `0..n` (`n` = 2 for a one-output binary task).
    Classes(usize),
    /// Finite values.
    Finite,
}

impl TargetRule {
    pub(super) fn of(info: &TaskInfo) -> TargetRule {
        if info.kind == KIND_CLASSIFICATION {
            TargetRule::Classes((info.n_outputs as usize).max(2))
        } else {
            TargetRule::Finite
        }
    }

    /// The first target that breaks the rule, named by split and example index.
    pub(super) fn check(self, split: u32, idx: &[u64], targets: &[f32]) -> Result<(), String> {
        let width = (targets.len() / idx.len().max(1)).max(1);
        let bad = targets.iter().position(|&t| match self {
            TargetRule::Classes(n) => !(t >= 0.0 && t.fract() == 0.0 && (t as usize) < n),
            TargetRule::Finite => !t.is_finite(),
        });
        let Some(i) = bad else { return Ok(()) };
        let (t, row) = (targets[i], idx.get(i / width).copied().unwrap_or(0));
        let what = match self {
            TargetRule::Classes(n) => format!("label {t} is not a class index (0 to {})", n - 1),
            TargetRule::Finite => format!("target {t} is not a finite number"),
        };
        Err(format!(
            "{} split, example {row}: {what}",
            split_name(split)
        ))
    }
}

/// The first non-finite input value, named by split, example index and position.
pub(super) fn check_inputs(split: u32, idx: &[u64], x: &[f32]) -> Result<(), String> {
    let width = (x.len() / idx.len().max(1)).max(1);
    match x.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(format!(
            "{} split, example {}: input value {} is {}",
            split_name(split),
            idx.get(i / width).copied().unwrap_or(0),
            i % width,
            x[i]
        )),
    }
}

fn split_name(split: u32) -> &'static str {
    match split {
        0 => "training",
        1 => "validation",
        _ => "test",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_must_be_class_indices_and_targets_finite() {
        let classes = TargetRule::Classes(3);
        assert!(classes.check(0, &[4, 5], &[0.0, 2.0]).is_ok());
        for label in [3.0, -1.0, 0.5, f32::NAN] {
            let err = classes.check(1, &[4, 5], &[0.0, label]).unwrap_err();
            assert_eq!(
                err,
                format!("validation split, example 5: label {label} is not a class index (0 to 2)")
            );
        }
        let err = TargetRule::Finite
            .check(2, &[7], &[f32::INFINITY])
            .unwrap_err();
        assert_eq!(
            err,
            "test split, example 7: target inf is not a finite number"
        );
        let err = check_inputs(0, &[3, 9], &[0.0, 1.0, 2.0, f32::NAN]).unwrap_err();
        assert_eq!(err, "training split, example 9: input value 1 is NaN");
    }
}
