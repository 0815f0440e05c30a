//! `evomal plugin info NAME|PATH` (what a plugin offers) and `evomal new-plugin NAME` (a plugin
//! crate to start from, which builds outside this repository).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use evomal::plugin::TaskPlugin;

use super::write_atomic;

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Describe a plugin: its task, input shape, split sizes, and its models with their
    /// settings and defaults.
    Info {
        /// A plugin name (found as `evomal run` finds it) or the path of its library.
        plugin: String,
        /// The task settings (`[task.data]`) as JSON, for plugins that need them.
        #[arg(long, default_value = "{}")]
        data: String,
    },
}

#[derive(Args)]
pub struct NewPluginArgs {
    /// The plugin's name: lower-case letters, digits, `-` and `_`, starting with a letter.
    name: String,
    /// Where to create the crate (default: `./evomal-plugin-NAME`).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The evomal-sdk crate to depend on (default: the one this evomal was built from).
    #[arg(long)]
    sdk: Option<PathBuf>,
}

pub fn info(cmd: PluginCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    let PluginCommand::Info { plugin, data } = cmd;
    let p = TaskPlugin::open(&plugin, &data)?;
    let info = p.info();
    let kind = if info.kind == evomal_sdk::KIND_CLASSIFICATION {
        "classification"
    } else {
        "regression"
    };
    let shape: Vec<String> = info.input_shape[..info.input_rank as usize]
        .iter()
        .map(u32::to_string)
        .collect();
    writeln!(out, "plugin      {}", p.path().display())?;
    writeln!(out, "task        {} ({kind})", p.name())?;
    writeln!(
        out,
        "outputs     {} per example, targets {} per example",
        info.n_outputs, info.target_width
    )?;
    writeln!(out, "input       {} floats per example", shape.join(" x "))?;
    writeln!(
        out,
        "splits      train {}, valid {}, test {}",
        info.split_sizes[0], info.split_sizes[1], info.split_sizes[2]
    )?;
    for name in p.model_names() {
        let m = p.create_model(name, "{}")?;
        let settings: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&p.model_params(name)?).unwrap_or_default();
        let settings: Vec<String> = settings.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        writeln!(
            out,
            "model       {name}: {} parameters{}; [task.params]: {}",
            m.n_params(),
            if m.has_jvp() { "" } else { ", no JVP" },
            if settings.is_empty() {
                "none".to_string()
            } else {
                settings.join(", ")
            }
        )?;
    }
    Ok(())
}

pub fn new(args: NewPluginArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let name = &args.name;
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        bail!(
            "`{name}` is not a plugin name: use lower-case letters, digits, `-` and `_`, starting with a letter"
        );
    }
    let dir = args
        .dir
        .unwrap_or_else(|| PathBuf::from(format!("evomal-plugin-{name}")));
    if dir.exists() && std::fs::read_dir(&dir).map_or(true, |mut d| d.next().is_some()) {
        bail!(
            "`{}` exists and is not empty: choose another --dir",
            dir.display()
        );
    }
    let sdk = match args.sdk {
        Some(sdk) => sdk,
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/sdk"),
    };
    let sdk = sdk.canonicalize().with_context(|| {
        format!(
            "the evomal-sdk crate at `{}` (give its folder with --sdk)",
            sdk.display()
        )
    })?;
    if !sdk.join("Cargo.toml").is_file() {
        bail!(
            "`{}` holds no Cargo.toml: give evomal-sdk's folder with --sdk",
            sdk.display()
        );
    }
    let lib = name.replace('-', "_");
    let library = format!(
        "{}evomal_plugin_{lib}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{lib}}", &lib)
            .replace("{{sdk}}", &sdk.display().to_string())
            .replace(&format!("libevomal_plugin_{lib}.so"), &library)
    };
    for (file, template) in [
        ("Cargo.toml", include_str!("template/Cargo.toml.in")),
        ("src/lib.rs", include_str!("template/lib.rs.in")),
        ("task.toml", include_str!("template/task.toml.in")),
    ] {
        write_atomic(&dir.join(file), fill(template).as_bytes())?;
    }
    writeln!(out, "created {}", dir.display())?;
    // One step a line, so that the lines run as they are, pasted together or one by one.
    writeln!(out, "  cd {}", dir.display())?;
    writeln!(out, "  cargo build --release")?;
    writeln!(out, "  evomal run task.toml")?;
    Ok(())
}
