//! `istio-integrity-operator`: wiring only; the work lives in the crates under `crates/`.

use clap::{Parser, Subcommand};
use kube::CustomResourceExt;

#[derive(Parser)]
#[command(version, about = "Keeps an Istio mesh consistent: MeshServices in, Services, VirtualServices and Gateways out")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the MeshService CustomResourceDefinition as YAML.
    Crd,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => print!("{}", serde_saphyr::to_string(&meshservice_api::MeshService::crd())?),
    }
    Ok(())
}
