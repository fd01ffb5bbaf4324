//! `istio-integrity-operator`: wiring only; the work lives in the crates under `crates/`.

mod check;
mod run;

use clap::{Parser, Subcommand};
use kube::CustomResourceExt;

#[derive(Parser)]
#[command(
    version,
    about = "Keeps an Istio mesh consistent: MeshServices in, Services, VirtualServices and Gateways out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the MeshService CustomResourceDefinition as YAML.
    Crd,
    /// Check Istio and MeshService YAML offline: dangling references, conflicts (exit 0/1/2).
    Check(check::CheckArgs),
    /// Run the operator against a cluster (kubeconfig or in-cluster config) until SIGTERM.
    Run(run::RunArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => print!(
            "{}",
            serde_saphyr::to_string(&meshservice_api::MeshService::crd())?
        ),
        Command::Check(args) => std::process::exit(check::run(args)),
        Command::Run(args) => run::run(args)?,
    }
    Ok(())
}
