//! What the binary writes: files replaced atomically (and only if they are regular files), and
//! results directories claimed by one run at a time.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};

/// Writes `bytes` to `path` through a temporary file beside it and a rename, so a reader never
/// sees half a file; creates the parent directory. Refuses to replace anything but a regular
/// file (a directory, a symlink, a FIFO, a device). Errors name `path`, not the temporary.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && !meta.file_type().is_file()
    {
        bail!(
            "`{}` exists and is {}, not a regular file: refusing to replace it",
            path.display(),
            describe(&meta.file_type())
        );
    }
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the folder of `{}`", path.display()))?;
            dir.to_path_buf()
        }
        None => PathBuf::from("."),
    };
    let tmp = unique_temp(&dir, path);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        std::fs::remove_file(&tmp).ok();
        return Err(e).with_context(|| format!("writing `{}`", path.display()));
    }
    Ok(())
}

/// `.<name>.<pid>.<n>.tmp` in `dir`: unique to this process and write, so two writers of one
/// target never share a temporary.
fn unique_temp(dir: &Path, target: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

fn describe(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a file"
    }
}

/// The lock file in a results directory; it holds a line naming the run that holds it.
const LOCK: &str = ".evomal.lock";

/// Files whose presence means a directory holds a run.
const RUN_FILES: [&str; 2] = ["checkpoint.json", "run.json"];

/// A results directory this process holds (an advisory lock, released when dropped or when
/// the process dies, `kill -9` included). A directory the claim created goes again when it is
/// dropped with nothing in it, so a run that fails before writing leaves no empty directory.
pub struct RunDir {
    pub path: PathBuf,
    created: bool,
    _lock: File,
}

impl RunDir {
    /// Claims `path` for a new run. A directory that holds another run, or that another
    /// process holds, is refused when `explicit` (the user named it); otherwise the first free
    /// of `path-2`, `path-3`, … is taken instead.
    pub fn claim_new(path: &Path, explicit: bool) -> anyhow::Result<RunDir> {
        for n in 1.. {
            let candidate = if n == 1 {
                path.to_path_buf()
            } else {
                let mut name = path.as_os_str().to_os_string();
                name.push(format!("-{n}"));
                PathBuf::from(name)
            };
            let refused = match RunDir::lock(&candidate) {
                Ok(dir) => match RUN_FILES.iter().find(|f| candidate.join(f).exists()) {
                    None => return Ok(dir),
                    Some(f) => format!(
                        "`{}` already holds a run (its {f}); resume it with `evomal run --resume {0}`, or choose another --out-dir",
                        candidate.display()
                    ),
                },
                Err(e) if explicit => return Err(e),
                Err(e) => format!("{e:#}"),
            };
            if explicit {
                bail!(refused);
            }
        }
        unreachable!("some numbered directory is free")
    }

    /// Claims `path`, which must hold an interrupted run, to resume it.
    pub fn claim_existing(path: &Path) -> anyhow::Result<RunDir> {
        if !path.join(RUN_FILES[0]).is_file() {
            bail!(
                "`{}` holds no {}: nothing to resume",
                path.display(),
                RUN_FILES[0]
            );
        }
        RunDir::lock(path)
    }

    fn lock(path: &Path) -> anyhow::Result<RunDir> {
        let lock_path = path.join(LOCK);
        // A run dropping the directory it created unlinks the lock file before releasing it: a
        // lock won on that file is no claim, so the claim tries again on the file now there.
        for _ in 0..3 {
            let created = create_dir(path)?;
            let lock = RunDir::lock_file(&lock_path)?;
            if same_file(&lock, &lock_path) {
                return Ok(RunDir {
                    path: path.to_path_buf(),
                    created,
                    _lock: lock,
                });
            }
        }
        bail!(
            "`{}` is in use by another evomal run; choose another --out-dir",
            path.display()
        )
    }

    /// Opens and locks `lock_path`, and writes this process into it.
    fn lock_file(lock_path: &Path) -> anyhow::Result<File> {
        let path = lock_path.parent().unwrap_or(Path::new("."));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(lock_path)
            .with_context(|| format!("opening `{}`", lock_path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                file.read_to_string(&mut holder).ok();
                bail!(
                    "`{}` is in use by another evomal run ({}); wait for it to finish, or choose another --out-dir",
                    path.display(),
                    holder.trim()
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking `{}`", lock_path.display()));
            }
        }
        let holder = format!(
            "process {} started at {} s since the epoch",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        );
        file.set_len(0)
            .and_then(|()| file.write_all(holder.as_bytes()))
            .with_context(|| format!("writing `{}`", lock_path.display()))?;
        Ok(file)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let only_the_lock = || {
            std::fs::read_dir(&self.path).is_ok_and(|entries| {
                entries
                    .map(|e| e.map(|e| e.file_name()))
                    .collect::<Result<Vec<_>, _>>()
                    .is_ok_and(|names| names == [LOCK])
            })
        };
        // Still holding the lock, so no other run can be writing here.
        if self.created && only_the_lock() {
            std::fs::remove_file(self.path.join(LOCK)).ok();
            std::fs::remove_dir(&self.path).ok();
        }
    }
}

/// Creates `path` and its parents; whether this call made `path` itself.
fn create_dir(path: &Path) -> anyhow::Result<bool> {
    let made = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => std::fs::create_dir_all(parent).and_then(|()| std::fs::create_dir(path)),
        None => std::fs::create_dir(path),
    };
    match made {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(false),
        Err(e) => Err(e).with_context(|| format!("creating `{}`", path.display())),
    }
}

/// Whether `path` still names the file `file` is open on.
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Without inode numbers, a lock is taken as a claim (a race with a failing run remains).
#[cfg(not(unix))]
fn same_file(_: &File, path: &Path) -> bool {
    path.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("evomal-files-{name}-"))
            .tempdir()
            .unwrap()
    }

    #[test]
    fn writes_replace_regular_files_only_and_leave_no_temporaries() {
        let d = temp("write");
        let d = d.path();
        let target = d.join("out.json");
        write_atomic(&target, b"one").unwrap();
        write_atomic(&target, b"two").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"two");
        let sub = d.join("sub");
        std::fs::create_dir(&sub).unwrap();
        let err = format!("{:#}", write_atomic(&sub, b"x").unwrap_err());
        assert!(err.contains("is a directory, not a regular file"), "{err}");
        #[cfg(unix)]
        {
            let link = d.join("link");
            std::os::unix::fs::symlink(&target, &link).unwrap();
            let err = format!("{:#}", write_atomic(&link, b"x").unwrap_err());
            assert!(err.contains("is a symbolic link"), "{err}");
            let err = format!(
                "{:#}",
                write_atomic(Path::new("/dev/full"), b"x").unwrap_err()
            );
            assert!(err.contains("`/dev/full` exists and is a device"), "{err}");
        }
        let names: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
        assert_eq!(std::fs::read(&target).unwrap(), b"two");
    }

    #[test]
    fn a_held_directory_is_refused_or_skipped() {
        let tmp = temp("lock");
        let d = tmp.path().join("run");
        let first = RunDir::claim_new(&d, true).unwrap();
        let err = format!("{:#}", RunDir::claim_new(&d, true).err().unwrap());
        assert!(
            err.contains("is in use by another evomal run (process"),
            "{err}"
        );
        let second = RunDir::claim_new(&d, false).unwrap();
        assert!(second.path.ends_with("run-2"), "{}", second.path.display());
        std::fs::write(first.path.join("run.json"), "{}").unwrap();
        drop(first);
        let err = format!("{:#}", RunDir::claim_new(&d, true).err().unwrap());
        assert!(err.contains("already holds a run (its run.json)"), "{err}");
        let third = RunDir::claim_new(&d, false).unwrap();
        assert!(third.path.ends_with("run-3"), "{}", third.path.display());
        assert!(RunDir::claim_existing(&third.path).is_err());
    }

    #[test]
    fn a_directory_the_claim_made_goes_when_dropped_empty() {
        let tmp = temp("empty");
        let fresh = tmp.path().join("fresh");
        drop(RunDir::claim_new(&fresh, true).unwrap());
        assert!(!fresh.exists());
        let written = RunDir::claim_new(&fresh, true).unwrap();
        std::fs::write(fresh.join("run.json"), "{}").unwrap();
        drop(written);
        assert!(fresh.join("run.json").is_file());
        // The user's own empty directory stays.
        let own = tmp.path().join("own");
        std::fs::create_dir(&own).unwrap();
        drop(RunDir::claim_new(&own, true).unwrap());
        assert!(own.is_dir());
    }

    #[test]
    fn a_lock_won_on_a_file_that_was_unlinked_is_no_claim() {
        let tmp = temp("unlinked");
        let d = tmp.path().join("run");
        let first = RunDir::claim_new(&d, true).unwrap();
        // A second run opened the lock file just before the first dropped the directory it
        // made: its lock is then won on a file that is no longer there.
        let stale = OpenOptions::new().read(true).open(d.join(LOCK)).unwrap();
        drop(first);
        assert!(!d.exists());
        stale.try_lock().unwrap();
        assert!(!same_file(&stale, &d.join(LOCK)));
        let second = RunDir::claim_new(&d, true).unwrap();
        assert!(same_file(&second._lock, &d.join(LOCK)));
    }
}
