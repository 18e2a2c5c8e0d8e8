use clap::Parser;

fn main() {
    rustybt::error::install_panic_hook();
    let cli = rustybt::Cli::parse();
    let code = std::panic::catch_unwind(|| rustybt::execute(cli))
        .unwrap_or(rustybt::error::ExitCode::Internal);
    std::process::exit(code as i32);
}
