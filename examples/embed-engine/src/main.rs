//! Embeds the integrity engine: loads a directory of YAML and prints the consistency report.
//! (Filled in with the engine's public API.)

fn main() -> anyhow::Result<()> {
    Ok(())
}
