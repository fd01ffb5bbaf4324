//! The migrations are embedded at compile time by refinery's macro, which cargo does not know
//! reads `migrations/`: without this, adding or editing a migration did not rebuild the crate.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
