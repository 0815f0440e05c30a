//! The `evomal` binary: argument parsing, dispatch, and exit codes. Commands live in `cli/`.

mod cli;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "evomal",
    version,
    about = "Meta-learns symbolic loss functions (EvoMAL)."
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect and evaluate loss expressions.
    #[command(subcommand)]
    Loss(cli::loss::LossCommand),
    /// Search a loss (EvoMAL, GP-LFL, ML3 or TaylorGLO), then meta-test it against the baseline.
    Run(cli::run::RunArgs),
    /// Run a manifest's task under several methods and search seeds, and tabulate the results.
    Compare(cli::compare::CompareArgs),
    /// Write a loss (or a run's best loss) as a standalone WGSL compute shader.
    EmitShader(cli::shader::ShaderArgs),
    /// Write a loss (or a run's best loss) as code: NumPy, PyTorch, JAX, SymPy or LaTeX.
    Export(cli::export::ExportArgs),
    /// Meta-test the loss learned by a run on another task or model.
    Transfer(cli::transfer::TransferArgs),
    /// Meta-test one loss: train a task's model from each seed and report train/test metrics.
    Train(cli::train::TrainArgs),
    /// Inspect task plugins.
    #[command(subcommand)]
    Plugin(cli::plugin::PluginCommand),
    /// Create a task plugin crate to start from (it builds outside this repository).
    NewPlugin(cli::plugin::NewPluginArgs),
    /// Measure throughput on this machine.
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
}

fn main() -> ExitCode {
    quiet_display_probe();
    let args = Args::parse();
    let mut out = io::stdout().lock();
    let res = match args.command {
        Command::Loss(cmd) => cli::loss::run(cmd, &mut out),
        Command::Run(args) => cli::run::run(args, &mut out),
        Command::Compare(args) => cli::compare::run(args, &mut out),
        Command::Train(args) => cli::train::run(args, &mut out),
        Command::Transfer(args) => cli::transfer::run(args, &mut out),
        Command::EmitShader(args) => cli::shader::run(args, &mut out),
        Command::Export(args) => cli::export::run(args, &mut out),
        Command::Bench(cmd) => cli::bench::run(cmd, &mut out),
        Command::Plugin(cmd) => cli::plugin::info(cmd, &mut out),
        Command::NewPlugin(args) => cli::plugin::new(args, &mut out),
    };
    match res.and_then(|()| out.flush().map_err(Into::into)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// When wgpu starts, Mesa's Vulkan drivers look for a Wayland display, and libwayland prints
/// `error: XDG_RUNTIME_DIR is invalid or not set` when that variable is missing (on servers and
/// in CI it always is). evomal never draws, so it points the variable at the temporary
/// directory, where no display socket lives and the probe fails quietly.
fn quiet_display_probe() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // SAFETY: first thing in `main`, before any other thread exists that could read the
        // environment concurrently.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
}
